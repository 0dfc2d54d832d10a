//! Result types: how a cell attempt ended, what was measured, and the environment it was
//! measured in. Nothing here has a default: a status is only what a run reported.

use crate::cell::{Browser, CellId};
use crate::quant::Bits;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// How a cell ended. There is deliberately no `Default`: success is never assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran, and the output matched the dequantized reference within tolerance.
    Pass,
    /// Ran, and the output was wrong: a real test failure, never retried.
    Fail,
    /// The browser refused the feature; its own error text is kept.
    Unsupported,
    /// The harness or infrastructure failed before a verdict.
    Error,
    Timeout,
    /// The browser or its driver died.
    Crash,
    /// No registered agent could ever run the cell within the sweep's wait window.
    NoCapableAgent,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pass,
        Status::Fail,
        Status::Unsupported,
        Status::Error,
        Status::Timeout,
        Status::Crash,
        Status::NoCapableAgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unsupported => "unsupported",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Crash => "crash",
            Status::NoCapableAgent => "no_capable_agent",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GPUAdapter.info` and `isFallbackAdapter` as the browser reported them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub vendor: String,
    pub architecture: String,
    pub device: String,
    pub description: String,
    pub is_fallback: bool,
}

impl AdapterInfo {
    /// A CPU rasterizer posing as a GPU: its timings say nothing about GPUs.
    pub fn is_software(&self) -> bool {
        const SOFTWARE: [&str; 5] = ["swiftshader", "lavapipe", "llvmpipe", "warp", "softpipe"];
        let text = format!("{} {} {}", self.architecture, self.device, self.description)
            .to_ascii_lowercase();
        self.is_fallback || SOFTWARE.iter().any(|s| text.contains(s))
    }

    pub fn label(&self) -> String {
        let parts: Vec<&str> = [
            &self.vendor,
            &self.architecture,
            &self.device,
            &self.description,
        ]
        .into_iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
        let name = if parts.is_empty() {
            "unnamed adapter".to_string()
        } else {
            parts.join(" ")
        };
        if self.is_software() {
            format!(
                "{name} (software{})",
                if self.is_fallback { ", fallback" } else { "" }
            )
        } else {
            name
        }
    }
}

/// Where a result was measured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Environment {
    pub browser: Browser,
    pub browser_channel: String,
    pub browser_version: String,
    pub browser_flags: Vec<String>,
    pub driver: String,
    pub driver_version: String,
    pub os: String,
    pub os_version: String,
    pub arch: String,
    pub adapter: Option<AdapterInfo>,
    /// WebNN `createContext` device type that ran, if WebNN ran.
    pub webnn_device_type: Option<String>,
    /// WebNN context facts (e.g. `opSupportLimits()`), as JSON text.
    pub webnn_info: Option<String>,
}

impl Environment {
    /// Content-derived, so identical environments are stored once.
    pub fn id(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.browser, self.browser_version);
        if !self.browser_channel.is_empty() {
            s.push_str(&format!(" ({})", self.browser_channel));
        }
        s
    }
}

/// What one attempt measured. Every figure comes from the browser run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub build_ms: f64,
    pub first_run_ms: f64,
    pub warmup: u32,
    /// Raw timed runs, in order.
    pub samples_ms: Vec<f64>,
    /// Back-to-back runs each sample is the mean of: 1 unless the browser's clock is too
    /// coarse to time one run (Firefox's `performance.now()` ticks in whole milliseconds). For
    /// a cell of several layers, the fewest any layer used.
    pub runs_per_sample: u32,
    /// Time the page spent building pipelines or graphs and running kernels, timed runs and
    /// untimed ones (first run, warm-up, sizing samples) alike. Wall time minus this is what
    /// the grid itself costs per cell.
    pub kernel_ms: f64,
    /// What timed the samples: `performance.now` (the page's wall clock around runs that it
    /// awaited) or `timestamp-query` (GPU timestamps around each run's pass, used where the
    /// browser only notices completion by polling).
    pub timer: String,
    /// SHA-256 of the cell's safetensors file, as the agent read it; `None` for synthetic
    /// weights.
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// Bytes the page allocated for weights (buffers or constants), as the page counted them.
    pub weight_bytes: u64,
    /// Max |browser − Rust dequantized reference|: checks the kernel itself.
    pub kernel_max_abs_err: f64,
    /// Relative error against the fp32 reference of the unquantized weights: the cost of
    /// quantization.
    pub accuracy_rel_err: f64,
}

impl Measurement {
    pub fn p50_ms(&self) -> Option<f64> {
        percentile(&self.samples_ms, 0.5)
    }
    pub fn p90_ms(&self) -> Option<f64> {
        percentile(&self.samples_ms, 0.9)
    }
}

/// Nearest-rank percentile; `None` without samples.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The outcome of one attempt at one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub cell_id: CellId,
    pub status: Status,
    /// The browser's or harness's own words, for every status but a clean pass.
    pub error_text: Option<String>,
    pub effective_bits: Bits,
    pub measurement: Option<Measurement>,
    pub environment: Option<Environment>,
    /// Produced by the load-test executor, not a browser. Never shown unless asked for.
    pub simulated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&s, 0.5), Some(3.0));
        assert_eq!(percentile(&s, 0.9), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
    }

    #[test]
    fn software_adapters_are_recognised() {
        let swiftshader = AdapterInfo {
            vendor: "google".into(),
            architecture: "swiftshader".into(),
            device: String::new(),
            description: String::new(),
            is_fallback: true,
        };
        assert!(swiftshader.is_software());
        assert_eq!(
            swiftshader.label(),
            "google swiftshader (software, fallback)"
        );
        let nvidia = AdapterInfo {
            vendor: "nvidia".into(),
            architecture: "hopper".into(),
            device: String::new(),
            description: String::new(),
            is_fallback: false,
        };
        assert!(!nvidia.is_software());
        let lavapipe = AdapterInfo {
            description: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            is_fallback: false,
            ..nvidia
        };
        assert!(lavapipe.is_software());
    }

    #[test]
    fn status_round_trips_through_text() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("success"), None);
    }
}
