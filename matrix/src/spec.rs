//! The matrix spec: the versioned YAML a user writes (raw serde types with a generated JSON
//! schema), its validation into a [`MatrixSpec`], and expansion into [`Cell`]s.
//!
//! Validation errors carry `file:line:col` and a hint. Expansion never decides that a browser
//! cannot do something: every combination becomes a cell and the browser answers when it runs.

use crate::cell::{Browser, Cell, Platform};
use crate::family::{self, Modality, Resolved};
use crate::quant::{Bits, Scheme};
use crate::result::Thresholds;
use crate::workload::WorkloadSize;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

pub const SPEC_VERSION: u32 = 1;
const DEFAULT_MAX_CELLS: u32 = 20_000;

// ---------------------------------------------------------------- raw (what the file says)

/// A quantgrid matrix spec (version 1).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "quantgrid matrix spec")]
pub struct RawSpec {
    /// Spec format version; only 1 exists.
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// Sweep name, shown in reports.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Model families by key (`bert`, `llama`, ...) or `all`. Each runs its default model.
    #[serde(default)]
    #[schemars(with = "Option<FamilySelection>")]
    pub families: Option<Spanned<FamilySelection>>,
    /// Specific models by id or alias (`llama-7b`, `openai/whisper-tiny`).
    #[serde(default)]
    pub models: Vec<ModelName>,
    /// Browsers to test. Which build runs is up to the agents that have it.
    #[schemars(with = "Vec<Browser>")]
    pub browsers: Spanned<Vec<Browser>>,
    /// `webgpu`, `webnn`, `both`, or a list.
    #[schemars(with = "PlatformSelection")]
    pub platforms: Spanned<PlatformSelection>,
    /// Requested weight bit widths: any of 2, 3, 4, 8, 16.
    #[schemars(with = "Vec<Bits>")]
    pub bits: Spanned<Vec<Bits>>,
    /// Whether to run uniform precision (false), mixed (true), or both.
    #[serde(default = "default_false_only")]
    #[schemars(with = "Vec<bool>")]
    pub mixed_precision: Spanned<Vec<bool>>,
    /// WebNN: run sub-8-bit requests as requested (true) instead of upgrading to 8 (false).
    #[serde(default = "default_false_only")]
    #[schemars(with = "Vec<bool>")]
    pub experimental_precision: Spanned<Vec<bool>>,
    /// Quantization schemes to test.
    #[serde(default = "default_scheme")]
    #[schemars(with = "Vec<Scheme>")]
    pub scheme: Spanned<Vec<Scheme>>,
    /// Weights per scale (and zero point) along the input dimension.
    #[serde(default = "default_group_size")]
    #[schemars(with = "u32")]
    pub group_size: Spanned<u32>,
    /// How much of each model runs; shapes stay the model's own. A model with a real
    /// checkpoint (`minilm`) always runs whole, on its fixed sentences.
    #[serde(default)]
    pub workload: WorkloadSize,
    /// Untimed runs before measuring.
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Timed runs; every sample is stored.
    #[serde(default = "default_repetitions")]
    #[schemars(with = "u32")]
    pub repetitions: Spanned<u32>,
    /// Per-cell timeout in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(with = "u32")]
    pub timeout_secs: Spanned<u32>,
    /// Re-runs after infrastructure failures (never after a real test failure).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Largest relative error of the final hidden state against fp32 that still counts as
    /// accurate.
    #[serde(default = "default_accuracy_tolerance")]
    #[schemars(with = "f64")]
    pub accuracy_tolerance: Spanned<f64>,
    /// Further thresholds a passing cell must meet to be ✅ rather than ⚠️, per metric; a
    /// metric left out judges nothing.
    #[serde(default)]
    pub accuracy: RawAccuracy,
    /// Smallest relative change of a cell's median time that `quantgrid diff` and the
    /// matrix's Changes report (0.03 = 3%); smaller changes are never reported.
    #[serde(default = "default_min_effect")]
    #[schemars(with = "f64")]
    pub min_effect: Spanned<f64>,
    /// Which agents may run the cells.
    #[serde(default)]
    pub requirements: RawRequirements,
    /// How long a cell may wait for an agent that could run it before it ends as
    /// `no_capable_agent`.
    #[serde(default = "default_agent_wait")]
    pub agent_wait_secs: u32,
    /// Extra cells; a dimension a rule leaves out spans the spec's values.
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub include: Vec<Spanned<RawRule>>,
    /// Cells to drop; a cell is dropped when it matches every field a rule gives.
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub exclude: Vec<Spanned<RawRule>>,
    /// Refuse specs that expand to more cells than this.
    #[serde(default = "default_max_cells")]
    #[schemars(with = "u32")]
    pub max_cells: Spanned<u32>,
    /// Higher runs first when sweeps compete for agents.
    #[serde(default)]
    pub priority: i32,
    /// A safetensors file with real weights instead of synthetic ones: one `n × k` tensor
    /// (F32, F16 or BF16) per layer, named as quantgrid names the layer (`bert.0.attn.q`,
    /// `bert.0.ffn.up`, ...). Read by the agents, so it must exist on each; a relative path is
    /// taken from the spec file's directory.
    #[serde(default)]
    pub weights: Option<String>,
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
fn default_false_only() -> Spanned<Vec<bool>> {
    unspanned(vec![false])
}
fn default_scheme() -> Spanned<Vec<Scheme>> {
    unspanned(vec![Scheme::Symmetric])
}
fn default_group_size() -> Spanned<u32> {
    unspanned(32)
}
fn default_warmup() -> u32 {
    3
}
fn default_repetitions() -> Spanned<u32> {
    unspanned(10)
}
fn default_timeout() -> Spanned<u32> {
    unspanned(120)
}
fn default_retries() -> u32 {
    2
}
fn default_agent_wait() -> u32 {
    300
}
fn default_accuracy_tolerance() -> Spanned<f64> {
    unspanned(0.05)
}
fn default_min_effect() -> Spanned<f64> {
    unspanned(0.03)
}
fn default_max_cells() -> Spanned<u32> {
    unspanned(DEFAULT_MAX_CELLS)
}

/// Per-metric accuracy thresholds, as written.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAccuracy {
    /// Smallest cosine of the final hidden state (or sentence embedding) with fp32's.
    #[schemars(with = "Option<f64>")]
    pub min_cosine: Option<Spanned<f64>>,
    /// LM heads: smallest share of inputs whose next token is fp32's.
    #[schemars(with = "Option<f64>")]
    pub min_top1: Option<Spanned<f64>>,
    /// LM heads: largest KL(fp32 ‖ run) of the next-token distribution, in nats.
    #[schemars(with = "Option<f64>")]
    pub max_kl: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequirements {
    /// Operating systems an agent must run.
    #[serde(default)]
    pub os: Vec<Os>,
    /// GPU vendors an agent must have.
    #[serde(default)]
    pub gpu_vendor: Vec<GpuVendor>,
    /// Lowest major version per browser.
    #[serde(default)]
    pub min_browser_version: BTreeMap<Browser, u32>,
    /// Agent labels that must match exactly.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Os {
    /// The name used in specs, on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Windows => "windows",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GpuVendor {
    Nvidia,
    Amd,
    Intel,
    Apple,
    Qualcomm,
    Arm,
    /// A CPU rasterizer exposed as a GPU (SwiftShader, lavapipe, WARP).
    Software,
}

/// A partial cell used by `include` and `exclude`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    pub family: Option<FamilyName>,
    #[serde(default)]
    pub model: Option<ModelName>,
    #[serde(default)]
    pub browser: Option<Browser>,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub bits: Option<Bits>,
    #[serde(default)]
    pub mixed_precision: Option<bool>,
    #[serde(default)]
    pub experimental_precision: Option<bool>,
    #[serde(default)]
    pub scheme: Option<Scheme>,
}

/// A family key, checked against the registry while parsing so the error has a position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FamilyName(pub &'static family::Family);

impl<'de> Deserialize<'de> for FamilyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        family::resolve_family(&s)
            .map(FamilyName)
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for FamilyName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FamilyName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let keys: Vec<&str> = family::families().iter().map(|f| f.key).collect();
        schemars::json_schema!({ "type": "string", "enum": keys })
    }
}

/// A model id, alias or family name, resolved while parsing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelName(pub Resolved);

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        family::resolve(&s)
            .map(ModelName)
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for ModelName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ModelName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "a model id (e.g. openai/whisper-tiny), an alias (llama-7b) or a family key"
        })
    }
}

/// `all` or a list of family keys.
#[derive(Debug, Clone, PartialEq)]
pub enum FamilySelection {
    All,
    List(Vec<FamilyName>),
}

impl<'de> Deserialize<'de> for FamilySelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FamilySelection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a list of family keys")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "all" {
                    Ok(FamilySelection::All)
                } else {
                    Err(E::custom(format_args!(
                        "expected `all` or a list of family keys, found `{v}`"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(f) = seq.next_element::<FamilyName>()? {
                    out.push(f);
                }
                Ok(FamilySelection::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for FamilySelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FamilySelection".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let item = g.subschema_for::<FamilyName>();
        schemars::json_schema!({
            "oneOf": [
                { "const": "all" },
                { "type": "array", "items": item }
            ]
        })
    }
}

/// `both`, a single platform, or a list.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformSelection(pub Vec<Platform>);

impl<'de> Deserialize<'de> for PlatformSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PlatformSelection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`webgpu`, `webnn`, `native`, `both` or a list of platforms")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    // the browsers' two APIs; native is asked for by name
                    "both" => Ok(PlatformSelection(vec![Platform::Webgpu, Platform::Webnn])),
                    other => Platform::parse(other)
                        .map(|p| PlatformSelection(vec![p]))
                        .ok_or_else(|| {
                            E::custom(format_args!(
                                "unknown platform `{other}`, expected webgpu, webnn, native or both"
                            ))
                        }),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Platform>()? {
                    out.push(p);
                }
                Ok(PlatformSelection(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for PlatformSelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PlatformSelection".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let item = g.subschema_for::<Platform>();
        schemars::json_schema!({
            "oneOf": [
                { "const": "both" },
                item.clone(),
                { "type": "array", "items": item }
            ]
        })
    }
}

/// The JSON schema editors use to complete specs (checked in as `configs/spec.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawSpec);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

// ---------------------------------------------------------------- errors

/// A spec problem, located in the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}{}", .hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct SpecError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn at<T>(&self, span: &Spanned<T>, message: impl Into<String>, hint: &str) -> SpecError {
        let loc = span.referenced;
        let (line, column) = if loc == serde_saphyr::Location::UNKNOWN {
            (1, 1)
        } else {
            (loc.line(), loc.column())
        };
        SpecError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        }
    }
}

// ---------------------------------------------------------------- domain

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunParams {
    pub warmup: u32,
    pub repetitions: u32,
    pub timeout_secs: u32,
    pub retries: u32,
}

pub type Requirements = RawRequirements;

/// A partial cell, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub target: Option<RuleTarget>,
    pub browser: Option<Browser>,
    pub platform: Option<Platform>,
    pub bits: Option<Bits>,
    pub mixed: Option<bool>,
    pub experimental: Option<bool>,
    pub scheme: Option<Scheme>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleTarget {
    Family(&'static family::Family),
    Model(Resolved),
}

impl Rule {
    fn matches(&self, c: &Cell) -> bool {
        let target = match self.target {
            None => true,
            Some(RuleTarget::Family(f)) => c.family == f.key,
            Some(RuleTarget::Model(r)) => c.model == r.model.id,
        };
        target
            && self.browser.is_none_or(|b| b == c.browser)
            && self.platform.is_none_or(|p| p == c.platform)
            && self.bits.is_none_or(|b| b == c.precision.requested)
            && self.mixed.is_none_or(|m| m == c.precision.mixed)
            && self
                .experimental
                .is_none_or(|e| e == c.precision.experimental)
            && self.scheme.is_none_or(|s| s == c.scheme)
    }
}

/// A validated spec: every name resolved, every dimension non-empty, within its cell limit.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSpec {
    pub name: String,
    pub description: Option<String>,
    pub targets: Vec<Resolved>,
    pub browsers: Vec<Browser>,
    pub platforms: Vec<Platform>,
    pub bits: Vec<Bits>,
    pub mixed: Vec<bool>,
    pub experimental: Vec<bool>,
    pub schemes: Vec<Scheme>,
    pub group_size: u32,
    pub workload: WorkloadSize,
    pub run: RunParams,
    pub accuracy: Thresholds,
    /// The smallest relative change of a median time worth reporting.
    pub min_effect: f64,
    pub requirements: Requirements,
    pub agent_wait_secs: u32,
    pub include: Vec<Rule>,
    pub exclude: Vec<Rule>,
    pub max_cells: u32,
    pub priority: i32,
    pub weights: Option<String>,
}

/// `weights` as the agents will open it: relative paths are taken from the spec's directory.
fn weights_path(weights: &str, spec_file: &str) -> String {
    let w = std::path::Path::new(weights);
    if w.is_absolute() {
        return weights.to_string();
    }
    match std::path::Path::new(spec_file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(w).display().to_string(),
        _ => weights.to_string(),
    }
}

/// Parses and validates `source`; `file` names it in errors.
pub fn parse(source: &str, file: &str) -> Result<MatrixSpec, SpecError> {
    let raw: RawSpec = serde_saphyr::from_str(source).map_err(|e| {
        let (line, column, message) = yaml_error(&e);
        SpecError {
            file: file.to_string(),
            line,
            column,
            message,
            hint: Some(format!(
                "see configs/example.yaml; editors complete keys from configs/spec.schema.json (spec version {SPEC_VERSION})"
            )),
        }
    })?;
    validate(raw, file)
}

/// Line, column and message of a YAML (de)serialization error, for `file:line:col: message`
/// reports of any YAML file quantgrid reads.
pub fn yaml_error(e: &serde_saphyr::Error) -> (u64, u64, String) {
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    (line, column, first_line(&e.without_snippet().to_string()))
}

fn first_line(s: &str) -> String {
    // serde-saphyr prefixes its own position; ours is already in front
    let s = s.lines().next().unwrap_or_default();
    let s = match s.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") => rest,
        _ => s,
    };
    // and may append it again
    let s = match s.rfind(" at line ") {
        Some(i) if s[i + 9..].starts_with(|c: char| c.is_ascii_digit()) => &s[..i],
        _ => s,
    };
    s.trim_end_matches('.').to_string()
}

fn dedup<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(x) {
            out.push(*x);
        }
    }
    out
}

/// The spec's thresholds, each in its metric's range.
fn thresholds(cx: &Ctx<'_>, max_rel_err: f64, raw: &RawAccuracy) -> Result<Thresholds, SpecError> {
    let within = |v: &Option<Spanned<f64>>, name: &str, ok: fn(f64) -> bool, hint: &str| match v {
        Some(t) if !ok(t.value) => Err(cx.at(t, format!("`accuracy.{name}` is {}", t.value), hint)),
        v => Ok(v.as_ref().map(|t| t.value)),
    };
    Ok(Thresholds {
        max_rel_err,
        min_cosine: within(
            &raw.min_cosine,
            "min_cosine",
            |v| v > -1.0 && v <= 1.0,
            "a cosine lies in (-1, 1]: 0.99 is typical",
        )?,
        min_top1: within(
            &raw.min_top1,
            "min_top1",
            |v| (0.0..=1.0).contains(&v),
            "a share of inputs lies in [0, 1]",
        )?,
        max_kl: within(
            &raw.max_kl,
            "max_kl",
            |v| v.is_finite() && v > 0.0,
            "a positive number of nats, e.g. 0.05",
        )?,
    })
}

pub fn validate(raw: RawSpec, file: &str) -> Result<MatrixSpec, SpecError> {
    let cx = Ctx { file };
    if raw.version.value != SPEC_VERSION {
        return Err(cx.at(
            &raw.version,
            format!("unsupported spec version {}", raw.version.value),
            &format!("this quantgrid reads version {SPEC_VERSION}"),
        ));
    }
    let mut targets: Vec<Resolved> = Vec::new();
    if let Some(sel) = &raw.families {
        let fams: Vec<&'static family::Family> = match &sel.value {
            FamilySelection::All => family::families().iter().collect(),
            FamilySelection::List(l) => l.iter().map(|f| f.0).collect(),
        };
        if fams.is_empty() {
            return Err(cx.at(
                sel,
                "`families` is empty",
                "list family keys, or write `all`",
            ));
        }
        targets.extend(fams.into_iter().map(|f| Resolved {
            family: f,
            model: f.default_model(),
        }));
    }
    targets.extend(raw.models.iter().map(|m| m.0));
    let mut seen = HashSet::new();
    targets.retain(|t| seen.insert(t.model.id));
    if targets.is_empty() {
        return Err(SpecError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the spec selects no model".into(),
            hint: Some("add `families: [bert]`, `families: all` or `models: [gpt2]`".into()),
        });
    }
    let non_empty = |len: usize, span: &dyn Fn(&str) -> SpecError| {
        if len == 0 { Err(span("")) } else { Ok(()) }
    };
    non_empty(raw.browsers.value.len(), &|_| {
        cx.at(
            &raw.browsers,
            "`browsers` is empty",
            "e.g. `browsers: [chromium, firefox]`",
        )
    })?;
    non_empty(raw.platforms.value.0.len(), &|_| {
        cx.at(
            &raw.platforms,
            "`platforms` is empty",
            "use webgpu, webnn or both",
        )
    })?;
    non_empty(raw.bits.value.len(), &|_| {
        cx.at(&raw.bits, "`bits` is empty", "pick from 2, 3, 4, 8, 16")
    })?;
    non_empty(raw.mixed_precision.value.len(), &|_| {
        cx.at(
            &raw.mixed_precision,
            "`mixed_precision` is empty",
            "use [false], [true] or [false, true]",
        )
    })?;
    non_empty(raw.experimental_precision.value.len(), &|_| {
        cx.at(
            &raw.experimental_precision,
            "`experimental_precision` is empty",
            "use [false], [true] or [false, true]",
        )
    })?;
    non_empty(raw.scheme.value.len(), &|_| {
        cx.at(
            &raw.scheme,
            "`scheme` is empty",
            "use symmetric and/or asymmetric",
        )
    })?;
    if raw.group_size.value == 0 || raw.group_size.value > 4096 {
        return Err(cx.at(
            &raw.group_size,
            "`group_size` must be between 1 and 4096",
            "32 or 128 are usual",
        ));
    }
    if raw.repetitions.value == 0 {
        return Err(cx.at(
            &raw.repetitions,
            "`repetitions` must be at least 1",
            "timings need samples",
        ));
    }
    if raw.timeout_secs.value == 0 {
        return Err(cx.at(&raw.timeout_secs, "`timeout_secs` must be at least 1", ""));
    }
    let tol = raw.accuracy_tolerance.value;
    if !(tol.is_finite() && tol > 0.0) {
        return Err(cx.at(
            &raw.accuracy_tolerance,
            "`accuracy_tolerance` must be a positive number",
            "0.05 allows 5% relative error",
        ));
    }
    let accuracy = thresholds(&cx, tol, &raw.accuracy)?;
    let min_effect = raw.min_effect.value;
    if !(min_effect.is_finite() && (0.0..1.0).contains(&min_effect)) {
        return Err(cx.at(
            &raw.min_effect,
            format!("`min_effect` is {min_effect}"),
            "a relative change in [0, 1): 0.03 reports changes of 3% or more",
        ));
    }
    if raw.workload.layers == 0 || raw.workload.seq_len == 0 {
        return Err(SpecError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "`workload.layers` and `workload.seq_len` must be at least 1".into(),
            hint: None,
        });
    }
    let rule = |r: &Spanned<RawRule>, what: &str| -> Result<Rule, SpecError> {
        let v = &r.value;
        let target = match (v.family, v.model) {
            (Some(_), Some(_)) => {
                return Err(cx.at(
                    r,
                    format!("an {what} rule names both a family and a model"),
                    "keep one",
                ));
            }
            (Some(f), None) => Some(RuleTarget::Family(f.0)),
            (None, Some(m)) => Some(RuleTarget::Model(m.0)),
            (None, None) => None,
        };
        let rule = Rule {
            target,
            browser: v.browser,
            platform: v.platform,
            bits: v.bits,
            mixed: v.mixed_precision,
            experimental: v.experimental_precision,
            scheme: v.scheme,
        };
        if rule == Rule::default() {
            return Err(cx.at(
                r,
                format!("an empty {what} rule matches every cell"),
                "give at least one field",
            ));
        }
        Ok(rule)
    };
    let include = raw
        .include
        .iter()
        .map(|r| rule(r, "include"))
        .collect::<Result<_, _>>()?;
    let exclude = raw
        .exclude
        .iter()
        .map(|r| rule(r, "exclude"))
        .collect::<Result<_, _>>()?;

    let spec = MatrixSpec {
        name: raw.name,
        description: raw.description,
        targets,
        browsers: dedup(&raw.browsers.value),
        platforms: dedup(&raw.platforms.value.0),
        bits: dedup(&raw.bits.value),
        mixed: dedup(&raw.mixed_precision.value),
        experimental: dedup(&raw.experimental_precision.value),
        schemes: dedup(&raw.scheme.value),
        group_size: raw.group_size.value,
        workload: raw.workload,
        run: RunParams {
            warmup: raw.warmup,
            repetitions: raw.repetitions.value,
            timeout_secs: raw.timeout_secs.value,
            retries: raw.retries,
        },
        accuracy,
        min_effect,
        requirements: raw.requirements,
        agent_wait_secs: raw.agent_wait_secs,
        include,
        exclude,
        max_cells: raw.max_cells.value,
        priority: raw.priority,
        weights: raw.weights.as_deref().map(|w| weights_path(w, file)),
    };
    let count = spec.expand().len();
    if count == 0 {
        return Err(SpecError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the spec expands to no cells".into(),
            hint: Some("an exclude rule removes everything".into()),
        });
    }
    if count > spec.max_cells as usize {
        return Err(cx.at(
            &raw.max_cells,
            format!(
                "the spec expands to {count} cells, over the limit of {}",
                spec.max_cells
            ),
            "narrow a dimension, or raise `max_cells` if the sweep is meant to be this big",
        ));
    }
    Ok(spec)
}

/// Narrows a cell list, as the CLI's `--test-family`, `--platform`, ... flags do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub families: Vec<&'static family::Family>,
    pub models: Vec<Resolved>,
    pub modality: Option<Modality>,
    pub browsers: Vec<Browser>,
    pub platforms: Vec<Platform>,
    pub bits: Vec<Bits>,
    pub mixed: Option<bool>,
    pub experimental: Option<bool>,
}

impl Filter {
    pub fn matches(&self, c: &Cell) -> bool {
        (self.families.is_empty() || self.families.iter().any(|f| f.key == c.family))
            && (self.models.is_empty() || self.models.iter().any(|m| m.model.id == c.model))
            && self.modality.is_none_or(|m| m == c.modality)
            && (self.browsers.is_empty() || self.browsers.contains(&c.browser))
            && (self.platforms.is_empty() || self.platforms.contains(&c.platform))
            && (self.bits.is_empty() || self.bits.contains(&c.precision.requested))
            && self.mixed.is_none_or(|m| m == c.precision.mixed)
            && self
                .experimental
                .is_none_or(|e| e == c.precision.experimental)
    }
}

impl MatrixSpec {
    /// Every cell, in a stable order, without duplicates.
    pub fn expand(&self) -> Vec<Cell> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let all = Rule::default();
        for c in self.product(&all) {
            if !self.exclude.iter().any(|r| r.matches(&c)) && seen.insert(c.id.clone()) {
                out.push(c);
            }
        }
        for rule in &self.include {
            for c in self.product(rule) {
                if seen.insert(c.id.clone()) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The cross product, with each dimension a rule fixes pinned to its value.
    fn product(&self, rule: &Rule) -> Vec<Cell> {
        fn pick<T: Copy>(fixed: Option<T>, all: &[T]) -> Vec<T> {
            fixed.map_or_else(|| all.to_vec(), |v| vec![v])
        }
        let targets = match rule.target {
            None => self.targets.clone(),
            Some(RuleTarget::Family(f)) => vec![Resolved {
                family: f,
                model: f.default_model(),
            }],
            Some(RuleTarget::Model(m)) => vec![m],
        };
        let mut out = Vec::new();
        for t in &targets {
            for &browser in &pick(rule.browser, &self.browsers) {
                for &platform in &pick(rule.platform, &self.platforms) {
                    for &bits in &pick(rule.bits, &self.bits) {
                        for &mixed in &pick(rule.mixed, &self.mixed) {
                            for &experimental in &pick(rule.experimental, &self.experimental) {
                                for &scheme in &pick(rule.scheme, &self.schemes) {
                                    out.push(
                                        Cell::new(
                                            *t,
                                            browser,
                                            platform,
                                            bits,
                                            mixed,
                                            experimental,
                                            scheme,
                                            self.group_size,
                                            self.workload,
                                        )
                                        .with_weights(self.weights.clone()),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "version: 1
name: t
families: [bert, gpt2]
browsers: [chromium, firefox]
platforms: both
bits: [4, 8]
";

    fn spec(yaml: &str) -> MatrixSpec {
        parse(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(yaml: &str) -> SpecError {
        parse(yaml, "t.yaml").expect_err("spec should be refused")
    }

    #[test]
    fn counts_cells_of_a_small_spec() {
        // 2 families × 2 browsers × 2 platforms × 2 bits
        assert_eq!(spec(BASE).expand().len(), 16);
    }

    #[test]
    fn accuracy_thresholds_are_the_specs_per_metric() {
        let s = spec(&format!(
            "{BASE}accuracy_tolerance: 0.25\naccuracy: {{min_cosine: 0.99, max_kl: 0.05}}\n"
        ));
        assert_eq!(
            s.accuracy,
            Thresholds {
                max_rel_err: 0.25,
                min_cosine: Some(0.99),
                min_top1: None,
                max_kl: Some(0.05),
            }
        );
        // unstated metrics judge nothing
        assert_eq!(spec(BASE).accuracy, Thresholds::rel_err(0.05));
        let e = err(&format!("{BASE}accuracy:\n  min_top1: 1.5\n"));
        assert!(e.message.contains("`accuracy.min_top1` is 1.5"), "{e:?}");
        assert_eq!(e.line, BASE.lines().count() as u64 + 2);
        let e = err(&format!("{BASE}accuracy:\n  min_cos: 0.9\n"));
        assert!(e.message.contains("min_cos"), "{e:?}");
    }

    #[test]
    fn the_minimum_effect_is_the_specs() {
        assert_eq!(spec(BASE).min_effect, 0.03);
        assert_eq!(spec(&format!("{BASE}min_effect: 0.05\n")).min_effect, 0.05);
        let e = err(&format!("{BASE}min_effect: 3\n"));
        assert!(e.message.contains("`min_effect` is 3"), "{e:?}");
        assert_eq!(e.line, BASE.lines().count() as u64 + 1);
    }

    #[test]
    fn experimental_dimension_only_multiplies_webnn() {
        let s = spec(&format!("{BASE}experimental_precision: [false, true]\n"));
        // 16 standard cells, plus experimental webnn 4-bit (8-bit is the same either way)
        assert_eq!(s.expand().len(), 16 + 4);
    }

    #[test]
    fn mixed_dimension_only_multiplies_sub_8_bit() {
        let s = spec(&format!("{BASE}mixed_precision: [false, true]\n"));
        // 4-bit doubles (16 → 8 extra), 8-bit does not
        assert_eq!(s.expand().len(), 16 + 8);
    }

    #[test]
    fn all_families_every_option() {
        let s = spec(
            "version: 1
name: all
families: all
browsers: [chrome, chromium, edge, firefox, safari]
platforms: both
bits: [2, 3, 4, 8, 16]
mixed_precision: [false, true]
experimental_precision: [false, true]
",
        );
        // per family and browser: webgpu 3 low widths × 2 mixed + 8 + 16 = 8 cells;
        // webnn the same 8 standard, plus 3 low widths × 2 mixed experimental = 14
        assert_eq!(s.expand().len(), 35 * 5 * (8 + 14));
    }

    #[test]
    fn ids_are_the_same_across_parses_and_orders() {
        let a = spec(BASE).expand();
        let reordered = "version: 1\nname: other\nfamilies: [gpt2, bert]\nbrowsers: [firefox, chromium]\nplatforms: [webnn, webgpu]\nbits: [8, 4]\nrepetitions: 50\n";
        let mut ids_a: Vec<_> = a.iter().map(|c| c.id.clone()).collect();
        let mut ids_b: Vec<_> = spec(reordered).expand().into_iter().map(|c| c.id).collect();
        ids_a.sort();
        ids_b.sort();
        assert_eq!(ids_a, ids_b);
    }

    #[test]
    fn webnn_cells_carry_upgrade_semantics() {
        let cells = spec(BASE).expand();
        let webnn4: Vec<_> = cells
            .iter()
            .filter(|c| c.platform == Platform::Webnn && c.precision.requested == Bits::B4)
            .collect();
        assert_eq!(webnn4.len(), 4);
        assert!(
            webnn4
                .iter()
                .all(|c| c.precision.effective == Bits::B8 && c.precision.upgraded)
        );
    }

    #[test]
    fn firefox_webnn_is_still_a_cell() {
        // the browser answers when the cell runs; expansion never prunes by a support table
        let cells = spec(BASE).expand();
        assert!(
            cells
                .iter()
                .any(|c| c.browser == Browser::Firefox && c.platform == Platform::Webnn)
        );
    }

    #[test]
    fn include_and_exclude() {
        let s = spec(&format!(
            "{BASE}exclude:\n  - browser: firefox\n    platform: webnn\ninclude:\n  - model: llama-7b\n    browser: chromium\n    platform: webgpu\n"
        ));
        let cells = s.expand();
        assert!(
            !cells
                .iter()
                .any(|c| c.browser == Browser::Firefox && c.platform == Platform::Webnn)
        );
        let llama: Vec<_> = cells.iter().filter(|c| c.family == "llama").collect();
        assert_eq!(llama.len(), 2); // both bit widths
        assert_eq!(cells.len(), 16 - 4 + 2);
    }

    #[test]
    fn models_and_families_combine_without_duplicates() {
        let s = spec(
            "version: 1\nname: t\nfamilies: [llama]\nmodels: [tinyllama, llama-7b]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n",
        );
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.expand().len(), 2);
    }

    #[test]
    fn unknown_key_points_at_it() {
        let e = err(&format!("{BASE}bogus_key: 1\n"));
        assert_eq!((e.line, e.column), (7, 1));
        assert!(
            e.message.contains("unknown field `bogus_key`"),
            "{}",
            e.message
        );
        assert!(e.to_string().starts_with("t.yaml:7:1: "), "{e}");
    }

    #[test]
    fn bad_bits_point_at_the_value() {
        let e = err(
            "version: 1\nname: t\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: both\nbits: [4, 300]\n",
        );
        assert_eq!(e.line, 6);
        assert!(
            e.message
                .contains("bits must be one of 2, 3, 4, 8, 16, not 300"),
            "{}",
            e.message
        );
        let e = err(
            "version: 1\nname: t\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: both\nbits: [5]\n",
        );
        assert!(e.message.contains("not 5"), "{}", e.message);
    }

    #[test]
    fn unknown_family_suggests_neighbours() {
        let e = err(
            "version: 1\nname: t\nfamilies: [bert, lama]\nbrowsers: [chromium]\nplatforms: both\nbits: [4]\n",
        );
        assert_eq!(e.line, 3);
        assert!(
            e.message
                .contains("unknown model or family `lama`; did you mean llama"),
            "{}",
            e.message
        );
    }

    #[test]
    fn empty_dimension_points_at_it() {
        let e = err(
            "version: 1\nname: t\nfamilies: [bert]\nbrowsers: []\nplatforms: both\nbits: [4]\n",
        );
        assert_eq!((e.line, e.message.as_str()), (4, "`browsers` is empty"));
        assert!(e.hint.is_some());
    }

    #[test]
    fn cell_limit_points_at_max_cells() {
        let e = err(&format!("{BASE}max_cells: 10\n"));
        assert_eq!(e.line, 7);
        assert!(
            e.message.contains("16 cells, over the limit of 10"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_version_and_empty_rules_are_refused() {
        let e = err(&BASE.replace("version: 1", "version: 2"));
        assert_eq!((e.line, e.column), (1, 10));
        let e = err(&format!("{BASE}exclude:\n  - {{}}\n"));
        assert!(e.message.contains("empty exclude rule"), "{}", e.message);
        assert_eq!(e.line, 8);
    }

    #[test]
    fn unknown_platform_and_browser() {
        let e = err(&BASE.replace("platforms: both", "platforms: webgl"));
        assert_eq!(e.line, 5);
        assert!(
            e.message.contains("unknown platform `webgl`"),
            "{}",
            e.message
        );
        let e = err(&BASE.replace("firefox", "netscape"));
        assert_eq!(e.line, 4);
    }

    #[test]
    fn filter_narrows() {
        let cells = spec(BASE).expand();
        let f = Filter {
            families: vec![family::family("gpt2").expect("gpt2")],
            platforms: vec![Platform::Webgpu],
            ..Filter::default()
        };
        assert_eq!(cells.iter().filter(|c| f.matches(c)).count(), 4);
    }

    #[test]
    fn schema_lists_the_keys() {
        let s = json_schema();
        for key in [
            "\"families\"",
            "\"experimental_precision\"",
            "\"max_cells\"",
            "\"bert\"",
        ] {
            assert!(s.contains(key), "schema lacks {key}");
        }
    }

    #[test]
    fn weights_resolve_against_the_spec_and_make_other_cells() {
        let yaml = |w: &str| {
            format!(
                "version: 1\nname: w\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n{w}"
            )
        };
        let synthetic = parse(&yaml(""), "specs/w.yaml").expect("spec").expand();
        let relative = parse(&yaml("weights: bert.safetensors\n"), "specs/w.yaml")
            .expect("spec")
            .expand();
        let absolute = parse(&yaml("weights: /data/bert.safetensors\n"), "specs/w.yaml")
            .expect("spec")
            .expand();
        assert_eq!(synthetic[0].weights, None);
        assert_eq!(
            relative[0].weights.as_deref(),
            Some(
                std::path::Path::new("specs")
                    .join("bert.safetensors")
                    .to_str()
                    .expect("utf-8")
            )
        );
        assert_eq!(
            absolute[0].weights.as_deref(),
            Some("/data/bert.safetensors")
        );
        assert_ne!(synthetic[0].id, relative[0].id);
        assert!(relative[0].label().ends_with("weights=bert.safetensors"));
    }
}
