# Candidate kernels for the native bench (docs/BENCHMARKS.md): variants of gemv.wgsl's wide
# GEMV with the same bindings, named c<bits>_r<rows>_t<threads>[sg|off|pos|nox|mem], which
# `QG_NATIVE_CANDIDATES=` times beside the landed kernels. `nox` and `mem` are probes that
# fail the check by design (no x loads; weights only).
#
#   python3 agent/benches/gemv_candidates.py OUT_DIR   # writes cand.wgsl, cand_sg.wgsl, …
import os
import sys
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else '.'
PRE = open(os.path.join(HERE, '..', 'harness', 'kernels', 'gemv.wgsl')).read()
# keep the preamble up to the 'const ROWS' line (struct, bindings) and the helpers
head = PRE.split('const ROWS = ')[0]
# the landed kernel's own helpers (scale_of, zero_of, byte_lanes, dot_b8, dot_b4, dot_b2)
helpers = PRE[PRE.index('fn scale_of('):PRE.index('// The quantization group of word')] + '''
// 16 + code for the 8 nibbles of a word, the code put in the mantissa of 16.0 (bits 19..22)
fn off_b4(word: u32, a: vec4<f32>, b: vec4<f32>) -> f32 {
  let v = vec4<u32>(word);
  let even = ((v << vec4<u32>(19u, 11u, 3u, 0u)) >> vec4<u32>(0u, 0u, 0u, 5u)) & vec4<u32>(0x00780000u);
  let odd = ((v << vec4<u32>(15u, 7u, 0u, 0u)) >> vec4<u32>(0u, 0u, 1u, 9u)) & vec4<u32>(0x00780000u);
  return dot(bitcast<vec4<f32>>(even | vec4<u32>(0x41800000u)), vec4<f32>(a.x, a.z, b.x, b.z))
       + dot(bitcast<vec4<f32>>(odd | vec4<u32>(0x41800000u)), vec4<f32>(a.y, a.w, b.y, b.w));
}
'''

def reduce(name, R, T, sg):
    C = R // 4
    out = []
    if sg:
        out.append(f'  let nsg = ({T}u + sg_size - 1u) / sg_size;')
        for c in range(C):
            out.append(f'  a{c} = subgroupAdd(a{c});')
        out.append('  if (sg_id == 0u) {')
        for c in range(C):
            out.append(f'    red_{name}[(lid.x / sg_size) * {C}u + {c}u] = a{c};')
        out.append('  }')
        out.append('  workgroupBarrier();')
        out.append(f'  if (lid.x < {C}u) {{')
        out.append('    var s = vec4<f32>(0.0);')
        out.append(f'    for (var i = 0u; i < nsg; i++) {{ s += red_{name}[i * {C}u + lid.x]; }}')
    else:
        for c in range(C):
            out.append(f'  red_{name}[lid.x * {C}u + {c}u] = a{c};')
        out.append('  workgroupBarrier();')
        out.append(f'  for (var step = {T // 2}u; step > 0u; step >>= 1u) {{')
        out.append('    if (lid.x < step) {')
        for c in range(C):
            out.append(f'      red_{name}[lid.x * {C}u + {c}u] += red_{name}[(lid.x + step) * {C}u + {c}u];')
        out.append('    }')
        out.append('    workgroupBarrier();')
        out.append('  }')
        out.append(f'  if (lid.x < {C}u) {{')
        out.append(f'    let s = red_{name}[lid.x];')
    out.append('    for (var r = 0u; r < 4u; r++) {')
    out.append('      let j = j0 + lid.x * 4u + r;')
    out.append('      if (j < f.n) { y[j] = s[r]; }')
    out.append('    }')
    out.append('  }')
    return '\n'.join(out)

def header(name, R, T, sg):
    C = R // 4
    size = T * C
    s = f'var<workgroup> red_{name}: array<vec4<f32>, {size}>;\n'
    s += f'@compute @workgroup_size({T})\n'
    s += f'fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,\n'
    s += '    @builtin(num_workgroups) nw: vec3<u32>'
    if sg:
        s += ', @builtin(subgroup_invocation_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32'
    s += ') {\n'
    s += f'  let j0 = (wg.x + wg.y * nw.x) * {R}u;\n'
    s += '  if (j0 >= f.n) { return; }\n'
    s += '  let last = f.n - 1u;\n'
    for r in range(R):
        s += f'  let row{r} = min(j0 + {r}u, last);\n'
    for c in range(C):
        s += f'  var a{c} = vec4<f32>(0.0);\n'
    return s

def vec_of(R, exprs):
    # exprs: list of R scalar expressions -> accumulate into a0..
    out = []
    for c in range(R // 4):
        out.append(f'    a{c} += vec4<f32>({", ".join(exprs[c*4:(c+1)*4])});')
    return '\n'.join(out)

def k4(R, T, sg=False, mode='std'):
    name = f'c4_r{R}_t{T}' + ('sg' if sg else '') + ('' if mode == 'std' else mode)
    s = header(name, R, T, sg)
    s += f'  for (var q = lid.x; q < f.quads; q += {T}u) {{\n'
    s += '    let i = q * 8u;\n'
    if mode == 'nox':
        for t in range(8):
            s += f'    let x{t} = vec4<f32>(f32(q));\n'
    else:
        for t in range(8):
            s += f'    let x{t} = x[i + {t}u];\n'
    s += '    let gq = (q * 4u) >> f.word_group_shift;\n'
    if mode == 'off':
        s += '    let sx = dot(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7, vec4<f32>(1.0));\n'
    for r in range(R):
        s += f'    let v{r} = w[row{r} * f.quads + q];\n'
    ex = []
    for r in range(R):
        g = f'row{r} * f.groups_per_row + gq'
        if mode == 'mem':
            ex.append(f'f32(v{r}.x ^ v{r}.y ^ v{r}.z ^ v{r}.w)')
        elif mode == 'off':
            ex.append(f'scale_of({g}) * (off_b4(v{r}.x, x0, x1) + off_b4(v{r}.y, x2, x3) + off_b4(v{r}.z, x4, x5) + off_b4(v{r}.w, x6, x7) - (16.0 + zero_of({g})) * sx)')
        else:
            ex.append(f'q4(v{r}, {g}, x0, x1, x2, x3, x4, x5, x6, x7)')
    s += vec_of(R, ex) + '\n'
    s += '  }\n'
    if mode in ('nox', 'mem'):
        s += '  a0.x += x[0].x + f32(scales[0] ^ zeros[0]);\n'
    s += reduce(name, R, T, sg) + '\n}\n'
    return s

def k8(R, T, sg=False):
    name = f'c8_r{R}_t{T}' + ('sg' if sg else '')
    s = header(name, R, T, sg)
    s += f'  for (var q = lid.x; q < f.quads; q += {T}u) {{\n'
    s += '    let i = q * 4u;\n'
    for t in range(4):
        s += f'    let x{t} = x[i + {t}u];\n'
    s += '    let gq = (q * 4u) >> f.word_group_shift;\n'
    for r in range(R):
        s += f'    let v{r} = w[row{r} * f.quads + q];\n'
    ex = [f'q8(v{r}, row{r} * f.groups_per_row + gq, x0, x1, x2, x3)' for r in range(R)]
    s += vec_of(R, ex) + '\n  }\n'
    s += reduce(name, R, T, sg) + '\n}\n'
    return s

def k2(R, T, sg=False):
    # per quad: 4 words of 16 codes; x for a word (4 vectors) loaded once for all rows
    name = f'c2_r{R}_t{T}' + ('sg' if sg else '')
    s = header(name, R, T, sg)
    s += f'  for (var q = lid.x; q < f.quads; q += {T}u) {{\n'
    for r in range(R):
        s += f'    let v{r} = w[row{r} * f.quads + q];\n'
    for e in range(4):
        s += f'    {{\n      let i = (q * 4u + {e}u) * 4u;\n'
        s += '      let xa = x[i]; let xb = x[i + 1u]; let xc = x[i + 2u]; let xd = x[i + 3u];\n'
        s += f'      let g = (q * 4u + {e}u) >> f.word_group_shift;\n'
        ex = []
        for r in range(R):
            gg = f'row{r} * f.groups_per_row + g'
            ex.append(f'scale_of({gg}) * dot_b2(v{r}[{e}], xa, xb, xc, xd, zero_of({gg}))')
        s += '  ' + vec_of(R, ex).replace('\n', '\n  ') + '\n    }\n'
    s += '  }\n'
    s += reduce(name, R, T, sg) + '\n}\n'
    return s

def k3(R, T, sg=False):
    # gemv_b3 with R/4 lane sets
    name = f'c3_r{R}_t{T}' + ('sg' if sg else '')
    s = header(name, R, T, sg)
    C = R // 4
    s += '  let wpr = f.quads * 3u;\n'
    for c in range(C):
        s += f'  let rows{c} = vec4<u32>(row{4*c}, row{4*c+1}, row{4*c+2}, row{4*c+3});\n'
    s += f'  for (var b = lid.x; b < f.quads; b += {T}u) {{\n'
    for c in range(C):
        s += f'    let at{c} = rows{c} * wpr + vec4<u32>(b * 3u);\n'
        for k in range(3):
            s += f'    let w{c}_{k} = vec4<u32>(word_at(at{c}.x + {k}u), word_at(at{c}.y + {k}u), word_at(at{c}.z + {k}u), word_at(at{c}.w + {k}u));\n'
        s += f'    let g{c} = rows{c} * f.groups_per_row + vec4<u32>(b >> f.word_group_shift);\n'
        s += f'    let zm{c} = vec4<f32>(8388608.0) + vec4<f32>(zero_of(g{c}.x), zero_of(g{c}.y), zero_of(g{c}.z), zero_of(g{c}.w));\n'
        s += f'    let s{c} = vec4<f32>(scale_of(g{c}.x), scale_of(g{c}.y), scale_of(g{c}.z), scale_of(g{c}.w));\n'
        s += f'    var sum{c} = vec4<f32>(0.0);\n'
    s += '    for (var c = 0u; c < 32u; c++) {\n'
    s += '      let bit = 3u * c;\n      let lo = bit / 32u;\n      let off = bit % 32u;\n'
    s += '      let xv = x[b * 8u + c / 4u][c % 4u];\n'
    for c in range(C):
        s += f'      var u{c} = select(select(w{c}_2, w{c}_1, lo == 1u), w{c}_0, lo == 0u) >> vec4<u32>(off);\n'
        s += f'      if (off > 29u) {{ u{c} = u{c} | (select(w{c}_2, w{c}_1, lo == 0u) << vec4<u32>(32u - off)); }}\n'
        s += f'      sum{c} += (bitcast<vec4<f32>>((u{c} & vec4<u32>(7u)) | vec4<u32>(MAGIC)) - zm{c}) * xv;\n'
    s += '    }\n'
    for c in range(C):
        s += f'    a{c} += s{c} * sum{c};\n'
    s += '  }\n'
    s += reduce(name, R, T, sg) + '\n}\n'
    return s

common = '''
fn q4(v: vec4<u32>, g: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
      x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
  let z = zero_of(g);
  return scale_of(g) * (dot_b4(v.x, x0, x1, z) + dot_b4(v.y, x2, x3, z) + dot_b4(v.z, x4, x5, z) + dot_b4(v.w, x6, x7, z));
}
fn q8(v: vec4<u32>, g: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
  let z = zero_of(g);
  return scale_of(g) * (dot_b8(v.x, x0, z) + dot_b8(v.y, x1, z) + dot_b8(v.z, x2, z) + dot_b8(v.w, x3, z));
}
fn word_at(i: u32) -> u32 { return w[i / 4u][i % 4u]; }
'''

plain = [k4(4, 64), k4(8, 64), k4(16, 64), k4(32, 64), k4(8, 128), k4(16, 128), k4(16, 256),
         k4(4, 64, mode='nox'), k4(16, 64, mode='nox'), k4(4, 64, mode='mem'), k4(16, 64, mode='mem'),
         k4(8, 64, mode='off'), k4(16, 64, mode='off'), k4(16, 128, mode='off'),
         k8(8, 64), k8(16, 64), k8(16, 128),
         k2(8, 64), k2(16, 64), k2(16, 128),
         k3(8, 64), k3(16, 64)]
sgk = [k4(16, 64, True), k4(16, 128, True), k4(32, 128, True), k4(16, 128, True, 'off'), k4(32, 128, True, 'off'),
       k8(16, 128, True), k2(16, 128, True), k3(16, 64, True)]
open(os.path.join(OUT, 'cand.wgsl'), 'w').write(head + helpers + common + '\n'.join(plain))
open(os.path.join(OUT, 'cand_sg.wgsl'), 'w').write('// needs subgroups\n' + head + helpers + common + '\n'.join(sgk))
lvp = [k4(4, 64), k4(8, 64), k4(8, 32), k4(8, 8), k4(16, 32), k4(16, 16), k4(4, 32), k4(8, 16)]
open(os.path.join(OUT, 'cand_lvp.wgsl'), 'w').write(head + helpers + common + '\n'.join(lvp))

# mantissa-position trick: nibble p (bits 4p..4p+3, p <= 4) OR-ed into 2^(23-4p) is 2^(23-4p) + c;
# nibbles 5..7 after one shift by 12 sit at p = 2..4
pos_helpers = '''
fn pos4(word: u32, a: vec4<f32>, b: vec4<f32>) -> f32 {
  let u = word >> 12u;
  let lo = bitcast<vec4<f32>>((vec4<u32>(word) & vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u)) | vec4<u32>(0x4B000000u, 0x49000000u, 0x47000000u, 0x45000000u))
         - vec4<f32>(8388608.0, 524288.0, 32768.0, 2048.0);
  let hi = bitcast<vec4<f32>>((vec4<u32>(word, u, u, u) & vec4<u32>(0xF0000u, 0xF00u, 0xF000u, 0xF0000u)) | vec4<u32>(0x43000000u, 0x47000000u, 0x45000000u, 0x43000000u))
         - vec4<f32>(128.0, 32768.0, 2048.0, 128.0);
  return dot(lo, a) + dot(hi, b);
}
fn pq4(v: vec4<u32>, g: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
      x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, sx: f32) -> f32 {
  return scale_of(g) * (pos4(v.x, x0, x1) + pos4(v.y, x2, x3) + pos4(v.z, x4, x5) + pos4(v.w, x6, x7) - zero_of(g) * sx);
}
// 8-bit: bytes 0 and 1 in place (2^23 + c, 2^15 + c), bytes 2 and 3 after a shift by 16
fn pos8(word: u32, a: vec4<f32>) -> f32 {
  let u = word >> 16u;
  let v = bitcast<vec4<f32>>((vec4<u32>(word, word, u, u) & vec4<u32>(0xFFu, 0xFF00u, 0xFFu, 0xFF00u)) | vec4<u32>(0x4B000000u, 0x47000000u, 0x4B000000u, 0x47000000u))
        - vec4<f32>(8388608.0, 32768.0, 8388608.0, 32768.0);
  return dot(v, a);
}
fn pq8(v: vec4<u32>, g: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, sx: f32) -> f32 {
  return scale_of(g) * (pos8(v.x, x0) + pos8(v.y, x1) + pos8(v.z, x2) + pos8(v.w, x3) - zero_of(g) * sx);
}
'''

def kpos4(R, T, mode=''):
    # modes (probes fail the check by design): alu = no weight loads (words made from q),
    # nx = no x loads, ns = no scale or zero loads; pf = the next iteration's words loaded
    # before this one's arithmetic (a real kernel)
    name = f'c4_r{R}_t{T}pos{mode}'
    s = header(name, R, T, False)
    if mode == 'pf':
        for r in range(R):
            s += f'  var v{r} = w[row{r} * f.quads + min(lid.x, f.quads - 1u)];\n'
    s += f'  for (var q = lid.x; q < f.quads; q += {T}u) {{\n'
    s += '    let i = q * 8u;\n'
    for t in range(8):
        s += f'    let x{t} = ' + ('vec4<f32>(f32(q) + ' + str(t) + '.0)' if mode == 'nx' else f'x[i + {t}u]') + ';\n'
    s += '    let sx = dot(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7, vec4<f32>(1.0));\n'
    s += '    let gq = (q * 4u) >> f.word_group_shift;\n'
    for r in range(R):
        if mode == 'alu':
            s += f'    let v{r} = vec4<u32>(q * 0x9E3779B9u + {r}u) * vec4<u32>(1u, 3u, 5u, 7u);\n'
        elif mode == 'pf':
            s += f'    let u{r} = v{r};\n'
            s += f'    v{r} = w[row{r} * f.quads + min(q + {T}u, f.quads - 1u)];\n'
        else:
            s += f'    let v{r} = w[row{r} * f.quads + q];\n'
    if mode == 'ns':
        ex = [f'pos4(v{r}.x, x0, x1) + pos4(v{r}.y, x2, x3) + pos4(v{r}.z, x4, x5) + pos4(v{r}.w, x6, x7) - 8.0 * sx' for r in range(R)]
    else:
        vv = 'u' if mode == 'pf' else 'v'
        ex = [f'pq4({vv}{r}, row{r} * f.groups_per_row + gq, x0, x1, x2, x3, x4, x5, x6, x7, sx)' for r in range(R)]
    s += vec_of(R, ex) + '\n  }\n'
    if mode in ('alu', 'nx', 'ns'):
        s += '  a0.x += x[0].x + f32(scales[0] ^ zeros[0] ^ w[0].x);\n'
    s += reduce(name, R, T, False) + '\n}\n'
    return s

def kpos8(R, T):
    name = f'c8_r{R}_t{T}pos'
    s = header(name, R, T, False)
    s += f'  for (var q = lid.x; q < f.quads; q += {T}u) {{\n'
    s += '    let i = q * 4u;\n'
    for t in range(4):
        s += f'    let x{t} = x[i + {t}u];\n'
    s += '    let sx = dot(x0 + x1 + x2 + x3, vec4<f32>(1.0));\n'
    s += '    let gq = (q * 4u) >> f.word_group_shift;\n'
    for r in range(R):
        s += f'    let v{r} = w[row{r} * f.quads + q];\n'
    ex = [f'pq8(v{r}, row{r} * f.groups_per_row + gq, x0, x1, x2, x3, sx)' for r in range(R)]
    s += vec_of(R, ex) + '\n  }\n'
    s += reduce(name, R, T, False) + '\n}\n'
    return s

run2 = [k4(4, 128), k4(8, 128), k4(4, 256), k4(8, 256), kpos4(4, 128), kpos4(8, 128), kpos4(8, 256), kpos4(16, 256),
        k8(8, 128), k8(16, 256), kpos8(8, 128), kpos8(16, 128), kpos8(16, 256), k2(4, 128), k2(8, 128)]
open(os.path.join(OUT, 'cand2.wgsl'), 'w').write(head + helpers + pos_helpers + common + '\n'.join(run2))
run3 = [k4(8, 128), kpos4(4, 128), kpos4(8, 128), kpos4(8, 256), k8(16, 128), kpos8(16, 128)]
open(os.path.join(OUT, 'cand3.wgsl'), 'w').write(head + helpers + pos_helpers + common + '\n'.join(run3))
# where the 4-bit kernel's time goes (the H200 run of docs/BENCHMARKS.md): probes beside the
# eight-row `pos` kernel, and two real variants (the next words loaded early; 16 rows)
run4 = [kpos4(8, 128), kpos4(8, 128, 'alu'), kpos4(8, 128, 'nx'), kpos4(8, 128, 'ns'), k4(8, 128, mode='mem'),
        kpos4(8, 128, 'pf'), kpos4(4, 128, 'pf'), kpos4(16, 128), kpos4(16, 256)]
open(os.path.join(OUT, 'cand4.wgsl'), 'w').write(head + helpers + pos_helpers + common + '\n'.join(run4))
