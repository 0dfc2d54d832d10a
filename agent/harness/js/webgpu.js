// The WebGPU side of a layer: the device, the kernels of kernels/linear.wgsl (and, at batch 1
// where the weights fit it, kernels/gemv.wgsl's wide-load GEMV), both clocks.
import { timed, waitLatency } from "./timing.js";
import { Unavailable } from "./answer.js";

// the kernels, fetched once from the harness server, next to this module
const sources = new Map();
const wgsl = (name = "linear.wgsl") => {
  if (!sources.has(name)) {
    sources.set(name, fetch(new URL(`../kernels/${name}`, import.meta.url), { cache: "no-store" }).then((r) => {
      if (!r.ok) throw new Error(`fetching kernels/${name}: HTTP ${r.status}`);
      return r.text();
    }));
  }
  return sources.get(name);
};

// kernels/gemv.wgsl's uniform (`Fast`) for packed weights `L` of a batch-1 layer `a`, laid
// out as the agent's `layers::Wide` says (units per row, threads per row, rows per workgroup)
export const fastParams = (a, L) =>
  new Uint32Array([a.n, L.wide.units, L.groupsPerRow, L.wide.shift, L.asym ? 1 : 0, L.bits, L.wide.lanes, 0]);

// weights for a vec4 binding: whole 16-byte vectors (3-bit rows end mid-vector)
export const whole = (bytes) => {
  if (bytes.byteLength % 16 === 0) return bytes;
  const padded = new Uint8Array(Math.ceil(bytes.byteLength / 16) * 16);
  padded.set(bytes);
  return padded;
};

// workgroups of `L.wide.rows` outputs over n, spilling into y
export const fastGroups = (n, L) => {
  const g = Math.max(1, Math.ceil(n / L.wide.rows));
  return [Math.min(g, 65535), Math.ceil(g / 65535)];
};

// How long the browser takes to say that submitted work finished: microseconds where it is
// notified, up to its polling period where it polls (Firefox: ~100 ms). Measured once, with
// real work (a buffer cleared): Firefox answered an empty submission at once, since the
// submit itself polls, while real work waits for the next period. The longest of the probes
// after the first (which can include the queue's cold start) counts: a poller's waits depend
// on where in its period the work ends.
let latencyMs = null;
export async function completionLatency(dev) {
  if (latencyMs === null) {
    const buf = dev.createBuffer({ size: 1 << 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const cleared = async () => {
      const enc = dev.createCommandEncoder();
      enc.clearBuffer(buf);
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
    };
    await cleared();
    latencyMs = await waitLatency(cleared);
    buf.destroy();
  }
  return latencyMs;
}

let devicePromise = null;
export async function device() {
  if (!devicePromise) {
    devicePromise = (async () => {
      if (!("gpu" in navigator)) throw new Unavailable("WebGPU not available: navigator.gpu is undefined");
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) throw new Unavailable("WebGPU not available: requestAdapter() returned null");
      // GPU timestamps time kernels where the browser only notices completion by polling
      // not shader-f16: reading fp16 through bitcast<vec2<f16>> gave wrong values on Firefox
      // ESR 153 + lavapipe (the 2-bit kernel off by 1.6), so fp16 goes through unpack2x16float
      const wanted = ["timestamp-query"].filter((f) => adapter.features.has(f));
      const dev = await adapter.requestDevice({
        requiredFeatures: wanted,
        requiredLimits: {
          maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
          maxBufferSize: adapter.limits.maxBufferSize,
        },
      });
      // a lost device fails the layer that was running with the browser's reason, and the
      // next layer asks for a new device instead of failing on the dead one
      dev.lost.then((info) => {
        lost = `device lost (${info.reason}): ${info.message}`;
        devicePromise = null;
        pipelines = new Map();
        latencyMs = null;
      });
      return dev;
    })();
  }
  return devicePromise;
}

// why the device was lost, for the layer that was running
export let lost = null;
export const clearLost = () => { lost = null; };
let pipelines = new Map();


// One layer on the device: its pipeline (compiled once per cell, as an application would;
// the cell's first layer pays for it), buffers and bind group. `encode(qs, slot)` records one
// run; with a query set its pass writes GPU timestamps into slots 2·slot and 2·slot + 1.
async function prepare(dev, a, data) {
  const [xdata, wdata, sdata, zdata] = data;
  const t0 = performance.now();
  const tiled = a.m > 1;
  const L = a.layout;
  const wide = !tiled && L.kind === "packed" && L.wide !== null && L.wide !== undefined;
  const entryPoint = wide ? `gemv_b${L.bits}` : tiled ? "gemm" : "gemv";
  if (!pipelines.has(entryPoint)) {
    const module = dev.createShaderModule({ code: await wgsl(wide ? "gemv.wgsl" : "linear.wgsl") });
    const info = await module.getCompilationInfo();
    const bad = info.messages.filter((m) => m.type === "error");
    if (bad.length) throw new Error("shader compilation: " + bad.map((m) => m.message).join("; "));
    pipelines.set(entryPoint, await dev.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint } }));
  }
  const pipeline = pipelines.get(entryPoint);
  const make = (bytes, usage) => {
    const buf = dev.createBuffer({ size: bytes.byteLength, usage, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(bytes);
    buf.unmap();
    return buf;
  };
  const S = GPUBufferUsage.STORAGE;
  // the kernel's uniform: an unquantized layer is F32_WEIGHTS bits in kernels/linear.wgsl
  const params = wide
    ? fastParams(a, L)
    : L.kind === "f32"
      ? new Uint32Array([a.m, a.k, a.n, 32, 1, a.k, 0, 0])
      : new Uint32Array([a.m, a.k, a.n, L.bits, L.group, L.wordsPerRow, L.asym ? 1 : 0, L.groupsPerRow]);
  const pbuf = make(new Uint8Array(params.buffer), GPUBufferUsage.UNIFORM);
  const xbuf = make(xdata, S);
  const wbuf = make(wide ? whole(wdata) : wdata, S), sbuf = make(sdata, S), zbuf = make(zdata, S);
  const outBytes = a.m * a.n * 4;
  const ybuf = dev.createBuffer({ size: outBytes, usage: S | GPUBufferUsage.COPY_SRC });
  const rbuf = dev.createBuffer({ size: outBytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const bind = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [pbuf, xbuf, wbuf, sbuf, zbuf, ybuf].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const groups = wide
    ? fastGroups(a.n, L)
    : tiled
      ? [Math.ceil(a.n / 16), Math.ceil(a.m / 16)]
      : [Math.min(a.n, 65535), Math.ceil(a.n / 65535)];
  const encode = (qs, slot) => {
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass(qs ? {
      timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * slot, endOfPassWriteIndex: 2 * slot + 1 },
    } : {});
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(...groups);
    pass.end();
    return enc;
  };
  return {
    encode, ybuf, rbuf, outBytes,
    buffers: [pbuf, xbuf, wbuf, sbuf, zbuf, ybuf, rbuf],
    weight_bytes: wbuf.size + sbuf.size + zbuf.size,
    build_ms: performance.now() - t0,
  };
}

// Resolves timestamp pairs `slots` of `qs` and returns each one's duration in ms.
export async function durations(dev, qs, slots) {
  const bytes = 256 * slots.length;
  const resolved = dev.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const back = dev.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const enc = dev.createCommandEncoder();
  // resolve offsets must be multiples of 256
  slots.forEach((slot, i) => enc.resolveQuerySet(qs, 2 * slot, 2, resolved, 256 * i));
  enc.copyBufferToBuffer(resolved, 0, back, 0, bytes);
  dev.queue.submit([enc.finish()]);
  await back.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(back.getMappedRange().slice(0));
  back.unmap();
  resolved.destroy();
  back.destroy();
  return slots.map((_, i) => Number(t[32 * i + 1] - t[32 * i]) / 1e6);
}

// A cell's layers on WebGPU: built one after another, then timed together. A sample is
// `runs_per_sample` repetitions of every layer, submitted back to back and awaited once, on
// the page's clock, so a browser that polls for completion (Firefox, ~100 ms) pays its polls
// once per sample of the cell rather than once per layer. Where the adapter has
// timestamp-query, GPU timestamps around each layer's first runs of every sample are stored
// beside it, per layer.
export async function cell(list, all) {
  const dev = await device();
  dev.pushErrorScope("validation");
  dev.pushErrorScope("out-of-memory");
  const c0 = performance.now();
  pipelines = new Map();
  const layers = [];
  for (const [i, a] of list.entries()) layers.push(await prepare(dev, a, await all[i]));
  const { warmup, repetitions } = list[0];
  const latency = await completionLatency(dev);
  // per layer: a slot for its first run, then `perSample` runs of every sample (a query set
  // holds at most 4096 timestamps)
  const nl = layers.length;
  const perSample = Math.min(8, Math.floor((2048 / nl - 1) / Math.max(1, repetitions)));
  const qs = dev.features.has("timestamp-query") && perSample >= 1
    ? dev.createQuerySet({ type: "timestamp", count: 2 * nl * (1 + repetitions * perSample) })
    : null;
  const perLayer = 1 + repetitions * perSample;
  const slot = (l, sample, r) => l * perLayer + 1 + sample * perSample + r;
  let stamps = 0;
  const submit = (n, sample) => {
    for (let r = 0; r < n; r++) {
      for (const [l, L] of layers.entries()) {
        const stamp = qs && sample >= 0 && r < perSample;
        dev.queue.submit([L.encode(stamp ? qs : null, stamp ? slot(l, sample, r) : 0).finish()]);
      }
    }
  };
  const runs = async (n, sample = -1) => {
    if (sample >= 0) stamps = Math.min(n, perSample);
    submit(n, sample);
    await dev.queue.onSubmittedWorkDone();
  };
  const f0 = performance.now();
  for (const [l, L] of layers.entries()) dev.queue.submit([L.encode(qs, l * perLayer).finish()]);
  await dev.queue.onSubmittedWorkDone();
  const first_run_ms = performance.now() - f0;
  // the first run's GPU time: what a run waited beyond it is completion latency too, and
  // where that is large (a poller) it sizes the samples
  let perRunMs = null;
  if (qs) {
    const firsts = await durations(dev, qs, layers.map((_, l) => l * perLayer));
    perRunMs = firsts.reduce((x, y) => x + y, 0);
  }
  const { samples_ms, runs_per_sample, latency_ms } =
    await timed(runs, first_run_ms, warmup, repetitions, latency, perRunMs);
  // the outputs, and the GPU timestamps of every layer's stamped runs
  const stamped = [];
  for (let l = 0; l < nl; l++) for (let s = 0; s < repetitions; s++) for (let r = 0; r < stamps; r++) stamped.push(slot(l, s, r));
  const [gpu] = await Promise.all([
    qs && stamps > 0 ? durations(dev, qs, stamped) : Promise.resolve([]),
    (async () => {
      const enc = dev.createCommandEncoder();
      for (const L of layers) enc.copyBufferToBuffer(L.ybuf, 0, L.rbuf, 0, L.outBytes);
      dev.queue.submit([enc.finish()]);
      await Promise.all(layers.map((L) => L.rbuf.mapAsync(GPUMapMode.READ)));
    })(),
  ]);
  const kernel_ms = performance.now() - c0;
  const answer = layers.map((L, l) => {
    const y = Array.from(new Float32Array(L.rbuf.getMappedRange().slice(0)));
    L.rbuf.unmap();
    const gpu_samples_ms = [];
    if (gpu.length) {
      for (let s = 0; s < repetitions; s++) {
        let sum = 0;
        for (let r = 0; r < stamps; r++) sum += gpu[(l * repetitions + s) * stamps + r];
        gpu_samples_ms.push(sum / stamps);
      }
    }
    return { y, build_ms: L.build_ms, gpu_samples_ms, weight_bytes: L.weight_bytes };
  });
  const errors = [];
  for (const kind of ["out-of-memory", "validation"]) {
    const e = await dev.popErrorScope();
    if (e) errors.push(`${kind}: ${e.message}`);
  }
  for (const L of layers) for (const b of L.buffers) b.destroy();
  if (qs) qs.destroy();
  if (errors.length) throw new Error(errors.join("; "));
  return { cell: { first_run_ms, samples_ms, runs_per_sample, latency_ms, kernel_ms, timer: "performance.now" }, layers: answer };
}
