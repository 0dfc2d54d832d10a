//! The model-family registry: every family the matrix knows, its example models and their public
//! architecture figures, and `--model` lookup.
//!
//! Figures come from each model's published config (hidden size, intermediate size, heads,
//! layers, vocabulary, tokens per input). They describe shapes only: no weights are shipped.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of input a family consumes; the matrix report groups tables by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Text,
    TextGeneration,
    Vision,
    Audio,
    Multimodal,
}

impl Modality {
    pub const ALL: [Modality; 5] = [
        Modality::Text,
        Modality::TextGeneration,
        Modality::Vision,
        Modality::Audio,
        Modality::Multimodal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::TextGeneration => "text_generation",
            Modality::Vision => "vision",
            Modality::Audio => "audio",
            Modality::Multimodal => "multimodal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Modality::Text => "Text models",
            Modality::TextGeneration => "Text generation models",
            Modality::Vision => "Vision models",
            Modality::Audio => "Audio models",
            Modality::Multimodal => "Multimodal models",
        }
    }

    pub fn parse(s: &str) -> Option<Modality> {
        Modality::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a transformer block's feed-forward network is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ffn {
    /// up projection, activation, down projection (GELU/ReLU models)
    Mlp,
    /// gate and up projections multiplied, then down (SwiGLU/GeGLU models)
    Gated,
}

/// One stack of a model. A model is a list of stacks run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// `layers` identical transformer blocks over `tokens` positions.
    Transformer {
        name: &'static str,
        hidden: u32,
        intermediate: u32,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        layers: u32,
        tokens: u32,
        ffn: Ffn,
    },
    /// A convolution lowered to a GEMM (im2col): `positions` output pixels or frames,
    /// `k` = kernel area × input channels, `n` = output channels, repeated `repeat` times.
    ConvGemm {
        name: &'static str,
        positions: u32,
        k: u32,
        n: u32,
        repeat: u32,
    },
    /// A plain linear projection between stacks (patch embedding, projector, pooler).
    Linear {
        name: &'static str,
        tokens: u32,
        k: u32,
        n: u32,
    },
    /// The vocabulary-sized output head of a language model (tied or not).
    Head {
        name: &'static str,
        hidden: u32,
        vocab: u32,
    },
    /// BERT's embeddings: the sum of the token, position and segment rows (a table lookup the
    /// agent does, exact in f32) normalized by a LayerNorm the page runs.
    Embeddings { name: &'static str, hidden: u32 },
    /// Learned absolute position embeddings added to the hidden state (ViT's, after its patch
    /// embedding), one row per position.
    Positions { name: &'static str, hidden: u32 },
    /// Mean pooling of every position into one vector (a sentence embedding).
    MeanPool { name: &'static str, hidden: u32 },
}

/// A concrete model whose public config provides the shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub id: &'static str,
    pub aliases: &'static [&'static str],
    pub stacks: &'static [Stack],
}

/// A model family: a row of the compatibility matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Stable, lowercase key used in configs, cell ids and the store.
    pub key: &'static str,
    pub display: &'static str,
    pub modality: Modality,
    /// The first model is the family's default workload.
    pub models: &'static [Model],
}

impl Family {
    pub fn default_model(&self) -> &'static Model {
        &self.models[0]
    }

    pub fn model(&self, id: &str) -> Option<&'static Model> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// What `--model` resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub family: &'static Family,
    pub model: &'static Model,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model or family `{name}`{}", hint(.closest))]
pub struct UnknownName {
    pub name: String,
    pub closest: Vec<&'static str>,
}

fn hint(closest: &[&str]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", closest.join(", "))
    }
}

pub fn families() -> &'static [Family] {
    FAMILIES
}

/// The family `model` belongs to (registry models only).
pub fn family_of(model: &Model) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.models.iter().any(|m| m.id == model.id))
}

pub fn family(key: &str) -> Option<&'static Family> {
    let key = key.to_ascii_lowercase();
    FAMILIES.iter().find(|f| f.key == key)
}

/// Resolves a model id, an alias or a family name (`--model-type auto`), case-insensitively.
pub fn resolve(name: &str) -> Result<Resolved, UnknownName> {
    let wanted = name.trim().to_ascii_lowercase();
    for family in FAMILIES {
        if family.key == wanted || family.display.to_ascii_lowercase() == wanted {
            return Ok(Resolved {
                family,
                model: family.default_model(),
            });
        }
        for model in family.models {
            if model.id.to_ascii_lowercase() == wanted || model.aliases.iter().any(|a| *a == wanted)
            {
                return Ok(Resolved { family, model });
            }
        }
    }
    Err(UnknownName {
        name: name.to_string(),
        closest: closest_names(&wanted, 3),
    })
}

/// Resolves a family key only; used for `families:` in a spec and `--test-family`.
pub fn resolve_family(name: &str) -> Result<&'static Family, UnknownName> {
    family(name).ok_or_else(|| UnknownName {
        name: name.to_string(),
        closest: closest_names(&name.to_ascii_lowercase(), 3),
    })
}

fn all_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().flat_map(|f| {
        std::iter::once(f.key).chain(
            f.models
                .iter()
                .flat_map(|m| std::iter::once(m.id).chain(m.aliases.iter().copied())),
        )
    })
}

fn closest_names(wanted: &str, limit: usize) -> Vec<&'static str> {
    let mut scored: Vec<(f64, &'static str)> = all_names()
        .map(|n| (strsim::jaro_winkler(wanted, &n.to_ascii_lowercase()), n))
        .filter(|(score, _)| *score > 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(limit).map(|(_, n)| n).collect()
}

// ----- shape helpers (const so the registry is static data) -----

const fn enc(
    name: &'static str,
    hidden: u32,
    intermediate: u32,
    heads: u32,
    layers: u32,
    tokens: u32,
) -> Stack {
    Stack::Transformer {
        name,
        hidden,
        intermediate,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        layers,
        tokens,
        ffn: Ffn::Mlp,
    }
}

#[allow(clippy::too_many_arguments)]
const fn gated(
    name: &'static str,
    hidden: u32,
    intermediate: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    layers: u32,
    tokens: u32,
) -> Stack {
    Stack::Transformer {
        name,
        hidden,
        intermediate,
        heads,
        kv_heads,
        head_dim,
        layers,
        tokens,
        ffn: Ffn::Gated,
    }
}

const fn conv(name: &'static str, positions: u32, k: u32, n: u32, repeat: u32) -> Stack {
    Stack::ConvGemm {
        name,
        positions,
        k,
        n,
        repeat,
    }
}

const fn linear(name: &'static str, tokens: u32, k: u32, n: u32) -> Stack {
    Stack::Linear { name, tokens, k, n }
}

/// BERT-style embeddings: the token, position and segment rows' sum, normalized.
const fn embeddings(hidden: u32) -> Stack {
    Stack::Embeddings {
        name: "embeddings",
        hidden,
    }
}

/// A vision transformer's learned absolute position embeddings, added to its patches.
const fn positions(hidden: u32) -> Stack {
    Stack::Positions {
        name: "position_embeddings",
        hidden,
    }
}

const fn head(name: &'static str, hidden: u32, vocab: u32) -> Stack {
    Stack::Head {
        name,
        hidden,
        vocab,
    }
}

/// ResNet-50 bottleneck stages at 224×224 as GEMMs (positions = output pixels).
const RESNET50: [Stack; 14] = [
    conv("stem.conv7x7", 112 * 112, 7 * 7 * 3, 64, 1),
    conv("stage1.reduce1x1", 56 * 56, 256, 64, 3),
    conv("stage1.conv3x3", 56 * 56, 9 * 64, 64, 3),
    conv("stage1.expand1x1", 56 * 56, 64, 256, 3),
    conv("stage2.reduce1x1", 28 * 28, 512, 128, 4),
    conv("stage2.conv3x3", 28 * 28, 9 * 128, 128, 4),
    conv("stage2.expand1x1", 28 * 28, 128, 512, 4),
    conv("stage3.reduce1x1", 14 * 14, 1024, 256, 6),
    conv("stage3.conv3x3", 14 * 14, 9 * 256, 256, 6),
    conv("stage3.expand1x1", 14 * 14, 256, 1024, 6),
    conv("stage4.reduce1x1", 7 * 7, 2048, 512, 3),
    conv("stage4.conv3x3", 7 * 7, 9 * 512, 512, 3),
    conv("stage4.expand1x1", 7 * 7, 512, 2048, 3),
    linear("classifier", 1, 2048, 1000),
];

const TINYLLAMA: [Stack; 2] = [
    gated("decoder", 2048, 5632, 32, 4, 64, 22, 2048),
    head("lm_head", 2048, 32000),
];
const LLAMA2_7B: [Stack; 2] = [
    gated("decoder", 4096, 11008, 32, 32, 128, 32, 4096),
    head("lm_head", 4096, 32000),
];

static FAMILIES: &[Family] = &[
    // ----- text -----
    Family {
        key: "bert",
        display: "BERT",
        modality: Modality::Text,
        models: &[
            Model {
                id: "bert-base-uncased",
                aliases: &["bert-base"],
                stacks: &[
                    embeddings(768),
                    enc("encoder", 768, 3072, 12, 12, 512),
                    head("mlm_head", 768, 30522),
                ],
            },
            // a sentence-embedding BERT with a real checkpoint ([`crate::checkpoint`]): its
            // config.json, and sentence-transformers' mean pooling (max_seq_length 256)
            Model {
                id: "sentence-transformers/all-MiniLM-L6-v2",
                aliases: &["all-minilm-l6-v2", "minilm"],
                stacks: &[
                    embeddings(384),
                    enc("encoder", 384, 1536, 12, 6, 256),
                    Stack::MeanPool {
                        name: "pooled",
                        hidden: 384,
                    },
                ],
            },
        ],
    },
    Family {
        key: "t5",
        display: "T5",
        modality: Modality::Text,
        models: &[Model {
            id: "t5-small",
            aliases: &[],
            stacks: &[
                enc("encoder", 512, 2048, 8, 6, 512),
                enc("decoder", 512, 2048, 8, 6, 512),
                head("lm_head", 512, 32128),
            ],
        }],
    },
    Family {
        key: "roberta",
        display: "RoBERTa",
        modality: Modality::Text,
        models: &[Model {
            id: "roberta-base",
            aliases: &[],
            stacks: &[
                embeddings(768),
                enc("encoder", 768, 3072, 12, 12, 512),
                head("lm_head", 768, 50265),
            ],
        }],
    },
    Family {
        key: "distilbert",
        display: "DistilBERT",
        modality: Modality::Text,
        models: &[Model {
            id: "distilbert-base-uncased",
            aliases: &["distilbert-base"],
            stacks: &[
                embeddings(768),
                enc("encoder", 768, 3072, 12, 6, 512),
                head("mlm_head", 768, 30522),
            ],
        }],
    },
    Family {
        key: "albert",
        display: "ALBERT",
        modality: Modality::Text,
        models: &[Model {
            id: "albert-base-v2",
            aliases: &["albert-base"],
            // 128-wide factorised embeddings projected up to the 768-wide shared layer
            stacks: &[
                embeddings(128),
                linear("embedding_projection", 512, 128, 768),
                enc("encoder", 768, 3072, 12, 12, 512),
                head("mlm_head", 128, 30000),
            ],
        }],
    },
    Family {
        key: "xlm",
        display: "XLM",
        modality: Modality::Text,
        models: &[Model {
            id: "xlm-mlm-100-1280",
            aliases: &[],
            stacks: &[
                embeddings(1280),
                enc("encoder", 1280, 5120, 16, 16, 512),
                head("pred_layer", 1280, 200000),
            ],
        }],
    },
    Family {
        key: "electra",
        display: "ELECTRA",
        modality: Modality::Text,
        models: &[Model {
            id: "google/electra-small-discriminator",
            aliases: &["electra-small"],
            stacks: &[
                embeddings(128),
                linear("embeddings_project", 512, 128, 256),
                enc("encoder", 256, 1024, 4, 12, 512),
                linear("discriminator_head", 512, 256, 256),
            ],
        }],
    },
    // ----- text generation -----
    Family {
        key: "gpt2",
        display: "GPT-2",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "gpt2",
            aliases: &["gpt-2"],
            stacks: &[
                enc("decoder", 768, 3072, 12, 12, 1024),
                head("lm_head", 768, 50257),
            ],
        }],
    },
    Family {
        key: "llama",
        display: "LLaMA",
        modality: Modality::TextGeneration,
        models: &[
            Model {
                id: "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                aliases: &["tinyllama", "tiny-llama"],
                stacks: &TINYLLAMA,
            },
            Model {
                id: "meta-llama/Llama-2-7b-hf",
                aliases: &["llama-7b", "llama-2-7b"],
                stacks: &LLAMA2_7B,
            },
        ],
    },
    Family {
        key: "opt",
        display: "OPT",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "facebook/opt-125m",
            aliases: &["opt-125m"],
            stacks: &[
                enc("decoder", 768, 3072, 12, 12, 2048),
                head("lm_head", 768, 50272),
            ],
        }],
    },
    Family {
        key: "gpt_neo",
        display: "GPT-Neo",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "EleutherAI/gpt-neo-125m",
            aliases: &["gpt-neo", "gpt-neo-125m"],
            stacks: &[
                enc("decoder", 768, 3072, 12, 12, 2048),
                head("lm_head", 768, 50257),
            ],
        }],
    },
    Family {
        key: "bloom",
        display: "BLOOM",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "bigscience/bloom-560m",
            aliases: &["bloom-560m"],
            stacks: &[
                enc("decoder", 1024, 4096, 16, 24, 2048),
                head("lm_head", 1024, 250880),
            ],
        }],
    },
    Family {
        key: "falcon",
        display: "Falcon",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "tiiuae/falcon-7b",
            aliases: &["falcon-7b"],
            // multi-query attention: 71 query heads of 64 share one key/value head
            stacks: &[
                Stack::Transformer {
                    name: "decoder",
                    hidden: 4544,
                    intermediate: 18176,
                    heads: 71,
                    kv_heads: 1,
                    head_dim: 64,
                    layers: 32,
                    tokens: 2048,
                    ffn: Ffn::Mlp,
                },
                head("lm_head", 4544, 65024),
            ],
        }],
    },
    Family {
        key: "gemma",
        display: "Gemma",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "google/gemma-2b",
            aliases: &["gemma-2b"],
            stacks: &[
                gated("decoder", 2048, 16384, 8, 1, 256, 18, 8192),
                head("lm_head", 2048, 256000),
            ],
        }],
    },
    Family {
        key: "qwen",
        display: "Qwen",
        modality: Modality::TextGeneration,
        models: &[Model {
            id: "Qwen/Qwen1.5-0.5B",
            aliases: &["qwen1.5-0.5b", "qwen-0.5b"],
            stacks: &[
                gated("decoder", 1024, 2816, 16, 16, 64, 24, 32768),
                head("lm_head", 1024, 151936),
            ],
        }],
    },
    // ----- vision -----
    Family {
        key: "vit",
        display: "ViT",
        modality: Modality::Vision,
        models: &[Model {
            id: "google/vit-base-patch16-224",
            aliases: &["vit-base"],
            stacks: &[
                conv("patch_embed16x16", 196, 16 * 16 * 3, 768, 1),
                positions(768),
                enc("encoder", 768, 3072, 12, 12, 197),
                linear("classifier", 1, 768, 1000),
            ],
        }],
    },
    Family {
        key: "resnet",
        display: "ResNet",
        modality: Modality::Vision,
        models: &[Model {
            id: "microsoft/resnet-50",
            aliases: &["resnet-50", "resnet50"],
            stacks: &RESNET50,
        }],
    },
    Family {
        key: "swin",
        display: "Swin",
        modality: Modality::Vision,
        models: &[Model {
            id: "microsoft/swin-tiny-patch4-window7-224",
            aliases: &["swin-tiny"],
            stacks: &[
                conv("patch_embed4x4", 56 * 56, 4 * 4 * 3, 96, 1),
                enc("stage1", 96, 384, 3, 2, 56 * 56),
                linear("merge1", 28 * 28, 384, 192),
                enc("stage2", 192, 768, 6, 2, 28 * 28),
                linear("merge2", 14 * 14, 768, 384),
                enc("stage3", 384, 1536, 12, 6, 14 * 14),
                linear("merge3", 7 * 7, 1536, 768),
                enc("stage4", 768, 3072, 24, 2, 7 * 7),
                linear("classifier", 1, 768, 1000),
            ],
        }],
    },
    Family {
        key: "deit",
        display: "DeiT",
        modality: Modality::Vision,
        models: &[Model {
            id: "facebook/deit-small-patch16-224",
            aliases: &["deit-small"],
            stacks: &[
                conv("patch_embed16x16", 196, 16 * 16 * 3, 384, 1),
                positions(384),
                enc("encoder", 384, 1536, 6, 12, 197),
                linear("classifier", 1, 384, 1000),
            ],
        }],
    },
    Family {
        key: "convnext",
        display: "ConvNeXT",
        modality: Modality::Vision,
        models: &[Model {
            id: "facebook/convnext-tiny-224",
            aliases: &["convnext-tiny"],
            // the 7×7 depthwise convolutions are elementwise work; the pointwise MLPs are GEMMs
            stacks: &[
                conv("stem4x4", 56 * 56, 4 * 4 * 3, 96, 1),
                conv("stage1.pw_up", 56 * 56, 96, 384, 3),
                conv("stage1.pw_down", 56 * 56, 384, 96, 3),
                conv("stage2.pw_up", 28 * 28, 192, 768, 3),
                conv("stage2.pw_down", 28 * 28, 768, 192, 3),
                conv("stage3.pw_up", 14 * 14, 384, 1536, 9),
                conv("stage3.pw_down", 14 * 14, 1536, 384, 9),
                conv("stage4.pw_up", 7 * 7, 768, 3072, 3),
                conv("stage4.pw_down", 7 * 7, 3072, 768, 3),
                linear("classifier", 1, 768, 1000),
            ],
        }],
    },
    Family {
        key: "beit",
        display: "BEiT",
        modality: Modality::Vision,
        models: &[Model {
            id: "microsoft/beit-base-patch16-224",
            aliases: &["beit-base"],
            stacks: &[
                conv("patch_embed16x16", 196, 16 * 16 * 3, 768, 1),
                enc("encoder", 768, 3072, 12, 12, 197),
                linear("classifier", 1, 768, 1000),
            ],
        }],
    },
    Family {
        key: "detr",
        display: "DETR",
        modality: Modality::Vision,
        models: &[Model {
            id: "facebook/detr-resnet-50",
            aliases: &["detr"],
            // 800×1066 input: a 25×34 feature map after the ResNet-50 backbone
            stacks: &[
                conv("backbone.stage4.reduce1x1", 850, 2048, 512, 3),
                conv("backbone.stage4.conv3x3", 850, 9 * 512, 512, 3),
                conv("input_proj1x1", 850, 2048, 256, 1),
                enc("encoder", 256, 2048, 8, 6, 850),
                enc("decoder", 256, 2048, 8, 6, 100),
                linear("class_head", 100, 256, 92),
            ],
        }],
    },
    Family {
        key: "segformer",
        display: "SegFormer",
        modality: Modality::Vision,
        models: &[Model {
            id: "nvidia/mit-b0",
            aliases: &["mit-b0", "segformer-b0"],
            stacks: &[
                conv("patch_embed1", 56 * 56, 7 * 7 * 3, 32, 1),
                enc("stage1", 32, 128, 1, 2, 56 * 56),
                conv("patch_embed2", 28 * 28, 3 * 3 * 32, 64, 1),
                enc("stage2", 64, 256, 2, 2, 28 * 28),
                conv("patch_embed3", 14 * 14, 3 * 3 * 64, 160, 1),
                enc("stage3", 160, 640, 5, 2, 14 * 14),
                conv("patch_embed4", 7 * 7, 3 * 3 * 160, 256, 1),
                enc("stage4", 256, 1024, 8, 2, 7 * 7),
            ],
        }],
    },
    Family {
        key: "yolos",
        display: "YOLOS",
        modality: Modality::Vision,
        models: &[Model {
            id: "hustvl/yolos-small",
            aliases: &["yolos-small"],
            // 800×1333 input in 16×16 patches, plus 100 detection tokens and a class token
            stacks: &[
                conv("patch_embed16x16", 50 * 83, 16 * 16 * 3, 384, 1),
                positions(384),
                enc("encoder", 384, 1536, 6, 12, 50 * 83 + 101),
                linear("box_head", 100, 384, 384),
            ],
        }],
    },
    // ----- audio -----
    Family {
        key: "whisper",
        display: "Whisper",
        modality: Modality::Audio,
        models: &[Model {
            id: "openai/whisper-tiny",
            aliases: &["whisper-tiny"],
            // 30 s of audio: 3000 mel frames, halved by the second convolution
            stacks: &[
                conv("conv1", 3000, 80 * 3, 384, 1),
                conv("conv2", 1500, 384 * 3, 384, 1),
                enc("encoder", 384, 1536, 6, 4, 1500),
                enc("decoder", 384, 1536, 6, 4, 448),
                head("proj_out", 384, 51865),
            ],
        }],
    },
    Family {
        key: "wav2vec2",
        display: "Wav2Vec2",
        modality: Modality::Audio,
        models: &[Model {
            id: "facebook/wav2vec2-base",
            aliases: &["wav2vec2-base"],
            // 10 s at 16 kHz: 499 frames after the convolutional feature encoder
            stacks: &[
                conv("feature_encoder.conv3", 499, 512 * 3, 512, 4),
                linear("feature_projection", 499, 512, 768),
                enc("encoder", 768, 3072, 12, 12, 499),
            ],
        }],
    },
    Family {
        key: "clap",
        display: "CLAP",
        modality: Modality::Audio,
        models: &[Model {
            id: "laion/clap-htsat-unfused",
            aliases: &["clap"],
            // HTSAT audio encoder (Swin-style) and a RoBERTa text tower into a 512-wide space
            stacks: &[
                conv("audio.patch_embed4x4", 64 * 64, 4 * 4, 96, 1),
                enc("audio.stage1", 96, 384, 4, 2, 64 * 64),
                enc("audio.stage2", 192, 768, 8, 2, 32 * 32),
                enc("audio.stage3", 384, 1536, 16, 6, 16 * 16),
                enc("audio.stage4", 768, 3072, 32, 2, 8 * 8),
                linear("audio_projection", 1, 768, 512),
                enc("text", 768, 3072, 12, 12, 77),
                linear("text_projection", 1, 768, 512),
            ],
        }],
    },
    Family {
        key: "hubert",
        display: "HuBERT",
        modality: Modality::Audio,
        models: &[Model {
            id: "facebook/hubert-base-ls960",
            aliases: &["hubert-base"],
            stacks: &[
                conv("feature_encoder.conv3", 499, 512 * 3, 512, 4),
                linear("feature_projection", 499, 512, 768),
                enc("encoder", 768, 3072, 12, 12, 499),
            ],
        }],
    },
    Family {
        key: "speech_to_text",
        display: "Speech-to-Text",
        modality: Modality::Audio,
        models: &[Model {
            id: "facebook/s2t-small-librispeech-asr",
            aliases: &["s2t-small", "speech-to-text"],
            stacks: &[
                conv("subsample.conv1", 750, 80 * 5, 1024, 1),
                conv("subsample.conv2", 375, 512 * 5, 512, 1),
                enc("encoder", 256, 2048, 4, 12, 375),
                enc("decoder", 256, 2048, 4, 6, 200),
                head("lm_head", 256, 10000),
            ],
        }],
    },
    // ----- multimodal -----
    Family {
        key: "clip",
        display: "CLIP",
        modality: Modality::Multimodal,
        models: &[Model {
            id: "openai/clip-vit-base-patch32",
            aliases: &["clip-vit-base"],
            stacks: &[
                conv("vision.patch_embed32x32", 49, 32 * 32 * 3, 768, 1),
                enc("vision", 768, 3072, 12, 12, 50),
                linear("visual_projection", 1, 768, 512),
                enc("text", 512, 2048, 8, 12, 77),
                linear("text_projection", 1, 512, 512),
            ],
        }],
    },
    Family {
        key: "llava",
        display: "LLaVA",
        modality: Modality::Multimodal,
        models: &[Model {
            id: "llava-hf/llava-1.5-7b-hf",
            aliases: &["llava", "llava-1.5-7b"],
            stacks: &[
                conv("vision.patch_embed14x14", 576, 14 * 14 * 3, 1024, 1),
                enc("vision", 1024, 4096, 16, 24, 577),
                linear("projector.fc1", 576, 1024, 4096),
                linear("projector.fc2", 576, 4096, 4096),
                gated("language", 4096, 11008, 32, 32, 128, 32, 4096),
                head("lm_head", 4096, 32064),
            ],
        }],
    },
    Family {
        key: "blip",
        display: "BLIP",
        modality: Modality::Multimodal,
        models: &[Model {
            id: "Salesforce/blip-image-captioning-base",
            aliases: &["blip-base"],
            stacks: &[
                conv("vision.patch_embed16x16", 576, 16 * 16 * 3, 768, 1),
                enc("vision", 768, 3072, 12, 12, 577),
                enc("text_decoder", 768, 3072, 12, 12, 40),
                head("lm_head", 768, 30524),
            ],
        }],
    },
    Family {
        key: "flava",
        display: "FLAVA",
        modality: Modality::Multimodal,
        models: &[Model {
            id: "facebook/flava-full",
            aliases: &["flava"],
            stacks: &[
                conv("image.patch_embed16x16", 196, 16 * 16 * 3, 768, 1),
                enc("image", 768, 3072, 12, 12, 197),
                enc("text", 768, 3072, 12, 12, 77),
                enc("multimodal", 768, 3072, 12, 6, 275),
            ],
        }],
    },
    Family {
        key: "git",
        display: "GIT",
        modality: Modality::Multimodal,
        models: &[Model {
            id: "microsoft/git-base",
            aliases: &["git-base"],
            stacks: &[
                conv("image.patch_embed16x16", 196, 16 * 16 * 3, 768, 1),
                enc("image", 768, 3072, 12, 12, 197),
                linear("visual_projection", 197, 768, 768),
                enc("text_decoder", 768, 3072, 12, 6, 197 + 40),
                head("lm_head", 768, 30522),
            ],
        }],
    },
    Family {
        key: "xclip",
        display: "XCLIP",
        modality: Modality::Multimodal,
        models: &[Model {
            id: "microsoft/xclip-base-patch32",
            aliases: &["xclip-base"],
            // 8 frames of 7×7 patches plus a class token each
            stacks: &[
                conv("vision.patch_embed32x32", 8 * 49, 32 * 32 * 3, 768, 1),
                enc("vision", 768, 3072, 12, 12, 8 * 50),
                enc("mit", 512, 2048, 8, 1, 8),
                enc("text", 512, 2048, 8, 12, 77),
                linear("text_projection", 1, 512, 512),
            ],
        }],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn registry_has_35_families_in_5_modalities() {
        assert_eq!(families().len(), 35);
        let per = |m| families().iter().filter(|f| f.modality == m).count();
        assert_eq!(per(Modality::Text), 7);
        assert_eq!(per(Modality::TextGeneration), 8);
        assert_eq!(per(Modality::Vision), 9);
        assert_eq!(per(Modality::Audio), 5);
        assert_eq!(per(Modality::Multimodal), 6);
    }

    #[test]
    fn keys_ids_and_aliases_are_unique_and_lowercase_where_typed() {
        // a family key may equal its own model id (gpt2); nothing may be shared across families
        let mut owner = std::collections::HashMap::new();
        for f in families() {
            let names = std::iter::once(f.key).chain(
                f.models
                    .iter()
                    .flat_map(|m| std::iter::once(m.id).chain(m.aliases.iter().copied())),
            );
            let mut mine = HashSet::new();
            for name in names {
                assert!(
                    mine.insert(name.to_ascii_lowercase()) || name == f.key,
                    "{name} twice in {}",
                    f.key
                );
                if let Some(other) = owner.insert(name.to_ascii_lowercase(), f.key) {
                    assert_eq!(other, f.key, "{name} in {other} and {}", f.key);
                }
            }
        }
        for f in families() {
            assert_eq!(f.key, f.key.to_ascii_lowercase());
            assert!(!f.models.is_empty(), "{} has no model", f.key);
            for m in f.models {
                for a in m.aliases {
                    assert_eq!(*a, a.to_ascii_lowercase(), "alias {a} must be lowercase");
                }
            }
        }
    }

    #[test]
    fn head_dims_match_hidden_sizes() {
        for f in families() {
            for m in f.models {
                for s in m.stacks {
                    if let Stack::Transformer {
                        name,
                        hidden,
                        heads,
                        head_dim,
                        ..
                    } = s
                    {
                        // Gemma is the known exception: 8 heads of 256 over a 2048 stream.
                        if f.key != "gemma" {
                            assert_eq!(heads * head_dim, *hidden, "{} {}", m.id, name);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn llama_default_is_a_real_llama_architecture_not_opt() {
        let llama = family("llama").expect("llama");
        assert!(llama.default_model().id.contains("Llama"));
        assert!(!llama.models.iter().any(|m| m.id.contains("opt")));
    }

    #[test]
    fn resolve_accepts_ids_aliases_and_family_names() {
        assert_eq!(
            resolve("bert-base-uncased").map(|r| r.family.key),
            Ok("bert")
        );
        assert_eq!(
            resolve("llama-7b").map(|r| r.model.id),
            Ok("meta-llama/Llama-2-7b-hf")
        );
        assert_eq!(resolve("llava").map(|r| r.family.key), Ok("llava"));
        assert_eq!(
            resolve("LLaMA").map(|r| (r.family.modality, r.model.id)),
            Ok((
                Modality::TextGeneration,
                "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
            ))
        );
        assert_eq!(
            resolve("Qwen/Qwen1.5-0.5B").map(|r| r.family.key),
            Ok("qwen")
        );
    }

    #[test]
    fn unknown_name_lists_closest_matches() {
        let err = resolve("bret").expect_err("bret is not a model");
        assert!(err.closest.contains(&"bert"), "{:?}", err.closest);
        assert!(
            err.to_string()
                .starts_with("unknown model or family `bret`; did you mean")
        );
    }
}
