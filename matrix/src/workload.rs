//! Workloads: the named quantizable linear layers of a cell's graph ([`crate::graph`]), cut
//! down by a size knob so a CI cell stays small.

use crate::family::Model;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a linear layer does in its model; precision policies are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Attention,
    Ffn,
    EmbeddingHead,
    ConvGemm,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Attention,
        Role::Ffn,
        Role::EmbeddingHead,
        Role::ConvGemm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Attention => "attention",
            Role::Ffn => "ffn",
            Role::EmbeddingHead => "embedding_head",
            Role::ConvGemm => "conv_gemm",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `y[m][n] = sum_k x[m][k] * w[n][k]`: `m` rows of activations through a `k`→`n` weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    pub role: Role,
    pub m: u32,
    pub k: u32,
    pub n: u32,
}

impl Layer {
    pub fn weights(&self) -> u64 {
        u64::from(self.k) * u64::from(self.n)
    }
}

/// The size knob. Shapes stay the model's real ones; only how many blocks run, how many
/// positions (rows) flow through them, and whether the vocabulary head runs are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSize {
    /// Blocks run per stack (capped at the model's real count).
    pub layers: u32,
    /// Positions per layer: 1 gives batch-1 GEMV, larger gives GEMM (capped at the model's).
    pub seq_len: u32,
    /// Whether vocabulary-sized output heads run (they dominate small models).
    #[serde(default)]
    pub head: bool,
}

impl Default for WorkloadSize {
    fn default() -> Self {
        WorkloadSize {
            layers: 1,
            seq_len: 1,
            head: false,
        }
    }
}

/// The quantized layers of a cell: what its matmuls are and what they cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub layers: Vec<Layer>,
}

impl Workload {
    pub fn weights(&self) -> u64 {
        self.layers.iter().map(Layer::weights).sum()
    }

    /// Multiply-accumulates of all layers: the unit benchmarks normalise by.
    pub fn macs(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| u64::from(l.m) * l.weights())
            .sum()
    }
}

/// The layers of `model`'s graph at `size` ([`crate::graph::lower`]): encoders over
/// `seq_len` positions, decoders one position (a decode step).
pub fn workload(model: &Model, size: WorkloadSize) -> Workload {
    let key = crate::family::family_of(model).map_or("", |f| f.key);
    Workload {
        layers: crate::graph::lower(key, model, size).layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::{families, family, resolve};

    #[test]
    fn bert_one_layer_gemv_has_real_shapes() {
        let bert = family("bert").expect("bert").default_model();
        let w = workload(bert, WorkloadSize::default());
        let shapes: Vec<_> = w
            .layers
            .iter()
            .map(|l| (l.name.as_str(), l.m, l.k, l.n))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("encoder.0.attn.q", 1, 768, 768),
                ("encoder.0.attn.k", 1, 768, 768),
                ("encoder.0.attn.v", 1, 768, 768),
                ("encoder.0.attn.o", 1, 768, 768),
                ("encoder.0.ffn.up", 1, 768, 3072),
                ("encoder.0.ffn.down", 1, 3072, 768),
            ]
        );
        assert_eq!(w.weights(), 4 * 768 * 768 + 2 * 768 * 3072);
    }

    #[test]
    fn gated_ffn_and_grouped_kv_heads() {
        let tiny = resolve("tinyllama").expect("tinyllama").model;
        let w = workload(
            tiny,
            WorkloadSize {
                layers: 1,
                seq_len: 8,
                head: true,
            },
        );
        let find = |n: &str| w.layers.iter().find(|l| l.name == n).expect(n).clone();
        assert_eq!(
            (find("decoder.0.attn.k").n, find("decoder.0.attn.q").n),
            (256, 2048)
        );
        assert_eq!(find("decoder.0.ffn.gate").n, 5632);
        assert_eq!(find("lm_head").n, 32000);
        // a decode step: one new position against a cache of seq_len − 1
        assert_eq!(find("decoder.0.attn.q").m, 1);
    }

    #[test]
    fn size_knob_caps_layers_and_rows() {
        let gpt2 = family("gpt2").expect("gpt2").default_model();
        let full = workload(
            gpt2,
            WorkloadSize {
                layers: 99,
                seq_len: 99_999,
                head: false,
            },
        );
        assert_eq!(full.layers.len(), 12 * 6);
        assert!(full.layers.iter().all(|l| l.m == 1));
        let vit = family("vit").expect("vit").default_model();
        let encoder = workload(
            vit,
            WorkloadSize {
                layers: 1,
                seq_len: 99_999,
                head: false,
            },
        );
        // the patch embedding's 196 patches, the encoder's 197 tokens, a pooled classifier
        let rows: Vec<u32> = encoder.layers.iter().map(|l| l.m).collect();
        assert_eq!(rows, vec![196, 197, 197, 197, 197, 197, 197, 1]);
        let small = workload(
            gpt2,
            WorkloadSize {
                layers: 2,
                seq_len: 16,
                head: false,
            },
        );
        assert_eq!(small.layers.len(), 2 * 6);
        assert!(small.layers.iter().all(|l| l.m == 1));
    }

    #[test]
    fn every_model_lowers_to_nonempty_layers() {
        for f in families() {
            for m in f.models {
                let w = workload(m, WorkloadSize::default());
                assert!(!w.layers.is_empty(), "{}", m.id);
                assert!(
                    w.layers.iter().all(|l| l.m >= 1 && l.k > 0 && l.n > 0),
                    "{}",
                    m.id
                );
            }
        }
    }

    #[test]
    fn resnet_is_conv_as_gemm() {
        let r = family("resnet").expect("resnet").default_model();
        let w = workload(
            r,
            WorkloadSize {
                layers: 1,
                seq_len: 64,
                head: false,
            },
        );
        assert_eq!(w.layers[0].role, Role::ConvGemm);
        assert_eq!((w.layers[0].k, w.layers[0].n), (147, 64));
    }
}
