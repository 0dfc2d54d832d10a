//! Conversions between wire messages and domain types. Receiving is strict: unspecified enums,
//! unknown models, impossible bit widths and cells whose id does not match their content are
//! refused rather than guessed.

use crate::pb;
use quantgrid_matrix::agent::{BrowserCapability, Capabilities};
use quantgrid_matrix::result::{Measurement, OpFigure, RanOn, WebnnDevice};
use quantgrid_matrix::spec::{GpuVendor, Os};
use quantgrid_matrix::{
    AdapterInfo, Bits, Browser, Cell, CellId, CellResult, Environment, Platform, Scheme, Status,
    WorkloadSize, family,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("field `{0}` is unspecified")]
    Unspecified(&'static str),
    #[error("field `{field}` has unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("{0} is not a bit width quantgrid tests (2, 3, 4, 8, 16)")]
    Bits(u32),
    #[error(transparent)]
    Model(#[from] family::UnknownName),
    #[error("cell id `{sent}` does not match its content (expected `{computed}`)")]
    CellId { sent: String, computed: String },
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` has unknown value `{value}`")]
    Text { field: &'static str, value: String },
}

macro_rules! enum_map {
    ($domain:ty, $wire:ty, $field:literal, $( $d:ident <=> $w:ident ),+ $(,)?) => {
        impl From<$domain> for $wire {
            fn from(v: $domain) -> Self {
                match v { $( <$domain>::$d => <$wire>::$w ),+ }
            }
        }
        impl TryFrom<$wire> for $domain {
            type Error = ConvertError;
            fn try_from(v: $wire) -> Result<Self, ConvertError> {
                match v {
                    $( <$wire>::$w => Ok(<$domain>::$d), )+
                    #[allow(unreachable_patterns)]
                    _ => Err(ConvertError::Unspecified($field)),
                }
            }
        }
    };
}

enum_map!(Browser, pb::Browser, "browser",
    Chrome <=> Chrome, Chromium <=> Chromium, Edge <=> Edge, Firefox <=> Firefox, Safari <=> Safari);
enum_map!(
    Platform,
    pb::Platform,
    "platform",
    Webgpu <=> Webgpu,
    Webnn <=> Webnn,
    Native <=> Native
);
enum_map!(Scheme, pb::Scheme, "scheme", Symmetric <=> Symmetric, Asymmetric <=> Asymmetric);
enum_map!(Status, pb::Status, "status",
    Pass <=> Pass, Fail <=> Fail, Unsupported <=> Unsupported, Error <=> Error,
    Timeout <=> Timeout, Crash <=> Crash, NoCapableAgent <=> NoCapableAgent);

/// Decodes a raw enum field (prost stores them as i32).
pub fn decode<W, D>(field: &'static str, raw: i32) -> Result<D, ConvertError>
where
    W: TryFrom<i32>,
    D: TryFrom<W, Error = ConvertError>,
{
    let wire = W::try_from(raw).map_err(|_| ConvertError::UnknownEnum { field, value: raw })?;
    D::try_from(wire)
}

fn bits(v: u32) -> Result<Bits, ConvertError> {
    Bits::from_u32(v).ok_or(ConvertError::Bits(v))
}

impl From<&Cell> for pb::Cell {
    fn from(c: &Cell) -> Self {
        pb::Cell {
            id: c.id.0.clone(),
            model: c.model.clone(),
            browser: pb::Browser::from(c.browser) as i32,
            platform: pb::Platform::from(c.platform) as i32,
            requested_bits: c.precision.requested.get(),
            mixed_precision: c.precision.mixed,
            experimental_precision: c.precision.experimental,
            scheme: pb::Scheme::from(c.scheme) as i32,
            group_size: c.group_size,
            layers: c.workload.layers,
            seq_len: c.workload.seq_len,
            head: c.workload.head,
            weights: c.weights.clone(),
        }
    }
}

impl TryFrom<&pb::Cell> for Cell {
    type Error = ConvertError;
    fn try_from(p: &pb::Cell) -> Result<Self, ConvertError> {
        let target = family::resolve(&p.model)?;
        let cell = Cell::new(
            target,
            decode::<pb::Browser, _>("browser", p.browser)?,
            decode::<pb::Platform, _>("platform", p.platform)?,
            bits(p.requested_bits)?,
            p.mixed_precision,
            p.experimental_precision,
            decode::<pb::Scheme, _>("scheme", p.scheme)?,
            p.group_size,
            WorkloadSize {
                layers: p.layers,
                seq_len: p.seq_len,
                head: p.head,
            },
        )
        .with_weights(p.weights.clone());
        if cell.id.0 != p.id {
            return Err(ConvertError::CellId {
                sent: p.id.clone(),
                computed: cell.id.0,
            });
        }
        Ok(cell)
    }
}

impl From<&AdapterInfo> for pb::AdapterInfo {
    fn from(a: &AdapterInfo) -> Self {
        pb::AdapterInfo {
            vendor: a.vendor.clone(),
            architecture: a.architecture.clone(),
            device: a.device.clone(),
            description: a.description.clone(),
            is_fallback: a.is_fallback,
        }
    }
}

impl From<&pb::AdapterInfo> for AdapterInfo {
    fn from(a: &pb::AdapterInfo) -> Self {
        AdapterInfo {
            vendor: a.vendor.clone(),
            architecture: a.architecture.clone(),
            device: a.device.clone(),
            description: a.description.clone(),
            is_fallback: a.is_fallback,
        }
    }
}

impl From<&Environment> for pb::Environment {
    fn from(e: &Environment) -> Self {
        pb::Environment {
            browser: pb::Browser::from(e.browser) as i32,
            browser_channel: e.browser_channel.clone(),
            browser_version: e.browser_version.clone(),
            browser_flags: e.browser_flags.clone(),
            driver: e.driver.clone(),
            driver_version: e.driver_version.clone(),
            os: e.os.clone(),
            os_version: e.os_version.clone(),
            arch: e.arch.clone(),
            adapter: e.adapter.as_ref().map(Into::into),
            webnn_device_type: e.webnn.as_ref().map(|d| d.requested.clone()),
            webnn_info_json: e.webnn_info.clone(),
            webnn_ran_on: e.webnn.as_ref().map(|d| d.ran_on.as_str().to_string()),
            webnn_evidence: e.webnn.as_ref().map(|d| d.evidence.clone()),
        }
    }
}

impl TryFrom<&pb::Environment> for Environment {
    type Error = ConvertError;
    fn try_from(e: &pb::Environment) -> Result<Self, ConvertError> {
        Ok(Environment {
            browser: decode::<pb::Browser, _>("environment.browser", e.browser)?,
            browser_channel: e.browser_channel.clone(),
            browser_version: e.browser_version.clone(),
            browser_flags: e.browser_flags.clone(),
            driver: e.driver.clone(),
            driver_version: e.driver_version.clone(),
            os: e.os.clone(),
            os_version: e.os_version.clone(),
            arch: e.arch.clone(),
            adapter: e.adapter.as_ref().map(Into::into),
            webnn: webnn_device(e)?,
            webnn_info: e.webnn_info_json.clone(),
        })
    }
}

/// The WebNN context of an environment: request, device and evidence come together, and a
/// device is never taken without its evidence.
fn webnn_device(e: &pb::Environment) -> Result<Option<WebnnDevice>, ConvertError> {
    match (&e.webnn_device_type, &e.webnn_ran_on, &e.webnn_evidence) {
        (None, None, None) => Ok(None),
        (Some(requested), Some(ran_on), Some(evidence)) => Ok(Some(WebnnDevice {
            requested: requested.clone(),
            ran_on: RanOn::parse(ran_on).ok_or_else(|| ConvertError::Text {
                field: "environment.webnn_ran_on",
                value: ran_on.clone(),
            })?,
            evidence: evidence.clone(),
        })),
        _ => Err(ConvertError::Missing(
            "environment.webnn_ran_on and webnn_evidence with webnn_device_type",
        )),
    }
}

impl From<&Measurement> for pb::Measurement {
    fn from(m: &Measurement) -> Self {
        pb::Measurement {
            build_ms: m.build_ms,
            first_run_ms: m.first_run_ms,
            warmup: m.warmup,
            samples_ms: m.samples_ms.clone(),
            weight_bytes: m.weight_bytes,
            kernel_max_abs_err: m.kernel_max_abs_err,
            accuracy_rel_err: m.accuracy_rel_err,
            runs_per_sample: m.runs_per_sample,
            kernel_ms: m.kernel_ms,
            timer: m.timer.clone(),
            weights_sha256: m.weights_sha256.clone(),
            weights_source: m.weights_source.clone(),
            gpu_samples_ms: m.gpu_samples_ms.clone(),
            latency_ms: m.latency_ms,
            kernel_bound_c: m.kernel_bound_c,
            kernel_err_ratio: m.kernel_err_ratio,
            accuracy_cosine: m.accuracy_cosine,
            accuracy_top1: m.accuracy_top1,
            accuracy_kl: m.accuracy_kl,
            ops: m
                .ops
                .iter()
                .map(|o| pb::OpFigure {
                    tensor: o.tensor.clone(),
                    op: o.op.clone(),
                    max_abs_err: o.max_abs_err,
                    bound_ratio: o.bound_ratio,
                })
                .collect(),
        }
    }
}

impl From<&pb::Measurement> for Measurement {
    fn from(m: &pb::Measurement) -> Self {
        Measurement {
            build_ms: m.build_ms,
            first_run_ms: m.first_run_ms,
            warmup: m.warmup,
            samples_ms: m.samples_ms.clone(),
            weight_bytes: m.weight_bytes,
            kernel_max_abs_err: m.kernel_max_abs_err,
            accuracy_rel_err: m.accuracy_rel_err,
            runs_per_sample: m.runs_per_sample.max(1),
            kernel_ms: m.kernel_ms,
            timer: m.timer.clone(),
            weights_sha256: m.weights_sha256.clone(),
            weights_source: m.weights_source.clone(),
            gpu_samples_ms: m.gpu_samples_ms.clone(),
            latency_ms: m.latency_ms,
            kernel_bound_c: m.kernel_bound_c,
            kernel_err_ratio: m.kernel_err_ratio,
            accuracy_cosine: m.accuracy_cosine,
            accuracy_top1: m.accuracy_top1,
            accuracy_kl: m.accuracy_kl,
            ops: m
                .ops
                .iter()
                .map(|o| OpFigure {
                    tensor: o.tensor.clone(),
                    op: o.op.clone(),
                    max_abs_err: o.max_abs_err,
                    bound_ratio: o.bound_ratio,
                })
                .collect(),
        }
    }
}

impl From<&CellResult> for pb::CellResult {
    fn from(r: &CellResult) -> Self {
        pb::CellResult {
            cell_id: r.cell_id.0.clone(),
            status: pb::Status::from(r.status) as i32,
            error_text: r.error_text.clone(),
            effective_bits: r.effective_bits.get(),
            measurement: r.measurement.as_ref().map(Into::into),
            environment: r.environment.as_ref().map(Into::into),
            simulated: r.simulated,
        }
    }
}

impl TryFrom<&pb::CellResult> for CellResult {
    type Error = ConvertError;
    fn try_from(r: &pb::CellResult) -> Result<Self, ConvertError> {
        if r.cell_id.is_empty() {
            return Err(ConvertError::Missing("cell_id"));
        }
        Ok(CellResult {
            cell_id: CellId(r.cell_id.clone()),
            status: decode::<pb::Status, _>("status", r.status)?,
            error_text: r.error_text.clone(),
            effective_bits: bits(r.effective_bits)?,
            measurement: r.measurement.as_ref().map(Into::into),
            environment: r.environment.as_ref().map(TryInto::try_into).transpose()?,
            simulated: r.simulated,
        })
    }
}

fn vendor_str(v: GpuVendor) -> &'static str {
    match v {
        GpuVendor::Nvidia => "nvidia",
        GpuVendor::Amd => "amd",
        GpuVendor::Intel => "intel",
        GpuVendor::Apple => "apple",
        GpuVendor::Qualcomm => "qualcomm",
        GpuVendor::Arm => "arm",
        GpuVendor::Software => "software",
    }
}

const VENDORS: [GpuVendor; 7] = [
    GpuVendor::Nvidia,
    GpuVendor::Amd,
    GpuVendor::Intel,
    GpuVendor::Apple,
    GpuVendor::Qualcomm,
    GpuVendor::Arm,
    GpuVendor::Software,
];

impl From<&BrowserCapability> for pb::BrowserCapability {
    fn from(b: &BrowserCapability) -> Self {
        pb::BrowserCapability {
            browser: pb::Browser::from(b.browser) as i32,
            channel: b.channel.clone(),
            version: b.version.clone(),
            webgpu_adapter: b.webgpu.as_ref().map(Into::into),
            webnn: b.webnn,
            webgpu_features: b.features.clone(),
            webgpu_limits: b.limits.clone().into_iter().collect(),
            webnn_devices: b.webnn_devices.clone(),
        }
    }
}

impl TryFrom<&pb::BrowserCapability> for BrowserCapability {
    type Error = ConvertError;
    fn try_from(b: &pb::BrowserCapability) -> Result<Self, ConvertError> {
        Ok(BrowserCapability {
            browser: decode::<pb::Browser, _>("browsers.browser", b.browser)?,
            channel: b.channel.clone(),
            version: b.version.clone(),
            webgpu: b.webgpu_adapter.as_ref().map(Into::into),
            webnn: b.webnn,
            features: b.webgpu_features.clone(),
            limits: b.webgpu_limits.clone().into_iter().collect(),
            webnn_devices: b.webnn_devices.clone(),
        })
    }
}

/// The registration an agent with `caps` sends.
pub fn register_request(name: &str, version: &str, caps: &Capabilities) -> pb::RegisterRequest {
    pb::RegisterRequest {
        name: name.to_string(),
        version: version.to_string(),
        os: caps.os.map(Os::as_str).unwrap_or_default().to_string(),
        arch: caps.arch.clone(),
        browsers: caps.browsers.iter().map(Into::into).collect(),
        gpu_vendors: caps
            .gpu_vendors
            .iter()
            .map(|v| vendor_str(*v).to_string())
            .collect(),
        labels: caps.labels.clone().into_iter().collect(),
        slots: caps.slots,
        simulated: caps.simulated,
        // set by the agent from its key; empty: an unsigned agent
        public_key: Vec::new(),
        native_adapter: caps.native.as_ref().map(Into::into),
    }
}

impl TryFrom<&pb::RegisterRequest> for Capabilities {
    type Error = ConvertError;
    fn try_from(r: &pb::RegisterRequest) -> Result<Self, ConvertError> {
        let os = match r.os.as_str() {
            "" => None,
            "linux" => Some(Os::Linux),
            "macos" => Some(Os::Macos),
            "windows" => Some(Os::Windows),
            other => {
                return Err(ConvertError::Text {
                    field: "os",
                    value: other.to_string(),
                });
            }
        };
        let gpu_vendors = r
            .gpu_vendors
            .iter()
            .map(|v| {
                VENDORS
                    .into_iter()
                    .find(|x| vendor_str(*x) == v)
                    .ok_or_else(|| ConvertError::Text {
                        field: "gpu_vendors",
                        value: v.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let browsers = r
            .browsers
            .iter()
            .map(BrowserCapability::try_from)
            .collect::<Result<_, ConvertError>>()?;
        if r.slots == 0 {
            return Err(ConvertError::Missing("slots"));
        }
        Ok(Capabilities {
            os,
            arch: r.arch.clone(),
            browsers,
            gpu_vendors,
            labels: r.labels.clone().into_iter().collect(),
            slots: r.slots,
            simulated: r.simulated,
            native: r.native_adapter.as_ref().map(Into::into),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantgrid_matrix::spec;

    fn cells() -> Vec<Cell> {
        spec::parse(
            "version: 1\nname: t\nfamilies: [bert]\nmodels: [llama-7b]\nbrowsers: [chromium, firefox, safari]\nplatforms: both\nbits: [2, 3, 4, 8, 16]\nmixed_precision: [false, true]\nexperimental_precision: [false, true]\nscheme: [symmetric, asymmetric]\n",
            "t.yaml",
        )
        .expect("spec")
        .expand()
    }

    #[test]
    fn cells_round_trip() {
        for c in cells() {
            let wire = pb::Cell::from(&c);
            assert_eq!(Cell::try_from(&wire).as_ref(), Ok(&c));
        }
    }

    #[test]
    fn tampered_cells_and_unspecified_enums_are_refused() {
        let c = &cells()[0];
        let mut wire = pb::Cell::from(c);
        wire.requested_bits = 8;
        assert!(matches!(
            Cell::try_from(&wire),
            Err(ConvertError::CellId { .. })
        ));
        let mut wire = pb::Cell::from(c);
        wire.browser = 0;
        assert_eq!(
            Cell::try_from(&wire),
            Err(ConvertError::Unspecified("browser"))
        );
        let mut wire = pb::Cell::from(c);
        wire.platform = 77;
        assert_eq!(
            Cell::try_from(&wire),
            Err(ConvertError::UnknownEnum {
                field: "platform",
                value: 77
            })
        );
        let mut wire = pb::Cell::from(c);
        wire.model = "nope".into();
        assert!(matches!(Cell::try_from(&wire), Err(ConvertError::Model(_))));
    }

    #[test]
    fn results_round_trip_and_unspecified_status_is_refused() {
        let r = CellResult {
            cell_id: cells()[0].id.clone(),
            status: Status::Unsupported,
            error_text: Some("NotSupportedError: WebNN is not supported on this platform.".into()),
            effective_bits: Bits::B8,
            measurement: Some(Measurement {
                build_ms: 1.5,
                first_run_ms: 2.5,
                warmup: 3,
                samples_ms: vec![1.0, 1.25, 0.75],
                weight_bytes: 4096,
                kernel_max_abs_err: 1e-6,
                accuracy_rel_err: 0.02,
                runs_per_sample: 1,
                kernel_ms: 0.0,
                timer: "performance.now".into(),
                weights_sha256: None,
                weights_source: None,
                ops: Vec::new(),
                gpu_samples_ms: vec![0.5, 0.5, 0.25],
                latency_ms: Some(0.125),
                kernel_bound_c: 0.0625,
                kernel_err_ratio: 0.01,
                accuracy_cosine: Some(0.995),
                accuracy_top1: None,
                accuracy_kl: None,
            }),
            environment: Some(quantgrid_matrix::fixtures::chromium_environment()),
            simulated: false,
        };
        let wire = pb::CellResult::from(&r);
        assert_eq!(CellResult::try_from(&wire).as_ref(), Ok(&r));
        let mut bad = wire.clone();
        bad.status = 0;
        assert_eq!(
            CellResult::try_from(&bad),
            Err(ConvertError::Unspecified("status"))
        );
    }

    #[test]
    fn capabilities_round_trip_and_bad_ones_are_refused() {
        let caps = Capabilities {
            os: Some(Os::Linux),
            arch: "x86_64".into(),
            browsers: vec![BrowserCapability {
                browser: Browser::Firefox,
                channel: "esr".into(),
                version: "153.8.0esr".into(),
                webgpu: None,
                webnn: false,
                features: vec!["shader-f16".into(), "timestamp-query".into()],
                limits: [("maxBufferSize".to_string(), 1u64 << 30)].into(),
                webnn_devices: Vec::new(),
            }],
            gpu_vendors: vec![GpuVendor::Software],
            labels: [("pool".to_string(), "lab".to_string())].into(),
            slots: 1,
            simulated: false,
            native: None,
        };
        let wire = register_request("lab-1", "0.1.0", &caps);
        assert_eq!(Capabilities::try_from(&wire), Ok(caps));
        let mut bad = wire.clone();
        bad.os = "plan9".into();
        assert!(Capabilities::try_from(&bad).is_err());
        let mut bad = wire;
        bad.slots = 0;
        assert_eq!(
            Capabilities::try_from(&bad),
            Err(ConvertError::Missing("slots"))
        );
    }
}
