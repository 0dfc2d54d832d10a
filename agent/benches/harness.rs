//! The agent's benchmark on the real browsers installed here (`./x bench`). On the same cells
//! in one run it prints, per browser build that has WebGPU:
//! - cells per minute with one reused session vs a fresh browser session per cell;
//! - the non-kernel overhead per cell: wall time minus the time the page spent building and
//!   running the kernels (weights generation, packing, transfer, references, checks);
//! - 4-bit vs f32 GEMV time at BERT-base shapes on that adapter.
//!
//! `QG_HARNESS_GEMV_ONLY=1` measures the GEMV pair alone (no sweeps), for kernel work;
//! `QG_HARNESS_BROWSER=firefox` (or `chromium`) keeps one browser's builds.

use quantgrid_agent::browser_executor::BrowserExecutor;
use quantgrid_agent::executor::{Executor, Job};
use quantgrid_agent::layers::{run_f32_layer, run_layer};
use quantgrid_agent::probe::{Probed, probe};
use quantgrid_agent::server;
use quantgrid_agent::webdriver::{Driver, Launch, Session};
use quantgrid_matrix::quant::{Bits, QuantParams, Scheme};
use quantgrid_matrix::reference::{layer_case, weights};
use quantgrid_matrix::workload::{Layer, Role};
use quantgrid_matrix::{Cell, Platform, Status, spec};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Small cells, so what the grid adds per cell shows: ELECTRA-small's first block (hidden 256,
/// FFN 1024, six matrices) at batch 1 on every width.
const CELLS: &str = "version: 1\nname: bench\nfamilies: [electra]\nbrowsers: [chromium, firefox]\nplatforms: webgpu\nbits: [2, 3, 4, 8, 16]\nworkload: {layers: 1, seq_len: 1}\n";

fn executor(p: &Probed) -> BrowserExecutor {
    let caps = quantgrid_matrix::agent::Capabilities {
        os: quantgrid_agent::host::os(),
        arch: std::env::consts::ARCH.into(),
        browsers: vec![p.capability()],
        gpu_vendors: vec![],
        labels: Default::default(),
        slots: 1,
        simulated: false,
        native: None,
    };
    BrowserExecutor::new(vec![p.clone()], caps, true)
}

struct Pass {
    wall: Duration,
    overhead_s: Vec<f64>,
}

/// Runs `cells` twice over (the first round warms caches) and times the second round.
async fn sweep(exec: &BrowserExecutor, cells: &[Cell]) -> Pass {
    let job = |c: &Cell| Job {
        lease_id: "bench".into(),
        cell: c.clone(),
        warmup: 0,
        repetitions: 5,
        timeout: Duration::from_secs(300),
    };
    for c in cells {
        let r = exec.run(job(c), CancellationToken::new()).await;
        assert_eq!(r.status, Status::Pass, "{r:?}");
    }
    let start = Instant::now();
    let mut overhead_s = Vec::new();
    for c in cells {
        let t = Instant::now();
        let r = exec.run(job(c), CancellationToken::new()).await;
        let wall = t.elapsed().as_secs_f64();
        let m = r.measurement.expect("measured");
        overhead_s.push(wall - m.kernel_ms / 1000.0);
    }
    Pass {
        wall: start.elapsed(),
        overhead_s,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn gemv_4_vs_f32(p: &Probed) -> (f64, f64) {
    let harness = server::Harness::start().await.expect("harness");
    let blobs = harness.blobs().clone();
    let launch = Launch::of(&p.found, true);
    let driver = Driver::start(p.found.candidate.driver.as_ref().expect("driver"), &launch)
        .await
        .expect("driver");
    let session = Session::open(&driver, &launch).await.expect("session");
    session
        .goto(&harness.url("layer.html"))
        .await
        .expect("harness");
    // BERT-base's FFN up-projection at batch 1: 768 → 3072
    let layer = Layer {
        name: "ffn.up".into(),
        role: Role::Ffn,
        m: 1,
        k: 768,
        n: 3072,
    };
    let params = QuantParams {
        bits: Bits::B4,
        scheme: Scheme::Symmetric,
        group_size: 32,
    };
    let case = layer_case(7, &layer, params);
    let w = weights(7, &layer);
    let q = run_layer(&session, &blobs, &layer, &case, 3, 15)
        .await
        .expect("4-bit");
    let f = run_f32_layer(&session, &blobs, &layer, &case, &w, 3, 15)
        .await
        .expect("f32");
    let _ = session.close().await;
    drop(harness);
    let (mut qs, mut fs) = (q.clock.samples_ms, f.clock.samples_ms);
    (median(&mut qs), median(&mut fs))
}

#[tokio::main]
async fn main() {
    let all = spec::parse(CELLS, "bench.yaml").expect("spec").expand();
    let mut builds = Vec::new();
    let only = std::env::var("QG_HARNESS_BROWSER").ok();
    for found in quantgrid_agent::discovery::browsers() {
        if only
            .as_deref()
            .is_some_and(|b| b != found.candidate.browser.to_string())
        {
            continue;
        }
        match probe(&found).await {
            Ok(p) if p.capability().webgpu.is_some() => builds.push(p),
            Ok(_) => println!(
                "{} {}: no WebGPU, skipped",
                found.candidate.browser, found.version
            ),
            Err(e) => println!("{} {}: {e}", found.candidate.browser, found.version),
        }
    }
    println!(
        "| build | adapter | cells | reused: cells/min | fresh: cells/min | reuse speed-up | overhead/cell p50 (reused) | GEMV 768→3072 4-bit p50 | f32 p50 | 4-bit / f32 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let gemv_only = std::env::var_os("QG_HARNESS_GEMV_ONLY").is_some();
    for p in &builds {
        if gemv_only {
            let (q4, f32_ms) = gemv_4_vs_f32(p).await;
            println!(
                "{} {}: GEMV 768→3072 4-bit p50 {q4:.2} ms, f32 p50 {f32_ms:.2} ms, 4-bit / f32 {:.2}",
                p.found.candidate.browser,
                p.found.version,
                q4 / f32_ms
            );
            continue;
        }
        let cells: Vec<Cell> = all
            .iter()
            .filter(|c| c.browser == p.found.candidate.browser && c.platform == Platform::Webgpu)
            .cloned()
            .collect();
        let reused = sweep(&executor(p), &cells).await;
        let fresh = sweep(&executor(p).without_session_reuse(), &cells).await;
        let per_min = |d: Duration| cells.len() as f64 * 60.0 / d.as_secs_f64();
        let mut overhead = reused.overhead_s.clone();
        let (q4, f32_ms) = gemv_4_vs_f32(p).await;
        let adapter = p.capability().webgpu.map(|a| a.label()).unwrap_or_default();
        println!(
            "| {} {} | {} | {} | {:.1} | {:.1} | {:.2}× | {:.3} s | {:.2} ms | {:.2} ms | {:.2} |",
            p.found.candidate.browser,
            p.found.version,
            adapter,
            cells.len(),
            per_min(reused.wall),
            per_min(fresh.wall),
            fresh.wall.as_secs_f64() / reused.wall.as_secs_f64(),
            median(&mut overhead),
            q4,
            f32_ms,
            q4 / f32_ms
        );
        let _ = fresh.overhead_s;
    }
}
