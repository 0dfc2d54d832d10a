//! A cell's graph in the page: serves its given tensors and quantized weights, runs the
//! whole graph in one page call (`harness/block.html`, `window.quantgridBlock`) on WebGPU
//! (`js/block.js`) or WebNN (`js/webnn-graph.js`), and reads back the value of every tensor
//! the page computed for [`quantgrid_matrix::block::check`].

use crate::layers::{
    CellClock, LayerError, Packing, PageAnswer, PageContext, float_bytes, serve_packed,
};
use crate::server::{Blob, Blobs};
use crate::webdriver::Session;
use crate::webnn::{self, WebnnLayer};
use base64::Engine;
use quantgrid_matrix::Platform;
use quantgrid_matrix::block::BlockCase;
use quantgrid_matrix::graph::Graph;
use quantgrid_matrix::quant::Quantized;
use quantgrid_matrix::workload::Layer;

/// One quantized layer as `harness/js/block.js` reads it: shapes, how its weights are packed
/// (as `kernels/linear.wgsl` reads them) and where they are served.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockLayer {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    #[serde(flatten)]
    pub packing: Packing,
    pub w: String,
    pub scales: String,
    pub zeros: String,
}

/// A quantized layer as the platform's page reads it: packed words for WGSL, WebNN operand
/// types for `dequantizeLinear`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum PageLayer {
    Webgpu(BlockLayer),
    Webnn(WebnnLayer),
}

/// The page's arguments for a cell's graph: the graph itself, where each given tensor is
/// served (`None` for computed ones), the layers, and the run parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BlockArgs<'a> {
    pub graph: &'a Graph,
    pub data: Vec<Option<String>>,
    pub layers: Vec<PageLayer>,
    pub warmup: u32,
    pub repetitions: u32,
}

/// Serves `case`'s tensors for `platform`'s page and returns its arguments with the blobs
/// (unserved when dropped).
pub fn block_args(
    blobs: &Blobs,
    case: &BlockCase,
    platform: Platform,
    warmup: u32,
    repetitions: u32,
) -> Result<(serde_json::Value, Vec<Blob>), LayerError> {
    let mut served = Vec::new();
    let data = case
        .given
        .iter()
        .map(|v| {
            v.as_ref().map(|v| {
                let b = blobs.put(float_bytes(v));
                let p = b.path();
                served.push(b);
                p
            })
        })
        .collect();
    let mut layers = Vec::with_capacity(case.quantized.len());
    for (l, q) in case.graph.layers.iter().zip(&case.quantized) {
        let (layer, blobs) = match platform {
            // a native cell's graph is the WebGPU one (agent::native::block runs it)
            Platform::Webgpu | Platform::Native => {
                let (layer, blobs) = webgpu_layer(blobs, l, q);
                (PageLayer::Webgpu(layer), blobs)
            }
            Platform::Webnn => {
                let (weights, blobs) = webnn::weights(q, blobs)?;
                let layer = WebnnLayer {
                    k: l.k,
                    n: l.n,
                    weights,
                };
                (PageLayer::Webnn(layer), blobs)
            }
        };
        served.extend(blobs);
        layers.push(layer);
    }
    let args = BlockArgs {
        graph: &case.graph,
        data,
        layers,
        warmup,
        repetitions,
    };
    // numbers and strings only: serializing cannot fail
    let value = serde_json::to_value(&args).expect("page arguments serialize");
    Ok((value, served))
}

/// One layer's packed words, scales and zero points as `kernels/linear.wgsl` reads them.
fn webgpu_layer(blobs: &Blobs, l: &Layer, q: &Quantized) -> (BlockLayer, Vec<Blob>) {
    let [w, s, z] = serve_packed(blobs, q);
    let layer = BlockLayer {
        m: l.m,
        k: l.k,
        n: l.n,
        packing: Packing::of(q),
        w: w.path(),
        scales: s.path(),
        zeros: z.path(),
    };
    (layer, vec![w, s, z])
}

/// What the page measured for a cell's graph.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRun {
    pub clock: CellClock,
    /// Per tensor: what the page computed (`None` for given tensors).
    pub values: Vec<Option<Vec<f32>>>,
    pub build_ms: f64,
    pub weight_bytes: u64,
    /// GPU time of each sample's first run (`timestamp-query`), where the adapter has it.
    pub gpu_samples_ms: Vec<f64>,
    /// The WebNN context the graph ran in, as the page saw it.
    pub webnn: Option<PageContext>,
}

/// What the page ran for a cell's graph (the `ran` kind of `harness/js/answer.js`).
#[derive(Debug, serde::Deserialize)]
struct BlockRan {
    cell: CellClock,
    /// Little-endian f32 bytes in base64: exact, NaN included.
    values: Vec<Option<String>>,
    build_ms: f64,
    weight_bytes: u64,
    #[serde(default)]
    gpu_samples_ms: Vec<f64>,
    #[serde(default)]
    webnn: Option<PageContext>,
}

/// Runs the graph `args` describes in the page on `platform`.
pub async fn run_block(
    session: &Session,
    platform: Platform,
    args: serde_json::Value,
) -> Result<BlockRun, LayerError> {
    let out = session
        .run_async_with(
            "window.quantgridBlock(arguments[0], arguments[1]).then(done, e => done({ kind: 'error', error: `${e.name}: ${e.message}` }));",
            vec![serde_json::json!(platform), args],
        )
        .await?;
    read_answer(out)
}

fn read_answer(out: serde_json::Value) -> Result<BlockRun, LayerError> {
    let ran: BlockRan = PageAnswer::read(out)?;
    let values = ran
        .values
        .into_iter()
        .map(|v| v.map(|b| decode(&b)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BlockRun {
        clock: ran.cell,
        values,
        build_ms: ran.build_ms,
        weight_bytes: ran.weight_bytes,
        gpu_samples_ms: ran.gpu_samples_ms,
        webnn: ran.webnn,
    })
}

fn decode(b64: &str) -> Result<Vec<f32>, LayerError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| LayerError::Malformed(format!("tensor values that are not base64: {e}")))?;
    if !bytes.len().is_multiple_of(4) {
        return Err(LayerError::Malformed(format!(
            "{} bytes of f32 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_typed_and_values_arrive_exact() {
        let nan = f32::NAN.to_le_bytes();
        let bytes: Vec<u8> = [1.5f32.to_le_bytes(), nan].concat();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let run = read_answer(serde_json::json!({
            "kind": "ran",
            "cell": {"first_run_ms": 1.0, "samples_ms": [1.0], "runs_per_sample": 1, "kernel_ms": 3.0, "timer": "performance.now"},
            "values": [null, b64],
            "build_ms": 2.0,
            "weight_bytes": 10,
        }))
        .expect("reads");
        let v = run.values[1].as_ref().expect("computed");
        assert_eq!(v[0], 1.5);
        assert!(v[1].is_nan());
        assert!(matches!(
            read_answer(serde_json::json!({"kind": "unsupported", "evidence": "no gelu"})),
            Err(LayerError::Unsupported(e)) if e == "no gelu"
        ));
        assert!(read_answer(serde_json::json!({"values": []})).is_err());
    }
}
