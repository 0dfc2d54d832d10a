//! Native kernels: the harness's own WGSL (`harness/kernels/*.wgsl`, the files the page runs)
//! run through wgpu on the host's GPU over Vulkan, with the weights packed exactly as the page
//! gets them and each output checked against the same f64 references. The one module that
//! knows wgpu. Browsers cannot reach every GPU the host has (an NVIDIA card without a display
//! stack, say); wgpu can, and what it measures is the kernel without the browser around it.
//!
//! Timing measures the kernel, not the submit: a sample is `dispatches` back-to-back
//! dispatches in one submit, divided by their number; the submit's own cost (one dispatch
//! submitted and awaited, less one dispatch's share) is reported apart. Where one copy of the
//! weights would sit in the GPU's cache, the dispatches rotate through copies so the working
//! set exceeds it.

pub mod block;

use crate::layers::{Wide, float_bytes, scale_bytes, word_bytes, zero_bytes};
use quantgrid_matrix::quant::Bits;
use quantgrid_matrix::reference::{Comparison, KernelCheck, LayerCase, check_kernel, compare};
use quantgrid_matrix::result::AdapterInfo;
use std::time::Instant;
use wgpu::util::DeviceExt;

/// The major version of wgpu this agent was built with (the workspace's `wgpu = "30"`).
pub const WGPU_MAJOR: u32 = 30;

const LINEAR: &str = include_str!("../harness/kernels/linear.wgsl");
const GEMV: &str = include_str!("../harness/kernels/gemv.wgsl");

/// Threads of `gemv.wgsl`'s `stream_read`.
const STREAM_THREADS: u32 = 256;
/// One dispatch dimension holds at most this many workgroups (WebGPU's default limit).
const MAX_GROUPS_PER_DIM: u32 = 65_535;

#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// No Vulkan adapter: no loader, no driver, or none that wgpu accepts.
    #[error("no vulkan adapter: {0}")]
    NoAdapter(String),
    #[error("the adapter refused a device: {0}")]
    Device(String),
    /// The driver's own words, for a shader or pipeline it refused.
    #[error("{0}")]
    Gpu(String),
    #[error("the layer does not fit the kernel: {0}")]
    Shape(String),
}

/// A device on the host's GPU.
#[derive(Debug)]
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    linear: wgpu::ShaderModule,
    gemv: wgpu::ShaderModule,
}

impl Gpu {
    /// The high-performance Vulkan adapter (a discrete GPU before an integrated one before a
    /// CPU rasterizer such as lavapipe, which is what a machine without a GPU has).
    pub async fn open() -> Result<Gpu, NativeError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| NativeError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        // the adapter's own limits: a 16384² weight matrix is over WebGPU's default 128 MiB
        // binding and 256 MiB buffer
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("quantgrid native"),
                required_limits: adapter.limits(),
                // subgroup operations where the adapter has them (candidate kernels use them)
                required_features: adapter.features() & wgpu::Features::SUBGROUP,
                ..Default::default()
            })
            .await
            .map_err(|e| NativeError::Device(e.to_string()))?;
        let module = |name: &str, source: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let linear = module("linear.wgsl", LINEAR);
        let gemv = module("gemv.wgsl", GEMV);
        Ok(Gpu {
            device,
            queue,
            info,
            linear,
            gemv,
        })
    }

    /// The adapter as the matrix records it; a CPU adapter (lavapipe) is marked a fallback.
    pub fn adapter(&self) -> AdapterInfo {
        AdapterInfo {
            vendor: format!("0x{:04x}", self.info.vendor),
            architecture: self.info.driver.clone(),
            device: self.info.name.clone(),
            description: format!(
                "{} {} ({:?})",
                self.info.driver, self.info.driver_info, self.info.device_type
            ),
            is_fallback: self.info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    /// The adapter's driver and its own version text (e.g. `NVIDIA`, `580.159.03`).
    pub fn driver(&self) -> (String, String) {
        (self.info.driver.clone(), self.info.driver_info.clone())
    }

    /// Whether kernels may use subgroup operations (`enable subgroups;`).
    pub fn has_subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
    }

    /// Compiles a candidate kernel module: WGSL with `gemv.wgsl`'s bindings, for the bench to
    /// time against the landed kernels before one replaces them.
    pub fn candidate_module(&self, source: &str) -> Result<wgpu::ShaderModule, NativeError> {
        self.checked(|| {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("candidate"),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        })
    }

    /// The largest storage buffer a kernel can bind on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        self.device.limits().max_storage_buffer_binding_size
    }

    fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        // vec4 bindings want whole 16-byte vectors
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    }

    fn output(&self, floats: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("y"),
            size: (floats * 4).div_ceil(16).max(1) * 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    fn pipeline(&self, module: &wgpu::ShaderModule, entry: &str) -> wgpu::ComputePipeline {
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    /// Runs `f` and turns a validation or out-of-memory error it caused into the driver's words.
    fn checked<T>(&self, f: impl FnOnce() -> T) -> Result<T, NativeError> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let out = f();
        // scopes pop innermost first
        let oom = pollster_ready(memory.pop());
        let invalid = pollster_ready(validation.pop());
        match invalid.or(oom) {
            Some(e) => Err(NativeError::Gpu(e.to_string())),
            None => Ok(out),
        }
    }

    fn wait(&self) -> Result<(), NativeError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| NativeError::Gpu(e.to_string()))
    }

    fn read(&self, buffer: &wgpu::Buffer, floats: usize) -> Result<Vec<f32>, NativeError> {
        let bytes = (floats * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size: bytes.div_ceil(16).max(1) * 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, staging.size());
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| NativeError::Gpu("the read-back never mapped".into()))?
            .map_err(|e| NativeError::Gpu(e.to_string()))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| NativeError::Gpu(e.to_string()))?;
        let out = data[..floats * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        drop(data);
        staging.unmap();
        Ok(out)
    }
}

/// wgpu's native futures (error scopes) are ready once the device has been polled: poll it
/// and take the value without an executor.
fn pollster_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// How a run is timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub warmup: u32,
    pub samples: u32,
    /// Dispatches per submit in a sample.
    pub dispatches: u32,
    /// Rotate through enough copies of the weights that the dispatches of a sample read at
    /// least this many bytes before one repeats (twice the GPU's last-level cache).
    pub working_set_bytes: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            warmup: 2,
            samples: 10,
            dispatches: 100,
            // twice an H200's 60 MB L2, with room
            working_set_bytes: 128 << 20,
        }
    }
}

/// Which kernel ran a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum KernelName {
    /// `gemv.wgsl`'s wide-load low-bit GEMV (`gemv_b2`, `gemv_b3`, `gemv_b4`, `gemv_b8`).
    GemvWide,
    /// `gemv.wgsl`'s vec4 f32 GEMV.
    GemvF32,
    /// `linear.wgsl`'s general GEMV (every width and layout).
    Gemv,
    /// `linear.wgsl`'s tiled GEMM (m > 1).
    Gemm,
}

/// What a native run measured and how its output compares.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeRun {
    pub kernel: KernelName,
    /// Microseconds per dispatch, one per sample.
    pub samples_us: Vec<f64>,
    /// One dispatch submitted and awaited, less a dispatch's share: what a submit costs.
    pub submit_overhead_us: f64,
    /// Weight, scale and zero-point bytes one dispatch reads.
    pub weight_bytes: u64,
    /// Copies of the weights the dispatches rotate through.
    pub copies: u32,
    pub check: KernelCheck,
    pub accuracy: Comparison,
}

impl NativeRun {
    pub fn median_us(&self) -> f64 {
        quantgrid_matrix::compare::median(&self.samples_us)
    }
}

/// The weights of a layer as the kernels take them.
enum Weights<'a> {
    Packed(&'a quantgrid_matrix::quant::Quantized),
    /// The unquantized baseline: fp32 weights, `n × k`.
    F32(&'a [f32]),
}

/// Runs `case`'s quantized layer (`m × k` by `n × k`) natively and checks it against the
/// dequantized reference.
pub fn run_layer(
    gpu: &Gpu,
    m: u32,
    case: &LayerCase,
    timing: Timing,
) -> Result<NativeRun, NativeError> {
    let weights = Weights::Packed(&case.quantized);
    run(gpu, m, case, weights, timing, Route::Best)
}

/// Which kernels may run a layer.
#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    /// The wide-load GEMV where the layer fits it, else `linear.wgsl`'s.
    Best,
    /// `linear.wgsl`'s general kernels only.
    General,
    /// A candidate in place of the wide-load GEMV.
    Candidate(Candidate<'a>),
}

/// A wide kernel to try in place of `gemv.wgsl`'s: an entry point of a candidate module with
/// the same bindings and uniform (its `lanes` as the landed kernels get it), computing `rows`
/// outputs per workgroup.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub module: &'a wgpu::ShaderModule,
    pub entry: &'a str,
    pub rows: u32,
}

/// [`run_layer`] (batch 1, a layer the wide kernels take) through a candidate kernel.
pub fn run_candidate(
    gpu: &Gpu,
    case: &LayerCase,
    candidate: Candidate<'_>,
    timing: Timing,
) -> Result<NativeRun, NativeError> {
    let weights = Weights::Packed(&case.quantized);
    run(gpu, 1, case, weights, timing, Route::Candidate(candidate))
}

/// [`run_layer`] through `linear.wgsl`'s general kernels only, whatever the shape: what the
/// wide-load GEMV is measured against.
pub fn run_layer_general(
    gpu: &Gpu,
    m: u32,
    case: &LayerCase,
    timing: Timing,
) -> Result<NativeRun, NativeError> {
    let weights = Weights::Packed(&case.quantized);
    run(gpu, m, case, weights, timing, Route::General)
}

/// The same layer with its fp32 weights, checked against the fp32 reference: the baseline a
/// low-bit kernel is measured against.
pub fn run_f32_layer(
    gpu: &Gpu,
    m: u32,
    case: &LayerCase,
    weights: &[f32],
    timing: Timing,
) -> Result<NativeRun, NativeError> {
    run(gpu, m, case, Weights::F32(weights), timing, Route::Best)
}

/// [`run_f32_layer`] through `linear.wgsl`'s general kernels only.
pub fn run_f32_layer_general(
    gpu: &Gpu,
    m: u32,
    case: &LayerCase,
    weights: &[f32],
    timing: Timing,
) -> Result<NativeRun, NativeError> {
    run(gpu, m, case, Weights::F32(weights), timing, Route::General)
}

fn run(
    gpu: &Gpu,
    m: u32,
    case: &LayerCase,
    weights: Weights<'_>,
    timing: Timing,
    route: Route<'_>,
) -> Result<NativeRun, NativeError> {
    let wide = !matches!(route, Route::General);
    let q = &case.quantized;
    let (k, n) = (q.k, q.n);
    let (want, magnitude) = match weights {
        Weights::Packed(_) => (&case.dequantized_output, &case.dequantized_magnitude),
        Weights::F32(_) => (&case.fp32_output, &case.fp32_magnitude),
    };
    if case.input.len() != (m * k) as usize || want.len() != (m * n) as usize {
        return Err(NativeError::Shape(format!(
            "m {m}, k {k}, n {n} against an input of {} and an output of {}",
            case.input.len(),
            want.len()
        )));
    }
    // the kernel, its uniform, its rows per workgroup and its weight buffers
    let (kernel, params, rows, w_bytes, s_bytes, z_bytes) = match weights {
        Weights::F32(w) if wide && m == 1 && k.is_multiple_of(4) => {
            let layout = Wide::over(0, k / 4);
            (
                KernelName::GemvF32,
                layout.params(n, 0, false, 32),
                layout.rows,
                float_bytes(w),
                vec![0u8; 4],
                vec![0u8; 4],
            )
        }
        Weights::F32(w) => {
            let params = linear_params(m, k, n, 32, 1, k, false, 1);
            let kernel = if m == 1 {
                KernelName::Gemv
            } else {
                KernelName::Gemm
            };
            (
                kernel,
                params,
                1,
                float_bytes(w),
                vec![0u8; 4],
                vec![0u8; 4],
            )
        }
        Weights::Packed(q) => {
            let asym = q.params.scheme == quantgrid_matrix::quant::Scheme::Asymmetric
                && !q.zeros.is_empty();
            let group = q.params.group_size.max(1);
            let groups_per_row = q.k.div_ceil(group);
            match crate::layers::Packing::of(q)
                .wide
                .filter(|_| wide && m == 1)
            {
                Some(layout) => (
                    KernelName::GemvWide,
                    layout.params(n, groups_per_row, asym, q.params.bits.get()),
                    layout.rows,
                    word_bytes(&q.packed),
                    scale_bytes(q),
                    zero_bytes(q),
                ),
                None => (
                    if m == 1 {
                        KernelName::Gemv
                    } else {
                        KernelName::Gemm
                    },
                    linear_params(
                        m,
                        k,
                        n,
                        q.params.bits.get(),
                        group,
                        q.words_per_row() as u32,
                        asym,
                        groups_per_row,
                    ),
                    1,
                    word_bytes(&q.packed),
                    scale_bytes(q),
                    zero_bytes(q),
                ),
            }
        }
    };
    if matches!(route, Route::Candidate(_)) && kernel != KernelName::GemvWide {
        return Err(NativeError::Shape(format!(
            "a candidate replaces the wide kernel, and {kernel} runs this layer"
        )));
    }
    let (module, entry) = match kernel {
        KernelName::GemvWide => (
            &gpu.gemv,
            match q.params.bits {
                Bits::B2 => "gemv_b2",
                Bits::B3 => "gemv_b3",
                Bits::B4 => "gemv_b4",
                _ => "gemv_b8",
            },
        ),
        KernelName::GemvF32 => (&gpu.gemv, "gemv_f32"),
        KernelName::Gemv => (&gpu.linear, "gemv"),
        KernelName::Gemm => (&gpu.linear, "gemm"),
    };
    let (module, entry, rows) = match route {
        Route::Candidate(c) => (c.module, c.entry, c.rows),
        _ => (module, entry, rows),
    };
    let weight_bytes = (w_bytes.len() + s_bytes.len() + z_bytes.len()) as u64;
    let copies = copies_for(weight_bytes, timing.working_set_bytes);
    let groups = match kernel {
        KernelName::GemvWide | KernelName::GemvF32 => n.div_ceil(rows),
        KernelName::Gemv => n,
        KernelName::Gemm => 0,
    };
    let dims = match kernel {
        KernelName::Gemm => (n.div_ceil(16), m.div_ceil(16)),
        _ => spill(groups),
    };
    let (pipeline, groups_of) = gpu.checked(|| {
        let pipeline = gpu.pipeline(module, entry);
        let layout = pipeline.get_bind_group_layout(0);
        let uniform = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let x = gpu.storage("x", &float_bytes(&case.input));
        let y = gpu.output(u64::from(m * n));
        let groups_of: Vec<wgpu::BindGroup> = (0..copies)
            .map(|_| {
                let (w, s, z) = (
                    gpu.storage("w", &w_bytes),
                    gpu.storage("scales", &s_bytes),
                    gpu.storage("zeros", &z_bytes),
                );
                let mut entries = vec![
                    entry_of(0, &uniform),
                    entry_of(1, &x),
                    entry_of(2, &w),
                    entry_of(5, &y),
                ];
                // the f32 kernel has no scales or zero points in its layout
                if kernel != KernelName::GemvF32 {
                    entries.extend([entry_of(3, &s), entry_of(4, &z)]);
                }
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("layer"),
                    layout: &layout,
                    entries: &entries,
                })
            })
            .collect();
        (pipeline, (groups_of, y))
    })?;
    let (groups_of, y) = groups_of;
    let dispatch = |count: u32| -> Result<f64, NativeError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            for i in 0..count {
                pass.set_bind_group(0, &groups_of[i as usize % groups_of.len()], &[]);
                pass.dispatch_workgroups(dims.0, dims.1, 1);
            }
        }
        let t = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e6)
    };
    for _ in 0..timing.warmup {
        dispatch(timing.dispatches)?;
    }
    let mut samples_us = Vec::with_capacity(timing.samples as usize);
    for _ in 0..timing.samples.max(1) {
        samples_us.push(dispatch(timing.dispatches)? / f64::from(timing.dispatches.max(1)));
    }
    let per = quantgrid_matrix::compare::median(&samples_us);
    let singles: Vec<f64> = (0..timing.samples.max(1))
        .map(|_| dispatch(1))
        .collect::<Result<_, _>>()?;
    let submit_overhead_us = (quantgrid_matrix::compare::median(&singles) - per).max(0.0);
    let got = gpu.read(&y, (m * n) as usize)?;
    let check = check_kernel(&got, want, magnitude, k)
        .ok_or_else(|| NativeError::Shape(format!("{} outputs for {}", got.len(), want.len())))?;
    let accuracy =
        compare(&got, &case.fp32_output).ok_or_else(|| NativeError::Shape("output size".into()))?;
    Ok(NativeRun {
        kernel,
        samples_us,
        submit_overhead_us,
        weight_bytes,
        copies,
        check,
        accuracy,
    })
}

/// What the adapter streams, in bytes per second: `bytes` of a buffer read `dispatches` times
/// per sample by `stream_read`, the median of `samples`.
pub fn stream_read(gpu: &Gpu, bytes: u64, timing: Timing) -> Result<f64, NativeError> {
    let quads = (bytes / 16) as u32;
    let groups = (quads / STREAM_THREADS / 16).clamp(1, MAX_GROUPS_PER_DIM);
    let threads = u64::from(groups * STREAM_THREADS);
    let (pipeline, bind) = gpu.checked(|| {
        let pipeline = gpu.pipeline(&gpu.gemv, "stream_read");
        let layout = pipeline.get_bind_group_layout(0);
        let uniform = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &Wide::over(0, quads).params(0, 0, false, 32),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let src = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("stream"),
            size: u64::from(quads) * 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let y = gpu.output(threads);
        let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("stream"),
            layout: &layout,
            entries: &[entry_of(0, &uniform), entry_of(2, &src), entry_of(5, &y)],
        });
        (pipeline, bind)
    })?;
    let run = |count: u32| -> Result<f64, NativeError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            for _ in 0..count {
                pass.dispatch_workgroups(groups, 1, 1);
            }
        }
        let t = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    for _ in 0..timing.warmup {
        run(timing.dispatches)?;
    }
    let secs: Vec<f64> = (0..timing.samples.max(1))
        .map(|_| run(timing.dispatches).map(|s| s / f64::from(timing.dispatches.max(1))))
        .collect::<Result<_, _>>()?;
    Ok(u64::from(quads) as f64 * 16.0 / quantgrid_matrix::compare::median(&secs))
}

fn entry_of(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// More workgroups than one dimension holds spill into y, as the kernels expect.
fn spill(groups: u32) -> (u32, u32) {
    if groups <= MAX_GROUPS_PER_DIM {
        (groups.max(1), 1)
    } else {
        (MAX_GROUPS_PER_DIM, groups.div_ceil(MAX_GROUPS_PER_DIM))
    }
}

/// Copies of `bytes` whose total reaches `working_set` (at least one, at most 64).
fn copies_for(bytes: u64, working_set: u64) -> u32 {
    working_set.div_ceil(bytes.max(1)).clamp(1, 64) as u32
}

/// `linear.wgsl`'s `Params`.
#[allow(clippy::too_many_arguments)]
fn linear_params(
    m: u32,
    k: u32,
    n: u32,
    bits: u32,
    group: u32,
    words_per_row: u32,
    asym: bool,
    groups_per_row: u32,
) -> Vec<u8> {
    [
        m,
        k,
        n,
        bits,
        group,
        words_per_row,
        u32::from(asym),
        groups_per_row,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_set_rotates_small_weights_and_not_large_ones() {
        assert_eq!(copies_for(8 << 20, 128 << 20), 16);
        assert_eq!(copies_for(151 << 20, 128 << 20), 1);
        assert_eq!(copies_for(1, 128 << 20), 64);
        assert_eq!(spill(4096), (4096, 1));
        assert_eq!(spill(70_000), (65_535, 2));
    }
}
