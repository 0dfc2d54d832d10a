// The WebNN side of a layer: one graph of dequantizeLinear + gemm per layer.
import { timed } from "./timing.js";
import { tensors } from "./tensors.js";
import { Unavailable } from "./answer.js";

let mlPromise = null;
async function mlContext() {
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

// One layer as a WebNN graph. A width WebNN has no operand type for is answered with the
// browser's own opSupportLimits, never emulated.
export async function webnnLayer(a, prefetched) {
  const { ctx, webnn } = await mlContext();
  const limits = ctx.opSupportLimits();
  const accepted = (limits.dequantizeLinear && limits.dequantizeLinear.input.dataTypes) || [];
  if (a.dtype !== "float16" && !accepted.includes(a.dtype)) {
    const what = a.dtype ? `${a.dtype} input` : `a ${a.bits}-bit operand type`;
    return {
      unsupported: `WebNN dequantizeLinear has no ${what} here: opSupportLimits().dequantizeLinear.input.dataTypes = ${JSON.stringify(accepted)}`,
      webnn,
    };
  }
  const [xdata, wdata, sdata, zdata] = await (prefetched || tensors(a));
  const t0 = performance.now();
  const b = new MLGraphBuilder(ctx);
  const x = b.input("x", { dataType: "float32", shape: [a.m, a.k] });
  let w, weightBytes = wdata.byteLength;
  if (a.dtype === "float16") {
    w = b.cast(b.constant({ dataType: "float16", shape: [a.n, a.k] }, new Uint16Array(wdata.buffer)), "float32");
  } else {
    weightBytes += sdata.byteLength + zdata.byteLength;
    w = b.dequantizeLinear(
      b.constant({ dataType: a.dtype, shape: [a.n, a.k] }, wdata),
      b.constant({ dataType: "float32", shape: [a.n, a.groupsPerRow] }, new Float32Array(sdata.buffer)),
      b.constant({ dataType: a.dtype, shape: [a.n, a.groupsPerRow] }, zdata),
    );
  }
  const graph = await b.build({ y: b.gemm(x, w, { bTranspose: true }) });
  const xt = await ctx.createTensor({ dataType: "float32", shape: [a.m, a.k], writable: true });
  const yt = await ctx.createTensor({ dataType: "float32", shape: [a.m, a.n], readable: true });
  ctx.writeTensor(xt, xdata);
  const build_ms = performance.now() - t0;
  // dispatch is asynchronous: reading the output back is what waits for it
  let last;
  const runs = async (n) => {
    for (let i = 0; i < n; i++) ctx.dispatch(graph, { x: xt }, { y: yt });
    last = await ctx.readTensor(yt);
  };
  const f0 = performance.now();
  await runs(1);
  const first_run_ms = performance.now() - f0;
  const { samples_ms, runs_per_sample } = await timed(runs, first_run_ms, a.warmup, a.repetitions);
  const measured_ms = performance.now() - f0;
  const y = Array.from(new Float32Array(last));
  graph.destroy();
  xt.destroy();
  yt.destroy();
  return {
    y, build_ms, first_run_ms, samples_ms, runs_per_sample, timer: "performance.now",
    kernel_ms: build_ms + measured_ms,
    weight_bytes: weightBytes, webnn,
  };
}
