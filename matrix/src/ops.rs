//! The operations of the families' blocks in f64: what [`crate::graph`]'s interpreter runs
//! for the references a block run in the browser is checked against, computed outside it.
//! Pure functions of row-major slices; the weights come in as the f32 tensors a cell uses (the
//! fp32 ones for the accuracy reference, the dequantized ones for the kernel reference), so
//! one code path serves both.

use serde::{Deserialize, Serialize};

/// The activation of a family's feed-forward network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (BERT, ViT, Whisper).
    GeluErf,
    /// The tanh approximation of GELU (GPT-2, Gemma).
    GeluTanh,
    Relu,
    /// `x·σ(x)` (LLaMA, Qwen).
    Silu,
    /// `x·σ(1.702·x)` (CLIP and its descendants).
    QuickGelu,
}

impl Activation {
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::GeluErf => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Relu => x.max(0.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        }
    }
}

/// `y = x · wᵀ (+ bias)` for `x: m × k` in f64 and `w: n × k` as stored.
pub fn linear(
    x: &[f64],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        let xi = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wj = &w[j * k..(j + 1) * k];
            let dot: f64 = xi.iter().zip(wj).map(|(a, b)| a * f64::from(*b)).sum();
            y[i * n + j] = dot + bias.map_or(0.0, |b| f64::from(b[j]));
        }
    }
    y
}

/// LayerNorm over each row of `x: rows × dim`, with the model's `eps`.
pub fn layer_norm(x: &[f64], dim: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
    x.chunks(dim)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dim as f64;
            let inv = 1.0 / (var + eps).sqrt();
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(move |(v, (g, b))| (v - mean) * inv * f64::from(*g) + f64::from(*b))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RMSNorm over each row of `x: rows × dim` (LLaMA, Gemma, Qwen).
pub fn rms_norm(x: &[f64], dim: usize, gamma: &[f32], eps: f64) -> Vec<f64> {
    x.chunks(dim)
        .flat_map(|row| {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / dim as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            row.iter()
                .zip(gamma)
                .map(move |(v, g)| v * inv * f64::from(*g))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Softmax of each row of `x: rows × cols`, shifted by the row's maximum so large scores do
/// not overflow.
pub fn softmax_rows(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect()
}

/// The shape of scaled dot-product attention: `heads` query heads sharing `kv_heads` key and
/// value heads (grouped-query attention when fewer), each `head_dim` wide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Query `i` sees keys `0..=offset + i` only (decoders; `offset` = cached positions).
    pub causal: bool,
    /// What scores are multiplied by: `1/√d` for most families, 1 for GPT-Neo.
    pub scale: f64,
}

/// `softmax(q·kᵀ·scale + bias)·v` per head, for `q: seq_q × heads·d` and
/// `k, v: seq_kv × kv_heads·d`; `alibi` holds a slope per head (BLOOM), adding
/// `slope·(j − i)` for key `j` and query position `i`.
pub fn attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    seq_q: usize,
    seq_kv: usize,
    s: AttentionShape,
    alibi: Option<&[f64]>,
) -> Vec<f64> {
    let (d, qw, kw) = (s.head_dim, s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let group = s.heads / s.kv_heads.max(1);
    let scale = s.scale;
    let offset = seq_kv.saturating_sub(seq_q);
    let mut out = vec![0f64; seq_q * qw];
    for h in 0..s.heads {
        let kh = h / group.max(1);
        for i in 0..seq_q {
            let qi = &q[i * qw + h * d..i * qw + (h + 1) * d];
            let visible = if s.causal {
                (offset + i + 1).min(seq_kv)
            } else {
                seq_kv
            };
            let scores: Vec<f64> = (0..visible)
                .map(|j| {
                    let kj = &k[j * kw + kh * d..j * kw + (kh + 1) * d];
                    let bias = alibi.map_or(0.0, |a| a[h] * (j as f64 - (offset + i) as f64));
                    qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale + bias
                })
                .collect();
            let p = softmax_rows(&scores, visible);
            for (j, pj) in p.iter().enumerate() {
                let vj = &v[j * kw + kh * d..j * kw + (kh + 1) * d];
                for (o, x) in out[i * qw + h * d..i * qw + (h + 1) * d].iter_mut().zip(vj) {
                    *o += pj * x;
                }
            }
        }
    }
    out
}

/// Cosine similarity of two hidden states: the model-level accuracy figure.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn activations_match_their_definitions() {
        // Φ(1) = 0.8413447460685429 (Python's math.erf agrees); the tanh form is off in the fourth digit
        assert!(close(
            Activation::GeluErf.apply(1.0),
            0.841_344_746_068_543,
            1e-15
        ));
        assert!(close(
            Activation::GeluTanh.apply(1.0),
            0.841_191_990_608_277,
            1e-12
        ));
        assert!(close(
            Activation::GeluErf.apply(-3.0),
            -0.004_049_694_094_890_31,
            1e-15
        ));
        assert_eq!(Activation::Relu.apply(-2.0), 0.0);
        assert!(close(
            Activation::Silu.apply(1.0),
            1.0 / (1.0 + (-1f64).exp()),
            1e-15
        ));
    }

    #[test]
    fn softmax_rows_sum_to_one_and_survive_large_scores() {
        let p = softmax_rows(&[1000.0, 1001.0, 1002.0, 0.0, 0.0, 0.0], 3);
        assert!(p.iter().all(|v| v.is_finite()));
        for row in p.chunks(3) {
            assert!(close(row.iter().sum::<f64>(), 1.0, 1e-15));
        }
        assert!(close(p[2] / p[1], std::f64::consts::E, 1e-12));
        assert!(close(p[3], 1.0 / 3.0, 1e-15));
    }

    #[test]
    fn norms_give_unit_rows() {
        let x = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 9.0, 2.0];
        let ones = [1f32; 4];
        let zeros = [0f32; 4];
        for row in layer_norm(&x, 4, &ones, &zeros, 0.0).chunks(4) {
            let mean = row.iter().sum::<f64>() / 4.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
            assert!(close(mean, 0.0, 1e-12) && close(var, 1.0, 1e-12), "{row:?}");
        }
        for row in rms_norm(&x, 4, &ones, 0.0).chunks(4) {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / 4.0;
            assert!(close(ms, 1.0, 1e-12), "{row:?}");
        }
    }

    #[test]
    fn attention_averages_what_it_sees() {
        let s = AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
            causal: true,
            scale: 0.5f64.sqrt(),
        };
        // zero queries: every visible key scores the same, so each output is the mean value
        let q = vec![0.0; 3 * 4];
        let k = vec![1.0, -1.0, 2.0, 0.5, -3.0, 1.0];
        let v = vec![1.0, 10.0, 3.0, 20.0, 5.0, 30.0];
        let out = attention(&q, &k, &v, 3, 3, s, None);
        // causal: position 0 sees value 0, position 2 the mean of all three; both query heads
        // share the one key/value head (grouped-query attention)
        assert_eq!(&out[0..4], &[1.0, 10.0, 1.0, 10.0]);
        assert!(close(out[8], 3.0, 1e-12) && close(out[9], 20.0, 1e-12));
        assert!(close(out[10], 3.0, 1e-12) && close(out[11], 20.0, 1e-12));
        // one decode step after two cached positions sees all three
        let step = attention(&q[8..12], &k, &v, 1, 3, s, None);
        assert!(close(step[0], 3.0, 1e-12));
    }
}
