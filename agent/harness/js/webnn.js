// The WebNN side of a cell: one graph of dequantizeLinear + gemm per layer, timed together.
import { timed, waitLatency } from "./timing.js";
import { Unavailable } from "./answer.js";

let mlPromise = null;
export async function mlContext() {
  if (!mlPromise) {
    mlPromise = (async () => {
      if (!("ml" in navigator)) throw new Unavailable("WebNN API not found: navigator.ml is undefined");
      // A GPU context when the browser gives one. What was asked for is only a request: a
      // build may accept "gpu" and run on the CPU. `accelerated` is the browser's own answer
      // where it has one (newer builds); the agent adds the host's evidence.
      let last;
      for (const deviceType of ["gpu", "cpu"]) {
        try {
          const ctx = await navigator.ml.createContext({ deviceType });
          const accelerated = typeof ctx.accelerated === "boolean" ? ctx.accelerated : null;
          return { ctx, webnn: { requested: `deviceType=${deviceType}`, accelerated } };
        } catch (e) {
          last = e;
        }
      }
      // no context of any kind: WebNN is not available in this build, in its own words
      throw new Unavailable(`${last.name}: ${last.message}`);
    })();
  }
  return mlPromise;
}

// Why this context cannot run layer `a`, from its own opSupportLimits: a width WebNN has no
// operand type for is answered, never emulated. Null when it can.
export function refusal(ctx, a) {
  const limits = ctx.opSupportLimits();
  const accepted = (limits.dequantizeLinear && limits.dequantizeLinear.input.dataTypes) || [];
  if (a.dtype === "float16" || accepted.includes(a.dtype)) return null;
  const what = a.dtype ? `${a.dtype} input` : `a ${a.bits}-bit operand type`;
  return `WebNN dequantizeLinear has no ${what} here: opSupportLimits().dequantizeLinear.input.dataTypes = ${JSON.stringify(accepted)}`;
}

// One layer as a graph of dequantizeLinear + gemm, its input written and its output tensor
// made: everything a run needs but the dispatch.
async function build(ctx, a, data) {
  const [xdata, wdata, sdata, zdata] = data;
  const t0 = performance.now();
  const b = new MLGraphBuilder(ctx);
  const x = b.input("x", { dataType: "float32", shape: [a.m, a.k] });
  let w, weight_bytes = wdata.byteLength;
  if (a.dtype === "float16") {
    w = b.cast(b.constant({ dataType: "float16", shape: [a.n, a.k] }, new Uint16Array(wdata.buffer)), "float32");
  } else {
    weight_bytes += sdata.byteLength + zdata.byteLength;
    w = b.dequantizeLinear(
      b.constant({ dataType: a.dtype, shape: [a.n, a.kPadded] }, wdata),
      b.constant({ dataType: "float32", shape: [a.n, a.groupsPerRow] }, new Float32Array(sdata.buffer)),
      b.constant({ dataType: a.dtype, shape: [a.n, a.groupsPerRow] }, zdata),
    );
    // a ragged last group is padded to a whole block, and cut off again here
    if (a.kPadded !== a.k) w = b.slice(w, [0, 0], [a.n, a.k]);
  }
  const graph = await b.build({ y: b.gemm(x, w, { bTranspose: true }) });
  const xt = await ctx.createTensor({ dataType: "float32", shape: [a.m, a.k], writable: true });
  const yt = await ctx.createTensor({ dataType: "float32", shape: [a.m, a.n], readable: true });
  ctx.writeTensor(xt, xdata);
  return { graph, xt, yt, weight_bytes, build_ms: performance.now() - t0 };
}

// A cell's layers on WebNN: every graph built, then timed together on the page's clock (a
// sample is `runs_per_sample` repetitions of every layer's dispatch, read back once).
export async function cell(list, all) {
  const { ctx, webnn } = await mlContext();
  for (const a of list) {
    const why = refusal(ctx, a);
    if (why) return { unsupported: why, webnn };
  }
  const c0 = performance.now();
  const layers = [];
  for (const [i, a] of list.entries()) layers.push(await build(ctx, a, await all[i]));
  // dispatch is asynchronous: reading the outputs back is what waits for them
  let outs;
  const runs = async (n) => {
    for (let r = 0; r < n; r++) for (const L of layers) ctx.dispatch(L.graph, { x: L.xt }, { y: L.yt });
    outs = await Promise.all(layers.map((L) => ctx.readTensor(L.yt)));
  };
  const { warmup, repetitions } = list[0];
  const f0 = performance.now();
  await runs(1);
  const first_run_ms = performance.now() - f0;
  // reading back finished outputs: the fixed cost of every sample
  const latency = await waitLatency(() => Promise.all(layers.map((L) => ctx.readTensor(L.yt))));
  const { samples_ms, runs_per_sample, latency_ms } = await timed(runs, first_run_ms, warmup, repetitions, latency);
  const kernel_ms = performance.now() - c0;
  const answer = layers.map((L, i) => ({
    y: Array.from(new Float32Array(outs[i])),
    build_ms: L.build_ms, gpu_samples_ms: [], weight_bytes: L.weight_bytes, webnn,
  }));
  for (const L of layers) {
    L.graph.destroy();
    L.xt.destroy();
    L.yt.destroy();
  }
  return { cell: { first_run_ms, samples_ms, runs_per_sample, latency_ms, kernel_ms, timer: "performance.now" }, layers: answer };
}
