//! Per family, what quantization costs and buys in each browser build here (`./x bench
//! models`): one block of each family's default model at batch 1 at 2/3/4/8/16 bits, and
//! all-MiniLM-L6-v2 whole with its real weights on its fixed sentences, on every build and
//! platform it has, in one run. Each cell prints its status, page-clock p50, weight bytes the
//! page allocated, and model-level accuracy against fp32 (cosine, relative error; top-1 where
//! an LM head runs) as the executor measured them.
//!
//! `QUANTGRID_BENCH_FAMILIES=bert,gpt2` narrows the families (default: one or two per
//! modality, each small enough for a software adapter), `QUANTGRID_BENCH_BROWSERS=firefox`
//! the browsers (default: both).

use quantgrid_agent::browser_executor::BrowserExecutor;
use quantgrid_agent::executor::{Executor, Job};
use quantgrid_agent::probe::{Probed, probe};
use quantgrid_matrix::{Cell, CellResult, Platform, Status, spec};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const FAMILIES: &str = "bert,gpt2,llama,vit,resnet,whisper,clip";

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

/// `4.2 MiB`, `310 KiB`.
fn bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", b.div_ceil(1024))
    }
}

/// One table cell: `p50 ms · bytes · cos · err [· top-1]`, or the status.
fn figure(r: &CellResult) -> String {
    match (&r.measurement, r.status) {
        (Some(m), Status::Pass | Status::Fail) => {
            let mut s: Vec<f64> = m.samples_ms.clone();
            s.sort_by(f64::total_cmp);
            let p50 = s.get(s.len() / 2).copied().unwrap_or(f64::NAN);
            let mut out = format!(
                "{}{:.1} ms · {} · cos {:.4} · err {:.1}%",
                if r.status == Status::Fail {
                    "FAIL "
                } else {
                    ""
                },
                p50,
                bytes(m.weight_bytes),
                m.accuracy_cosine.unwrap_or(f64::NAN),
                m.accuracy_rel_err * 100.0
            );
            if let Some(t) = m.accuracy_top1 {
                out.push_str(&format!(" · top-1 {t:.2}"));
            }
            out
        }
        (_, status) => status.to_string(),
    }
}

#[tokio::main]
async fn main() {
    let families = std::env::var("QUANTGRID_BENCH_FAMILIES").unwrap_or_else(|_| FAMILIES.into());
    let browsers =
        std::env::var("QUANTGRID_BENCH_BROWSERS").unwrap_or_else(|_| "chromium, firefox".into());
    let yaml = format!(
        "version: 1\nname: bench\nfamilies: [{families}]\nmodels: [minilm]\nbrowsers: [{browsers}]\nplatforms: both\nbits: [2, 3, 4, 8, 16]\nexperimental_precision: [true]\nworkload: {{layers: 1, seq_len: 1}}\n"
    );
    let cells = spec::parse(&yaml, "bench.yaml").expect("spec").expand();
    let mut builds = Vec::new();
    let wanted = |b: quantgrid_matrix::Browser| cells.iter().any(|c| c.browser == b);
    for found in quantgrid_agent::discovery::browsers() {
        if !wanted(found.candidate.browser) {
            continue;
        }
        match probe(&found).await {
            Ok(p) => builds.push(p),
            Err(e) => println!("{} {}: {e}", found.candidate.browser, found.version),
        }
    }
    println!("| build | platform | model | 2-bit | 3-bit | 4-bit | 8-bit | 16-bit |");
    println!("|---|---|---|---|---|---|---|---|");
    for p in &builds {
        let exec = executor(p);
        for platform in [Platform::Webgpu, Platform::Webnn] {
            if !p.capability().has(platform) {
                continue;
            }
            let mine: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.browser == p.found.candidate.browser && c.platform == platform)
                .collect();
            let mut models: Vec<&str> = mine.iter().map(|c| c.model.as_str()).collect();
            models.dedup();
            for model in models {
                let mut row = format!(
                    "| {} {} | {} | `{model}` |",
                    p.found.candidate.browser,
                    p.found.version,
                    platform.title()
                );
                for c in mine.iter().filter(|c| c.model == model) {
                    let job = Job {
                        lease_id: "bench".into(),
                        cell: (*c).clone(),
                        warmup: 1,
                        repetitions: 5,
                        timeout: Duration::from_secs(600),
                    };
                    let r = exec.run(job, CancellationToken::new()).await;
                    row.push_str(&format!(" {} |", figure(&r)));
                }
                println!("{row}");
            }
        }
    }
}
