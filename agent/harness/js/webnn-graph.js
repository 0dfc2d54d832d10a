// A cell's graph on WebNN: one MLGraph per cell built from WebNN's own ops (gemm over
// dequantizeLinear for the quantized matmuls, layerNormalization, gelu, softmax, matmul,
// ...), every computed tensor a graph output so the agent checks each op in Rust. Where
// this build lacks an op the graph needs, the answer is `unsupported` with the builder's
// and opSupportLimits()'s own words: nothing is emulated in place of a missing op. Ops the
// spec itself has no single op for (RMSNorm, SiLU, GELU-tanh, RoPE, attention) are built from
// its primitives, as the spec's own decompositions do.
import { mlContext, refusal } from "./webnn.js";
import { fetched, base64 } from "./tensors.js";
import { timed, waitLatency } from "./timing.js";

const ACTIVATION_OPS = {
  gelu_erf: ["gelu"],
  gelu_tanh: ["tanh", "mul", "add", "pow"],
  relu: ["relu"],
  silu: ["sigmoid", "mul"],
  quick_gelu: ["sigmoid", "mul"],
};

// The WebNN ops one graph op is built from.
function needs(op, layer) {
  switch (op.op) {
    case "linear":
      if (layer.bits === 16) return ["cast", "gemm"];
      return layer.kPadded === layer.k ? ["dequantizeLinear", "gemm"] : ["dequantizeLinear", "slice", "gemm"];
    case "layer_norm":
      return ["layerNormalization", "reshape"];
    case "rms_norm":
      return ["mul", "reduceMean", "add", "sqrt", "div", "reshape"];
    case "act":
      return ACTIVATION_OPS[op.f] ?? [`an activation named ${op.f}`];
    case "add":
    case "mul":
      return [op.op];
    case "rope":
      return ["reshape", "slice", "mul", "sub", "add", "concat"];
    case "concat":
      return ["concat"];
    case "attention":
      return ["reshape", "transpose", "matmul", "mul", "add", "softmax"];
    case "mean_pool":
      return ["reduceMean"];
    case "row":
      return ["slice"];
    default:
      return [`an op for ${op.op}`];
  }
}

// Why this build cannot build `g`, in its own words; null when it can.
function missing(ctx, g, layers) {
  const limits = ctx.opSupportLimits();
  for (const op of g.ops) {
    const layer = op.op === "linear" ? layers[op.layer] : null;
    if (layer) {
      const why = refusal(ctx, layer);
      if (why) return why;
    }
    for (const name of needs(op, layer)) {
      const built = typeof MLGraphBuilder.prototype[name] === "function";
      if (built && name in limits) continue;
      return `WebNN here has no ${name} (needed for ${op.op}): MLGraphBuilder.prototype.${name} is ${built ? "a function" : "undefined"}, opSupportLimits().${name} is ${name in limits ? JSON.stringify(limits[name]) : "absent"}`;
    }
  }
  return null;
}

const f32 = (bytes) => new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);

// Everything graph-building needs: the builder, scalar constants, the tensors so far.
function builder(ctx) {
  const b = new MLGraphBuilder(ctx);
  const scalar = (v) => b.constant({ dataType: "float32", shape: [1, 1] }, new Float32Array([v]));
  return { b, scalar };
}

// A quantized matmul: y = x · dequantize(W)ᵀ, the codes kept as WebNN operands.
function linear({ b }, x, L, w, s, z) {
  let weight;
  if (L.bits === 16) {
    weight = b.cast(b.constant({ dataType: "float16", shape: [L.n, L.k] }, new Uint16Array(w.buffer, w.byteOffset, w.byteLength / 2)), "float32");
  } else {
    weight = b.dequantizeLinear(
      b.constant({ dataType: L.dtype, shape: [L.n, L.kPadded] }, w),
      b.constant({ dataType: "float32", shape: [L.n, L.groupsPerRow] }, f32(s)),
      b.constant({ dataType: L.dtype, shape: [L.n, L.groupsPerRow] }, z),
    );
    // a ragged last group was padded to a whole block: its padding is cut off again
    if (L.kPadded !== L.k) weight = b.slice(weight, [0, 0], [L.n, L.k]);
  }
  return b.gemm(x, weight, { bTranspose: true });
}

function activation({ b, scalar }, x, f) {
  switch (f) {
    case "gelu_erf":
      return b.gelu(x);
    case "relu":
      return b.relu(x);
    case "silu":
      return b.mul(x, b.sigmoid(x));
    case "quick_gelu":
      return b.mul(x, b.sigmoid(b.mul(x, scalar(1.702))));
    case "gelu_tanh": {
      // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      const inner = b.mul(scalar(Math.sqrt(2 / Math.PI)), b.add(x, b.mul(scalar(0.044715), b.pow(x, scalar(3)))));
      return b.mul(b.mul(scalar(0.5), x), b.add(scalar(1), b.tanh(inner)));
    }
  }
  throw new Error(`no activation ${f}`);
}

// Rotary positions on the two halves of each head: [x1·cos − x2·sin, x2·cos + x1·sin].
function rope({ b }, x, cos, sin, rows, cols, d) {
  const heads = cols / d, half = d / 2;
  const x4 = b.reshape(x, [rows, heads, 2, half]);
  const x1 = b.slice(x4, [0, 0, 0, 0], [rows, heads, 1, half]);
  const x2 = b.slice(x4, [0, 0, 1, 0], [rows, heads, 1, half]);
  const c = b.reshape(cos, [rows, 1, 1, half]), s = b.reshape(sin, [rows, 1, 1, half]);
  const y1 = b.sub(b.mul(x1, c), b.mul(x2, s));
  const y2 = b.add(b.mul(x2, c), b.mul(x1, s));
  return b.reshape(b.concat([y1, y2], 2), [rows, cols]);
}

// Scaled dot-product attention, grouped-query included: the query heads sharing a key head
// are one batch of that head's matmul. The causal mask and ALiBi's distances are constants
// of the shapes; ALiBi's slopes are the graph's own tensor.
function attention({ b, scalar }, op, q, k, v, alibi, m, kv) {
  const { heads: H, kv_heads: KH, head_dim: d } = op;
  const G = H / KH, offset = kv - m;
  const q3 = b.reshape(b.transpose(b.reshape(q, [m, H, d]), { permutation: [1, 0, 2] }), [KH, G * m, d]);
  const kT = b.transpose(b.reshape(k, [kv, KH, d]), { permutation: [1, 2, 0] });
  const v3 = b.transpose(b.reshape(v, [kv, KH, d]), { permutation: [1, 0, 2] });
  let s = b.reshape(b.mul(b.matmul(q3, kT), scalar(op.scale)), [H, m, kv]);
  if (alibi !== null) {
    const dist = new Float32Array(m * kv);
    for (let i = 0; i < m; i++) for (let j = 0; j < kv; j++) dist[i * kv + j] = j - (offset + i);
    const slopes = b.reshape(alibi, [H, 1, 1]);
    s = b.add(s, b.mul(slopes, b.constant({ dataType: "float32", shape: [1, m, kv] }, dist)));
  }
  if (op.causal && m > 1) {
    const mask = new Float32Array(m * kv);
    for (let i = 0; i < m; i++) for (let j = offset + i + 1; j < kv; j++) mask[i * kv + j] = -Infinity;
    s = b.add(s, b.constant({ dataType: "float32", shape: [1, m, kv] }, mask));
  }
  const p = b.reshape(b.softmax(s, 2), [KH, G * m, kv]);
  const o = b.reshape(b.matmul(p, v3), [H, m, d]);
  return b.reshape(b.transpose(o, { permutation: [1, 0, 2] }), [m, H * d]);
}

// One graph op as WebNN operands.
function emit(B, g, op, at, layers, weights) {
  const { b } = B;
  const T = (id) => g.tensors[id];
  const y = T(op.y);
  switch (op.op) {
    case "linear":
      return linear(B, at[op.x], layers[op.layer], ...weights[op.layer]);
    case "layer_norm":
      return b.layerNormalization(at[op.x], {
        scale: b.reshape(at[op.gamma], [y.cols]),
        bias: b.reshape(at[op.beta], [y.cols]),
        axes: [1],
        epsilon: op.eps,
      });
    case "rms_norm": {
      const ms = b.reduceMean(b.mul(at[op.x], at[op.x]), { axes: [1], keepDimensions: true });
      const inv = b.div(B.scalar(1), b.sqrt(b.add(ms, B.scalar(op.eps))));
      return b.mul(b.mul(at[op.x], inv), at[op.gamma]);
    }
    case "act":
      return activation(B, at[op.x], op.f);
    case "add":
      return b.add(at[op.a], at[op.b]);
    case "mul":
      return b.mul(at[op.a], at[op.b]);
    case "rope":
      return rope(B, at[op.x], at[op.cos], at[op.sin], y.rows, y.cols, op.head_dim);
    case "concat":
      return b.concat([at[op.a], at[op.b]], 0);
    case "attention":
      return attention(B, op, at[op.q], at[op.k], at[op.v], op.alibi === null ? null : at[op.alibi], y.rows, T(op.k).rows);
    case "mean_pool":
      return b.reduceMean(at[op.x], { axes: [0], keepDimensions: true });
    case "row":
      return b.slice(at[op.x], [op.row, 0], [1, y.cols]);
  }
  throw new Error(`the harness has no ${op.op} op`);
}

export async function run(a) {
  const { ctx, webnn } = await mlContext();
  const g = a.graph;
  const why = missing(ctx, g, a.layers);
  if (why) return { unsupported: why, webnn };
  const c0 = performance.now();
  const data = await Promise.all(a.data.map(fetched));
  const weights = await Promise.all(a.layers.map((L) => Promise.all([L.w, L.scales, L.zeros].map(fetched))));
  const t0 = performance.now();
  const B = builder(ctx);
  const desc = (t) => ({ dataType: "float32", shape: [t.rows, t.cols] });
  // the model's inputs (embeddings, KV cache) are written per run; its parameters are constants
  const at = g.tensors.map((t, i) => {
    if (!t.init) return null;
    return t.init.kind === "input" ? B.b.input(`t${i}`, desc(t)) : B.b.constant(desc(t), f32(data[i]));
  });
  const outputs = {};
  for (const op of g.ops) {
    at[op.y] = emit(B, g, op, at, a.layers, weights);
    outputs[`t${op.y}`] = at[op.y];
  }
  const graph = await B.b.build(outputs);
  const inputs = {}, outs = {};
  for (const [i, t] of g.tensors.entries()) {
    if (!t.init || t.init.kind !== "input") continue;
    inputs[`t${i}`] = await ctx.createTensor({ ...desc(t), writable: true });
    ctx.writeTensor(inputs[`t${i}`], data[i]);
  }
  for (const name of Object.keys(outputs)) {
    const t = g.tensors[Number(name.slice(1))];
    outs[name] = await ctx.createTensor({ ...desc(t), readable: true });
  }
  const build_ms = performance.now() - t0;
  let weight_bytes = 0;
  for (const ws of weights) for (const w of ws) weight_bytes += w ? w.byteLength : 0;
  // dispatch is asynchronous: reading the last output back waits for every dispatch before it
  const last = `t${g.ops[g.ops.length - 1].y}`;
  const runs = async (n) => {
    for (let r = 0; r < n; r++) ctx.dispatch(graph, inputs, outs);
    await ctx.readTensor(outs[last]);
  };
  const f0 = performance.now();
  await runs(1);
  const first_run_ms = performance.now() - f0;
  // reading back a finished output: the fixed cost of every sample
  const latency = await waitLatency(() => ctx.readTensor(outs[last]));
  const { samples_ms, runs_per_sample, latency_ms } = await timed(runs, first_run_ms, a.warmup, a.repetitions, latency);
  const values = g.tensors.map(() => null);
  for (const [name, t] of Object.entries(outs)) values[Number(name.slice(1))] = base64(new Uint8Array(await ctx.readTensor(t)));
  const kernel_ms = performance.now() - c0;
  graph.destroy();
  for (const t of [...Object.values(inputs), ...Object.values(outs)]) t.destroy();
  return {
    cell: { first_run_ms, samples_ms, runs_per_sample, latency_ms, kernel_ms, timer: "performance.now" },
    values, build_ms, weight_bytes, gpu_samples_ms: [], webnn,
  };
}
