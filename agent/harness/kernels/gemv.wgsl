// Batch-1 kernels that earn their bit width: a GEMV reads each weight once, so it can be no
// faster than the adapter streams its bytes, and a low-bit one is only worth its name near
// that bound. What `linear.wgsl`'s general `gemv` spends instead goes here to the loads:
// - the weights are read 16 bytes at a time (vec4<u32>), consecutive threads on consecutive
//   vectors, so every load is wide and coalesced;
// - a workgroup computes ROWS outputs, and every x it loads serves all of them;
// - a word's codes are unpacked four at a time (one per byte lane) and dotted with x as vec4,
//   (code − zero) exact in f32, scaled once per quantization group of the quad.
// Rows are packed as quantgrid-matrix packs them: `words_per_row` a multiple of 4 (the host
// takes `linear.wgsl` otherwise), fp16 scales two per word, u8 zero points four per word.
// `stream_read` measures what the adapter streams, in the same run, for the kernels' fraction.
struct Fast {
  n: u32,
  // vec4<u32> per row of weights
  quads: u32,
  groups_per_row: u32,
  // log2 of words per quantization group (groups of whole words only)
  word_group_shift: u32,
  asym: u32,
  bits: u32,
}
@group(0) @binding(0) var<uniform> f: Fast;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> zeros: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const ROWS = 4u;
const THREADS = 64u;
var<workgroup> partial: array<vec4<f32>, 64>;

fn scale_of(g: u32) -> f32 {
  let sp = unpack2x16float(scales[g / 2u]);
  return select(sp.x, sp.y, (g % 2u) == 1u);
}

fn zero_of(g: u32) -> f32 {
  if (f.asym == 1u) { return f32((zeros[g / 4u] >> ((g % 4u) * 8u)) & 255u); }
  return f32(1u << (f.bits - 1u));
}

// One word's codes dotted with their x, (code − zero) · x summed, for each width. Codes sit at
// bit `bits·e`; byte lane b holds codes b·(8/bits) + o for o < 8/bits, so each shift of the
// four byte lanes gives four codes whose x are 8/bits apart.
// (code − zero) for four codes, exactly: a code c < 256 OR-ed into the mantissa of 2^23 is the
// float 2^23 + c, and 2^23 + zero is exact too, so one subtraction replaces an integer-to-float
// conversion (a quarter-rate instruction on NVIDIA GPUs) and the zero's subtraction.
const MAGIC = 0x4B000000u;
fn lanes(word: u32, shift: u32, mask: u32, z: f32) -> vec4<f32> {
  let codes = (vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) >> vec4<u32>(shift)) & vec4<u32>(mask);
  return bitcast<vec4<f32>>(codes | vec4<u32>(MAGIC)) - vec4<f32>(8388608.0 + z);
}

fn dot_b8(word: u32, a: vec4<f32>, z: f32) -> f32 {
  return dot(lanes(word, 0u, 255u, z), a);
}

fn dot_b4(word: u32, a: vec4<f32>, b: vec4<f32>, z: f32) -> f32 {
  return dot(lanes(word, 0u, 15u, z), vec4<f32>(a.x, a.z, b.x, b.z))
       + dot(lanes(word, 4u, 15u, z), vec4<f32>(a.y, a.w, b.y, b.w));
}

fn dot_b2(word: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, z: f32) -> f32 {
  return dot(lanes(word, 0u, 3u, z), vec4<f32>(a.x, b.x, c.x, d.x))
       + dot(lanes(word, 2u, 3u, z), vec4<f32>(a.y, b.y, c.y, d.y))
       + dot(lanes(word, 4u, 3u, z), vec4<f32>(a.z, b.z, c.z, d.z))
       + dot(lanes(word, 6u, 3u, z), vec4<f32>(a.w, b.w, c.w, d.w));
}

// The quantization group of word `e` of quad q of row j.
fn group_of(j: u32, q: u32, e: u32) -> u32 {
  return j * f.groups_per_row + ((q * 4u + e) >> f.word_group_shift);
}

// One row's quad against its x, scaled per group: once per quad where the quad is one group
// (4-bit and 8-bit at g32 and up), per word otherwise.
fn row_b8(j: u32, q: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
  let v = w[j * f.quads + q];
  let g0 = group_of(j, q, 0u);
  let g3 = group_of(j, q, 3u);
  if (g0 == g3) {
    let z = zero_of(g0);
    return scale_of(g0) * (dot_b8(v.x, x0, z) + dot_b8(v.y, x1, z) + dot_b8(v.z, x2, z) + dot_b8(v.w, x3, z));
  }
  let g1 = group_of(j, q, 1u);
  let g2 = group_of(j, q, 2u);
  return scale_of(g0) * dot_b8(v.x, x0, zero_of(g0)) + scale_of(g1) * dot_b8(v.y, x1, zero_of(g1))
       + scale_of(g2) * dot_b8(v.z, x2, zero_of(g2)) + scale_of(g3) * dot_b8(v.w, x3, zero_of(g3));
}

fn row_b4(j: u32, q: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
          x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
  let v = w[j * f.quads + q];
  let g0 = group_of(j, q, 0u);
  let g3 = group_of(j, q, 3u);
  if (g0 == g3) {
    let z = zero_of(g0);
    return scale_of(g0) * (dot_b4(v.x, x0, x1, z) + dot_b4(v.y, x2, x3, z)
                         + dot_b4(v.z, x4, x5, z) + dot_b4(v.w, x6, x7, z));
  }
  let g1 = group_of(j, q, 1u);
  let g2 = group_of(j, q, 2u);
  return scale_of(g0) * dot_b4(v.x, x0, x1, zero_of(g0)) + scale_of(g1) * dot_b4(v.y, x2, x3, zero_of(g1))
       + scale_of(g2) * dot_b4(v.z, x4, x5, zero_of(g2)) + scale_of(g3) * dot_b4(v.w, x6, x7, zero_of(g3));
}

// 2-bit: a word is 16 codes, so a quad's 64 x are read as the row goes, four vectors a word
fn row_b2(j: u32, q: u32) -> f32 {
  let v = w[j * f.quads + q];
  var sum = 0.0;
  for (var e = 0u; e < 4u; e++) {
    let i = (q * 4u + e) * 4u;
    let g = group_of(j, q, e);
    sum += scale_of(g) * dot_b2(v[e], x[i], x[i + 1u], x[i + 2u], x[i + 3u], zero_of(g));
  }
  return sum;
}

fn reduce_and_store(j0: u32, lid: u32, acc: vec4<f32>) {
  partial[lid] = acc;
  workgroupBarrier();
  for (var step = THREADS / 2u; step > 0u; step >>= 1u) {
    if (lid < step) { partial[lid] += partial[lid + step]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let s = partial[0];
    for (var r = 0u; r < ROWS; r++) {
      if (j0 + r < f.n) { y[j0 + r] = s[r]; }
    }
  }
}

// The first of the workgroup's ROWS outputs, or None past n (rows past n repeat the last
// one: computed, never stored).
fn first_row(wg: vec3<u32>, nw: vec3<u32>) -> u32 {
  // more workgroups than one dispatch dimension holds spill into y
  return (wg.x + wg.y * nw.x) * ROWS;
}

fn row(j0: u32, r: u32) -> u32 { return min(j0 + r, f.n - 1u); }

// Each width its own entry point, so its loop holds the quad's x in registers and every row
// of the workgroup uses them.
@compute @workgroup_size(64)
fn gemv_b4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let j0 = first_row(wg, nw);
  if (j0 >= f.n) { return; }
  var acc = vec4<f32>(0.0);
  for (var q = lid.x; q < f.quads; q += THREADS) {
    let i = q * 8u;
    let x0 = x[i];
    let x1 = x[i + 1u];
    let x2 = x[i + 2u];
    let x3 = x[i + 3u];
    let x4 = x[i + 4u];
    let x5 = x[i + 5u];
    let x6 = x[i + 6u];
    let x7 = x[i + 7u];
    acc += vec4<f32>(
      row_b4(row(j0, 0u), q, x0, x1, x2, x3, x4, x5, x6, x7),
      row_b4(row(j0, 1u), q, x0, x1, x2, x3, x4, x5, x6, x7),
      row_b4(row(j0, 2u), q, x0, x1, x2, x3, x4, x5, x6, x7),
      row_b4(row(j0, 3u), q, x0, x1, x2, x3, x4, x5, x6, x7));
  }
  reduce_and_store(j0, lid.x, acc);
}

@compute @workgroup_size(64)
fn gemv_b8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let j0 = first_row(wg, nw);
  if (j0 >= f.n) { return; }
  var acc = vec4<f32>(0.0);
  for (var q = lid.x; q < f.quads; q += THREADS) {
    let i = q * 4u;
    let x0 = x[i];
    let x1 = x[i + 1u];
    let x2 = x[i + 2u];
    let x3 = x[i + 3u];
    acc += vec4<f32>(
      row_b8(row(j0, 0u), q, x0, x1, x2, x3),
      row_b8(row(j0, 1u), q, x0, x1, x2, x3),
      row_b8(row(j0, 2u), q, x0, x1, x2, x3),
      row_b8(row(j0, 3u), q, x0, x1, x2, x3));
  }
  reduce_and_store(j0, lid.x, acc);
}

@compute @workgroup_size(64)
fn gemv_b2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let j0 = first_row(wg, nw);
  if (j0 >= f.n) { return; }
  var acc = vec4<f32>(0.0);
  for (var q = lid.x; q < f.quads; q += THREADS) {
    acc += vec4<f32>(row_b2(row(j0, 0u), q), row_b2(row(j0, 1u), q),
                     row_b2(row(j0, 2u), q), row_b2(row(j0, 3u), q));
  }
  reduce_and_store(j0, lid.x, acc);
}

// 3-bit: 32 codes a 96-bit block (3 words), code c at bit 3c, so codes 10 and 21 straddle two
// words; `quads` is blocks per row here and groups are whole blocks. Rows need not start on a
// vector, so words are read one at a time; the 32 codes' loop has constant bounds, which lets
// the compiler turn every shift and x index into a constant. x is read once per code for all
// four rows, whose words, scales and zero points sit in the lanes of vectors.
fn word_at(i: u32) -> u32 { return w[i / 4u][i % 4u]; }

@compute @workgroup_size(64)
fn gemv_b3(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let j0 = first_row(wg, nw);
  if (j0 >= f.n) { return; }
  let rows = vec4<u32>(row(j0, 0u), row(j0, 1u), row(j0, 2u), row(j0, 3u));
  let words_per_row = f.quads * 3u;
  var acc = vec4<f32>(0.0);
  for (var b = lid.x; b < f.quads; b += THREADS) {
    let at = rows * words_per_row + vec4<u32>(b * 3u);
    let w0 = vec4<u32>(word_at(at.x), word_at(at.y), word_at(at.z), word_at(at.w));
    let w1 = vec4<u32>(word_at(at.x + 1u), word_at(at.y + 1u), word_at(at.z + 1u), word_at(at.w + 1u));
    let w2 = vec4<u32>(word_at(at.x + 2u), word_at(at.y + 2u), word_at(at.z + 2u), word_at(at.w + 2u));
    let g = rows * f.groups_per_row + vec4<u32>(b >> f.word_group_shift);
    let zm = vec4<f32>(8388608.0) + vec4<f32>(zero_of(g.x), zero_of(g.y), zero_of(g.z), zero_of(g.w));
    let s = vec4<f32>(scale_of(g.x), scale_of(g.y), scale_of(g.z), scale_of(g.w));
    var sum = vec4<f32>(0.0);
    for (var c = 0u; c < 32u; c++) {
      let bit = 3u * c;
      let lo = bit / 32u;
      let off = bit % 32u;
      var v = select(select(w2, w1, lo == 1u), w0, lo == 0u) >> vec4<u32>(off);
      if (off > 29u) {
        v = v | (select(w2, w1, lo == 0u) << vec4<u32>(32u - off));
      }
      let xv = x[b * 8u + c / 4u][c % 4u];
      sum += (bitcast<vec4<f32>>((v & vec4<u32>(7u)) | vec4<u32>(MAGIC)) - zm) * xv;
    }
    acc += s * sum;
  }
  reduce_and_store(j0, lid.x, acc);
}

// The f32 baseline at its best: f32 weights (bits 32) read as vec4 and dotted with x.
@compute @workgroup_size(64)
fn gemv_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nw: vec3<u32>) {
  let j0 = (wg.x + wg.y * nw.x) * ROWS;
  if (j0 >= f.n) { return; }
  let last = f.n - 1u;
  let r1 = min(j0 + 1u, last);
  let r2 = min(j0 + 2u, last);
  let r3 = min(j0 + 3u, last);
  var acc = vec4<f32>(0.0);
  for (var q = lid.x; q < f.quads; q += THREADS) {
    let xv = x[q];
    acc += vec4<f32>(
      dot(bitcast<vec4<f32>>(w[j0 * f.quads + q]), xv),
      dot(bitcast<vec4<f32>>(w[r1 * f.quads + q]), xv),
      dot(bitcast<vec4<f32>>(w[r2 * f.quads + q]), xv),
      dot(bitcast<vec4<f32>>(w[r3 * f.quads + q]), xv));
  }
  reduce_and_store(j0, lid.x, acc);
}

// Streaming read: every thread folds vectors a grid apart into one word, so the bytes read
// are the buffer and the bytes written are one word a thread. `quads` is the buffer's vectors.
@compute @workgroup_size(256)
fn stream_read(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nw: vec3<u32>) {
  let threads = nw.x * 256u;
  var fold = vec4<u32>(0u);
  for (var i = gid.x; i < f.quads; i += threads) { fold ^= w[i]; }
  y[gid.x] = bitcast<f32>(fold.x ^ fold.y ^ fold.z ^ fold.w);
}
