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
    /// Which renderer this is, where the adapter names one: a software one by its name
    /// (lavapipe and llvmpipe are one), a hardware one by its vendor (a name or a PCI id);
    /// `None` for an adapter that names nothing (Firefox's).
    pub fn renderer(&self) -> Option<String> {
        let text = format!(
            "{} {} {} {}",
            self.vendor, self.architecture, self.device, self.description
        )
        .to_lowercase();
        for (needle, name) in [
            ("llvmpipe", "lavapipe"),
            ("lavapipe", "lavapipe"),
            ("swiftshader", "swiftshader"),
            ("warp", "warp"),
            ("nvidia", "nvidia"),
            ("0x10de", "nvidia"),
            ("amd", "amd"),
            ("0x1002", "amd"),
            ("intel", "intel"),
            ("0x8086", "intel"),
            ("apple", "apple"),
        ] {
            if text.contains(needle) {
                return Some(name.to_string());
            }
        }
        None
    }

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
    /// The WebNN context a WebNN cell used: what was asked for and what the evidence says it
    /// ran on. `None` where no WebNN context was created.
    pub webnn: Option<WebnnDevice>,
    /// WebNN context facts (e.g. `opSupportLimits()`), as JSON text.
    pub webnn_info: Option<String>,
}

/// The timer of native cells: the host's monotonic clock around runs submitted and awaited
/// through wgpu, as `performance.now` is around the page's; the two are one kind of clock,
/// which is what lets a browser's time be divided by the native one.
pub const NATIVE_TIMER: &str = "native wall clock";

/// Where a WebNN context runs. A browser may accept `deviceType: "gpu"` and run on the CPU
/// (Chromium's TFLite backend does), so the request is never taken as the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RanOn {
    Cpu,
    Gpu,
    Npu,
    /// The browser says the context is accelerated (a GPU or an NPU) without saying which.
    Accelerated,
    /// Nothing backs any device.
    Unknown,
}

impl RanOn {
    pub fn as_str(self) -> &'static str {
        match self {
            RanOn::Cpu => "cpu",
            RanOn::Gpu => "gpu",
            RanOn::Npu => "npu",
            RanOn::Accelerated => "accelerated",
            RanOn::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<RanOn> {
        [
            RanOn::Cpu,
            RanOn::Gpu,
            RanOn::Npu,
            RanOn::Accelerated,
            RanOn::Unknown,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RanOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WebNN context: requested, and ran on according to `evidence`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WebnnDevice {
    /// What `createContext` was asked for, e.g. `deviceType=gpu`.
    pub requested: String,
    pub ran_on: RanOn,
    /// Why `ran_on` is what it is: the browser's own answer or the host's devices.
    pub evidence: String,
}

impl WebnnDevice {
    /// "requested deviceType=gpu · ran on cpu (the host has no GPU ...)"; never a bare device.
    pub fn label(&self) -> String {
        format!(
            "requested {} · ran on {} ({})",
            self.requested, self.ran_on, self.evidence
        )
    }
}

/// Display and accelerator devices the host has, as the agent's discovery counted them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDevices {
    /// GPUs (PCI display class, or the OS's GPU list).
    pub gpus: u32,
    /// NPUs and other processing accelerators (PCI class 0x12).
    pub accelerators: u32,
    /// Where the counts come from, e.g. `/sys/bus/pci/devices`.
    pub source: String,
}

/// What a WebNN context ran on, from the browser's own answer (`MLContext.accelerated` on
/// builds that have it) and the host's devices; `unknown` when nothing backs an answer.
pub fn webnn_ran_on(
    requested: &str,
    accelerated: Option<bool>,
    host: Option<&HostDevices>,
) -> WebnnDevice {
    let (ran_on, evidence) = match (accelerated, host) {
        (Some(false), _) => (RanOn::Cpu, "MLContext.accelerated is false".to_string()),
        (_, Some(h)) if h.gpus == 0 && h.accelerators == 0 => (
            RanOn::Cpu,
            format!("the host has no GPU or NPU: none in {}", h.source),
        ),
        (Some(true), _) => (
            RanOn::Accelerated,
            "MLContext.accelerated is true".to_string(),
        ),
        (None, Some(h)) => (
            RanOn::Unknown,
            format!(
                "the browser does not say where the context runs; the host has {} GPU(s) and {} accelerator(s) ({})",
                h.gpus, h.accelerators, h.source
            ),
        ),
        (None, None) => (
            RanOn::Unknown,
            "the browser does not say where the context runs and the host's devices are unknown"
                .to_string(),
        ),
    };
    WebnnDevice {
        requested: requested.to_string(),
        ran_on,
        evidence,
    }
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
    /// awaited), [`NATIVE_TIMER`] (the host's wall clock around the same runs, submitted and
    /// awaited natively) or `timestamp-query` (GPU timestamps around each run's pass, used
    /// where the browser only notices completion by polling).
    pub timer: String,
    /// GPU time per run of each sample (`timestamp-query` around each run's pass), in the
    /// order of `samples_ms`, where the adapter has `timestamp-query`; empty elsewhere (and for
    /// WebNN). A different clock from `samples_ms`: never compared with it.
    #[serde(default)]
    pub gpu_samples_ms: Vec<f64>,
    /// How long the browser took to say that finished work finished (a WebGPU probe of real
    /// work, or warm-ups beyond their GPU time; WebNN reading back a finished output), which
    /// every sample pays once and was sized to span five of; `None` where nothing was measured
    /// (native runs, older agents). Firefox polls: ~100 ms here.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// SHA-256 of the cell's safetensors file, as the agent read it; `None` for synthetic
    /// weights.
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// Where a registry checkpoint's weights came from (package, version, file), as
    /// [`crate::checkpoint::Checkpoint::source`] says; `None` for synthetic weights or a
    /// user's file.
    #[serde(default)]
    pub weights_source: Option<String>,
    /// Every op of the cell's graph against its bound, in run order (a checkpoint's or an
    /// LM's several inputs: each op's worst); empty before they were kept.
    #[serde(default)]
    pub ops: Vec<OpFigure>,
    /// Bytes the page allocated for weights (buffers or constants), as the page counted them.
    pub weight_bytes: u64,
    /// Max |browser − Rust dequantized reference|: checks the kernel itself.
    pub kernel_max_abs_err: f64,
    /// The constant `c` of the bound the kernel was checked with (see
    /// [`crate::reference::kernel_bound`]).
    #[serde(default)]
    pub kernel_bound_c: f64,
    /// The worst output's error as a fraction of its bound: at most 1 for a correct kernel.
    #[serde(default)]
    pub kernel_err_ratio: f64,
    /// Relative error against the fp32 reference of the unquantized weights: the cost of
    /// quantization.
    pub accuracy_rel_err: f64,
    /// Cosine similarity of the final hidden state (a sentence embedding where the model
    /// pools) with fp32's; `None` from agents that measured layers only.
    #[serde(default)]
    pub accuracy_cosine: Option<f64>,
    /// LM heads: share of inputs whose most likely next token is fp32's.
    #[serde(default)]
    pub accuracy_top1: Option<f64>,
    /// LM heads: KL(fp32 ‖ run) of the next-token distribution, in nats.
    #[serde(default)]
    pub accuracy_kl: Option<f64>,
}

/// What marks a passing cell ⚠️ rather than ✅, per metric, as the spec states it: a metric
/// without a threshold judges nothing, and one a result lacks (an encoder has no next token)
/// is not held against it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Largest relative error of the final hidden state against fp32.
    pub max_rel_err: f64,
    /// Smallest cosine of the final hidden state (or sentence embedding) with fp32's.
    pub min_cosine: Option<f64>,
    /// LM heads: smallest share of inputs whose next token is fp32's.
    pub min_top1: Option<f64>,
    /// LM heads: largest KL(fp32 ‖ run) in nats.
    pub max_kl: Option<f64>,
}

impl Thresholds {
    /// Only the relative error, as specs before per-metric thresholds stated it.
    pub fn rel_err(max_rel_err: f64) -> Thresholds {
        Thresholds {
            max_rel_err,
            min_cosine: None,
            min_top1: None,
            max_kl: None,
        }
    }

    /// The stricter of two, metric by metric (a report over several sweeps).
    pub fn strictest(self, o: Thresholds) -> Thresholds {
        let pick = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        Thresholds {
            max_rel_err: self.max_rel_err.min(o.max_rel_err),
            min_cosine: pick(self.min_cosine, o.min_cosine, f64::max),
            min_top1: pick(self.min_top1, o.min_top1, f64::max),
            max_kl: pick(self.max_kl, o.max_kl, f64::min),
        }
    }

    /// The first metric `a` misses, in words; `None` when it meets every threshold it has a
    /// figure for. No relative error at all is never accurate.
    pub fn missed(&self, a: &ModelAccuracy) -> Option<String> {
        let Some(rel) = a.rel_err else {
            return Some("no accuracy figure".into());
        };
        if rel.is_nan() || rel > self.max_rel_err {
            return Some(format!("relative error {rel:.3} > {}", self.max_rel_err));
        }
        let below = |v: Option<f64>, t: Option<f64>| matches!((v, t), (Some(v), Some(t)) if v.is_nan() || v < t);
        let above = |v: Option<f64>, t: Option<f64>| matches!((v, t), (Some(v), Some(t)) if v.is_nan() || v > t);
        if below(a.cosine, self.min_cosine) {
            return Some(format!(
                "cosine {:.4} < {}",
                a.cosine.unwrap_or(f64::NAN),
                self.min_cosine.unwrap_or(f64::NAN)
            ));
        }
        if below(a.top1, self.min_top1) {
            return Some(format!(
                "top-1 agreement {:.3} < {}",
                a.top1.unwrap_or(f64::NAN),
                self.min_top1.unwrap_or(f64::NAN)
            ));
        }
        if above(a.kl, self.max_kl) {
            return Some(format!(
                "KL {:.4} > {}",
                a.kl.unwrap_or(f64::NAN),
                self.max_kl.unwrap_or(f64::NAN)
            ));
        }
        None
    }
}

/// A result's model-level accuracy figures against fp32, each where it was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelAccuracy {
    pub rel_err: Option<f64>,
    pub cosine: Option<f64>,
    pub top1: Option<f64>,
    pub kl: Option<f64>,
}

impl Measurement {
    pub fn p50_ms(&self) -> Option<f64> {
        percentile(&self.samples_ms, 0.5)
    }
    pub fn p10_ms(&self) -> Option<f64> {
        percentile(&self.samples_ms, 0.1)
    }
    pub fn p90_ms(&self) -> Option<f64> {
        percentile(&self.samples_ms, 0.9)
    }
    pub fn gpu_p50_ms(&self) -> Option<f64> {
        percentile(&self.gpu_samples_ms, 0.5)
    }
}

/// One op of a cell's graph as the page computed it, against its bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpFigure {
    /// The tensor it wrote (`encoder.0.attn.q`).
    pub tensor: String,
    /// Its kind, as in the page contract (`linear`, `layer_norm`, `attention`, ...).
    pub op: String,
    pub max_abs_err: f64,
    /// The error as a fraction of the op's bound (the kernel bound for a `linear`, 2⁻¹⁶ of
    /// the magnitude it works with for the others): a pass has every one at most 1.
    pub bound_ratio: f64,
}

/// A sample (its runs together) pays one completion latency, so one that spans less than two
/// of them times the browser noticing, not the runs: Firefox's poll once read 100 ms for a
/// 12 ms model. The page sizes them to span five.
fn spans_its_latency(m: &Measurement, latency: f64) -> Result<(), String> {
    let Some(p50) = m.p50_ms() else {
        return Ok(());
    };
    let sample = p50 * f64::from(m.runs_per_sample);
    if sample < 2.0 * latency {
        return Err(format!(
            "samples of {} run(s) took {sample:.3} ms at the median, under twice the {latency:.3} ms the browser took to say work finished: they time that, not the runs",
            m.runs_per_sample
        ));
    }
    Ok(())
}

/// Why a report cannot count, in words for the stored `error` result.
pub fn check_report(result: &CellResult, repetitions: u32) -> Result<(), String> {
    let ran = matches!(result.status, Status::Pass | Status::Fail);
    let Some(m) = &result.measurement else {
        // a simulated result measures nothing; it only ever counts in a load test
        return if result.status == Status::Pass && !result.simulated {
            Err("a pass that carries no measurement".into())
        } else {
            Ok(())
        };
    };
    let time = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(format!("{name} is {v}, not a finite non-negative time"))
        }
    };
    time("build_ms", m.build_ms)?;
    time("first_run_ms", m.first_run_ms)?;
    time("kernel_ms", m.kernel_ms)?;
    if ran && m.samples_ms.len() != repetitions as usize {
        return Err(format!(
            "{} samples for the offer's {repetitions} repetitions",
            m.samples_ms.len()
        ));
    }
    for (i, s) in m.samples_ms.iter().enumerate() {
        time(&format!("sample {i}"), *s)?;
    }
    if !m.gpu_samples_ms.is_empty() && m.gpu_samples_ms.len() != m.samples_ms.len() {
        return Err(format!(
            "{} GPU samples for {} samples",
            m.gpu_samples_ms.len(),
            m.samples_ms.len()
        ));
    }
    for (i, s) in m.gpu_samples_ms.iter().enumerate() {
        time(&format!("GPU sample {i}"), *s)?;
    }
    if m.runs_per_sample == 0 {
        return Err("runs_per_sample is 0".into());
    }
    if let Some(latency) = m.latency_ms {
        time("latency_ms", latency)?;
        spans_its_latency(m, latency)?;
    }
    // a failing kernel may be infinitely wrong (a NaN output); nothing is negative or NaN
    for (name, v) in [
        ("kernel_max_abs_err", m.kernel_max_abs_err),
        ("accuracy_rel_err", m.accuracy_rel_err),
        ("kernel_err_ratio", m.kernel_err_ratio),
    ] {
        let ok = v >= 0.0 && (v.is_finite() || result.status == Status::Fail);
        if !ok {
            return Err(format!("{name} is {v}"));
        }
    }
    for (name, v, lo, hi) in [
        ("accuracy_cosine", m.accuracy_cosine, -1.0, 1.0),
        ("accuracy_top1", m.accuracy_top1, 0.0, 1.0),
        ("accuracy_kl", m.accuracy_kl, 0.0, f64::INFINITY),
    ] {
        // rounding may put a cosine a few ulps past 1; NaN only where the cell failed
        let ok = v.is_none_or(|v| {
            (v.is_nan() && result.status == Status::Fail) || (v >= lo - 1e-9 && v <= hi + 1e-9)
        });
        if !ok {
            return Err(format!("{name} is {v:?}, outside [{lo}, {hi}]"));
        }
    }
    if ran && m.weight_bytes == 0 {
        return Err("a run that allocated 0 weight bytes".into());
    }
    for (i, op) in m.ops.iter().enumerate() {
        let ok = op.bound_ratio >= 0.0 && op.max_abs_err >= 0.0
            || (result.status == Status::Fail
                && (op.bound_ratio.is_nan() || op.max_abs_err.is_nan()));
        if !ok || (result.status == Status::Pass && op.bound_ratio > 1.0) {
            return Err(format!(
                "op {i} {} {}: error {} at {}× its bound",
                op.op, op.tensor, op.max_abs_err, op.bound_ratio
            ));
        }
    }
    if result.status == Status::Pass {
        let c = crate::reference::KERNEL_BOUND_C;
        if m.kernel_bound_c.is_nan() || m.kernel_bound_c <= 0.0 || m.kernel_bound_c > c {
            return Err(format!(
                "a pass checked with bound constant c = {} (this coordinator's c is {c})",
                m.kernel_bound_c
            ));
        }
        if m.kernel_err_ratio.is_nan() || m.kernel_err_ratio > 1.0 {
            return Err(format!(
                "a pass whose kernel error is {:.3}× its bound",
                m.kernel_err_ratio
            ));
        }
    }
    Ok(())
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

    fn measured(status: Status) -> CellResult {
        CellResult {
            cell_id: crate::cell::CellId("c".into()),
            status,
            error_text: None,
            effective_bits: Bits::B4,
            measurement: Some(Measurement {
                build_ms: 1.0,
                first_run_ms: 1.0,
                warmup: 0,
                samples_ms: vec![1.0, 2.0, 3.0],
                runs_per_sample: 1,
                kernel_ms: 9.0,
                timer: "performance.now".into(),
                gpu_samples_ms: vec![0.5, 0.6, 0.7],
                latency_ms: None,
                weights_sha256: None,
                weights_source: None,
                ops: Vec::new(),
                weight_bytes: 64,
                kernel_max_abs_err: 1e-6,
                kernel_bound_c: crate::reference::KERNEL_BOUND_C,
                kernel_err_ratio: 0.01,
                accuracy_cosine: None,
                accuracy_top1: None,
                accuracy_kl: None,
                accuracy_rel_err: 0.02,
            }),
            environment: None,
            simulated: false,
        }
    }

    #[test]
    fn thresholds_judge_the_metrics_they_state_and_the_strictest_wins() {
        let t = Thresholds {
            max_rel_err: 0.2,
            min_cosine: Some(0.99),
            min_top1: None,
            max_kl: Some(0.05),
        };
        let good = ModelAccuracy {
            rel_err: Some(0.1),
            cosine: Some(0.995),
            top1: Some(0.0),
            kl: None,
        };
        // no top-1 threshold: a disagreeing next token is shown, not judged; no KL: not held
        assert_eq!(t.missed(&good), None);
        let low = ModelAccuracy {
            cosine: Some(0.98),
            ..good
        };
        assert!(
            t.missed(&low)
                .expect("missed")
                .starts_with("cosine 0.9800 < 0.99")
        );
        let nan = ModelAccuracy {
            rel_err: Some(f64::NAN),
            ..good
        };
        assert!(t.missed(&nan).is_some(), "NaN is never accurate");
        assert!(t.missed(&ModelAccuracy::default()).is_some());
        let other = Thresholds {
            max_rel_err: 0.1,
            min_cosine: Some(0.9),
            min_top1: Some(0.8),
            max_kl: None,
        };
        assert_eq!(
            t.strictest(other),
            Thresholds {
                max_rel_err: 0.1,
                min_cosine: Some(0.99),
                min_top1: Some(0.8),
                max_kl: Some(0.05),
            }
        );
    }

    #[test]
    fn reports_are_checked_before_they_count() {
        assert_eq!(check_report(&measured(Status::Pass), 3), Ok(()));
        let bad = |f: fn(&mut Measurement), status: Status| {
            let mut r = measured(status);
            f(r.measurement.as_mut().expect("measured"));
            check_report(&r, 3).expect_err("invalid")
        };
        assert!(
            bad(
                |m| m.samples_ms = vec![f64::NAN, -1.0, f64::INFINITY],
                Status::Pass
            )
            .contains("sample 0")
        );
        assert!(bad(|m| m.samples_ms.truncate(2), Status::Pass).contains("2 samples"));
        assert!(bad(|m| m.build_ms = f64::NAN, Status::Pass).contains("build_ms"));
        assert!(bad(|m| m.accuracy_rel_err = -1.0, Status::Pass).contains("accuracy_rel_err"));
        assert!(bad(|m| m.accuracy_cosine = Some(1.5), Status::Pass).contains("accuracy_cosine"));
        assert!(bad(|m| m.accuracy_top1 = Some(f64::NAN), Status::Pass).contains("accuracy_top1"));
        assert!(bad(|m| m.accuracy_kl = Some(-0.1), Status::Pass).contains("accuracy_kl"));
        assert!(bad(|m| m.weight_bytes = 0, Status::Pass).contains("0 weight bytes"));
        assert!(bad(|m| m.kernel_err_ratio = 1.5, Status::Pass).contains("its bound"));
        assert!(bad(|m| m.kernel_bound_c = 1.0, Status::Pass).contains("bound constant"));
        assert!(
            bad(
                |m| m.gpu_samples_ms.pop().map(drop).unwrap_or(()),
                Status::Pass
            )
            .contains("GPU samples")
        );
        assert!(bad(|m| m.latency_ms = Some(f64::NAN), Status::Pass).contains("latency_ms"));
        // samples of 2 ms at the median against a 1.5 ms completion latency: a poll's reading
        assert!(
            bad(|m| m.latency_ms = Some(1.5), Status::Pass).contains("under twice the 1.500 ms")
        );
        let spanned = |latency, runs| {
            let mut r = measured(Status::Pass);
            if let Some(m) = r.measurement.as_mut() {
                (m.latency_ms, m.runs_per_sample) = (Some(latency), runs);
            }
            check_report(&r, 3)
        };
        // 1 ms, or 1.5 ms over 4 runs a sample (8 ms): spanned
        assert_eq!(spanned(1.0, 1), Ok(()));
        assert_eq!(spanned(1.5, 4), Ok(()));
        // a failing kernel's output may be NaN: its error is infinite, and that is the verdict
        let mut fail = measured(Status::Fail);
        if let Some(m) = fail.measurement.as_mut() {
            (m.kernel_max_abs_err, m.kernel_err_ratio) = (f64::INFINITY, f64::INFINITY);
        }
        assert_eq!(check_report(&fail, 3), Ok(()));
        let mut empty = measured(Status::Pass);
        empty.measurement = None;
        assert!(check_report(&empty, 3).is_err());
        empty.status = Status::Unsupported;
        assert_eq!(check_report(&empty, 3), Ok(()));
    }

    #[test]
    fn a_webnn_device_is_named_only_with_evidence() {
        let none = HostDevices {
            gpus: 0,
            accelerators: 0,
            source: "/sys/bus/pci/devices".into(),
        };
        let one = HostDevices {
            gpus: 1,
            ..none.clone()
        };
        let d = webnn_ran_on("deviceType=gpu", None, Some(&none));
        assert_eq!(d.ran_on, RanOn::Cpu);
        assert!(
            d.label()
                .starts_with("requested deviceType=gpu · ran on cpu (the host has no GPU"),
            "{}",
            d.label()
        );
        assert_eq!(
            webnn_ran_on("deviceType=gpu", None, Some(&one)).ran_on,
            RanOn::Unknown
        );
        assert_eq!(
            webnn_ran_on("deviceType=gpu", None, None).ran_on,
            RanOn::Unknown
        );
        assert_eq!(
            webnn_ran_on("deviceType=gpu", Some(false), Some(&one)).ran_on,
            RanOn::Cpu
        );
        assert_eq!(
            webnn_ran_on("powerPreference=high-performance", Some(true), Some(&one)).ran_on,
            RanOn::Accelerated
        );
        for r in [
            RanOn::Cpu,
            RanOn::Gpu,
            RanOn::Npu,
            RanOn::Accelerated,
            RanOn::Unknown,
        ] {
            assert_eq!(RanOn::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn status_round_trips_through_text() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("success"), None);
    }
}
