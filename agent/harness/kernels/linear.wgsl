// quantgrid's linear-layer kernels: y = x · dequant(W)ᵀ with W exactly as quantgrid-matrix
// packs it (2/3/4/8-bit codes in u32 words, 3-bit in 96-bit blocks, fp16 pairs for 16 bits,
// f32 for the unquantized baseline), fp16 group scales two per word, u8 zero points four per
// word. `gemv` is batch 1, `gemm` longer sequences. `cargo test` validates it with naga.
struct Params { m: u32, k: u32, n: u32, bits: u32, group: u32, words_per_row: u32, asym: u32, groups_per_row: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> zeros: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn code(row: u32, i: u32) -> u32 {
  let base = row * p.words_per_row;
  if (p.bits == 3u) {
    // 32 codes per 96-bit block; code j at bit 3j, so codes 10 and 21 straddle two words
    let bit = 3u * (i % 32u);
    let at = base + (i / 32u) * 3u + bit / 32u;
    let off = bit % 32u;
    var v = w[at] >> off;
    if (off > 29u) { v = v | (w[at + 1u] << (32u - off)); }
    return v & 7u;
  }
  let per = 32u / p.bits;
  return (w[base + i / per] >> ((i % per) * p.bits)) & ((1u << p.bits) - 1u);
}

// `bits` of unquantized f32 weights: the baseline a low-bit kernel is measured against
const F32_WEIGHTS = 32u;

fn weight(row: u32, i: u32) -> f32 {
  if (p.bits == F32_WEIGHTS) { return bitcast<f32>(w[row * p.words_per_row + i]); }
  if (p.bits == 16u) {
    let pair = unpack2x16float(w[row * p.words_per_row + i / 2u]);
    return select(pair.x, pair.y, (i % 2u) == 1u);
  }
  let g = row * p.groups_per_row + i / p.group;
  let sp = unpack2x16float(scales[g / 2u]);
  let s = select(sp.x, sp.y, (g % 2u) == 1u);
  var z = f32(1u << (p.bits - 1u));
  if (p.asym == 1u) { z = f32((zeros[g / 4u] >> ((g % 4u) * 8u)) & 255u); }
  return (f32(code(row, i)) - z) * s;
}

// Batch 1 (GEMV): a workgroup of 64 per output, its threads striding along k and summing in
// workgroup memory. For 2, 4 and 8 bits with groups of whole words, a thread takes a word at a
// time: one load, one scale and zero point per word, and Σ x·(code − zero) then ·scale, so
// the weights stay packed until they are multiplied. (code − zero) is a small integer, exact
// in f32; summing x·code and subtracting zero·Σx instead cancels catastrophically when every x
// has one sign (after a ReLU), which the kernel check caught at 2 bits in ResNet.
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nw: vec3<u32>) {
  // more outputs than one dispatch dimension holds spill into y
  let j = wg.x + wg.y * nw.x;
  if (j >= p.n) { return; }
  var acc = 0.0;
  let per = 32u / max(p.bits, 1u);
  let packed = (p.bits == 2u || p.bits == 4u || p.bits == 8u) && (p.group % per) == 0u;
  if (packed) {
    let mask = (1u << p.bits) - 1u;
    for (var wi = lid.x; wi < p.words_per_row; wi += 64u) {
      let word = w[j * p.words_per_row + wi];
      let i0 = wi * per;
      let g = j * p.groups_per_row + i0 / p.group;
      let sp = unpack2x16float(scales[g / 2u]);
      let s = select(sp.x, sp.y, (g % 2u) == 1u);
      var z = f32(1u << (p.bits - 1u));
      if (p.asym == 1u) { z = f32((zeros[g / 4u] >> ((g % 4u) * 8u)) & 255u); }
      var dot = 0.0;
      let end = min(per, p.k - i0);
      for (var e = 0u; e < end; e++) {
        dot += x[i0 + e] * (f32((word >> (e * p.bits)) & mask) - z);
      }
      acc += dot * s;
    }
  } else {
    for (var i = lid.x; i < p.k; i += 64u) { acc += x[i] * weight(j, i); }
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var step = 32u; step > 0u; step >>= 1u) {
    if (lid.x < step) { partial[lid.x] += partial[lid.x + step]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { y[j] = partial[0]; }
}

// Longer sequences (m > 1): 16×16 output tiles. Each weight is dequantized once per tile
// instead of once per output row, and x and W go through workgroup memory.
const TILE = 16u;
var<workgroup> xs: array<array<f32, 16>, 16>;
var<workgroup> ws: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wg.y * TILE + lid.y;
  let j = wg.x * TILE + lid.x;
  let wrow = wg.x * TILE + lid.y;
  var acc = 0.0;
  for (var k0 = 0u; k0 < p.k; k0 += TILE) {
    let kk = k0 + lid.x;
    var xv = 0.0;
    if (i < p.m && kk < p.k) { xv = x[i * p.k + kk]; }
    xs[lid.y][lid.x] = xv;
    var wv = 0.0;
    if (wrow < p.n && kk < p.k) { wv = weight(wrow, kk); }
    ws[lid.y][lid.x] = wv;
    workgroupBarrier();
    for (var t = 0u; t < TILE; t++) { acc += xs[lid.y][t] * ws[lid.x][t]; }
    workgroupBarrier();
  }
  if (i < p.m && j < p.n) { y[i * p.n + j] = acc; }
}
