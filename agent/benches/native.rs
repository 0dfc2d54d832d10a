//! Native kernel benchmark (docs/BENCHMARKS.md): the harness's WGSL through wgpu on this
//! host's Vulkan adapter, side by side in one run:
//! - the adapter's streaming-read bandwidth (`stream_read` over a 1 GiB buffer, or 128 MiB on a
//!   CPU adapter), which every kernel is reported as a fraction of;
//! - per shape (n × k, batch 1): the f32 baseline through `linear.wgsl`'s general GEMV and
//!   `gemv.wgsl`'s vec4 one, and every width (2, 3, 4, 8 bits, g32 sym; 4-bit asym too) through
//!   the kernel the runner picks, plus 4-bit through the general kernel it replaces. Each row:
//!   µs per dispatch (median of 10 samples of many dispatches in one submit, weights rotated
//!   past twice the cache), GB/s of weights, the fraction of streaming bandwidth, its byte
//!   bound, what a submit adds, and the kernel check.
//!
//! `cargo bench -p quantgrid-agent --bench native` (QG_NATIVE_SHAPES=768x3072,4096x4096,...
//! picks the shapes; the default is BERT's ffn.down and 4096², plus 16384² on a real GPU).
//!
//! `QG_NATIVE_CANDIDATES=a.wgsl,b.wgsl` also times candidate kernels against the landed ones:
//! every entry point named `c<bits>_r<rows>_…` (WGSL with `gemv.wgsl`'s bindings, `rows`
//! outputs per workgroup) runs at each shape, sym and for 4-bit asym, with the same check.

use quantgrid_agent::native::{self, Candidate, Gpu, NativeRun, Timing};
use quantgrid_matrix::quant::{Bits, QuantParams, Scheme};
use quantgrid_matrix::reference::{LayerCase, layer_case, weights};
use quantgrid_matrix::workload::{Layer, Role};

/// A sample should take about this long: long enough for a coarse clock, short on lavapipe.
const SAMPLE_SECS: f64 = 0.05;

fn layer(n: u32, k: u32) -> Layer {
    Layer {
        name: "bench".into(),
        role: Role::Ffn,
        m: 1,
        k,
        n,
    }
}

/// Timing whose samples last about [`SAMPLE_SECS`], from one dispatch's time, after ten
/// untimed ones: about half a second of warm-up, since a row's first kernel on a new case
/// follows seconds of CPU work on its references, and on a GPU that had idled the first row
/// read up to 4× slow (docs/BENCHMARKS.md).
fn timing_for(one_us: f64) -> Timing {
    Timing {
        warmup: 10,
        dispatches: ((SAMPLE_SECS * 1e6 / one_us.max(0.1)) as u32).clamp(1, 2000),
        ..Timing::default()
    }
}

fn timed(
    what: &str,
    run: &dyn Fn(Timing) -> Result<NativeRun, native::NativeError>,
    stream: f64,
) -> Option<NativeRun> {
    let probe = Timing {
        warmup: 1,
        samples: 1,
        dispatches: 1,
        working_set_bytes: 0,
    };
    let first = match run(probe) {
        Ok(r) => r,
        Err(e) => {
            println!("  {what:<22} failed: {e}");
            return None;
        }
    };
    let r = match run(timing_for(first.median_us())) {
        Ok(r) => r,
        Err(e) => {
            println!("  {what:<22} failed: {e}");
            return None;
        }
    };
    let us = r.median_us();
    let rate = r.weight_bytes as f64 / (us * 1e-6);
    println!(
        "  {what:<22} {us:>10.1} µs {:>8.1} GB/s {:>5.1}% of stream   bound {:>8.1} µs   submit +{:>6.1} µs   {} ×{}   check {:.2} {}",
        rate / 1e9,
        100.0 * rate / stream,
        r.weight_bytes as f64 / stream * 1e6,
        r.submit_overhead_us,
        r.kernel,
        r.copies,
        r.check.worst_ratio,
        if r.check.passed() { "pass" } else { "FAIL" },
    );
    Some(r)
}

/// Candidate entry points of a WGSL source: `(name, bits, rows)` of each `fn c<bits>_r<rows>_…`.
fn candidates(source: &str) -> Vec<(String, u8, u32)> {
    source
        .split("fn ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let mut parts = name.strip_prefix('c')?.split('_');
            let bits = parts.next()?.parse().ok()?;
            let rows = parts.next()?.strip_prefix('r')?.parse().ok()?;
            Some((name, bits, rows))
        })
        .collect()
}

fn case(l: &Layer, bits: Bits, scheme: Scheme) -> LayerCase {
    layer_case(
        11,
        l,
        QuantParams {
            bits,
            scheme,
            group_size: 32,
        },
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::open().await?;
    let adapter = gpu.adapter();
    println!(
        "adapter: {} ({}){}",
        adapter.device,
        adapter.description,
        if adapter.is_software() {
            " — software: a CPU, not a GPU"
        } else {
            ""
        }
    );
    let stream_bytes: u64 = if adapter.is_fallback {
        128 << 20
    } else {
        1 << 30
    };
    let stream_bytes = stream_bytes.min(gpu.max_binding_bytes() & !15);
    let stream = native::stream_read(&gpu, stream_bytes, Timing::default())?;
    println!(
        "streaming read: {:.0} GB/s ({} MiB buffer)",
        stream / 1e9,
        stream_bytes >> 20
    );
    let mut modules = Vec::new();
    for path in std::env::var("QG_NATIVE_CANDIDATES")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let source = std::fs::read_to_string(path)?;
        if source.contains("subgroupAdd") && !gpu.has_subgroups() {
            println!("{path}: skipped, the adapter has no subgroups");
            continue;
        }
        match gpu.candidate_module(&source) {
            Ok(m) => modules.push((m, candidates(&source))),
            Err(e) => println!("{path}: {e}"),
        }
    }
    let shapes: Vec<(u32, u32)> = match std::env::var("QG_NATIVE_SHAPES") {
        Ok(v) => v
            .split(',')
            .filter_map(|s| {
                let (n, k) = s.trim().split_once('x')?;
                Some((n.parse().ok()?, k.parse().ok()?))
            })
            .collect(),
        Err(_) if adapter.is_fallback => vec![(768, 3072), (4096, 4096)],
        Err(_) => vec![(768, 3072), (4096, 4096), (16384, 16384)],
    };
    for (n, k) in shapes {
        let l = layer(n, k);
        println!("n {n} × k {k}, batch 1:");
        let w = weights(11, &l);
        let reference = case(&l, Bits::B8, Scheme::Symmetric);
        let f32_general = timed(
            "f32, linear.wgsl gemv",
            &|t| native::run_f32_layer_general(&gpu, 1, &reference, &w, t),
            stream,
        );
        let f32_best = timed(
            "f32, gemv_f32",
            &|t| native::run_f32_layer(&gpu, 1, &reference, &w, t),
            stream,
        );
        drop(reference);
        drop(w);
        let best_f32 = [&f32_general, &f32_best]
            .iter()
            .filter_map(|r| r.as_ref().map(NativeRun::median_us))
            .fold(f64::INFINITY, f64::min);
        for (bits, scheme) in [
            (Bits::B2, Scheme::Symmetric),
            (Bits::B3, Scheme::Symmetric),
            (Bits::B4, Scheme::Symmetric),
            (Bits::B4, Scheme::Asymmetric),
            (Bits::B8, Scheme::Symmetric),
        ] {
            let c = case(&l, bits, scheme);
            let name = format!(
                "{bits}-bit g32 {}",
                if scheme == Scheme::Symmetric {
                    "sym"
                } else {
                    "asym"
                }
            );
            if bits == Bits::B4 && scheme == Scheme::Symmetric {
                timed(
                    &format!("{name}, linear.wgsl"),
                    &|t| native::run_layer_general(&gpu, 1, &c, t),
                    stream,
                );
            }
            if let Some(r) = timed(&name, &|t| native::run_layer(&gpu, 1, &c, t), stream) {
                println!(
                    "  {:<22} {:.2}× the best f32 time ({:.1}× faster)",
                    "",
                    r.median_us() / best_f32,
                    best_f32 / r.median_us()
                );
            }
            for (module, entries) in &modules {
                for (entry, _, rows) in entries.iter().filter(|e| u32::from(e.1) == bits.get()) {
                    let candidate = Candidate {
                        module,
                        entry,
                        rows: *rows,
                    };
                    timed(
                        &format!("  {entry}"),
                        &|t| native::run_candidate(&gpu, &c, candidate, t),
                        stream,
                    );
                }
            }
        }
    }
    Ok(())
}
