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

fn rng(seed: u64, what: &str, name: &str) -> ChaCha8Rng {
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

/// `n × k` weights with variance `1/k` (uniform), like an initialised linear layer.
pub fn weights(seed: u64, layer: &Layer) -> Vec<f32> {
    let mut r = rng(seed, "weights", &layer.name);
    let a = (3.0 / layer.k as f32).sqrt();
    (0..layer.weights()).map(|_| uniform(&mut r, a)).collect()
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
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        let xi = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wj = &w[j * k..(j + 1) * k];
            let acc: f64 = xi
                .iter()
                .zip(wj)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            y[i * n + j] = acc as f32;
        }
    }
    y
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
}

pub fn layer_case(seed: u64, layer: &Layer, params: QuantParams) -> LayerCase {
    layer_case_with(weights(seed, layer), seed, layer, params)
}

/// Like [`layer_case`] with given weights (`n × k`, row-major), e.g. a model's real tensors.
pub fn layer_case_with(w: Vec<f32>, seed: u64, layer: &Layer, params: QuantParams) -> LayerCase {
    let x = input(seed, layer);
    let (m, k, n) = (layer.m as usize, layer.k as usize, layer.n as usize);
    let quantized = quantize(&w, layer.n, layer.k, params);
    let fp32_output = matmul(&x, &w, m, k, n);
    let dequantized_output = matmul(&x, &quantized.dequantize(), m, k, n);
    LayerCase {
        input: x,
        quantized,
        fp32_output,
        dequantized_output,
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

    const PINNED: u32 = 1_031_932_046;

    #[test]
    fn tensors_are_reproducible_and_distinct_per_layer() {
        let a = weights(7, &layer("ffn.up"));
        assert_eq!(a, weights(7, &layer("ffn.up")));
        assert_ne!(a, weights(7, &layer("ffn.down")));
        assert_ne!(a, weights(8, &layer("ffn.up")));
        // pinned: a change here changes every stored measurement's inputs
        assert_eq!(a[0].to_bits(), PINNED, "{}", a[0].to_bits());
        let bound = (3.0f32 / 256.0).sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound));
        let var = a.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / a.len() as f64;
        assert!((var * 256.0 - 1.0).abs() < 0.1, "variance {var}");
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

    #[test]
    fn compare_flags_shape_mismatch_and_non_finite_output() {
        assert_eq!(compare(&[1.0], &[1.0, 2.0]), None);
        let c = compare(&[f32::NAN, 1.0], &[1.0, 1.0]).expect("same shape");
        assert!(c.max_abs_err.is_infinite());
        let c = compare(&[1.5, 2.0], &[1.0, 2.0]).expect("same shape");
        assert_eq!(c.max_abs_err, 0.5);
    }
}
