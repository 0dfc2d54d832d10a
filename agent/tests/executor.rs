//! The browser executor on real Chromium: a cell passes with real measurements, a killed
//! browser ends the next cell as `crash`, a page that does not answer in time ends as
//! `timeout`, and in both cases the cell after runs in a fresh browser; a safetensors file's
//! tensors replace the synthetic weights, and a missing tensor is named; mixed precision
//! allocates each layer at its role's width.

use quantgrid_agent::browser_executor::BrowserExecutor;
use quantgrid_agent::executor::{Executor, Job};
use quantgrid_agent::probe::probe;
use quantgrid_matrix::{Browser, Status, spec, spec::Os};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An executor on the newest Chromium here (Debian's 156, started by chromedriver).
async fn chromium_executor() -> BrowserExecutor {
    let found = quantgrid_agent::discovery::browsers();
    let chromium = found
        .iter()
        .filter(|f| f.candidate.browser == Browser::Chromium && f.candidate.driver.is_some())
        .max_by_key(|f| quantgrid_agent::discovery::browser::major(&f.version))
        .expect("Chromium and chromedriver are installed (./x test installs them)");
    let probed = probe(chromium).await.expect("probe");
    let caps = quantgrid_matrix::agent::Capabilities {
        os: Some(Os::Linux),
        arch: "x86_64".into(),
        browsers: vec![probed.capability()],
        gpu_vendors: vec![],
        labels: Default::default(),
        slots: 1,
        simulated: false,
        native: None,
    };
    BrowserExecutor::new(vec![probed], caps, true)
}

#[tokio::test]
async fn a_killed_browser_is_a_crash_and_the_next_cell_still_runs() {
    let exec = chromium_executor().await;
    let cells = spec::parse(
        "version: 1\nname: t\nfamilies: [electra]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\n",
        "t.yaml",
    )
    .expect("spec")
    .expand();
    let job = |i: usize| Job {
        lease_id: format!("l{i}"),
        cell: cells[i % cells.len()].clone(),
        warmup: 1,
        repetitions: 3,
        timeout: Duration::from_secs(60),
    };
    let first = exec.run(job(0), CancellationToken::new()).await;
    assert_eq!(first.status, Status::Pass, "{first:?}");
    let m = first.measurement.expect("measured");
    assert_eq!(m.samples_ms.len(), 3);
    assert!(m.weight_bytes > 0 && m.kernel_max_abs_err <= 1e-2);
    let env = first.environment.expect("environment");
    assert_eq!(
        env.adapter.map(|a| a.architecture),
        Some("swiftshader".to_string())
    );
    assert!(
        env.browser_flags
            .iter()
            .any(|f| f == "--enable-unsafe-webgpu")
    );

    // kill every process of that browser session
    let profiles = exec.live_profiles().await;
    assert_eq!(profiles.len(), 1);
    let killed = std::process::Command::new("pkill")
        .args(["-9", "-f", &profiles[0].display().to_string()])
        .status()
        .expect("pkill");
    assert!(
        killed.success(),
        "no browser process matched the session profile"
    );
    let second = exec.run(job(1), CancellationToken::new()).await;
    assert_eq!(second.status, Status::Crash, "{second:?}");
    assert!(second.error_text.is_some());
    let third = exec.run(job(1), CancellationToken::new()).await;
    assert_eq!(third.status, Status::Pass, "{third:?}");
    let fresh = exec.live_profiles().await;
    assert_ne!(fresh, profiles, "a fresh browser after the crash");
    // dropping the executor leaves no browser process behind
    drop(exec);
    let needle = fresh[0].display().to_string();
    let orphans: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect();
    assert!(
        orphans.is_empty(),
        "browser processes outlived the executor: {orphans:?}"
    );
}

#[tokio::test]
async fn a_page_that_does_not_answer_in_time_is_a_timeout_and_the_next_cell_still_runs() {
    let exec = chromium_executor().await;
    let cell = spec::parse(
        "version: 1\nname: t\nfamilies: [electra]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [8]\n",
        "t.yaml",
    )
    .expect("spec")
    .expand()
    .remove(0);
    // a million timed runs keep the page busy far beyond a two-second cell timeout
    let hung = Job {
        lease_id: "l0".into(),
        cell: cell.clone(),
        warmup: 0,
        repetitions: 1_000_000,
        timeout: Duration::from_secs(2),
    };
    let r = exec.run(hung, CancellationToken::new()).await;
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    assert!(
        r.error_text
            .as_deref()
            .is_some_and(|t| t.contains("2 s cell timeout")),
        "{r:?}"
    );
    assert!(
        exec.live_profiles().await.is_empty(),
        "the hung browser is dropped"
    );
    let next = Job {
        lease_id: "l1".into(),
        cell,
        warmup: 1,
        repetitions: 3,
        timeout: Duration::from_secs(60),
    };
    let r = exec.run(next, CancellationToken::new()).await;
    assert_eq!(r.status, Status::Pass, "{r:?}");
}

#[tokio::test]
async fn a_safetensors_file_replaces_the_synthetic_weights() {
    let exec = chromium_executor().await;
    let synthetic = spec::parse(
        "version: 1\nname: t\nfamilies: [electra]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n",
        "t.yaml",
    )
    .expect("spec")
    .expand()
    .remove(0);
    // every layer of the cell as an F16 tensor with a spiky, very non-uniform distribution,
    // named as quantgrid names the layer
    let target = synthetic.resolve().expect("model");
    let layers = quantgrid_matrix::workload::workload(target.model, synthetic.workload).layers;
    let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = layers
        .iter()
        .map(|l| {
            let bytes: Vec<u8> = (0..l.weights())
                .map(|i| {
                    let v = if i % 97 == 0 {
                        0.5
                    } else {
                        ((i % 13) as f32 - 6.0) / 600.0
                    };
                    half::f16::from_f32(v)
                })
                .flat_map(|h| h.to_le_bytes())
                .collect();
            (l.name.clone(), bytes, vec![l.n as usize, l.k as usize])
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, skip: usize| {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .skip(skip)
            .map(|(n, b, s)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                        .expect("view");
                (n.clone(), view)
            })
            .collect();
        let path = dir.path().join(name);
        safetensors::serialize_to_file(views, None, &path).expect("write");
        path.display().to_string()
    };
    let full = write("electra.safetensors", 0);
    let partial = write("partial.safetensors", 1);
    let job = |cell: quantgrid_matrix::Cell| Job {
        lease_id: "l".into(),
        cell,
        warmup: 0,
        repetitions: 2,
        timeout: Duration::from_secs(60),
    };
    let real = synthetic.clone().with_weights(Some(full));
    assert_ne!(real.id, synthetic.id, "other tensors, another cell");
    let on_file = exec.run(job(real), CancellationToken::new()).await;
    assert_eq!(on_file.status, Status::Pass, "{on_file:?}");
    // the result names the exact bytes it measured
    let bytes = std::fs::read(dir.path().join("electra.safetensors")).expect("read");
    let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        on_file
            .measurement
            .as_ref()
            .and_then(|m| m.weights_sha256.as_deref()),
        Some(sha.as_str())
    );
    let on_seed = exec
        .run(job(synthetic.clone()), CancellationToken::new())
        .await;
    assert_eq!(on_seed.status, Status::Pass, "{on_seed:?}");
    let (a, b) = (
        on_file.measurement.expect("measured").accuracy_rel_err,
        on_seed.measurement.expect("measured").accuracy_rel_err,
    );
    assert!(
        a != b,
        "the file's tensors were measured, not the seed's ({a} vs {b})"
    );
    let missing = exec
        .run(
            job(synthetic.with_weights(Some(partial))),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(missing.status, Status::Error, "{missing:?}");
    let text = missing.error_text.unwrap_or_default();
    assert!(
        text.contains(&format!("no tensor `{}`", layers[0].name)),
        "{text}"
    );
}

#[tokio::test]
async fn mixed_precision_runs_attention_and_heads_at_8_bits_in_the_browser() {
    use quantgrid_matrix::quant::{PrecisionPolicy, QuantParams, packed_bytes};
    let exec = chromium_executor().await;
    let cells = spec::parse(
        "version: 1\nname: t\nfamilies: [electra]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\nmixed_precision: [false, true]\n",
        "t.yaml",
    )
    .expect("spec")
    .expand();
    assert_eq!(cells.len(), 2);
    let mut bytes = Vec::new();
    for cell in cells {
        let policy = PrecisionPolicy::for_mixed(cell.precision.mixed);
        let target = cell.resolve().expect("model");
        // what the page must have allocated: each layer at its role's width, in u32 buffers
        let want: u64 = quantgrid_matrix::workload::workload(target.model, cell.workload)
            .layers
            .iter()
            .map(|l| {
                let b = packed_bytes(
                    l.n,
                    l.k,
                    QuantParams {
                        bits: policy.bits_for(l.role, cell.precision.effective),
                        scheme: cell.scheme,
                        group_size: cell.group_size,
                    },
                );
                b.weights + b.scales.div_ceil(4).max(1) * 4 + b.zeros.div_ceil(4).max(1) * 4
            })
            .sum();
        let job = Job {
            lease_id: "l".into(),
            cell: cell.clone(),
            warmup: 0,
            repetitions: 1,
            timeout: Duration::from_secs(60),
        };
        let r = exec.run(job, CancellationToken::new()).await;
        assert_eq!(r.status, Status::Pass, "{r:?}");
        let got = r.measurement.expect("measured").weight_bytes;
        assert_eq!(got, want, "{}", cell.label());
        bytes.push(got);
    }
    assert!(
        bytes[1] > bytes[0],
        "mixed keeps some layers at 8 bits: {bytes:?}"
    );
}

#[tokio::test]
async fn an_lm_head_judges_next_token_agreement_over_its_fixed_set_of_inputs() {
    let exec = chromium_executor().await;
    let cells = spec::parse(
        "version: 1\nname: t\nfamilies: [t5]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\nworkload: {layers: 1, seq_len: 4, head: true}\n",
        "t.yaml",
    )
    .expect("spec")
    .expand();
    let job = Job {
        lease_id: "l".into(),
        cell: cells[0].clone(),
        warmup: 0,
        repetitions: 2,
        timeout: Duration::from_secs(120),
    };
    let r = exec.run(job, CancellationToken::new()).await;
    assert_eq!(r.status, Status::Pass, "{r:?}");
    let m = r.measurement.expect("measured");
    let inputs = f64::from(quantgrid_matrix::block::LM_INPUTS);
    let top1 = m.accuracy_top1.expect("an LM head has top-1");
    // a rate over the inputs, one decode step each: a multiple of 1/inputs, not a coin flip
    assert!(
        (top1 * inputs - (top1 * inputs).round()).abs() < 1e-9 && (0.0..=1.0).contains(&top1),
        "{top1}"
    );
    assert!(m.accuracy_kl.is_some_and(|kl| kl >= 0.0), "{m:?}");
    assert_eq!(m.samples_ms.len(), 2, "the first input is timed");
}
