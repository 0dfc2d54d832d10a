//! Test fixtures shared by the workspace's tests and benchmarks (feature `fixtures`): the
//! environment this project's own machine reports, as the probe recorded it.

use crate::cell::Browser;
use crate::result::{AdapterInfo, Environment};

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
