// The WebGPU side of a layer: the device, the kernels of kernels/linear.wgsl, both clocks.
import { timed } from "./timing.js";
import { tensors } from "./tensors.js";
import { Unavailable } from "./answer.js";

// the kernels, fetched once from the harness server, next to this module
let wgslPromise = null;
const wgsl = () => (wgslPromise ||= fetch(new URL("../kernels/linear.wgsl", import.meta.url), { cache: "no-store" })
  .then((r) => {
    if (!r.ok) throw new Error(`fetching kernels/linear.wgsl: HTTP ${r.status}`);
    return r.text();
  }));

// How long the browser takes to report that nothing is running: microseconds where it is
// notified, up to its polling period where it polls (Firefox: ~100 ms). Measured once.
let latencyMs = null;
async function completionLatency(dev) {
  if (latencyMs === null) {
    // the first probe can include the queue's cold start; a poller makes every later probe
    // wait about one period, since each starts right after the previous poll
    latencyMs = Infinity;
    for (let i = 0; i < 4; i++) {
      const s = performance.now();
      await dev.queue.onSubmittedWorkDone();
      if (i > 0) latencyMs = Math.min(latencyMs, performance.now() - s);
    }
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


// One layer: returns the output and the timings, or throws the browser's own error.
export async function gemv(a, prefetched) {
  const dev = await device();
  // the transfer is the agent's overhead, not part of the build
  const [xdata, wdata, sdata, zdata] = await (prefetched || tensors(a));
  const errors = [];
  dev.pushErrorScope("validation");
  dev.pushErrorScope("out-of-memory");
  const t0 = performance.now();
  // a cell compiles each kernel once, as an application would; its first layer pays for it
  if (a.cellStart) pipelines = new Map();
  const tiled = a.m > 1;
  const entryPoint = tiled ? "gemm" : "gemv";
  if (!pipelines.has(entryPoint)) {
    const module = dev.createShaderModule({ code: await wgsl() });
    const info = await module.getCompilationInfo();
    const bad = info.messages.filter((m) => m.type === "error");
    if (bad.length) throw new Error("shader compilation: " + bad.map((m) => m.message).join("; "));
    pipelines.set(entryPoint, await dev.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint } }));
  }
  const pipeline = pipelines.get(entryPoint);
  const make = (data, usage) => {
    const buf = dev.createBuffer({ size: data.byteLength, usage, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(data);
    buf.unmap();
    return buf;
  };
  const S = GPUBufferUsage.STORAGE;
  // the kernel's uniform: an unquantized layer is F32_WEIGHTS bits in kernels/linear.wgsl
  const L = a.layout;
  const params = L.kind === "f32"
    ? new Uint32Array([a.m, a.k, a.n, 32, 1, a.k, 0, 0])
    : new Uint32Array([a.m, a.k, a.n, L.bits, L.group, L.wordsPerRow, L.asym ? 1 : 0, L.groupsPerRow]);
  const pbuf = make(new Uint8Array(params.buffer), GPUBufferUsage.UNIFORM);
  const xbuf = make(xdata, S);
  const wbuf = make(wdata, S), sbuf = make(sdata, S), zbuf = make(zdata, S);
  const outBytes = a.m * a.n * 4;
  const ybuf = dev.createBuffer({ size: outBytes, usage: S | GPUBufferUsage.COPY_SRC });
  const rbuf = dev.createBuffer({ size: outBytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const bind = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [pbuf, xbuf, wbuf, sbuf, zbuf, ybuf].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const groups = tiled
    ? [Math.ceil(a.n / 16), Math.ceil(a.m / 16)]
    : [Math.min(a.n, 65535), Math.ceil(a.n / 65535)];
  // one dispatch; with `ts`, the pass writes its GPU start and end into query slots 2i, 2i + 1
  const encode = (ts, i) => {
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass(ts ? {
      timestampWrites: { querySet: ts, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    } : {});
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(...groups);
    pass.end();
    return enc;
  };
  // Both clocks, on every adapter with timestamp-query: the page's clock around awaited runs
  // (the samples every browser has, and the only ones compared), and GPU timestamps around
  // the first few runs of each sample (what the GPU itself took). Slot 0 stamps the first run.
  const stamped = dev.features.has("timestamp-query");
  const perSample = Math.max(1, Math.min(8, Math.floor((2048 - 1) / Math.max(1, a.repetitions))));
  const qs = stamped ? dev.createQuerySet({ type: "timestamp", count: 2 * (1 + a.repetitions * perSample) }) : null;
  let stampsPerSample = 0;
  const runs = async (n, sample = -1) => {
    if (sample >= 0) stampsPerSample = Math.min(n, perSample);
    for (let i = 0; i < n; i++) {
      const slot = sample >= 0 && i < perSample ? 1 + sample * perSample + i : -1;
      dev.queue.submit([encode(qs && slot >= 0 ? qs : null, slot).finish()]);
    }
    await dev.queue.onSubmittedWorkDone();
  };
  // reads the query set (and the output, on the same submission) once, at the end
  const readStamps = async () => {
    const count = 1 + a.repetitions * perSample;
    const resolved = dev.createBuffer({ size: 16 * count, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const readback = dev.createBuffer({ size: 16 * count, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    const enc = dev.createCommandEncoder();
    enc.resolveQuerySet(qs, 0, 2 * count, resolved, 0);
    enc.copyBufferToBuffer(resolved, 0, readback, 0, 16 * count);
    enc.copyBufferToBuffer(ybuf, 0, rbuf, 0, outBytes);
    dev.queue.submit([enc.finish()]);
    await Promise.all([readback.mapAsync(GPUMapMode.READ), rbuf.mapAsync(GPUMapMode.READ)]);
    const t = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    for (const b of [resolved, readback]) b.destroy();
    qs.destroy();
    return (slot) => Number(t[2 * slot + 1] - t[2 * slot]) / 1e6;
  };
  const build_ms = performance.now() - t0;
  const w0 = performance.now();
  const latency = await completionLatency(dev);
  const f0 = performance.now();
  dev.queue.submit([encode(qs, 0).finish()]);
  await dev.queue.onSubmittedWorkDone();
  const first_run_ms = performance.now() - f0;
  // a poller's first run says little on the page clock; its GPU time sizes the samples
  let perRunMs = null;
  if (qs && latency > 20) {
    const probe = dev.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const back = dev.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    const enc = dev.createCommandEncoder();
    enc.resolveQuerySet(qs, 0, 2, probe, 0);
    enc.copyBufferToBuffer(probe, 0, back, 0, 16);
    dev.queue.submit([enc.finish()]);
    await back.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(back.getMappedRange().slice(0));
    perRunMs = Number(t[1] - t[0]) / 1e6;
    back.unmap();
    probe.destroy();
    back.destroy();
  }
  const { samples_ms, runs_per_sample } =
    await timed(runs, first_run_ms, a.warmup, a.repetitions, latency, perRunMs);
  const timer = "performance.now";
  let gpu_samples_ms = [];
  if (qs) {
    const run = await readStamps();
    for (let i = 0; i < a.repetitions; i++) {
      let sum = 0;
      for (let j = 0; j < stampsPerSample; j++) sum += run(1 + i * perSample + j);
      gpu_samples_ms.push(sum / stampsPerSample);
    }
  }
  const measured_ms = performance.now() - w0;
  if (rbuf.mapState !== "mapped") {
    const enc = dev.createCommandEncoder();
    enc.copyBufferToBuffer(ybuf, 0, rbuf, 0, outBytes);
    dev.queue.submit([enc.finish()]);
    await rbuf.mapAsync(GPUMapMode.READ);
  }
  const y = Array.from(new Float32Array(rbuf.getMappedRange().slice(0)));
  rbuf.unmap();
  for (const kind of ["out-of-memory", "validation"]) {
    const e = await dev.popErrorScope();
    if (e) errors.push(`${kind}: ${e.message}`);
  }
  if (errors.length) throw new Error(errors.join("; "));
  for (const b of [pbuf, xbuf, wbuf, sbuf, zbuf, ybuf, rbuf]) b.destroy();
  return {
    y, build_ms, first_run_ms, samples_ms, runs_per_sample, timer, gpu_samples_ms,
    kernel_ms: build_ms + measured_ms,
    weight_bytes: wbuf.size + sbuf.size + zbuf.size,
  };
}
