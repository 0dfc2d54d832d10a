// Batch-1 kernels that earn their bit width: a GEMV reads each weight once, so it can be no
// faster than the adapter streams its bytes, and a low-bit one is only worth its name near
// that bound. What `linear.wgsl`'s general `gemv` spends instead goes here to the loads:
// - the weights are read 16 bytes at a time (vec4<u32>), consecutive threads on consecutive
//   vectors, so every load is wide and coalesced;
// - a thread computes ROWS outputs, and every x it loads serves all of them;
// - a row is split over `lanes` threads (32 to 128, a power of two the host picks from the
//   row's length), so the workgroup's 128 threads are 128 / lanes slices of ROWS rows each: a
//   short row (BERT's 768) does not leave most of a workgroup idle, and a long one (16384)
//   has 128 threads streaming it;
// - codes become floats without a conversion (see `byte_lanes`), and 4-bit and 8-bit read a
//   scale once per quad, which the host guarantees is one quantization group (no branch on
//   the group's shape in the loop: NVIDIA's compiler serialised the loads around one).
// Rows are packed as quantgrid-matrix packs them: `words_per_row` a multiple of 4 (the host
// takes `linear.wgsl` otherwise), fp16 scales two per word, u8 zero points four per word.
// `stream_read` measures what the adapter streams, in the same run, for the kernels' fraction.
struct Fast {
  n: u32,
  // vec4<u32> per row of weights (3-bit: 32-code blocks of 3 words)
  quads: u32,
  groups_per_row: u32,
  // log2 of words (3-bit: blocks) per quantization group (groups of whole words only)
  word_group_shift: u32,
  asym: u32,
  bits: u32,
  // threads per row
  lanes: u32,
}
@group(0) @binding(0) var<uniform> f: Fast;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> zeros: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const ROWS = 4u;
const THREADS = 128u;
// a thread's ROWS sums
var<workgroup> partial: array<vec4<f32>, 128>;

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
fn byte_lanes(word: u32, shift: u32, mask: u32, z: f32) -> vec4<f32> {
  let codes = (vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) >> vec4<u32>(shift)) & vec4<u32>(mask);
  return bitcast<vec4<f32>>(codes | vec4<u32>(MAGIC)) - vec4<f32>(8388608.0 + z);
}

fn dot_b8(word: u32, a: vec4<f32>, z: f32) -> f32 {
  return dot(byte_lanes(word, 0u, 255u, z), a);
}

fn dot_b4(word: u32, a: vec4<f32>, b: vec4<f32>, z: f32) -> f32 {
  return dot(byte_lanes(word, 0u, 15u, z), vec4<f32>(a.x, a.z, b.x, b.z))
       + dot(byte_lanes(word, 4u, 15u, z), vec4<f32>(a.y, a.w, b.y, b.w));
}

fn dot_b2(word: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, z: f32) -> f32 {
  return dot(byte_lanes(word, 0u, 3u, z), vec4<f32>(a.x, b.x, c.x, d.x))
       + dot(byte_lanes(word, 2u, 3u, z), vec4<f32>(a.y, b.y, c.y, d.y))
       + dot(byte_lanes(word, 4u, 3u, z), vec4<f32>(a.z, b.z, c.z, d.z))
       + dot(byte_lanes(word, 6u, 3u, z), vec4<f32>(a.w, b.w, c.w, d.w));
}

// The quantization group of word `e` of quad q of row j.
fn group_of(j: u32, q: u32, e: u32) -> u32 {
  return j * f.groups_per_row + ((q * 4u + e) >> f.word_group_shift);
}

// One row's quad against its x, scaled once: the quad is one quantization group.
fn row_b8(j: u32, q: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
  let v = w[j * f.quads + q];
  let g = group_of(j, q, 0u);
  let z = zero_of(g);
  return scale_of(g) * (dot_b8(v.x, x0, z) + dot_b8(v.y, x1, z) + dot_b8(v.z, x2, z) + dot_b8(v.w, x3, z));
}

fn row_b4(j: u32, q: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
          x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
  let v = w[j * f.quads + q];
  let g = group_of(j, q, 0u);
  let z = zero_of(g);
  return scale_of(g) * (dot_b4(v.x, x0, x1, z) + dot_b4(v.y, x2, x3, z)
                      + dot_b4(v.z, x4, x5, z) + dot_b4(v.w, x6, x7, z));
}

// One row's word `e` of a quad against its 16 x (2-bit), scaled by the word's group.
fn word_b2(j: u32, q: u32, e: u32, word: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> f32 {
  let g = group_of(j, q, e);
  return scale_of(g) * dot_b2(word, a, b, c, d, zero_of(g));
}

// A thread's place: the first of its slice's ROWS rows (rows past n repeat the last one:
// computed, never stored) and its lane in the slice.
struct Slice {
  j0: u32,
  lane: u32,
}

fn slice_of(wg: vec3<u32>, nw: vec3<u32>, lid: u32) -> Slice {
  // more workgroups than one dispatch dimension holds spill into y
  let slices = THREADS / f.lanes;
  return Slice(((wg.x + wg.y * nw.x) * slices + lid / f.lanes) * ROWS, lid % f.lanes);
}

fn row(s: Slice, r: u32) -> u32 { return min(s.j0 + r, f.n - 1u); }

// Sums each slice's lanes and stores its ROWS outputs.
fn reduce_and_store(s: Slice, lid: u32, acc: vec4<f32>) {
  partial[lid] = acc;
  workgroupBarrier();
  for (var step = f.lanes / 2u; step > 0u; step >>= 1u) {
    if (s.lane < step) { partial[lid] += partial[lid + step]; }
    workgroupBarrier();
  }
  if (s.lane == 0u) {
    let sum = partial[lid];
    for (var r = 0u; r < ROWS; r++) {
      if (s.j0 + r < f.n) { y[s.j0 + r] = sum[r]; }
    }
  }
}

// Each width its own entry point, so its loop holds the quad's x in registers and every row
// of the slice uses them.
@compute @workgroup_size(128)
fn gemv_b4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slice_of(wg, nw, lid.x);
  var acc = vec4<f32>(0.0);
  for (var q = s.lane; q < f.quads; q += f.lanes) {
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
      row_b4(row(s, 0u), q, x0, x1, x2, x3, x4, x5, x6, x7),
      row_b4(row(s, 1u), q, x0, x1, x2, x3, x4, x5, x6, x7),
      row_b4(row(s, 2u), q, x0, x1, x2, x3, x4, x5, x6, x7),
      row_b4(row(s, 3u), q, x0, x1, x2, x3, x4, x5, x6, x7));
  }
  reduce_and_store(s, lid.x, acc);
}

@compute @workgroup_size(128)
fn gemv_b8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slice_of(wg, nw, lid.x);
  var acc = vec4<f32>(0.0);
  for (var q = s.lane; q < f.quads; q += f.lanes) {
    let i = q * 4u;
    let x0 = x[i];
    let x1 = x[i + 1u];
    let x2 = x[i + 2u];
    let x3 = x[i + 3u];
    acc += vec4<f32>(
      row_b8(row(s, 0u), q, x0, x1, x2, x3),
      row_b8(row(s, 1u), q, x0, x1, x2, x3),
      row_b8(row(s, 2u), q, x0, x1, x2, x3),
      row_b8(row(s, 3u), q, x0, x1, x2, x3));
  }
  reduce_and_store(s, lid.x, acc);
}

// 2-bit: a quad is 64 codes, four words of 16; each word's 16 x are read once for the four
// rows, and each word is scaled by its own group (g32 is two words).
fn words_b2(s: Slice, q: u32, e: u32, v0: u32, v1: u32, v2: u32, v3: u32) -> vec4<f32> {
  let i = (q * 4u + e) * 4u;
  let a = x[i];
  let b = x[i + 1u];
  let c = x[i + 2u];
  let d = x[i + 3u];
  return vec4<f32>(word_b2(row(s, 0u), q, e, v0, a, b, c, d), word_b2(row(s, 1u), q, e, v1, a, b, c, d),
                   word_b2(row(s, 2u), q, e, v2, a, b, c, d), word_b2(row(s, 3u), q, e, v3, a, b, c, d));
}

@compute @workgroup_size(128)
fn gemv_b2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slice_of(wg, nw, lid.x);
  var acc = vec4<f32>(0.0);
  for (var q = s.lane; q < f.quads; q += f.lanes) {
    let v0 = w[row(s, 0u) * f.quads + q];
    let v1 = w[row(s, 1u) * f.quads + q];
    let v2 = w[row(s, 2u) * f.quads + q];
    let v3 = w[row(s, 3u) * f.quads + q];
    acc += words_b2(s, q, 0u, v0.x, v1.x, v2.x, v3.x) + words_b2(s, q, 1u, v0.y, v1.y, v2.y, v3.y)
         + words_b2(s, q, 2u, v0.z, v1.z, v2.z, v3.z) + words_b2(s, q, 3u, v0.w, v1.w, v2.w, v3.w);
  }
  reduce_and_store(s, lid.x, acc);
}

// 3-bit: 32 codes a 96-bit block (3 words), code c at bit 3c, so codes 10 and 21 straddle two
// words; `quads` is blocks per row here and groups are whole blocks. Rows need not start on a
// vector, so words are read one at a time; the 32 codes' loop has constant bounds, which lets
// the compiler turn every shift and x index into a constant. x is read once per code for all
// four rows, whose words, scales and zero points sit in the lanes of vectors.
fn word_at(i: u32) -> u32 { return w[i / 4u][i % 4u]; }

fn block_words(rows: vec4<u32>, b: u32, e: u32) -> vec4<u32> {
  let at = rows * (f.quads * 3u) + vec4<u32>(b * 3u + e);
  return vec4<u32>(word_at(at.x), word_at(at.y), word_at(at.z), word_at(at.w));
}

@compute @workgroup_size(128)
fn gemv_b3(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slice_of(wg, nw, lid.x);
  let rows = vec4<u32>(row(s, 0u), row(s, 1u), row(s, 2u), row(s, 3u));
  var acc = vec4<f32>(0.0);
  for (var b = s.lane; b < f.quads; b += f.lanes) {
    let w0 = block_words(rows, b, 0u);
    let w1 = block_words(rows, b, 1u);
    let w2 = block_words(rows, b, 2u);
    let g = rows * f.groups_per_row + vec4<u32>(b >> f.word_group_shift);
    let zm = vec4<f32>(8388608.0) + vec4<f32>(zero_of(g.x), zero_of(g.y), zero_of(g.z), zero_of(g.w));
    let sc = vec4<f32>(scale_of(g.x), scale_of(g.y), scale_of(g.z), scale_of(g.w));
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
    acc += sc * sum;
  }
  reduce_and_store(s, lid.x, acc);
}

// The f32 baseline at its best: f32 weights (bits 32) read as vec4 and dotted with x.
fn dot_f32(j: u32, q: u32, xv: vec4<f32>) -> f32 {
  return dot(bitcast<vec4<f32>>(w[j * f.quads + q]), xv);
}

@compute @workgroup_size(128)
fn gemv_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nw: vec3<u32>) {
  let s = slice_of(wg, nw, lid.x);
  var acc = vec4<f32>(0.0);
  for (var q = s.lane; q < f.quads; q += f.lanes) {
    let xv = x[q];
    acc += vec4<f32>(dot_f32(row(s, 0u), q, xv), dot_f32(row(s, 1u), q, xv),
                     dot_f32(row(s, 2u), q, xv), dot_f32(row(s, 3u), q, xv));
  }
  reduce_and_store(s, lid.x, acc);
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
