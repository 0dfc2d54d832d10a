//! The references a browser's output is checked against, computed in Rust outside the browser:
//! seeded synthetic weights and inputs for a layer, its fp32 output, the output with the
//! dequantized weights the kernel actually sees, and the comparison of two outputs.
//!
//! Weights are drawn from ChaCha8 seeded with SHA-256(`seed`, layer name), so the same cell
//! produces the same tensors on every machine and in every quantgrid version.

use crate::quant::{QuantParams, Quantized, quantize};
use crate::workload::Layer;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

pub(crate) fn rng(seed: u64, what: &str, name: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(what.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// Uniform in `[-a, a)` from the top 24 bits of one draw: exact in f32 and independent of any
/// library's sampling algorithm.
fn uniform(r: &mut ChaCha8Rng, a: f32) -> f32 {
    let unit = (r.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
    (unit * 2.0 - 1.0) * a
}

/// A standard normal draw by Box–Muller from two 24-bit uniforms, in f64 so the result does
/// not depend on a library's sampling algorithm or on f32 transcendental functions.
pub(crate) fn normal(r: &mut ChaCha8Rng) -> f64 {
    let unit = |r: &mut ChaCha8Rng| (f64::from(r.next_u32() >> 8) + 0.5) / f64::from(1u32 << 24);
    let (u1, u2) = (unit(r), unit(r));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `n × k` weights drawn from N(0, 1/k), like an initialised linear layer. Normal, not
/// uniform: on all-MiniLM-L6-v2's 36 real matrices 4-bit g32 quantization has a median
/// relative error of 0.100, normal weights 0.097 and uniform ones 0.068 (1.5× too kind, and
/// blind to what larger groups cost on real weights), because quantization error follows the
/// largest weight of each group, and a normal distribution has a tail.
pub fn weights(seed: u64, layer: &Layer) -> Vec<f32> {
    let mut r = rng(seed, "weights", &layer.name);
    let sd = 1.0 / f64::from(layer.k.max(1)).sqrt();
    (0..layer.weights())
        .map(|_| (normal(&mut r) * sd) as f32)
        .collect()
}

/// `m × k` activations in `[-1, 1)`.
pub fn input(seed: u64, layer: &Layer) -> Vec<f32> {
    let mut r = rng(seed, "input", &layer.name);
    (0..u64::from(layer.m) * u64::from(layer.k))
        .map(|_| uniform(&mut r, 1.0))
        .collect()
}

/// `y = x · wᵀ` for `x: m × k`, `w: n × k`, accumulated in f64.
pub fn matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    matmul_with_magnitude(x, w, m, k, n).0
}

/// `y = x · wᵀ` and, per output, `Σ_i |x_i · w_ij|`: the magnitude a floating-point error
/// bound of that dot product scales with. Both accumulated in f64.
pub fn matmul_with_magnitude(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<f32>, Vec<f64>) {
    let mut y = vec![0f32; m * n];
    let mut mag = vec![0f64; m * n];
    for i in 0..m {
        let xi = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wj = &w[j * k..(j + 1) * k];
            let (mut acc, mut abs) = (0f64, 0f64);
            for (a, b) in xi.iter().zip(wj) {
                let t = f64::from(*a) * f64::from(*b);
                acc += t;
                abs += t.abs();
            }
            y[i * n + j] = acc as f32;
            mag[i * n + j] = abs;
        }
    }
    (y, mag)
}

/// The constant `c` of the kernel check's error bound. The worst-case bound of a `k`-term
/// f32 dot product is `γ_k · Σ|x_i·w_i|` with `γ_k ≈ k·2⁻²⁴` (c = 1): it is reached only when
/// every rounding goes the same way, and at k = 11008 it is ~5% of an output's size, too loose
/// to see a kernel that is 1% wrong. Rounding errors of a correct kernel add up like a random
/// walk, far below it (docs/BENCHMARKS.md has the measured fractions); `c = 1/16` keeps a
/// wide margin for them and still fails a 1%-wrong kernel at every shape the registry has.
pub const KERNEL_BOUND_C: f64 = 1.0 / 16.0;

/// Units of 2⁻²⁴ allowed on top of `c·k` for the reference's own rounding to f32 and the
/// output's.
const REFERENCE_ROUNDING: f64 = 2.0;

/// Below this many terms the bound is that of this many: a short sum's random rounding
/// (about √k units) is not small next to `c·k` there (measured: a correct 16×16-tiled kernel
/// at k = 80 used 41% of a bound without the floor).
pub const KERNEL_BOUND_MIN_K: u32 = 256;

/// Largest |y_j − ref_j| a correct kernel may show for an output whose terms have magnitude
/// `magnitude` (`Σ_i |x_i · w_ij|`): `(c·max(k, 256) + 2) · 2⁻²⁴ · magnitude`.
pub fn kernel_bound(c: f64, k: u32, magnitude: f64) -> f64 {
    (c * f64::from(k.max(KERNEL_BOUND_MIN_K)) + REFERENCE_ROUNDING) * f64::from(f32::EPSILON) / 2.0
        * magnitude
}

/// A kernel's output against the dequantized reference, output by output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelCheck {
    pub max_abs_err: f64,
    /// The bound's constant `c`.
    pub bound_c: f64,
    /// max_j |y_j − ref_j| / bound_j: a correct kernel stays at or below 1. Infinite for a
    /// non-finite output.
    pub worst_ratio: f64,
}

impl KernelCheck {
    pub fn passed(&self) -> bool {
        self.worst_ratio <= 1.0
    }
}

/// Checks `got` against `want` output by output with [`kernel_bound`]; `None` on a size
/// mismatch.
pub fn check_kernel(got: &[f32], want: &[f32], magnitude: &[f64], k: u32) -> Option<KernelCheck> {
    if got.len() != want.len() || want.len() != magnitude.len() || want.is_empty() {
        return None;
    }
    let (mut max_abs, mut worst) = (0f64, 0f64);
    for ((g, w), mag) in got.iter().zip(want).zip(magnitude) {
        let d = (f64::from(*g) - f64::from(*w)).abs();
        if !d.is_finite() {
            return Some(KernelCheck {
                max_abs_err: f64::INFINITY,
                bound_c: KERNEL_BOUND_C,
                worst_ratio: f64::INFINITY,
            });
        }
        max_abs = max_abs.max(d);
        let bound = kernel_bound(KERNEL_BOUND_C, k, *mag);
        let ratio = if d == 0.0 {
            0.0
        } else if bound > 0.0 {
            d / bound
        } else {
            f64::INFINITY
        };
        worst = worst.max(ratio);
    }
    Some(KernelCheck {
        max_abs_err: max_abs,
        bound_c: KERNEL_BOUND_C,
        worst_ratio: worst,
    })
}

/// Everything needed to run and check one layer of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCase {
    pub input: Vec<f32>,
    pub quantized: Quantized,
    /// Output with the original fp32 weights: quantization's accuracy cost is measured here.
    pub fp32_output: Vec<f32>,
    /// Output with the dequantized weights: a correct kernel matches this closely.
    pub dequantized_output: Vec<f32>,
    /// Per output, `Σ_i |x_i · dequantized w_ij|`: what its error bound scales with.
    pub dequantized_magnitude: Vec<f64>,
    /// The same with the fp32 weights, for the unquantized baseline kernel.
    pub fp32_magnitude: Vec<f64>,
}

pub fn layer_case(seed: u64, layer: &Layer, params: QuantParams) -> LayerCase {
    layer_case_with(weights(seed, layer), seed, layer, params)
}

/// Like [`layer_case`] with given weights (`n × k`, row-major), e.g. a model's real tensors.
pub fn layer_case_with(w: Vec<f32>, seed: u64, layer: &Layer, params: QuantParams) -> LayerCase {
    let x = input(seed, layer);
    let (m, k, n) = (layer.m as usize, layer.k as usize, layer.n as usize);
    let quantized = quantize(&w, layer.n, layer.k, params);
    let (fp32_output, fp32_magnitude) = matmul_with_magnitude(&x, &w, m, k, n);
    let (dequantized_output, dequantized_magnitude) =
        matmul_with_magnitude(&x, &quantized.dequantize(), m, k, n);
    LayerCase {
        input: x,
        quantized,
        fp32_output,
        dequantized_output,
        dequantized_magnitude,
        fp32_magnitude,
    }
}

/// How far an output is from a reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub max_abs_err: f64,
    /// ‖got − want‖₂ / ‖want‖₂
    pub rel_err: f64,
}

pub fn compare(got: &[f32], want: &[f32]) -> Option<Comparison> {
    if got.len() != want.len() || want.is_empty() {
        return None;
    }
    let mut max_abs = 0f64;
    let (mut diff2, mut want2) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        let d = f64::from(*g) - f64::from(*w);
        if !d.is_finite() {
            return Some(Comparison {
                max_abs_err: f64::INFINITY,
                rel_err: f64::INFINITY,
            });
        }
        max_abs = max_abs.max(d.abs());
        diff2 += d * d;
        want2 += f64::from(*w) * f64::from(*w);
    }
    Some(Comparison {
        max_abs_err: max_abs,
        rel_err: (diff2 / want2.max(f64::MIN_POSITIVE)).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Bits, Scheme};
    use crate::workload::Role;

    fn layer(name: &str) -> Layer {
        Layer {
            name: name.into(),
            role: Role::Ffn,
            m: 4,
            k: 256,
            n: 64,
        }
    }

    const PINNED: u32 = 1_019_825_723;

    #[test]
    fn tensors_are_reproducible_and_distinct_per_layer() {
        let a = weights(7, &layer("ffn.up"));
        assert_eq!(a, weights(7, &layer("ffn.up")));
        assert_ne!(a, weights(7, &layer("ffn.down")));
        assert_ne!(a, weights(8, &layer("ffn.up")));
        // pinned: a change here changes every stored measurement's inputs
        assert_eq!(a[0].to_bits(), PINNED, "{}", a[0].to_bits());
        let var = a.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / a.len() as f64;
        assert!((var * 256.0 - 1.0).abs() < 0.1, "variance {var}");
        // a normal tail: about 0.27% of draws beyond 3 standard deviations, none for uniform
        let sd = 1.0 / 16.0;
        let tail =
            a.iter().filter(|v| f64::from(v.abs()) > 3.0 * sd).count() as f64 / a.len() as f64;
        assert!((0.001..0.006).contains(&tail), "tail {tail}");
    }

    #[test]
    fn matmul_matches_a_hand_computed_case() {
        // x = [[1, 2]], w = [[3, 4], [5, 6]] → y = [[11, 17]]
        assert_eq!(
            matmul(&[1.0, 2.0], &[3.0, 4.0, 5.0, 6.0], 1, 2, 2),
            vec![11.0, 17.0]
        );
    }

    #[test]
    fn accuracy_cost_shrinks_with_bits_and_the_kernel_reference_is_what_a_kernel_sees() {
        let l = layer("attn.q");
        let mut last = f64::INFINITY;
        for bits in [Bits::B2, Bits::B3, Bits::B4, Bits::B8, Bits::B16] {
            let c = layer_case(
                1,
                &l,
                QuantParams {
                    bits,
                    scheme: Scheme::Symmetric,
                    group_size: 32,
                },
            );
            let cost = compare(&c.dequantized_output, &c.fp32_output).expect("same shape");
            assert!(cost.rel_err < last, "{bits}: {} !< {last}", cost.rel_err);
            last = cost.rel_err;
            // a kernel computing with the dequantized weights matches exactly
            let exact = compare(&c.dequantized_output, &c.dequantized_output).expect("same shape");
            assert_eq!((exact.max_abs_err, exact.rel_err), (0.0, 0.0));
        }
        assert!(last < 1e-3, "fp16 should cost almost nothing: {last}");
    }

    /// A kernel's output computed the way a GPU thread would: f32 products summed one after
    /// another in f32 (the order with the largest rounding error), over weights `w`.
    fn f32_kernel(x: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|j| {
                x.iter()
                    .zip(&w[j * k..(j + 1) * k])
                    .fold(0f32, |acc, (a, b)| acc + a * b)
            })
            .collect()
    }

    #[test]
    fn the_kernel_bound_passes_a_correct_kernel_and_fails_four_planted_mistakes() {
        use half::f16;
        for k in [768u32, 11008] {
            let l = Layer {
                name: format!("llama.ffn.down.{k}"),
                role: Role::Ffn,
                m: 1,
                k,
                n: 48,
            };
            let params = QuantParams {
                bits: Bits::B4,
                scheme: Scheme::Symmetric,
                group_size: 32,
            };
            let c = layer_case(3, &l, params);
            let (k, n) = (k as usize, l.n as usize);
            let dq = c.quantized.dequantize();
            let check = |y: &[f32]| {
                check_kernel(y, &c.dequantized_output, &c.dequantized_magnitude, l.k)
                    .expect("same shape")
            };
            let good = check(&f32_kernel(&c.input, &dq, k, n));
            eprintln!(
                "k = {k}: a correct sequential f32 kernel: {:.4} of the bound",
                good.worst_ratio
            );
            assert!(good.passed(), "k={k}: a correct kernel fails: {good:?}");
            // measured: a correct sequential f32 kernel uses well under a tenth of the bound
            assert!(good.worst_ratio < 0.1, "k={k}: {good:?}");
            let one_percent: Vec<f32> = f32_kernel(&c.input, &dq, k, n)
                .iter()
                .map(|y| y * 1.01)
                .collect();
            let fp16_acc: Vec<f32> = (0..n)
                .map(|j| {
                    c.input
                        .iter()
                        .zip(&dq[j * k..(j + 1) * k])
                        .fold(f16::ZERO, |acc, (a, b)| acc + f16::from_f32(a * b))
                        .to_f32()
                })
                .collect();
            // the scales of each pair of groups read from the wrong half of their word
            let gpr = k.div_ceil(32);
            let mut swapped = c.quantized.clone();
            for pair in swapped.scales.chunks_mut(2) {
                pair.reverse();
            }
            let swapped = swapped.dequantize();
            // (code − (zero + 1)) · scale = dequantized − scale
            let zero_off: Vec<f32> = dq
                .iter()
                .enumerate()
                .map(|(i, w)| w - c.quantized.scales[(i / k) * gpr + (i % k) / 32].to_f32())
                .collect();
            for (name, y) in [
                ("1% off", one_percent),
                ("fp16 accumulation", fp16_acc),
                ("swapped fp16 scales", f32_kernel(&c.input, &swapped, k, n)),
                (
                    "zero point off by one",
                    f32_kernel(&c.input, &zero_off, k, n),
                ),
            ] {
                let r = check(&y);
                // docs/BENCHMARKS.md quotes these
                eprintln!("k = {k}: {name}: {:.1}× the bound", r.worst_ratio);
                assert!(!r.passed(), "k={k}: {name} passes the kernel check: {r:?}");
            }
        }
    }

    #[test]
    fn a_one_percent_wrong_kernel_fails_at_the_largest_k_of_the_registry() {
        let size = crate::workload::WorkloadSize {
            layers: 1,
            seq_len: 1,
            head: true,
        };
        let k = crate::family::families()
            .iter()
            .flat_map(|f| f.models.iter())
            .flat_map(|m| crate::workload::workload(m, size).layers)
            .map(|l| l.k)
            .max()
            .expect("the registry has layers");
        let l = Layer {
            name: format!("largest.{k}"),
            role: Role::Ffn,
            m: 1,
            k,
            n: 16,
        };
        let params = QuantParams {
            bits: Bits::B8,
            scheme: Scheme::Symmetric,
            group_size: 32,
        };
        let c = layer_case(5, &l, params);
        let wrong: Vec<f32> = c.dequantized_output.iter().map(|y| y * 1.01).collect();
        let r = check_kernel(&wrong, &c.dequantized_output, &c.dequantized_magnitude, k)
            .expect("shape");
        eprintln!("largest k = {k}: 1% off: {:.1}× the bound", r.worst_ratio);
        assert!(!r.passed(), "k = {k}: {r:?}");
    }

    #[test]
    fn the_bound_is_stated_in_units_of_the_f32_epsilon() {
        // (c·max(k, 256) + 2) · 2⁻²⁴ · Σ|x·w|
        let b = kernel_bound(KERNEL_BOUND_C, 1024, 1.0);
        assert!((b - 66.0 * 2f64.powi(-24)).abs() < 1e-18, "{b}");
        let small = kernel_bound(KERNEL_BOUND_C, 80, 1.0);
        assert!((small - 18.0 * 2f64.powi(-24)).abs() < 1e-18, "{small}");
        let c = check_kernel(&[1.0, f32::NAN], &[1.0, 1.0], &[1.0, 1.0], 4).expect("shape");
        assert!(!c.passed() && c.worst_ratio.is_infinite());
        let exact = check_kernel(&[0.0], &[0.0], &[0.0], 4).expect("shape");
        assert!(exact.passed());
    }

    #[test]
    fn compare_flags_shape_mismatch_and_non_finite_output() {
        assert_eq!(compare(&[1.0], &[1.0, 2.0]), None);
        let c = compare(&[f32::NAN, 1.0], &[1.0, 1.0]).expect("same shape");
        assert!(c.max_abs_err.is_infinite());
        let c = compare(&[1.5, 2.0], &[1.0, 2.0]).expect("same shape");
        assert_eq!(c.max_abs_err, 0.5);
    }
}
