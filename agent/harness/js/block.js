// A cell's graph on WebGPU: every op of the family's block in WGSL (kernels/block.wgsl, the
// quantized matmuls in kernels/linear.wgsl with their packed weights), in the graph's order,
// one command encoder per run. The agent checks every tensor the page computed in Rust.
import { device, lost, clearLost, fastParams, fastGroups, whole, completionLatency, durations } from "./webgpu.js";
import { fetched, base64 } from "./tensors.js";
import { run as webnnRun } from "./webnn-graph.js";
import { timed } from "./timing.js";
import { answer } from "./answer.js";

// the longest key sequence kernels/block.wgsl's attention holds (its MAX_KV)
const MAX_KV = 2048;
const ACTIVATIONS = ["gelu_erf", "gelu_tanh", "relu", "silu", "quick_gelu"];

const sources = new Map();
async function source(name) {
  if (!sources.has(name)) {
    sources.set(name, fetch(new URL(`../kernels/${name}`, import.meta.url), { cache: "no-store" }).then((r) => {
      if (!r.ok) throw new Error(`fetching kernels/${name}: HTTP ${r.status}`);
      return r.text();
    }));
  }
  return sources.get(name);
}

async function module(dev, name) {
  const m = dev.createShaderModule({ code: await source(name) });
  const bad = (await m.getCompilationInfo()).messages.filter((x) => x.type === "error");
  if (bad.length) throw new Error(`${name}: ` + bad.map((x) => x.message).join("; "));
  return m;
}

// Pipelines, compiled once per cell as an application would; of gemv.wgsl only the widths
// the cell's batch-1 layers use (`wide`), as a compile is a cost the cell pays.
async function pipelines(dev, wide) {
  const S = GPUShaderStage.COMPUTE;
  const entries = [{ binding: 0, visibility: S, buffer: { type: "uniform" } }];
  for (let i = 1; i <= 4; i++) entries.push({ binding: i, visibility: S, buffer: { type: "read-only-storage" } });
  entries.push({ binding: 5, visibility: S, buffer: { type: "storage" } });
  const layout = dev.createBindGroupLayout({ entries });
  const pl = dev.createPipelineLayout({ bindGroupLayouts: [layout] });
  const block = await module(dev, "block.wgsl");
  const linear = await module(dev, "linear.wgsl");
  const gemv = wide.length ? await module(dev, "gemv.wgsl") : null;
  const out = { layout, block: {}, linear: {} };
  for (const e of ["layer_norm", "rms_norm", "act", "binary", "rope", "attention", "mean_pool"]) {
    out.block[e] = await dev.createComputePipelineAsync({ layout: pl, compute: { module: block, entryPoint: e } });
  }
  for (const e of ["gemv", "gemm"]) {
    out.linear[e] = await dev.createComputePipelineAsync({ layout: "auto", compute: { module: linear, entryPoint: e } });
  }
  for (const e of wide) {
    out.linear[e] = await dev.createComputePipelineAsync({ layout: "auto", compute: { module: gemv, entryPoint: e } });
  }
  return out;
}

// 64-thread workgroups over `n` elements, spilling into y past one dimension's limit
const spread = (n) => {
  const g = Math.max(1, Math.ceil(n / 64));
  return [Math.min(g, 65535), Math.ceil(g / 65535)];
};

// Everything one run records, as a list of steps: a dispatch or a copy.
function plan(dev, P, g, bufs, layers) {
  const uniform = (u32, f32) => {
    const data = new ArrayBuffer(48);
    new Uint32Array(data).set(u32);
    new Float32Array(data, 32, 2).set(f32);
    const b = dev.createBuffer({ size: 48, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint8Array(b.getMappedRange()).set(new Uint8Array(data));
    b.unmap();
    bufs.made.push(b);
    return b;
  };
  const dummy = bufs.dummy;
  const T = (id) => g.tensors[id];
  const steps = [];
  const dispatch = (entry, params, ins, y, groups) => {
    const [a, b, c, d] = [0, 1, 2, 3].map((i) => (ins[i] === undefined || ins[i] === null ? dummy : bufs.t[ins[i]]));
    const bind = dev.createBindGroup({
      layout: P.layout,
      entries: [params, a, b, c, d, bufs.t[y]].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    steps.push({ pipeline: P.block[entry], bind, groups });
  };
  for (const op of g.ops) {
    const y = T(op.y);
    switch (op.op) {
      case "linear": {
        const L = layers[op.layer];
        // batch 1 on gemv.wgsl's wide loads where the weights fit it (the same rule as native)
        const wide = L.m === 1 && L.wide !== null && L.wide !== undefined;
        const entry = wide ? `gemv_b${L.bits}` : L.m > 1 ? "gemm" : "gemv";
        const pipeline = P.linear[entry];
        const bind = dev.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [wide ? L.fast : L.params, bufs.t[op.x], L.w, L.s, L.z, bufs.t[op.y]].map((buffer, binding) => ({ binding, resource: { buffer } })),
        });
        const groups = wide ? fastGroups(L.n, L) : L.m > 1 ? [Math.ceil(L.n / 16), Math.ceil(L.m / 16)] : [Math.min(L.n, 65535), Math.ceil(L.n / 65535)];
        steps.push({ pipeline, bind, groups });
        break;
      }
      case "layer_norm":
      case "rms_norm":
        dispatch(op.op, uniform([y.rows, y.cols], [0, op.eps]), [op.x, op.gamma, op.beta], op.y, [y.rows, 1]);
        break;
      case "act":
        dispatch("act", uniform([y.rows, y.cols, 0, 0, 0, 0, 0, 0, 0, 0, ACTIVATIONS.indexOf(op.f)], [0, 0]), [op.x], op.y, spread(y.rows * y.cols));
        break;
      case "add":
      case "mul":
        dispatch("binary", uniform([y.rows, y.cols, T(op.b).rows, 0, 0, 0, 0, op.op === "mul" ? 4 : 0], [0, 0]), [op.a, op.b], op.y, spread(y.rows * y.cols));
        break;
      case "rope":
        dispatch("rope", uniform([y.rows, y.cols, 0, op.heads, 0, op.head_dim], [0, 0]), [op.x, op.cos, op.sin], op.y, spread(y.rows * op.heads * op.head_dim / 2));
        break;
      case "attention": {
        const kv = T(op.k).rows;
        if (kv > MAX_KV) throw new Error(`attention over ${kv} positions: the harness holds at most ${MAX_KV}`);
        const flags = (op.causal ? 1 : 0) | (op.alibi !== null ? 2 : 0);
        dispatch("attention", uniform([y.rows, y.cols, 0, op.heads, op.kv_heads, op.head_dim, kv, flags], [op.scale, 0]), [op.q, op.k, op.v, op.alibi], op.y, [y.rows, op.heads]);
        break;
      }
      case "mean_pool":
        dispatch("mean_pool", uniform([T(op.x).rows, y.cols], [0, 0]), [op.x], op.y, spread(y.cols));
        break;
      case "row":
        steps.push({ copy: [bufs.t[op.x], op.row * y.cols * 4, bufs.t[op.y], 0, y.cols * 4] });
        break;
      case "concat": {
        const a = T(op.a), b = T(op.b);
        steps.push({ copy: [bufs.t[op.a], 0, bufs.t[op.y], 0, a.rows * a.cols * 4] });
        steps.push({ copy: [bufs.t[op.b], 0, bufs.t[op.y], a.rows * a.cols * 4, b.rows * b.cols * 4] });
        break;
      }
      default:
        throw new Error(`the harness has no ${op.op} op`);
    }
  }
  return steps;
}

// One run of the whole graph in one command encoder: a pass per dispatch (WebGPU orders
// them), copies between passes; with a query set, timestamps around the run.
function encode(dev, steps, qs, slot) {
  const enc = dev.createCommandEncoder();
  steps.forEach((s, i) => {
    if (s.copy) {
      enc.copyBufferToBuffer(...s.copy);
      return;
    }
    const stamps = {};
    if (qs && i === 0) stamps.beginningOfPassWriteIndex = 2 * slot;
    if (qs && i === steps.length - 1) stamps.endOfPassWriteIndex = 2 * slot + 1;
    const pass = enc.beginComputePass(qs && Object.keys(stamps).length ? { timestampWrites: { querySet: qs, ...stamps } } : {});
    pass.setPipeline(s.pipeline);
    pass.setBindGroup(0, s.bind);
    pass.dispatchWorkgroups(...s.groups);
    pass.end();
  });
  return enc.finish();
}

async function run(a) {
  const dev = await device();
  dev.pushErrorScope("validation");
  dev.pushErrorScope("out-of-memory");
  const c0 = performance.now();
  const g = a.graph;
  const S = GPUBufferUsage.STORAGE, C = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const made = [];
  const make = (bytes, size) => {
    const b = dev.createBuffer({ size: Math.max(4, size ?? bytes.byteLength), usage: S | C, mappedAtCreation: !!bytes });
    if (bytes) {
      new Uint8Array(b.getMappedRange()).set(bytes);
      b.unmap();
    }
    made.push(b);
    return b;
  };
  const data = await Promise.all(a.data.map(fetched));
  const weights = await Promise.all(a.layers.map((L) => Promise.all([L.w, L.scales, L.zeros].map(fetched))));
  const t0 = performance.now();
  const wide = [...new Set(a.layers.filter((L) => L.m === 1 && L.wide !== null && L.wide !== undefined).map((L) => `gemv_b${L.bits}`))];
  const P = await pipelines(dev, wide);
  const bufs = { made, dummy: make(null, 4), t: g.tensors.map((t, i) => make(data[i], t.rows * t.cols * 4)) };
  let weight_bytes = 0;
  const layers = a.layers.map((L, i) => {
    const [w, s, z] = weights[i];
    weight_bytes += w.byteLength + s.byteLength + z.byteLength;
    const params = dev.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint32Array(params.getMappedRange()).set([L.m, L.k, L.n, L.bits, L.group, L.wordsPerRow, L.asym ? 1 : 0, L.groupsPerRow]);
    params.unmap();
    made.push(params);
    const fast = dev.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint32Array(fast.getMappedRange()).set(L.wide === null || L.wide === undefined ? new Uint32Array(8) : fastParams(L, L));
    fast.unmap();
    made.push(fast);
    return { ...L, params, fast, w: make(whole(w)), s: make(s), z: make(z) };
  });
  const steps = plan(dev, P, g, bufs, layers);
  const build_ms = performance.now() - t0;
  const qs = dev.features.has("timestamp-query") ? dev.createQuerySet({ type: "timestamp", count: 2 * (1 + a.repetitions) }) : null;
  const runs = async (n, s = -1) => {
    for (let r = 0; r < n; r++) dev.queue.submit([encode(dev, steps, s >= 0 && r === 0 ? qs : null, 1 + s)]);
    await dev.queue.onSubmittedWorkDone();
  };
  const f0 = performance.now();
  dev.queue.submit([encode(dev, steps, qs, 0)]);
  await dev.queue.onSubmittedWorkDone();
  const first_run_ms = performance.now() - f0;
  // how long the browser takes to say a run finished (Firefox polls), and the first run's GPU
  // time, which together size the samples
  const latency = await completionLatency(dev);
  const perRunMs = qs ? (await durations(dev, qs, [0]))[0] : null;
  const { samples_ms, runs_per_sample, latency_ms } = await timed(runs, first_run_ms, a.warmup, a.repetitions, latency, perRunMs);
  // every computed tensor, read back once (the timed runs compute the same values)
  const computed = g.tensors.map((t, i) => (t.init ? null : i)).filter((i) => i !== null);
  const back = computed.map((i) => {
    const size = Math.max(4, g.tensors[i].rows * g.tensors[i].cols * 4);
    return dev.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  });
  let resolved = null;
  const enc = dev.createCommandEncoder();
  computed.forEach((t, j) => enc.copyBufferToBuffer(bufs.t[t], 0, back[j], 0, back[j].size));
  if (qs) {
    const n = 2 * (1 + a.repetitions);
    const rb = dev.createBuffer({ size: n * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    resolved = dev.createBuffer({ size: n * 8, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    enc.resolveQuerySet(qs, 0, n, rb, 0);
    enc.copyBufferToBuffer(rb, 0, resolved, 0, n * 8);
    made.push(rb);
  }
  dev.queue.submit([enc.finish()]);
  await Promise.all(back.map((b) => b.mapAsync(GPUMapMode.READ)).concat(resolved ? [resolved.mapAsync(GPUMapMode.READ)] : []));
  const values = g.tensors.map(() => null);
  computed.forEach((t, j) => {
    values[t] = base64(new Uint8Array(back[j].getMappedRange().slice(0, g.tensors[t].rows * g.tensors[t].cols * 4)));
    back[j].unmap();
    back[j].destroy();
  });
  let gpu_samples_ms = [];
  if (resolved) {
    const t = new BigUint64Array(resolved.getMappedRange().slice(0));
    for (let s = 1; s <= a.repetitions; s++) gpu_samples_ms.push(Number(t[2 * s + 1] - t[2 * s]) / 1e6);
    resolved.unmap();
    resolved.destroy();
    // a timestamp pair the adapter did not write reads as zero or backwards
    if (gpu_samples_ms.some((v) => !(v > 0))) gpu_samples_ms = [];
  }
  const kernel_ms = performance.now() - c0;
  const errors = [];
  for (const kind of ["out-of-memory", "validation"]) {
    const e = await dev.popErrorScope();
    if (e) errors.push(`${kind}: ${e.message}`);
  }
  for (const b of made) b.destroy();
  if (qs) qs.destroy();
  if (errors.length) throw new Error(errors.join("; "));
  return {
    cell: { first_run_ms, samples_ms, runs_per_sample, latency_ms, kernel_ms, timer: "performance.now" },
    values, build_ms, weight_bytes, gpu_samples_ms,
  };
}

// For tests: run `text` as kernels/NAME from now on in this page (a planted mistake), or the
// served file again when `text` is null.
window.quantgridKernel = (name, text) => {
  if (text === null) sources.delete(name);
  else sources.set(name, Promise.resolve(text));
};

// The page's entry point for a cell's graph: one typed answer (see answer.js).
window.quantgridBlock = async (kind, a) => {
  clearLost();
  const runs = { webgpu: run, webnn: webnnRun };
  return answer(async () => {
    if (!runs[kind]) throw new Error(`the block harness runs on webgpu or webnn, not ${kind}`);
    return runs[kind](a);
  }, () => lost, (r) => r);
};
