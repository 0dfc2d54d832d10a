//! Layers in the page: serves a WebGPU layer's weights exactly as `quantgrid-matrix` packs
//! them, runs a cell's layers (WebGPU or WebNN) in the harness page (`harness/js/layers.js`)
//! in one call, and checks each output against the Rust references (the kernel against the
//! dequantized weights within its error bound, accuracy against fp32).

use crate::server::{Blob, Blobs};
use crate::webdriver::{Session, WebDriverError};
use quantgrid_matrix::quant::{Quantized, Scheme};
use quantgrid_matrix::reference::{Comparison, KernelCheck, LayerCase, check_kernel, compare};
use quantgrid_matrix::workload::Layer;

/// What the page measured for a cell: its layers timed together on the page's clock, and each
/// layer's own figures.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRun {
    pub clock: CellClock,
    pub layers: Vec<LayerRun>,
}

/// The page's timing of a whole cell: a sample is `runs_per_sample` repetitions of every
/// layer, submitted back to back and awaited once.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CellClock {
    /// The first run of every layer, submitted together and awaited once.
    pub first_run_ms: f64,
    /// Per repetition of the cell, on the page's clock.
    pub samples_ms: Vec<f64>,
    /// Back-to-back repetitions each sample averages (more than 1 on a coarse clock or a
    /// browser that polls for completion).
    pub runs_per_sample: u32,
    /// The completion latency the samples were sized to span five of (`js/timing.js`: a
    /// WebGPU probe of real work, or warm-ups beyond their GPU time; WebNN reading back a
    /// finished output); `None` where nothing was measured (native runs).
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Time the page spent building and running the cell's kernels, timed runs or not.
    pub kernel_ms: f64,
    /// What timed `samples_ms`: the page's clock (`performance.now`).
    pub timer: String,
}

/// What the page measured for one layer of a cell, and how its output compares.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRun {
    pub build_ms: f64,
    /// GPU time per run of each sample (`timestamp-query`), where the adapter has it.
    pub gpu_samples_ms: Vec<f64>,
    /// Bytes of the weight, scale and zero-point buffers the page created.
    pub weight_bytes: u64,
    /// The output against the dequantized reference, within the floating-point error bound.
    pub kernel: KernelCheck,
    pub accuracy: Comparison,
    /// WebNN only: the context the graph ran on, in the browser's words.
    pub webnn: Option<PageContext>,
}

/// A WebNN context as the page saw it: what it asked for and what the browser says of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PageContext {
    /// e.g. `deviceType=gpu`.
    pub requested: String,
    /// `MLContext.accelerated`, on builds that have it.
    pub accelerated: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    WebDriver(#[from] WebDriverError),
    /// The browser's own error text (WebGPU unavailable, shader compilation, out of memory).
    #[error("{0}")]
    Browser(String),
    /// The browser runs the platform but not this, with its own evidence.
    #[error("{0}")]
    Unsupported(String),
    /// The platform is absent from this build, in the browser's words.
    #[error("{0}")]
    Unavailable(String),
    #[error("the page returned {0}")]
    Malformed(String),
}

/// Little-endian bytes of `words`, at least one word: WebGPU has no empty storage buffers.
pub(crate) fn word_bytes(words: &[u32]) -> Vec<u8> {
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if out.is_empty() {
        out.resize(4, 0);
    }
    out
}

/// fp16 group scales two per word, as `kernels/linear.wgsl` reads them.
pub(crate) fn scale_bytes(q: &Quantized) -> Vec<u8> {
    let scales: Vec<u32> = q
        .scales
        .chunks(2)
        .map(|p| u32::from(p[0].to_bits()) | p.get(1).map_or(0, |h| u32::from(h.to_bits()) << 16))
        .collect();
    word_bytes(&scales)
}

/// u8 zero points four per word, as `kernels/linear.wgsl` reads them.
pub(crate) fn zero_bytes(q: &Quantized) -> Vec<u8> {
    let zeros: Vec<u32> = q
        .zeros
        .chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |acc, (i, z)| acc | (u32::from(*z) << (8 * i)))
        })
        .collect();
    word_bytes(&zeros)
}

pub(crate) fn float_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// The platform a batch of layers runs on, as the page names its entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Webgpu,
    Webnn,
}

/// Runs a cell's layers in one page call (one WebDriver round trip per cell instead of one
/// per layer), each with the page arguments and tensors [`layer_args`] or
/// [`crate::webnn::layer_args`] made, and checks each output against its case. Stops at the
/// first layer the browser cannot run.
pub async fn run_layers(
    session: &Session,
    api: Api,
    layers: Vec<(serde_json::Value, &LayerCase)>,
) -> Result<CellRun, LayerError> {
    let (args, cases): (Vec<serde_json::Value>, Vec<&LayerCase>) = layers.into_iter().unzip();
    let kind = match api {
        Api::Webgpu => "webgpu",
        Api::Webnn => "webnn",
    };
    let out = session
        .run_async_with(
            "window.quantgridLayers(arguments[0], arguments[1]).then(done, e => done({ kind: 'error', error: `${e.name}: ${e.message}` }));",
            vec![serde_json::json!(kind), serde_json::Value::Array(args)],
        )
        .await?;
    let LayersRan {
        layers: answers,
        cell: clock,
    } = PageAnswer::read(out)?;
    let expected = cases.len();
    let runs = answers
        .iter()
        .zip(cases)
        .map(|(a, case)| read_run(a, case))
        .collect::<Result<Vec<_>, _>>()?;
    if runs.len() != expected {
        return Err(LayerError::Malformed(format!(
            "{} answers for {expected} layers",
            runs.len()
        )));
    }
    Ok(CellRun {
        clock,
        layers: runs,
    })
}

/// The page's one answer for a call (`harness/js/answer.js`): what ran, or why not, by kind.
/// `T` is what a run returns: a cell's layers or a cell's graph.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum PageAnswer<T> {
    Ran(T),
    /// The platform runs, but not this (a width without an operand type, a missing op); the
    /// browser's own evidence.
    Unsupported {
        evidence: String,
    },
    /// The platform itself is absent (no `navigator.gpu`, no adapter, no `navigator.ml`, no
    /// context), in the browser's words.
    Unavailable {
        evidence: String,
    },
    Error {
        error: String,
    },
}

impl<T: serde::de::DeserializeOwned> PageAnswer<T> {
    /// What ran, or the error its kind says: no status is read from error text.
    pub(crate) fn read(out: serde_json::Value) -> Result<T, LayerError> {
        let answer: PageAnswer<T> = serde_json::from_value(out.clone()).map_err(|e| {
            LayerError::Malformed(format!("an answer that does not read ({e}): {out}"))
        })?;
        match answer {
            PageAnswer::Ran(ran) => Ok(ran),
            PageAnswer::Unsupported { evidence } => Err(LayerError::Unsupported(evidence)),
            PageAnswer::Unavailable { evidence } => Err(LayerError::Unavailable(evidence)),
            PageAnswer::Error { error } => Err(LayerError::Browser(error)),
        }
    }
}

/// What the page ran for a cell's layers: the cell's clock and each layer's answer.
#[derive(Debug, serde::Deserialize)]
struct LayersRan {
    layers: Vec<serde_json::Value>,
    cell: CellClock,
}

/// One layer, on its own.
pub async fn run_layer(
    session: &Session,
    blobs: &Blobs,
    layer: &Layer,
    case: &LayerCase,
    warmup: u32,
    repetitions: u32,
) -> Result<CellRun, LayerError> {
    let (args, _served) = layer_args(blobs, layer, case, warmup, repetitions);
    run_layers(session, Api::Webgpu, vec![(args, case)]).await
}

/// What `harness/js/webgpu.js` gets for one layer: shapes, how the weights are laid out, the
/// served tensors and the run parameters. Field names as the page reads them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebgpuArgs {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub layout: Layout,
    pub x: String,
    pub w: String,
    pub scales: String,
    pub zeros: String,
    pub warmup: u32,
    pub repetitions: u32,
}

/// How a WebGPU layer's weight buffer holds its weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Layout {
    /// As `quantgrid-matrix` packs them ([`Packing`]).
    Packed(Packing),
    /// Unquantized f32: the baseline a low-bit kernel is measured against.
    F32,
}

/// Weights as `quantgrid-matrix` packs them and `kernels/linear.wgsl` reads them: codes in
/// u32 words, fp16 scales two per word, u8 zero points four per word (16 bits: fp16 pairs, no
/// scales).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Packing {
    pub bits: u32,
    pub group: u32,
    pub words_per_row: usize,
    pub groups_per_row: u32,
    pub asym: bool,
    /// Where `kernels/gemv.wgsl`'s wide-load batch-1 kernel (`gemv_b{bits}`) takes these
    /// weights, how it lays them out. `None`: `linear.wgsl`'s `gemv`.
    pub wide: Option<Wide>,
}

/// How `kernels/gemv.wgsl`'s wide-load batch-1 kernels lay a layer over workgroups: the one
/// rule for the page (`fastParams`, `fastGroups`) and the native runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wide {
    /// log2 of the words (3-bit: of the 32-code blocks) per quantization group.
    pub shift: u32,
    /// A row's units (`Fast.quads`): 16-byte vectors, or 3-bit's 3-word blocks.
    pub units: u32,
    /// Threads per row (`Fast.lanes`).
    pub lanes: u32,
    /// Rows per workgroup, what a dispatch counts its workgroups in.
    pub rows: u32,
}

impl Wide {
    /// `gemv.wgsl`'s workgroup size and rows per thread (its `THREADS` and `ROWS`).
    pub const THREADS: u32 = 128;
    pub const ROWS: u32 = 4;

    /// A row of `units` split over as many threads as keeps each at four units or more: a
    /// power of two from 32 to the workgroup's 128 (a 16384-wide row is 512 units at 4 bits).
    /// Fewer threads a row kept CPU adapters busier on BERT's 768-wide rows (24 units), but
    /// left a real GPU too few threads to hide its latency (measured on an H200:
    /// docs/BENCHMARKS.md); 32 is what both tolerate.
    pub fn over(shift: u32, units: u32) -> Wide {
        let want = (units / 4).max(1);
        let lanes = (1u32 << want.ilog2()).clamp(32, Self::THREADS);
        Wide {
            shift,
            units,
            lanes,
            rows: Self::THREADS / lanes * Self::ROWS,
        }
    }

    /// `gemv.wgsl`'s `Fast` uniform for a layer of `n` rows, 32 bytes.
    pub fn params(&self, n: u32, groups_per_row: u32, asym: bool, bits: u32) -> Vec<u8> {
        [
            n,
            self.units,
            groups_per_row,
            self.shift,
            u32::from(asym),
            bits,
            self.lanes,
            0,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }
}

impl Packing {
    pub fn of(q: &Quantized) -> Packing {
        let group = q.params.group_size.max(1);
        Packing {
            bits: q.params.bits.get(),
            group,
            words_per_row: q.words_per_row(),
            groups_per_row: q.k.div_ceil(group),
            asym: q.params.scheme == Scheme::Asymmetric && !q.zeros.is_empty(),
            wide: wide(q),
        }
    }
}

/// Whether `gemv.wgsl`'s kernel takes these weights: 2, 4 or 8 bits, rows of whole 16-byte
/// vectors, and groups of a power-of-two count of whole words (its group index is a shift),
/// whole vectors of them at 4 and 8 bits; 3 bits in whole 32-code blocks.
fn wide(q: &Quantized) -> Option<Wide> {
    use quantgrid_matrix::quant::Bits;
    let bits = q.params.bits;
    let group = q.params.group_size;
    if bits == Bits::B3 {
        // 32-code blocks of 3 words; groups of a power-of-two count of whole blocks
        let blocks_per_group = group / 32;
        let fits = q.k.is_multiple_of(32)
            && group.is_multiple_of(32)
            && blocks_per_group.is_power_of_two();
        let blocks = (q.words_per_row() / 3) as u32;
        return fits.then(|| Wide::over(blocks_per_group.trailing_zeros(), blocks));
    }
    if !matches!(bits, Bits::B2 | Bits::B4 | Bits::B8) {
        return None;
    }
    let per = 32 / bits.get();
    let words_per_group = group / per;
    // 4 and 8 bits scale once per 16-byte vector: a vector must be one group
    let whole_vectors = bits == Bits::B2 || words_per_group >= 4;
    let fits = q.k.is_multiple_of(4 * per)
        && group.is_multiple_of(per)
        && words_per_group.is_power_of_two()
        && whole_vectors;
    let quads = (q.words_per_row() / 4) as u32;
    fits.then(|| Wide::over(words_per_group.trailing_zeros(), quads))
}

/// Serves `q`'s packed words, scales and zero points (unserved when dropped).
pub(crate) fn serve_packed(blobs: &Blobs, q: &Quantized) -> [Blob; 3] {
    [
        blobs.put(word_bytes(&q.packed)),
        blobs.put(scale_bytes(q)),
        blobs.put(zero_bytes(q)),
    ]
}

impl WebgpuArgs {
    fn to_value(&self) -> serde_json::Value {
        // numbers and strings only: serializing cannot fail
        serde_json::to_value(self).expect("page arguments serialize")
    }
}

/// The page's arguments for one WebGPU layer and the tensors served for it (unserved when
/// dropped). The page compiles each kernel once per cell, as an application would.
pub fn layer_args(
    blobs: &Blobs,
    layer: &Layer,
    case: &LayerCase,
    warmup: u32,
    repetitions: u32,
) -> (serde_json::Value, Vec<Blob>) {
    let q = &case.quantized;
    let x = blobs.put(float_bytes(&case.input));
    let [w, s, z] = serve_packed(blobs, q);
    let args = WebgpuArgs {
        m: layer.m,
        k: layer.k,
        n: layer.n,
        layout: Layout::Packed(Packing::of(q)),
        x: x.path(),
        w: w.path(),
        scales: s.path(),
        zeros: z.path(),
        warmup,
        repetitions,
    }
    .to_value();
    (args, vec![x, w, s, z])
}

/// The layer with its unquantized f32 weights: the baseline that says whether a low-bit
/// kernel is worth its name on an adapter. Both checks compare against the fp32 output.
pub async fn run_f32_layer(
    session: &Session,
    blobs: &Blobs,
    layer: &Layer,
    case: &LayerCase,
    weights: &[f32],
    warmup: u32,
    repetitions: u32,
) -> Result<CellRun, LayerError> {
    let (x, w, none) = (
        blobs.put(float_bytes(&case.input)),
        blobs.put(float_bytes(weights)),
        blobs.put(word_bytes(&[])),
    );
    let args = WebgpuArgs {
        m: layer.m,
        k: layer.k,
        n: layer.n,
        layout: Layout::F32,
        x: x.path(),
        w: w.path(),
        scales: none.path(),
        zeros: none.path(),
        warmup,
        repetitions,
    }
    .to_value();
    let mut reference = case.clone();
    reference.dequantized_output = case.fp32_output.clone();
    reference.dequantized_magnitude = case.fp32_magnitude.clone();
    run_layers(session, Api::Webgpu, vec![(args, &reference)]).await
}

/// What the page returns for a layer it ran.
#[derive(serde::Deserialize)]
struct PageRun {
    /// JSON has no NaN or infinity: the page's non-finite outputs arrive as `null`.
    y: Vec<Option<f32>>,
    build_ms: f64,
    #[serde(default)]
    gpu_samples_ms: Vec<f64>,
    weight_bytes: u64,
    #[serde(default)]
    webnn: Option<PageContext>,
}

/// The page's answer for one layer, checked against the case's references.
pub(crate) fn read_run(out: &serde_json::Value, case: &LayerCase) -> Result<LayerRun, LayerError> {
    let page: PageRun = serde_json::from_value(out.clone())
        .map_err(|e| LayerError::Malformed(format!("a layer result that does not read: {e}")))?;
    // a kernel that computes NaN is a failing kernel, not a malformed answer
    let y: Vec<f32> = page.y.iter().map(|v| v.unwrap_or(f32::NAN)).collect();
    let k = case.quantized.k;
    let kernel = check_kernel(&y, &case.dequantized_output, &case.dequantized_magnitude, k)
        .ok_or_else(|| {
            LayerError::Malformed(format!(
                "{} outputs for {}",
                y.len(),
                case.dequantized_output.len()
            ))
        })?;
    let accuracy = compare(&y, &case.fp32_output)
        .ok_or_else(|| LayerError::Malformed("output size".into()))?;
    Ok(LayerRun {
        build_ms: page.build_ms,
        gpu_samples_ms: page.gpu_samples_ms,
        weight_bytes: page.weight_bytes,
        kernel,
        accuracy,
        webnn: page.webnn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_rows_keep_every_thread_busy_on_short_rows_and_use_the_whole_workgroup_on_long_ones() {
        // BERT's 768-wide rows at 4 bits: 24 vectors, 32 threads a row, 4 slices of 4 rows
        assert_eq!(
            Wide::over(2, 24),
            Wide {
                shift: 2,
                units: 24,
                lanes: 32,
                rows: 16
            }
        );
        assert_eq!((Wide::over(2, 256).lanes, Wide::over(2, 256).rows), (64, 8));
        assert_eq!(
            (Wide::over(2, 512).lanes, Wide::over(2, 512).rows),
            (128, 4)
        );
        assert_eq!(
            (Wide::over(0, 4096).lanes, Wide::over(0, 4096).rows),
            (128, 4)
        );
        let p = Wide::over(2, 512).params(16384, 512, true, 4);
        assert_eq!(p.len(), 32);
        assert_eq!(&p[24..28], &128u32.to_le_bytes());
    }
    use quantgrid_matrix::quant::{Bits, QuantParams};
    use quantgrid_matrix::reference::layer_case;
    use quantgrid_matrix::workload::Role;

    #[test]
    fn the_page_contract_is_typed_and_says_how_weights_are_laid_out() {
        let args = |layout| WebgpuArgs {
            m: 1,
            k: 64,
            n: 2,
            layout,
            x: "blob/1".into(),
            w: "blob/2".into(),
            scales: "blob/3".into(),
            zeros: "blob/4".into(),
            warmup: 0,
            repetitions: 3,
        };
        let packed = args(Layout::Packed(Packing {
            bits: 4,
            group: 32,
            words_per_row: 8,
            groups_per_row: 2,
            asym: false,
            wide: Some(Wide::over(2, 2)),
        }))
        .to_value();
        assert_eq!(
            packed["layout"],
            serde_json::json!({"kind": "packed", "bits": 4, "group": 32, "wordsPerRow": 8, "groupsPerRow": 2, "asym": false,
                "wide": {"shift": 2, "units": 2, "lanes": 32, "rows": 16}})
        );
        assert_eq!(packed["repetitions"], serde_json::json!(3));
        let f32 = args(Layout::F32).to_value();
        assert_eq!(f32["layout"], serde_json::json!({"kind": "f32"}));
        // the page's answer is typed the same way
        let answer: PageAnswer<LayersRan> = serde_json::from_value(
            serde_json::json!({"kind": "unavailable", "evidence": "WebNN API not found: navigator.ml is undefined"}),
        )
        .expect("reads");
        assert!(
            matches!(answer, PageAnswer::Unavailable { evidence } if evidence.contains("navigator.ml"))
        );
        assert!(
            serde_json::from_value::<PageAnswer<LayersRan>>(
                serde_json::json!({"error": "untyped"})
            )
            .is_err()
        );
    }

    #[test]
    fn a_non_finite_output_fails_the_kernel_check() {
        let layer = Layer {
            name: "t".into(),
            role: Role::Ffn,
            m: 1,
            k: 32,
            n: 2,
        };
        let case = layer_case(
            1,
            &layer,
            QuantParams {
                bits: Bits::B4,
                scheme: Scheme::Symmetric,
                group_size: 32,
            },
        );
        let page = |y: serde_json::Value| serde_json::json!({ "y": y, "build_ms": 1.0, "weight_bytes": 24 });
        let good =
            read_run(&page(serde_json::json!(case.dequantized_output)), &case).expect("reads");
        assert!(good.kernel.passed(), "{good:?}");
        // JSON.stringify turns NaN into null
        let nan = read_run(
            &page(serde_json::json!([null, case.dequantized_output[1]])),
            &case,
        )
        .expect("reads");
        assert!(!nan.kernel.passed(), "{nan:?}");
    }
}
