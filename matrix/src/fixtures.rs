//! Test fixtures shared by the workspace's tests and benchmarks (feature `fixtures`): the
//! environment this project's own machine reports, as the probe recorded it.

use crate::agent::{BrowserCapability, Capabilities};
use crate::cell::Browser;
use crate::result::{AdapterInfo, Environment, Measurement};

/// Chromium's WebGPU adapter on a machine without a GPU.
pub fn swiftshader() -> AdapterInfo {
    AdapterInfo {
        vendor: "google".into(),
        architecture: "swiftshader".into(),
        device: String::new(),
        description: String::new(),
        is_fallback: true,
    }
}

/// Debian's Chromium 156 with chromedriver on SwiftShader.
pub fn chromium_environment() -> Environment {
    Environment {
        browser: Browser::Chromium,
        browser_channel: "stable".into(),
        browser_version: "156.0.8078.108".into(),
        browser_flags: vec!["--headless".into(), "--enable-unsafe-webgpu".into()],
        driver: "chromedriver".into(),
        driver_version: "156.0.8078.108".into(),
        os: "linux".into(),
        os_version: "debian 12".into(),
        arch: "x86_64".into(),
        adapter: Some(swiftshader()),
        webnn: None,
        webnn_info: None,
    }
}

/// A measurement that passes the coordinator's report checks: one sample per repetition,
/// finite times, weight bytes, a kernel well within its bound.
pub fn measurement(repetitions: u32) -> Measurement {
    Measurement {
        build_ms: 1.0,
        first_run_ms: 1.0,
        warmup: 0,
        samples_ms: vec![2.0; repetitions as usize],
        runs_per_sample: 1,
        kernel_ms: 9.0,
        timer: "performance.now".into(),
        gpu_samples_ms: Vec::new(),
        latency_ms: None,
        weights_sha256: None,
        weights_source: None,
        ops: Vec::new(),
        weight_bytes: 1024,
        kernel_max_abs_err: 1e-7,
        kernel_bound_c: crate::reference::KERNEL_BOUND_C,
        kernel_err_ratio: 0.05,
        accuracy_cosine: Some(0.995),
        accuracy_top1: None,
        accuracy_kl: None,
        accuracy_rel_err: 0.02,
    }
}

/// A real (not simulated) Linux agent with one Chromium build that reported WebGPU on
/// SwiftShader: what hand-written test agents register.
pub fn chromium_capabilities(slots: u32) -> Capabilities {
    Capabilities {
        os: Some(crate::spec::Os::Linux),
        arch: "x86_64".into(),
        browsers: vec![BrowserCapability {
            browser: Browser::Chromium,
            channel: String::new(),
            version: "156.0".into(),
            webgpu: Some(swiftshader()),
            webnn: false,
            features: Vec::new(),
            limits: Default::default(),
            webnn_devices: Vec::new(),
        }],
        gpu_vendors: vec![],
        labels: Default::default(),
        slots,
        simulated: false,
        native: None,
    }
}

/// A model's one-layer block at `seq_len` positions, every layer at `bits` symmetric g32,
/// with seeded synthetic weights: what the block tests of the page and of the native runner
/// check.
pub fn block_case(model: &str, seq_len: u32, bits: crate::quant::Bits) -> crate::block::BlockCase {
    use crate::quant::{QuantParams, Scheme};
    let r = crate::family::resolve(model).expect("a registry model");
    let size = crate::WorkloadSize {
        layers: 1,
        seq_len,
        head: false,
    };
    let g = crate::graph::lower(r.family.key, r.model, size);
    let params = vec![
        QuantParams {
            bits,
            scheme: Scheme::Symmetric,
            group_size: 32,
        };
        g.layers.len()
    ];
    crate::block::block_case(g, 11, &params, |l| {
        Ok::<_, ()>(crate::reference::weights(11, l))
    })
    .expect("synthetic weights cannot fail")
}
