//! WebNN cells through real browsers: Chromium 153 (npm build, attached through its DevTools
//! port) runs a BERT block as one MLGraph at 8 bits and at experimental int4 (and float16
//! weights at 16), answers 2 and 3 bits with its own opSupportLimits, and Chromium 156 (built
//! without WebNN) says it cannot.

use quantgrid_agent::browser_executor::BrowserExecutor;
use quantgrid_agent::discovery::browser::Attach;
use quantgrid_agent::executor::{Executor, Job};
use quantgrid_agent::probe::{Probed, probe};
use quantgrid_matrix::quant::Bits;
use quantgrid_matrix::{Browser, Cell, CellResult, Status, spec, spec::Os};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn executor(probed: Vec<Probed>) -> BrowserExecutor {
    let caps = quantgrid_matrix::agent::Capabilities {
        os: Some(Os::Linux),
        arch: "x86_64".into(),
        browsers: probed.iter().map(Probed::capability).collect(),
        gpu_vendors: vec![],
        labels: Default::default(),
        slots: 1,
        simulated: false,
        native: None,
    };
    BrowserExecutor::new(probed, caps, true)
}

fn cells() -> Vec<Cell> {
    spec::parse(
        "version: 1\nname: t\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webnn\nbits: [2, 3, 4, 8, 16]\nexperimental_precision: [false, true]\nworkload: {layers: 1, seq_len: 1}\n",
        "t.yaml",
    )
    .expect("spec")
    .expand()
}

async fn run(exec: &BrowserExecutor, cell: &Cell) -> CellResult {
    let job = Job {
        lease_id: "l".into(),
        cell: cell.clone(),
        warmup: 1,
        repetitions: 3,
        timeout: Duration::from_secs(120),
    };
    exec.run(job, CancellationToken::new()).await
}

async fn chromium(major: &str) -> Probed {
    let found = quantgrid_agent::discovery::browsers();
    let build = found
        .iter()
        .find(|f| f.candidate.browser == Browser::Chromium && f.version.starts_with(major))
        .unwrap_or_else(|| {
            panic!("Chromium {major} is installed (./x test installs it and sets QUANTGRID_CHROMIUM for 153)")
        });
    probe(build).await.expect("probe")
}

#[tokio::test]
async fn chromium_153_runs_8_bit_and_experimental_int4_and_refuses_2_and_3_bits() {
    let c153 = chromium("153.").await;
    assert_eq!(
        c153.found.candidate.options.attach,
        Attach::Launch,
        "chromedriver 156 cannot start 153: the agent attaches"
    );
    assert!(c153.capability().webnn, "{:?}", c153.report["webnn"]);
    let exec = executor(vec![c153]);
    let all = cells();
    // experimental mode only changes sub-8-bit requests: one 8-bit and one 16-bit cell
    assert_eq!(all.len(), 8);
    for cell in &all {
        let r = run(&exec, cell).await;
        let p = cell.precision;
        match (p.requested, p.experimental) {
            (Bits::B2 | Bits::B3, true) => {
                assert_eq!(r.status, Status::Unsupported, "{}: {r:?}", cell.label());
                // the refusal names the build that gave it, with the probe's evidence
                let env = r
                    .environment
                    .as_ref()
                    .expect("an unsupported answer has its environment");
                assert!(env.browser_version.starts_with("153."), "{env:?}");
                assert!(
                    env.webnn_info
                        .as_deref()
                        .is_some_and(|i| i.contains("opSupportLimits")),
                    "{env:?}"
                );
                let text = r.error_text.unwrap_or_default();
                assert!(
                    text.contains("opSupportLimits") && text.contains("int4"),
                    "{text}"
                );
            }
            _ => {
                assert_eq!(r.status, Status::Pass, "{}: {r:?}", cell.label());
                let want = match (p.requested, p.experimental) {
                    (Bits::B16, _) => Bits::B16,
                    (_, true) => Bits::B4,
                    _ => Bits::B8,
                };
                assert_eq!(r.effective_bits, want, "{}", cell.label());
                let m = r.measurement.expect("measured");
                assert_eq!(m.samples_ms.len(), 3);
                assert!(m.kernel_err_ratio <= 1.0, "{m:?}");
                assert_eq!(
                    m.kernel_bound_c,
                    quantgrid_matrix::reference::KERNEL_BOUND_C
                );
                // the codes of every matrix of the block: a byte each at 8 bits, half at 4,
                // plus float32 scales and zero points per group
                let target = cell.resolve().expect("model");
                let weights =
                    quantgrid_matrix::workload::workload(target.model, cell.workload).weights();
                let codes = weights * u64::from(want.get()) / 8;
                assert!(
                    m.weight_bytes >= codes && m.weight_bytes < codes * 2,
                    "{m:?}"
                );
                let env = r.environment.expect("environment");
                // asked for a GPU context; this machine has no GPU, which is the evidence
                let d = env.webnn.clone().expect("the WebNN context is recorded");
                assert_eq!(d.requested, "deviceType=gpu", "{d:?}");
                assert_eq!(d.ran_on, quantgrid_matrix::RanOn::Cpu, "{d:?}");
                assert!(d.evidence.contains("no GPU"), "{d:?}");
                assert!(env.browser_version.starts_with("153."), "{env:?}");
            }
        }
    }
}

#[tokio::test]
async fn chromium_156_answers_webnn_with_its_own_not_supported_error() {
    let exec = executor(vec![chromium("156.").await]);
    let cell = cells()
        .into_iter()
        .find(|c| c.precision.requested == Bits::B8)
        .expect("an 8-bit cell");
    let r = run(&exec, &cell).await;
    assert_eq!(r.status, Status::Unsupported, "{r:?}");
    let env = r.environment.as_ref().expect("the refusing build is named");
    assert!(env.browser_version.starts_with("156."), "{env:?}");
    assert!(!env.browser_flags.is_empty(), "{env:?}");
    let text = r.error_text.unwrap_or_default();
    assert!(
        text.starts_with("NotSupportedError") && text.contains("WebNN is not supported"),
        "{text}"
    );
}

/// A build somebody already started (`debugger_address` in the agent config) is attached to,
/// not started: the probe reaches its WebNN through the DevTools address alone.
#[tokio::test]
async fn a_running_browser_is_attached_through_its_debugger_address() {
    use std::io::{BufRead, BufReader};
    let found = quantgrid_agent::discovery::browsers();
    let c153 = found
        .iter()
        .find(|f| f.candidate.browser == Browser::Chromium && f.version.starts_with("153."))
        .expect("Chromium 153 is installed (./x test installs it and sets QUANTGRID_CHROMIUM)");
    let profile = tempfile::tempdir().expect("profile");
    let mut browser = std::process::Command::new(&c153.candidate.binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--enable-unsafe-webgpu",
            "--enable-features=WebMachineLearningNeuralNetwork",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium 153");
    let stderr = browser.stderr.take().expect("stderr");
    let address = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("DevTools listening on ws://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .map(str::to_string)
        })
        .expect("the DevTools address");
    let mut declared = c153.clone();
    declared.candidate.options.attach = Attach::Address(address);
    let probed = probe(&declared).await;
    let _ = browser.kill();
    let _ = browser.wait();
    // its zygote and renderers too: every process started with this profile
    let _ = std::process::Command::new("pkill")
        .args(["-9", "-f", &profile.path().display().to_string()])
        .status();
    let probed = probed.expect("probe through the debugger address");
    assert!(probed.capability().webnn, "{:?}", probed.report["webnn"]);
}

#[tokio::test]
async fn minilm_with_its_real_weights_runs_as_one_webnn_graph_at_8_bits_and_int4() {
    let exec = executor(vec![chromium("153").await]);
    let cells = spec::parse(
        "version: 1\nname: t\nmodels: [minilm]\nbrowsers: [chromium]\nplatforms: webnn\nbits: [4, 8]\nexperimental_precision: [true]\n",
        "t.yaml",
    )
    .expect("spec")
    .expand();
    let mut cosines = Vec::new();
    for cell in &cells {
        let r = run(&exec, cell).await;
        let bits = cell.precision.effective;
        assert_eq!(r.status, Status::Pass, "{bits}-bit: {r:?}");
        let m = r.measurement.expect("measured");
        assert!(m.weights_source.is_some(), "{m:?}");
        eprintln!(
            "webnn {bits}-bit: cosine {:?}, samples {:?} ms",
            m.accuracy_cosine, m.samples_ms
        );
        cosines.push((bits, m.accuracy_cosine.expect("cosine")));
    }
    cosines.sort_by_key(|(b, _)| b.get());
    assert_eq!(cosines.len(), 2);
    assert!(
        cosines[0].1 < cosines[1].1 && cosines[1].1 > 0.999,
        "{cosines:?}"
    );
}
