//! A cell's whole graph natively: `harness/js/block.js`'s plan done in Rust through wgpu, from
//! the same `kernels/block.wgsl` and `kernels/linear.wgsl`, with the same uniforms, bindings
//! and dispatch sizes, one pass per op and the copies between, one command buffer per run.
//! It answers what the page answers (`block::BlockRun`: every computed tensor and the run's
//! clock), so the same `matrix::block::check` judges it, and its time is the page's time less
//! the browser: the two divide into the browser-overhead ratio.

use super::{Gpu, NativeError};
use crate::block::BlockRun;
use crate::layers::{CellClock, Packing, float_bytes, scale_bytes, word_bytes, zero_bytes};
use quantgrid_matrix::block::BlockCase;
use quantgrid_matrix::graph::{Op, TensorId};
use quantgrid_matrix::ops::Activation;
use std::time::Instant;
use wgpu::util::DeviceExt;

const BLOCK: &str = include_str!("../../harness/kernels/block.wgsl");

/// The longest key sequence `kernels/block.wgsl`'s attention holds (its `MAX_KV`).
const MAX_KV: u32 = 2048;

/// `kernels/block.wgsl`'s activation codes, in its order.
fn activation_code(f: Activation) -> u32 {
    match f {
        Activation::GeluErf => 0,
        Activation::GeluTanh => 1,
        Activation::Relu => 2,
        Activation::Silu => 3,
        Activation::QuickGelu => 4,
    }
}

/// 64-thread workgroups over `n` elements, spilling into y past one dimension's limit.
fn spread(n: u32) -> (u32, u32) {
    let g = n.div_ceil(64).max(1);
    (g.min(65_535), g.div_ceil(65_535))
}

/// One step of a run: a dispatch or a copy between tensors.
enum Step {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind: wgpu::BindGroup,
        groups: (u32, u32),
    },
    Copy {
        from: usize,
        from_offset: u64,
        to: usize,
        to_offset: u64,
        bytes: u64,
    },
}

/// The pipelines of a cell, compiled once per cell as an application would.
struct Pipelines {
    layout: wgpu::BindGroupLayout,
    block: std::collections::HashMap<&'static str, wgpu::ComputePipeline>,
    gemv: wgpu::ComputePipeline,
    gemm: wgpu::ComputePipeline,
    /// `gemv.wgsl`'s wide-load kernels by width.
    wide: std::collections::HashMap<u32, wgpu::ComputePipeline>,
}

/// Of `gemv.wgsl`, only `widths` (those the cell's batch-1 layers use), as `block.js` does.
fn pipelines(gpu: &Gpu, widths: &[u32]) -> Pipelines {
    let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    entries.extend((1..=4).map(|b| storage(b, true)));
    entries.push(storage(5, false));
    let layout = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("block"),
            entries: &entries,
        });
    let pl = gpu
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("block"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    let module = gpu
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("block.wgsl"),
            source: wgpu::ShaderSource::Wgsl(BLOCK.into()),
        });
    let block = [
        "layer_norm",
        "rms_norm",
        "act",
        "binary",
        "rope",
        "attention",
        "mean_pool",
    ]
    .into_iter()
    .map(|e| {
        let p = gpu
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(e),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(e),
                compilation_options: Default::default(),
                cache: None,
            });
        (e, p)
    })
    .collect();
    Pipelines {
        layout,
        block,
        gemv: gpu.pipeline(&gpu.linear, "gemv"),
        gemm: gpu.pipeline(&gpu.linear, "gemm"),
        wide: widths
            .iter()
            .map(|&b| (b, gpu.pipeline(&gpu.gemv, &format!("gemv_b{b}"))))
            .collect(),
    }
}

/// A 48-byte uniform as `block.js` writes it: u32s from byte 0, two f32s at byte 32.
fn uniform(gpu: &Gpu, u32s: &[u32], f32s: [f32; 2]) -> wgpu::Buffer {
    let mut data = [0u8; 48];
    for (i, v) in u32s.iter().enumerate() {
        data[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    data[32..36].copy_from_slice(&f32s[0].to_le_bytes());
    data[36..40].copy_from_slice(&f32s[1].to_le_bytes());
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("op"),
            contents: &data,
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// Runs `case`'s graph `warmup` times untimed, then `repetitions` timed runs, and reads back
/// every tensor it computed.
pub fn run_block(
    gpu: &Gpu,
    case: &BlockCase,
    warmup: u32,
    repetitions: u32,
) -> Result<BlockRun, NativeError> {
    let c0 = Instant::now();
    let g = &case.graph;
    let t0 = Instant::now();
    let (steps, tensors, weight_bytes) = gpu.checked(|| plan(gpu, case))??;
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    let encode = || {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for s in &steps {
            match s {
                Step::Copy {
                    from,
                    from_offset,
                    to,
                    to_offset,
                    bytes,
                } => enc.copy_buffer_to_buffer(
                    &tensors[*from],
                    *from_offset,
                    &tensors[*to],
                    *to_offset,
                    *bytes,
                ),
                Step::Dispatch {
                    pipeline,
                    bind,
                    groups,
                } => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind, &[]);
                    pass.dispatch_workgroups(groups.0, groups.1, 1);
                }
            }
        }
        enc.finish()
    };
    // n back-to-back runs, awaited once: a run is one command buffer, as on the page
    let runs = |n: u32| -> Result<f64, NativeError> {
        let t = Instant::now();
        for _ in 0..n {
            gpu.queue.submit([encode()]);
        }
        gpu.wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let first_run_ms = runs(1)?;
    for _ in 0..warmup {
        runs(1)?;
    }
    let samples_ms = (0..repetitions.max(1))
        .map(|_| runs(1))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values = Vec::with_capacity(g.tensors.len());
    for (i, t) in g.tensors.iter().enumerate() {
        values.push(if t.init.is_some() {
            None
        } else {
            Some(gpu.read(&tensors[i], t.len())?)
        });
    }
    Ok(BlockRun {
        clock: CellClock {
            first_run_ms,
            samples_ms,
            runs_per_sample: 1,
            latency_ms: None,
            kernel_ms: c0.elapsed().as_secs_f64() * 1e3,
            timer: quantgrid_matrix::result::NATIVE_TIMER.into(),
        },
        values,
        build_ms,
        weight_bytes,
        gpu_samples_ms: Vec::new(),
        webnn: None,
    })
}

/// The buffers and steps of one run, as `block.js`'s `plan`.
#[allow(clippy::type_complexity)]
fn plan(gpu: &Gpu, case: &BlockCase) -> Result<(Vec<Step>, Vec<wgpu::Buffer>, u64), NativeError> {
    let g = &case.graph;
    let mut widths: Vec<u32> = g
        .layers
        .iter()
        .zip(&case.quantized)
        .filter(|(l, _)| l.m == 1)
        .filter_map(|(_, q)| Packing::of(q).wide.map(|_| q.params.bits.get()))
        .collect();
    widths.sort_unstable();
    widths.dedup();
    let p = pipelines(gpu, &widths);
    let (tensors, layers, dummy, weight_bytes) = buffers(gpu, case);
    let t = |id: TensorId| &g.tensors[id.index()];
    let buf = |id: TensorId| &tensors[id.index()];
    let mut steps = Vec::with_capacity(g.ops.len());
    let bind = |layout: &wgpu::BindGroupLayout, buffers: [&wgpu::Buffer; 6]| {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(binding, b)| wgpu::BindGroupEntry {
                binding: binding as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("op"),
            layout,
            entries: &entries,
        })
    };
    let dispatch = |entry: &str,
                    params: wgpu::Buffer,
                    ins: [Option<TensorId>; 4],
                    y: TensorId,
                    groups: (u32, u32)| {
        let [a, b, c, d] = ins.map(|i| i.map_or(&dummy, buf));
        let bind = bind(&p.layout, [&params, a, b, c, d, buf(y)]);
        Step::Dispatch {
            pipeline: p.block[entry].clone(),
            bind,
            groups,
        }
    };
    let copy =
        |from: TensorId, from_offset: u64, to: TensorId, to_offset: u64, bytes: u64| Step::Copy {
            from: from.index(),
            from_offset,
            to: to.index(),
            to_offset,
            bytes,
        };
    // one step per op in the graph's order (a concat is two copies)
    for op in &g.ops {
        let y = t(op.output());
        let step = match *op {
            Op::Linear { x, layer, y: out } => {
                let ((l, wide), params, w, s, z) = &layers[layer as usize];
                let pipeline = match wide {
                    Some((bits, _)) => &p.wide[bits],
                    None if l.m > 1 => &p.gemm,
                    None => &p.gemv,
                };
                let layout = pipeline.get_bind_group_layout(0);
                let b = bind(&layout, [params, buf(x), w, s, z, buf(out)]);
                let groups = match wide {
                    Some((_, rows)) => super::spill(l.n.div_ceil(*rows)),
                    None if l.m > 1 => (l.n.div_ceil(16), l.m.div_ceil(16)),
                    None => (l.n.min(65_535), l.n.div_ceil(65_535)),
                };
                Step::Dispatch {
                    pipeline: pipeline.clone(),
                    bind: b,
                    groups,
                }
            }
            Op::LayerNorm {
                x,
                gamma,
                beta,
                eps,
                y: out,
            } => dispatch(
                "layer_norm",
                uniform(gpu, &[y.rows, y.cols], [0.0, eps as f32]),
                [Some(x), Some(gamma), Some(beta), None],
                out,
                (y.rows, 1),
            ),
            Op::RmsNorm {
                x,
                gamma,
                eps,
                y: out,
            } => dispatch(
                "rms_norm",
                uniform(gpu, &[y.rows, y.cols], [0.0, eps as f32]),
                [Some(x), Some(gamma), None, None],
                out,
                (y.rows, 1),
            ),
            Op::Act { x, f, y: out } => dispatch(
                "act",
                uniform(
                    gpu,
                    &[y.rows, y.cols, 0, 0, 0, 0, 0, 0, 0, 0, activation_code(f)],
                    [0.0, 0.0],
                ),
                [Some(x), None, None, None],
                out,
                spread(y.rows * y.cols),
            ),
            Op::Add { a, b, y: out } | Op::Mul { a, b, y: out } => {
                let mul = matches!(op, Op::Mul { .. });
                dispatch(
                    "binary",
                    uniform(
                        gpu,
                        &[
                            y.rows,
                            y.cols,
                            t(b).rows,
                            0,
                            0,
                            0,
                            0,
                            if mul { 4 } else { 0 },
                        ],
                        [0.0, 0.0],
                    ),
                    [Some(a), Some(b), None, None],
                    out,
                    spread(y.rows * y.cols),
                )
            }
            Op::Rope {
                x,
                cos,
                sin,
                heads,
                head_dim,
                y: out,
            } => dispatch(
                "rope",
                uniform(gpu, &[y.rows, y.cols, 0, heads, 0, head_dim], [0.0, 0.0]),
                [Some(x), Some(cos), Some(sin), None],
                out,
                spread(y.rows * heads * head_dim / 2),
            ),
            Op::Attention {
                q,
                k,
                v,
                heads,
                kv_heads,
                head_dim,
                causal,
                scale,
                alibi,
                y: out,
            } => {
                let kv = t(k).rows;
                if kv > MAX_KV {
                    return Err(NativeError::Shape(format!(
                        "attention over {kv} positions: the harness holds at most {MAX_KV}"
                    )));
                }
                let flags = u32::from(causal) | if alibi.is_some() { 2 } else { 0 };
                dispatch(
                    "attention",
                    uniform(
                        gpu,
                        &[y.rows, y.cols, 0, heads, kv_heads, head_dim, kv, flags],
                        [scale as f32, 0.0],
                    ),
                    [Some(q), Some(k), Some(v), alibi],
                    out,
                    (y.rows, heads),
                )
            }
            Op::MeanPool { x, y: out } => dispatch(
                "mean_pool",
                uniform(gpu, &[t(x).rows, y.cols], [0.0, 0.0]),
                [Some(x), None, None, None],
                out,
                spread(y.cols),
            ),
            Op::Row { x, row, y: out } => copy(
                x,
                u64::from(row * y.cols) * 4,
                out,
                0,
                u64::from(y.cols) * 4,
            ),
            Op::Concat { a, b, y: out } => {
                let first = t(a).len() as u64 * 4;
                steps.push(copy(a, 0, out, 0, first));
                copy(b, 0, out, first, t(b).len() as u64 * 4)
            }
        };
        steps.push(step);
    }
    Ok((steps, tensors, weight_bytes))
}

/// A layer's uniform (`linear.wgsl`'s, or `gemv.wgsl`'s where it takes the layer), its wide
/// width and rows per workgroup if any, and its weight, scale and zero-point buffers.
type LayerBuffers = (
    (quantgrid_matrix::workload::Layer, Option<(u32, u32)>),
    wgpu::Buffer,
    wgpu::Buffer,
    wgpu::Buffer,
    wgpu::Buffer,
);

/// Every tensor's buffer (given ones filled), every layer's, a dummy for unused bindings, and
/// the weight bytes, as `block.js`'s `run` makes them.
fn buffers(
    gpu: &Gpu,
    case: &BlockCase,
) -> (Vec<wgpu::Buffer>, Vec<LayerBuffers>, wgpu::Buffer, u64) {
    let g = &case.graph;
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let make = |bytes: Option<&[u8]>, size: u64| match bytes {
        Some(b) => {
            let mut padded = b.to_vec();
            // whole 16-byte vectors: gemv.wgsl binds weights and x as vec4 arrays
            padded.resize(
                size.max(b.len() as u64).max(4).div_ceil(16) as usize * 16,
                0,
            );
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("tensor"),
                    contents: &padded,
                    usage,
                })
        }
        None => gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensor"),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        }),
    };
    let dummy = make(None, 4);
    let tensors: Vec<wgpu::Buffer> = g
        .tensors
        .iter()
        .zip(&case.given)
        .map(|(t, given)| {
            let bytes = given.as_ref().map(|v| float_bytes(v));
            make(bytes.as_deref(), t.len() as u64 * 4)
        })
        .collect();
    let mut weight_bytes = 0u64;
    let layers = g
        .layers
        .iter()
        .zip(&case.quantized)
        .map(|(l, q)| {
            let (w, s, z) = (word_bytes(&q.packed), scale_bytes(q), zero_bytes(q));
            weight_bytes += (w.len() + s.len() + z.len()) as u64;
            let pk = Packing::of(q);
            // batch 1 on gemv.wgsl's wide loads where the weights fit it, as block.js does
            let wide = pk.wide.filter(|_| l.m == 1);
            let params: Vec<u8> = match wide {
                Some(layout) => layout.params(l.n, pk.groups_per_row, pk.asym, pk.bits),
                None => [
                    l.m,
                    l.k,
                    l.n,
                    pk.bits,
                    pk.group,
                    pk.words_per_row as u32,
                    u32::from(pk.asym),
                    pk.groups_per_row,
                ]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            };
            let params = gpu
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("layer"),
                    contents: &params,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            (
                (l.clone(), wide.map(|layout| (pk.bits, layout.rows))),
                params,
                make(Some(&w), w.len() as u64),
                make(Some(&s), s.len() as u64),
                make(Some(&z), z.len() as u64),
            )
        })
        .collect();
    (tensors, layers, dummy, weight_bytes)
}
