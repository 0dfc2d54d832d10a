// quantgrid's block kernels: every op of a cell's graph but its matmuls (kernels/linear.wgsl)
// and its row copies (copyBufferToBuffer). One shared layout: the op's parameters, up to four
// inputs and one output; `js/block.js` dispatches them in the graph's order. `cargo test`
// validates this file with naga.
struct Params {
  rows: u32, cols: u32, b_rows: u32, heads: u32,
  kv_heads: u32, head_dim: u32, kv_rows: u32, flags: u32,
  scale: f32, eps: f32, act: u32, pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const CAUSAL = 1u;
const ALIBI = 2u;
const MUL = 4u;

// the element a thread of a 64-wide workgroup handles in a dispatch of up to 65535 × n groups
fn element(wg: vec3<u32>, nw: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wg.y * nw.x + wg.x) * 64u + lid.x;
}

var<workgroup> red: array<f32, 64>;

// the sum of every thread's `v` across the workgroup, to every thread
fn total(v: f32, i: u32) -> f32 {
  red[i] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (i < s) { red[i] += red[i + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

fn largest(v: f32, i: u32) -> f32 {
  red[i] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (i < s) { red[i] = max(red[i], red[i + s]); }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

// LayerNorm of row `wg.x` (a = x, b = gamma, c = beta): the mean first, then the variance of
// the deviations (two passes, as the reference does, so a large mean costs no precision)
@compute @workgroup_size(64)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = wg.x * p.cols;
  var s = 0.0;
  for (var i = lid.x; i < p.cols; i += 64u) { s += a[base + i]; }
  let mean = total(s, lid.x) / f32(p.cols);
  var v = 0.0;
  for (var i = lid.x; i < p.cols; i += 64u) { let t = a[base + i] - mean; v += t * t; }
  let inv = inverseSqrt(total(v, lid.x) / f32(p.cols) + p.eps);
  for (var i = lid.x; i < p.cols; i += 64u) { y[base + i] = (a[base + i] - mean) * inv * b[i] + c[i]; }
}

// RMSNorm of row `wg.x` (a = x, b = gamma)
@compute @workgroup_size(64)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = wg.x * p.cols;
  var s = 0.0;
  for (var i = lid.x; i < p.cols; i += 64u) { s += a[base + i] * a[base + i]; }
  let inv = inverseSqrt(total(s, lid.x) / f32(p.cols) + p.eps);
  for (var i = lid.x; i < p.cols; i += 64u) { y[base + i] = a[base + i] * inv * b[i]; }
}

// the error function, Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5·10⁻⁷)
fn erf(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign(x) * (1.0 - poly * exp(-x * x));
}

// tanh through exp: WGSL's own tanh may be as loose as its platform's
fn tanh_exp(u: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
}

const GELU_ERF = 0u;
const GELU_TANH = 1u;
const RELU = 2u;
const SILU = 3u;
const QUICK_GELU = 4u;

fn activation(x: f32) -> f32 {
  switch (p.act) {
    case GELU_ERF: { return 0.5 * x * (1.0 + erf(x * 0.7071067811865476)); }
    case GELU_TANH: { return 0.5 * x * (1.0 + tanh_exp(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
    case RELU: { return max(x, 0.0); }
    case SILU: { return x / (1.0 + exp(-x)); }
    case QUICK_GELU: { return x / (1.0 + exp(-1.702 * x)); }
    default: { return x; }
  }
}

@compute @workgroup_size(64)
fn act(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wg, nw, lid);
  if (i < p.rows * p.cols) { y[i] = activation(a[i]); }
}

// a + b or a ⊙ b (flags & MUL), b broadcast over rows when it has one
@compute @workgroup_size(64)
fn binary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wg, nw, lid);
  if (i >= p.rows * p.cols) { return; }
  var j = i;
  if (p.b_rows == 1u) { j = i % p.cols; }
  if ((p.flags & MUL) != 0u) { y[i] = a[i] * b[j]; } else { y[i] = a[i] + b[j]; }
}

// rotary embedding, rotate-half form (a = x, b = cos, c = sin, each rows × head_dim/2)
@compute @workgroup_size(64)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let half = p.head_dim / 2u;
  let t = element(wg, nw, lid);
  if (t >= p.rows * p.heads * half) { return; }
  let r = t / (p.heads * half);
  let h = (t / half) % p.heads;
  let i = t % half;
  let base = r * p.cols + h * p.head_dim;
  let co = b[r * half + i];
  let si = c[r * half + i];
  let x1 = a[base + i];
  let x2 = a[base + half + i];
  y[base + i] = x1 * co - x2 * si;
  y[base + half + i] = x2 * co + x1 * si;
}

// the longest key sequence one workgroup holds scores for (8 KiB of workgroup memory)
const MAX_KV = 2048u;
var<workgroup> scores: array<f32, 2048>;

// softmax(q·kᵀ·scale + alibi)·v for query row wg.x and head wg.y (a = q, b = k, c = v,
// d = ALiBi slopes); queries are the last `rows` of `kv_rows` positions
@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg.x;
  let h = wg.y;
  let kh = h / (p.heads / p.kv_heads);
  let dq = p.heads * p.head_dim;
  let dk = p.kv_heads * p.head_dim;
  let pos = p.kv_rows - p.rows + i;
  var visible = min(p.kv_rows, MAX_KV);
  if ((p.flags & CAUSAL) != 0u) { visible = min(pos + 1u, visible); }
  var m = -3.4e38;
  for (var j = lid.x; j < visible; j += 64u) {
    var s = 0.0;
    for (var e = 0u; e < p.head_dim; e++) { s += a[i * dq + h * p.head_dim + e] * b[j * dk + kh * p.head_dim + e]; }
    s *= p.scale;
    if ((p.flags & ALIBI) != 0u) { s += d[h] * (f32(j) - f32(pos)); }
    scores[j] = s;
    m = max(m, s);
  }
  m = largest(m, lid.x);
  var sum = 0.0;
  for (var j = lid.x; j < visible; j += 64u) {
    let e = exp(scores[j] - m);
    scores[j] = e;
    sum += e;
  }
  sum = total(sum, lid.x);
  for (var e = lid.x; e < p.head_dim; e += 64u) {
    var o = 0.0;
    for (var j = 0u; j < visible; j++) { o += scores[j] * c[j * dk + kh * p.head_dim + e]; }
    y[i * dq + h * p.head_dim + e] = o / sum;
  }
}

// the mean over rows, a thread per column
@compute @workgroup_size(64)
fn mean_pool(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let col = element(wg, nw, lid);
  if (col >= p.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.rows; r++) { s += a[r * p.cols + col]; }
  y[col] = s / f32(p.rows);
}
