//! What an agent offers the grid: its OS, browsers (with what each reported from inside the
//! browser), GPU vendors, labels and slots, and whether that satisfies a sweep's requirements.

use crate::cell::{Browser, Platform};
use crate::result::AdapterInfo;
use crate::spec::{GpuVendor, Os, Requirements};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One browser build on an agent, as probed from inside the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserCapability {
    pub browser: Browser,
    pub channel: String,
    pub version: String,
    /// `None`: `requestAdapter()` gave no adapter.
    pub webgpu: Option<AdapterInfo>,
    /// A WebNN context could be created.
    pub webnn: bool,
    /// WebGPU adapter features, as the browser listed them (`shader-f16`, `subgroups`, ...).
    #[serde(default)]
    pub features: Vec<String>,
    /// Key WebGPU adapter limits (`maxBufferSize`, `maxStorageBufferBindingSize`, ...).
    #[serde(default)]
    pub limits: BTreeMap<String, u64>,
    /// The WebNN device types a context was created for (`cpu`, `gpu`, `npu`).
    #[serde(default)]
    pub webnn_devices: Vec<String>,
}

impl BrowserCapability {
    pub fn major(&self) -> Option<u32> {
        self.version.split('.').next()?.trim().parse().ok()
    }

    pub fn has(&self, platform: Platform) -> bool {
        match platform {
            Platform::Webgpu => self.webgpu.is_some(),
            Platform::Webnn => self.webnn,
            // native runs beside the browser, on the agent's own adapter (`Capabilities`)
            Platform::Native => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub os: Option<Os>,
    pub arch: String,
    pub browsers: Vec<BrowserCapability>,
    pub gpu_vendors: Vec<GpuVendor>,
    pub labels: BTreeMap<String, String>,
    /// Cells run at once; a GPU is exclusive, so 1 unless the machine has more.
    pub slots: u32,
    /// A load-test agent: it sleeps instead of measuring, so it takes only cells of sweeps
    /// submitted as load tests, and real agents never take those.
    #[serde(default)]
    pub simulated: bool,
    /// The adapter native cells run on (wgpu over Vulkan), where the agent has one.
    #[serde(default)]
    pub native: Option<crate::result::AdapterInfo>,
}

impl Capabilities {
    /// The agent may run `browser` cells of a sweep with these requirements.
    pub fn meets(&self, req: &Requirements, browser: Browser) -> bool {
        let os_ok = req.os.is_empty() || self.os.is_some_and(|os| req.os.contains(&os));
        let gpu_ok = req.gpu_vendor.is_empty()
            || req.gpu_vendor.iter().any(|v| self.gpu_vendors.contains(v));
        let labels_ok = req
            .labels
            .iter()
            .all(|(k, v)| self.labels.get(k) == Some(v));
        let min = req.min_browser_version.get(&browser).copied().unwrap_or(0);
        let browser_ok = self
            .browsers
            .iter()
            .any(|b| b.browser == browser && b.major().unwrap_or(0) >= min);
        os_ok && gpu_ok && labels_ok && browser_ok
    }

    /// Some build of `browser` reported `platform` as available.
    pub fn has_platform(&self, browser: Browser, platform: Platform) -> bool {
        if platform == Platform::Native {
            // a native cell mirrors `browser`'s cell on the same agent
            return self.native.is_some() && self.has_browser(browser);
        }
        self.browsers
            .iter()
            .any(|b| b.browser == browser && b.has(platform))
    }

    pub fn has_browser(&self, browser: Browser) -> bool {
        self.browsers.iter().any(|b| b.browser == browser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            os: Some(Os::Linux),
            arch: "x86_64".into(),
            browsers: vec![
                BrowserCapability {
                    browser: Browser::Chromium,
                    channel: String::new(),
                    version: "156.0.8078.108".into(),
                    webgpu: None,
                    webnn: false,
                    features: Vec::new(),
                    limits: Default::default(),
                    webnn_devices: Vec::new(),
                },
                BrowserCapability {
                    browser: Browser::Chromium,
                    channel: "sparticuz".into(),
                    version: "153.0.8010.0".into(),
                    webgpu: None,
                    webnn: true,
                    features: Vec::new(),
                    limits: Default::default(),
                    webnn_devices: Vec::new(),
                },
            ],
            gpu_vendors: vec![GpuVendor::Software],
            labels: [("pool".to_string(), "lab".to_string())].into(),
            slots: 1,
            simulated: false,
            native: None,
        }
    }

    #[test]
    fn requirements_match_on_os_gpu_labels_and_version() {
        let c = caps();
        let mut req = Requirements::default();
        assert!(c.meets(&req, Browser::Chromium));
        assert!(!c.meets(&req, Browser::Firefox));
        req.min_browser_version.insert(Browser::Chromium, 156);
        assert!(c.meets(&req, Browser::Chromium));
        req.min_browser_version.insert(Browser::Chromium, 157);
        assert!(!c.meets(&req, Browser::Chromium));
        let req = Requirements {
            os: vec![Os::Windows],
            ..Requirements::default()
        };
        assert!(!c.meets(&req, Browser::Chromium));
        let req = Requirements {
            gpu_vendor: vec![GpuVendor::Nvidia],
            ..Requirements::default()
        };
        assert!(!c.meets(&req, Browser::Chromium));
        let req = Requirements {
            labels: [("pool".to_string(), "nightly".to_string())].into(),
            ..Requirements::default()
        };
        assert!(!c.meets(&req, Browser::Chromium));
    }

    #[test]
    fn any_build_can_provide_a_platform() {
        let c = caps();
        assert!(c.has_platform(Browser::Chromium, Platform::Webnn));
        assert!(!c.has_platform(Browser::Chromium, Platform::Webgpu));
    }
}
