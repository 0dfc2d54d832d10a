//! A cell's computation as a graph of 2-D tensors and ops: each family's real blocks at its
//! real shapes (embeddings or patch embeddings, norms, projections, attention with softmax,
//! the family's activation, residuals, pooling, the LM head), lowered from the registry's
//! stacks and the family's architecture ([`arch`]), and cut down by the size knob.
//!
//! The graph is the one contract between the Rust references and the page: the harness runs
//! its ops in order (WGSL on WebGPU, one graph of WebNN ops), [`eval`] runs the same ops in
//! f64. Encoders run `seq_len` positions; decoders run one decode step after `seq_len − 1`
//! cached positions (the KV cache is an input), so `seq_len` is the context length there.

use crate::family::{Ffn, Model, Stack};
use crate::ops::{self, Activation, AttentionShape};
use crate::workload::{Layer, Role, WorkloadSize};
use serde::Serialize;

/// A tensor's index in [`Graph::tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TensorId(pub u32);

impl TensorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a tensor that no op computes comes from; [`crate::block::init_values`] draws it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Init {
    /// Hidden states or a KV cache flowing in: N(0, 1), like the output of a norm.
    Input,
    /// A norm's gain: 1 + N(0, 0.1²), so a kernel that ignores it fails.
    Gain,
    /// A norm's shift: N(0, 0.1²).
    Shift,
    /// A projection's bias: N(0, 0.02²).
    Bias,
    /// Learned absolute position embeddings: N(0, 0.02²), as ViT initialises them.
    Position,
    /// Rotary tables for positions `first..first + rows`, `cols` = head_dim / 2.
    RopeCos {
        theta: f64,
        first: u32,
    },
    RopeSin {
        theta: f64,
        first: u32,
    },
    /// One ALiBi slope per head (BLOOM's).
    Alibi,
}

/// A row-major `rows × cols` f32 tensor: computed by an op (`init` = `None`) or given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tensor {
    pub name: String,
    pub rows: u32,
    pub cols: u32,
    pub init: Option<Init>,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.rows as usize * self.cols as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One operation. Field names are what the page reads (`harness/js/block.js`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `y = x · Wᵀ` with the quantized weights of `layers[layer]`; a bias is its own `Add`.
    Linear {
        x: TensorId,
        layer: u32,
        y: TensorId,
    },
    LayerNorm {
        x: TensorId,
        gamma: TensorId,
        beta: TensorId,
        eps: f64,
        y: TensorId,
    },
    RmsNorm {
        x: TensorId,
        gamma: TensorId,
        eps: f64,
        y: TensorId,
    },
    Act {
        x: TensorId,
        f: Activation,
        y: TensorId,
    },
    /// `a + b`, `b` with as many rows as `a` or one row broadcast over them.
    Add {
        a: TensorId,
        b: TensorId,
        y: TensorId,
    },
    /// `a ⊙ b`, shapes equal.
    Mul {
        a: TensorId,
        b: TensorId,
        y: TensorId,
    },
    /// Rotary position embedding, rotate-half form, per head of `x: rows × heads·head_dim`.
    Rope {
        x: TensorId,
        cos: TensorId,
        sin: TensorId,
        heads: u32,
        head_dim: u32,
        y: TensorId,
    },
    /// Rows of `a` then rows of `b` (a KV cache and the new position's keys).
    Concat {
        a: TensorId,
        b: TensorId,
        y: TensorId,
    },
    /// Scaled dot-product attention; queries are the last `q.rows` of `k.rows` positions.
    Attention {
        q: TensorId,
        k: TensorId,
        v: TensorId,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        causal: bool,
        scale: f64,
        alibi: Option<TensorId>,
        y: TensorId,
    },
    /// The mean of all rows (average pooling).
    MeanPool { x: TensorId, y: TensorId },
    /// One row (a CLS token, or the last position for an LM head).
    Row { x: TensorId, row: u32, y: TensorId },
}

impl Op {
    /// The snake-case name of the op, as in the page contract.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Act { .. } => "act",
            Op::Add { .. } => "add",
            Op::Mul { .. } => "mul",
            Op::Rope { .. } => "rope",
            Op::Concat { .. } => "concat",
            Op::Attention { .. } => "attention",
            Op::MeanPool { .. } => "mean_pool",
            Op::Row { .. } => "row",
        }
    }

    /// The tensors the op reads.
    pub fn inputs(&self) -> Vec<TensorId> {
        match *self {
            Op::Linear { x, .. }
            | Op::Act { x, .. }
            | Op::MeanPool { x, .. }
            | Op::Row { x, .. } => vec![x],
            Op::LayerNorm { x, gamma, beta, .. } => vec![x, gamma, beta],
            Op::RmsNorm { x, gamma, .. } => vec![x, gamma],
            Op::Add { a, b, .. } | Op::Mul { a, b, .. } | Op::Concat { a, b, .. } => vec![a, b],
            Op::Rope { x, cos, sin, .. } => vec![x, cos, sin],
            Op::Attention { q, k, v, alibi, .. } => {
                let mut v = vec![q, k, v];
                v.extend(alibi);
                v
            }
        }
    }

    /// The tensor the op writes.
    pub fn output(&self) -> TensorId {
        match *self {
            Op::Linear { y, .. }
            | Op::LayerNorm { y, .. }
            | Op::RmsNorm { y, .. }
            | Op::Act { y, .. }
            | Op::Add { y, .. }
            | Op::Mul { y, .. }
            | Op::Rope { y, .. }
            | Op::Concat { y, .. }
            | Op::Attention { y, .. }
            | Op::MeanPool { y, .. }
            | Op::Row { y, .. } => y,
        }
    }
}

/// A cell's computation: tensors, ops in run order, the quantized layers its `Linear`s use,
/// and which tensors are its results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub tensors: Vec<Tensor>,
    pub ops: Vec<Op>,
    pub layers: Vec<Layer>,
    /// The last hidden state of each chain of stacks: what accuracy is measured on.
    pub outputs: Vec<TensorId>,
    /// The LM heads' logits, where the size knob runs the head.
    pub logits: Vec<TensorId>,
}

impl Graph {
    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.tensors[id.index()]
    }

    /// `op(shapes)` per op, e.g. `layer_norm(8×768)`: what the lowering tests compare.
    pub fn signature(&self) -> Vec<String> {
        self.ops
            .iter()
            .map(|op| {
                let t = self.tensor(op.output());
                format!("{}({}×{})", op.kind(), t.rows, t.cols)
            })
            .collect()
    }
}

/// How a block normalizes: LayerNorm (mean and variance) or RMSNorm (LLaMA, T5, Gemma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    Layer,
    Rms,
}

/// Where a block normalizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// After each residual add (BERT, wav2vec2, DETR).
    Post,
    /// Before each sublayer, with a final norm after the stack (GPT-2, LLaMA, ViT).
    Pre,
    /// Attention and FFN side by side from one norm, both added to the residual (Falcon).
    Parallel,
}

/// How positions enter attention; absolute ones are added in the embeddings, before a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Positions {
    Absolute,
    Rotary { theta: f64 },
    Alibi,
}

/// Which keys a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attend {
    /// Every position (encoders).
    Bidirectional,
    /// Earlier positions only, over the whole sequence (CLIP's text tower).
    Causal,
    /// One decode step: the new position against a KV cache of `seq_len − 1`.
    Decode,
}

/// Which projections have a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Biases {
    All,
    None,
    /// Q, K and V only (Qwen).
    Qkv,
}

/// What the registry's shapes do not say about a transformer stack: its published
/// architecture (norm, eps, placement, activation, positions, masking, biases, score scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arch {
    pub norm: Norm,
    pub eps: f64,
    pub placement: Placement,
    pub act: Activation,
    pub positions: Positions,
    pub attend: Attend,
    pub biases: Biases,
    /// Scores divided by √head_dim (all but GPT-Neo).
    pub scaled: bool,
}

const BERT: Arch = Arch {
    norm: Norm::Layer,
    eps: 1e-12,
    placement: Placement::Post,
    act: Activation::GeluErf,
    positions: Positions::Absolute,
    attend: Attend::Bidirectional,
    biases: Biases::All,
    scaled: true,
};
const VIT: Arch = Arch {
    placement: Placement::Pre,
    ..BERT
};
const GPT2: Arch = Arch {
    eps: 1e-5,
    placement: Placement::Pre,
    act: Activation::GeluTanh,
    attend: Attend::Decode,
    ..BERT
};
const LLAMA: Arch = Arch {
    norm: Norm::Rms,
    eps: 1e-5,
    placement: Placement::Pre,
    act: Activation::Silu,
    positions: Positions::Rotary { theta: 10_000.0 },
    attend: Attend::Decode,
    biases: Biases::None,
    scaled: true,
};
const CLIP: Arch = Arch {
    eps: 1e-5,
    act: Activation::QuickGelu,
    ..VIT
};

/// The architecture of `family`'s transformer stack `stack`, from each model's published
/// config and modelling code.
pub fn arch(family: &str, stack: &str) -> Arch {
    let post_1e5 = Arch { eps: 1e-5, ..BERT };
    let pre_1e5 = Arch { eps: 1e-5, ..VIT };
    match (family, stack) {
        ("roberta", _) => post_1e5,
        ("t5", s) => Arch {
            norm: Norm::Rms,
            eps: 1e-6,
            act: Activation::Relu,
            biases: Biases::None,
            attend: if s == "decoder" {
                Attend::Decode
            } else {
                Attend::Bidirectional
            },
            ..VIT
        },
        ("gpt2", _) => GPT2,
        ("opt", _) => Arch {
            act: Activation::Relu,
            ..GPT2
        },
        ("gpt_neo", _) => Arch {
            scaled: false,
            ..GPT2
        },
        ("bloom", _) => Arch {
            positions: Positions::Alibi,
            ..GPT2
        },
        ("falcon", _) => Arch {
            norm: Norm::Layer,
            placement: Placement::Parallel,
            act: Activation::GeluErf,
            ..LLAMA
        },
        ("gemma", _) => Arch {
            eps: 1e-6,
            act: Activation::GeluTanh,
            ..LLAMA
        },
        ("qwen", _) => Arch {
            eps: 1e-6,
            positions: Positions::Rotary { theta: 1_000_000.0 },
            biases: Biases::Qkv,
            ..LLAMA
        },
        ("llama", _) | ("llava", "language") => LLAMA,
        ("vit" | "deit" | "beit" | "yolos" | "flava", _) => VIT,
        ("segformer", _) => Arch { eps: 1e-6, ..VIT },
        ("whisper" | "speech_to_text", "decoder") => Arch {
            attend: Attend::Decode,
            act: if family == "whisper" {
                Activation::GeluErf
            } else {
                Activation::Relu
            },
            ..pre_1e5
        },
        ("speech_to_text", _) => Arch {
            act: Activation::Relu,
            ..pre_1e5
        },
        ("swin" | "whisper", _) => pre_1e5,
        ("clap", s) if s.starts_with("audio") => pre_1e5,
        ("clap", _) => post_1e5,
        ("detr", _) => Arch {
            act: Activation::Relu,
            ..post_1e5
        },
        ("wav2vec2" | "hubert", _) => post_1e5,
        ("clip" | "xclip", s) if s.starts_with("text") => Arch {
            attend: Attend::Causal,
            ..CLIP
        },
        ("clip" | "xclip", _) | ("git" | "llava", "vision") => CLIP,
        ("blip", "vision") => pre_1e5,
        _ => BERT,
    }
}

/// The activation after a convolution lowered to GEMM, where its family has one there.
fn conv_activation(family: &str, stack: &str) -> Option<Activation> {
    match family {
        "resnet" | "detr" => Some(Activation::Relu),
        "convnext" if stack.ends_with("pw_up") => Some(Activation::GeluErf),
        "whisper" | "wav2vec2" | "hubert" => Some(Activation::GeluErf),
        _ => None,
    }
}

/// Whether `family` average-pools before its classifier (else it reads the first token).
fn mean_pools(family: &str) -> bool {
    matches!(family, "resnet" | "convnext" | "swin" | "beit" | "clap")
}

/// The slopes of ALiBi for `heads` heads, as BLOOM computes them: a geometric sequence from
/// the closest power of two, the remaining heads interleaved from the next one.
pub fn alibi_slopes(heads: u32) -> Vec<f64> {
    let pow2 = |n: u32| -> Vec<f64> {
        let start = 2f64.powf(-8.0 / f64::from(n));
        (1..=n).map(|i| start.powi(i as i32)).collect()
    };
    let closest = 1u32 << (31 - heads.max(1).leading_zeros());
    let mut slopes = pow2(closest);
    if closest < heads {
        slopes.extend(
            pow2(2 * closest)
                .into_iter()
                .step_by(2)
                .take((heads - closest) as usize),
        );
    }
    slopes
}

/// Lowers `model` (of `family`) to the graph a cell runs at `size`.
pub fn lower(family: &str, model: &Model, size: WorkloadSize) -> Graph {
    let mut b = Builder {
        g: Graph {
            tensors: Vec::new(),
            ops: Vec::new(),
            layers: Vec::new(),
            outputs: Vec::new(),
            logits: Vec::new(),
        },
        cur: None,
    };
    let rows = |tokens: u32| tokens.min(size.seq_len).max(1);
    for (i, stack) in model.stacks.iter().enumerate() {
        match *stack {
            Stack::Transformer { name, tokens, .. } => {
                let arch = arch(family, name);
                let context = rows(tokens);
                for l in 0..transformer_layers(stack).min(size.layers) {
                    b.block(stack, arch, l, context);
                }
                if arch.placement != Placement::Post
                    && let Some(x) = b.cur
                {
                    let y = b.norm(x, &format!("{name}.final_norm"), arch);
                    b.cur = Some(y);
                }
            }
            Stack::ConvGemm {
                name,
                positions,
                k,
                n,
                repeat,
            } => {
                let act = conv_activation(family, name);
                for r in 0..repeat.min(size.layers) {
                    let lname = if repeat == 1 {
                        name.to_string()
                    } else {
                        format!("{name}.{r}")
                    };
                    let x = b.start(&lname, rows(positions), k, None);
                    let mut y = b.linear(x, &lname, Role::ConvGemm, n, true);
                    if let Some(f) = act {
                        y = b.act(y, f, &format!("{lname}.act"));
                    }
                    b.cur = Some(y);
                }
            }
            Stack::Linear { name, tokens, k, n } => {
                let pool = if mean_pools(family) {
                    Pool::Mean
                } else {
                    Pool::First
                };
                let x = b.start(name, rows(tokens), k, Some(pool));
                let y = b.linear(x, name, Role::EmbeddingHead, n, true);
                b.cur = Some(y);
            }
            Stack::Embeddings { name, hidden } => {
                // as many positions as the encoder after it runs
                let x = b.start(
                    name,
                    rows(next_tokens(&model.stacks[i + 1..])),
                    hidden,
                    None,
                );
                let y = b.norm(x, &format!("{name}.norm"), arch(family, name));
                b.cur = Some(y);
            }
            Stack::Positions { name, hidden } => {
                // as many rows as the patches before it (else the encoder after it)
                let x = match b.cur {
                    Some(x) if b.shape(x).1 == hidden => x,
                    _ => b.start(
                        name,
                        rows(next_tokens(&model.stacks[i + 1..])),
                        hidden,
                        None,
                    ),
                };
                let table = b.tensor(
                    format!("{name}.table"),
                    b.shape(x).0,
                    hidden,
                    Some(Init::Position),
                );
                let y = b.add(x, table, name);
                b.cur = Some(y);
            }
            Stack::MeanPool { name, hidden } => {
                let x = match b.cur {
                    Some(x) if b.shape(x).1 == hidden => x,
                    _ => b.start(name, rows(u32::MAX), hidden, None),
                };
                let y = b.emit(name.to_string(), 1, hidden, |y| Op::MeanPool { x, y });
                b.cur = Some(y);
            }
            Stack::Head {
                name,
                hidden,
                vocab,
            } => {
                if size.head {
                    let x = b.start(name, 1, hidden, Some(Pool::Last));
                    let y = b.linear(x, name, Role::EmbeddingHead, vocab, false);
                    b.end();
                    b.g.logits.push(y);
                }
            }
        }
    }
    b.end();
    b.g
}

/// How many positions the first transformer among `stacks` runs (unbounded when none does).
fn next_tokens(stacks: &[Stack]) -> u32 {
    stacks
        .iter()
        .find_map(|s| match *s {
            Stack::Transformer { tokens, .. } => Some(tokens),
            _ => None,
        })
        .unwrap_or(u32::MAX)
}

fn transformer_layers(stack: &Stack) -> u32 {
    match *stack {
        Stack::Transformer { layers, .. } => layers,
        _ => 0,
    }
}

/// How a one-row stack reads a many-row one.
#[derive(Clone, Copy)]
enum Pool {
    Mean,
    First,
    Last,
}

struct Builder {
    g: Graph,
    /// The hidden state the next stack continues from.
    cur: Option<TensorId>,
}

impl Builder {
    fn tensor(&mut self, name: String, rows: u32, cols: u32, init: Option<Init>) -> TensorId {
        let id = TensorId(self.g.tensors.len() as u32);
        self.g.tensors.push(Tensor {
            name,
            rows,
            cols,
            init,
        });
        id
    }

    /// A new activation shaped like `rows × cols`, written by `op(y)`.
    fn emit(
        &mut self,
        name: String,
        rows: u32,
        cols: u32,
        op: impl FnOnce(TensorId) -> Op,
    ) -> TensorId {
        let y = self.tensor(name, rows, cols, None);
        self.g.ops.push(op(y));
        y
    }

    fn shape(&self, id: TensorId) -> (u32, u32) {
        let t = self.g.tensor(id);
        (t.rows, t.cols)
    }

    /// Closes the current chain: its last hidden state is a result.
    fn end(&mut self) {
        if let Some(x) = self.cur.take()
            && !self.g.logits.contains(&x)
        {
            self.g.outputs.push(x);
        }
    }

    /// The input of stack `name`: the current hidden state where it fits (pooled to one row
    /// where `pool` says how), else a fresh input (a new chain).
    fn start(&mut self, name: &str, rows: u32, cols: u32, pool: Option<Pool>) -> TensorId {
        if let Some(x) = self.cur {
            let (r, c) = self.shape(x);
            if c == cols && r == rows {
                return x;
            }
            if c == cols
                && rows == 1
                && let Some(pool) = pool
            {
                return match pool {
                    Pool::Mean => {
                        self.emit(format!("{name}.pooled"), 1, c, |y| Op::MeanPool { x, y })
                    }
                    Pool::First | Pool::Last => {
                        let row = if matches!(pool, Pool::Last) { r - 1 } else { 0 };
                        self.emit(format!("{name}.pooled"), 1, c, |y| Op::Row { x, row, y })
                    }
                };
            }
            self.end();
        }
        self.tensor(format!("{name}.input"), rows, cols, Some(Init::Input))
    }

    /// `x · Wᵀ (+ bias)` through a new quantized layer.
    fn linear(&mut self, x: TensorId, name: &str, role: Role, n: u32, bias: bool) -> TensorId {
        let (m, k) = self.shape(x);
        let layer = self.g.layers.len() as u32;
        self.g.layers.push(Layer {
            name: name.to_string(),
            role,
            m,
            k,
            n,
        });
        let y = self.emit(name.to_string(), m, n, |y| Op::Linear { x, layer, y });
        if !bias {
            return y;
        }
        let b = self.tensor(format!("{name}.bias"), 1, n, Some(Init::Bias));
        self.emit(format!("{name}+bias"), m, n, |out| Op::Add {
            a: y,
            b,
            y: out,
        })
    }

    fn norm(&mut self, x: TensorId, name: &str, arch: Arch) -> TensorId {
        let (rows, cols) = self.shape(x);
        let gamma = self.tensor(format!("{name}.weight"), 1, cols, Some(Init::Gain));
        let eps = arch.eps;
        match arch.norm {
            Norm::Layer => {
                let beta = self.tensor(format!("{name}.bias"), 1, cols, Some(Init::Shift));
                self.emit(name.to_string(), rows, cols, |y| Op::LayerNorm {
                    x,
                    gamma,
                    beta,
                    eps,
                    y,
                })
            }
            Norm::Rms => self.emit(name.to_string(), rows, cols, |y| Op::RmsNorm {
                x,
                gamma,
                eps,
                y,
            }),
        }
    }

    fn act(&mut self, x: TensorId, f: Activation, name: &str) -> TensorId {
        let (rows, cols) = self.shape(x);
        self.emit(name.to_string(), rows, cols, |y| Op::Act { x, f, y })
    }

    fn add(&mut self, a: TensorId, b: TensorId, name: &str) -> TensorId {
        let (rows, cols) = self.shape(a);
        self.emit(name.to_string(), rows, cols, |y| Op::Add { a, b, y })
    }

    /// One transformer block `l` of `stack` over `context` positions (one new position after
    /// `context − 1` cached ones when decoding).
    fn block(&mut self, stack: &Stack, arch: Arch, l: u32, context: u32) {
        let Stack::Transformer {
            name,
            hidden,
            intermediate,
            heads,
            kv_heads,
            head_dim,
            ffn,
            ..
        } = *stack
        else {
            return;
        };
        let p = format!("{name}.{l}");
        let decode = arch.attend == Attend::Decode;
        let rows = if decode { 1 } else { context };
        let past = if decode { context - 1 } else { 0 };
        let x = self.start(name, rows, hidden, None);
        let attn_in = match arch.placement {
            Placement::Post => x,
            Placement::Pre | Placement::Parallel => self.norm(x, &format!("{p}.attn_norm"), arch),
        };
        let qkv_bias = arch.biases != Biases::None;
        let mut q = self.linear(
            attn_in,
            &format!("{p}.attn.q"),
            Role::Attention,
            heads * head_dim,
            qkv_bias,
        );
        let mut k = self.linear(
            attn_in,
            &format!("{p}.attn.k"),
            Role::Attention,
            kv_heads * head_dim,
            qkv_bias,
        );
        let mut v = self.linear(
            attn_in,
            &format!("{p}.attn.v"),
            Role::Attention,
            kv_heads * head_dim,
            qkv_bias,
        );
        if let Positions::Rotary { theta } = arch.positions {
            let half = head_dim / 2;
            let cos = self.tensor(
                format!("{p}.rope.cos"),
                rows,
                half,
                Some(Init::RopeCos { theta, first: past }),
            );
            let sin = self.tensor(
                format!("{p}.rope.sin"),
                rows,
                half,
                Some(Init::RopeSin { theta, first: past }),
            );
            q = self.emit(format!("{p}.attn.q.rope"), rows, heads * head_dim, |y| {
                Op::Rope {
                    x: q,
                    cos,
                    sin,
                    heads,
                    head_dim,
                    y,
                }
            });
            k = self.emit(format!("{p}.attn.k.rope"), rows, kv_heads * head_dim, |y| {
                Op::Rope {
                    x: k,
                    cos,
                    sin,
                    heads: kv_heads,
                    head_dim,
                    y,
                }
            });
        }
        if past > 0 {
            let kw = kv_heads * head_dim;
            let k_cache = self.tensor(format!("{p}.attn.k_cache"), past, kw, Some(Init::Input));
            let v_cache = self.tensor(format!("{p}.attn.v_cache"), past, kw, Some(Init::Input));
            k = self.emit(format!("{p}.attn.keys"), context, kw, |y| Op::Concat {
                a: k_cache,
                b: k,
                y,
            });
            v = self.emit(format!("{p}.attn.values"), context, kw, |y| Op::Concat {
                a: v_cache,
                b: v,
                y,
            });
        }
        let alibi = (arch.positions == Positions::Alibi)
            .then(|| self.tensor(format!("{p}.alibi"), 1, heads, Some(Init::Alibi)));
        let scale = if arch.scaled {
            1.0 / f64::from(head_dim).sqrt()
        } else {
            1.0
        };
        let causal = arch.attend != Attend::Bidirectional;
        let attended = self.emit(format!("{p}.attn"), rows, heads * head_dim, |y| {
            Op::Attention {
                q,
                k,
                v,
                heads,
                kv_heads,
                head_dim,
                causal,
                scale,
                alibi,
                y,
            }
        });
        let o = self.linear(
            attended,
            &format!("{p}.attn.o"),
            Role::Attention,
            hidden,
            arch.biases == Biases::All,
        );
        let mut h = self.add(x, o, &format!("{p}.attn.residual"));
        if arch.placement == Placement::Post {
            h = self.norm(h, &format!("{p}.attn.norm"), arch);
        }
        let ffn_in = match arch.placement {
            Placement::Post => h,
            Placement::Pre => self.norm(h, &format!("{p}.ffn_norm"), arch),
            Placement::Parallel => attn_in,
        };
        let bias = arch.biases == Biases::All;
        let inner = match ffn {
            Ffn::Mlp => {
                let up = self.linear(
                    ffn_in,
                    &format!("{p}.ffn.up"),
                    Role::Ffn,
                    intermediate,
                    bias,
                );
                self.act(up, arch.act, &format!("{p}.ffn.act"))
            }
            Ffn::Gated => {
                let gate = self.linear(
                    ffn_in,
                    &format!("{p}.ffn.gate"),
                    Role::Ffn,
                    intermediate,
                    bias,
                );
                let gate = self.act(gate, arch.act, &format!("{p}.ffn.act"));
                let up = self.linear(
                    ffn_in,
                    &format!("{p}.ffn.up"),
                    Role::Ffn,
                    intermediate,
                    bias,
                );
                self.emit(format!("{p}.ffn.gated"), rows, intermediate, |y| Op::Mul {
                    a: gate,
                    b: up,
                    y,
                })
            }
        };
        let down = self.linear(inner, &format!("{p}.ffn.down"), Role::Ffn, hidden, bias);
        let mut out = self.add(h, down, &format!("{p}.ffn.residual"));
        if arch.placement == Placement::Post {
            out = self.norm(out, &format!("{p}.ffn.norm"), arch);
        }
        self.cur = Some(out);
    }
}

/// Runs one op in f64 on the values of its inputs (`value(id)`, row-major) and the f32
/// weights of its layer (`weights(layer)`): the reference for the whole graph and for each op
/// on the page's own inputs.
pub fn eval_op<'a>(
    g: &Graph,
    op: &Op,
    value: &dyn Fn(TensorId) -> &'a [f64],
    weights: &dyn Fn(u32) -> &'a [f32],
) -> Vec<f64> {
    let shape = |id: TensorId| {
        let t = g.tensor(id);
        (t.rows as usize, t.cols as usize)
    };
    match *op {
        Op::Linear { x, layer, .. } => {
            let l = &g.layers[layer as usize];
            ops::linear(
                value(x),
                weights(layer),
                None,
                l.m as usize,
                l.k as usize,
                l.n as usize,
            )
        }
        Op::LayerNorm {
            x,
            gamma,
            beta,
            eps,
            ..
        } => {
            let (_, c) = shape(x);
            let f = |id| value(id).iter().map(|v| *v as f32).collect::<Vec<f32>>();
            ops::layer_norm(value(x), c, &f(gamma), &f(beta), eps)
        }
        Op::RmsNorm { x, gamma, eps, .. } => {
            let (_, c) = shape(x);
            let gm: Vec<f32> = value(gamma).iter().map(|v| *v as f32).collect();
            ops::rms_norm(value(x), c, &gm, eps)
        }
        Op::Act { x, f, .. } => value(x).iter().map(|v| f.apply(*v)).collect(),
        Op::Add { a, b, .. } | Op::Mul { a, b, .. } => {
            let (va, vb) = (value(a), value(b));
            let (_, c) = shape(a);
            let broadcast = shape(b).0 == 1;
            let mul = matches!(op, Op::Mul { .. });
            va.iter()
                .enumerate()
                .map(|(i, x)| {
                    let y = vb[if broadcast { i % c } else { i }];
                    if mul { x * y } else { x + y }
                })
                .collect()
        }
        Op::Rope {
            x,
            cos,
            sin,
            head_dim,
            ..
        } => {
            let (rows, cols) = shape(x);
            let (vx, vc, vs) = (value(x), value(cos), value(sin));
            let (d, half) = (head_dim as usize, head_dim as usize / 2);
            let mut y = vec![0f64; rows * cols];
            for r in 0..rows {
                for h in 0..cols / d {
                    let base = r * cols + h * d;
                    for i in 0..half {
                        let (c, s) = (vc[r * half + i], vs[r * half + i]);
                        let (x1, x2) = (vx[base + i], vx[base + half + i]);
                        y[base + i] = x1 * c - x2 * s;
                        y[base + half + i] = x2 * c + x1 * s;
                    }
                }
            }
            y
        }
        Op::Concat { a, b, .. } => [value(a), value(b)].concat(),
        Op::Attention {
            q,
            k,
            v,
            heads,
            kv_heads,
            head_dim,
            causal,
            scale,
            alibi,
            ..
        } => {
            let s = AttentionShape {
                heads: heads as usize,
                kv_heads: kv_heads as usize,
                head_dim: head_dim as usize,
                causal,
                scale,
            };
            ops::attention(
                value(q),
                value(k),
                value(v),
                shape(q).0,
                shape(k).0,
                s,
                alibi.map(value),
            )
        }
        Op::MeanPool { x, .. } => {
            let (rows, cols) = shape(x);
            let vx = value(x);
            (0..cols)
                .map(|c| (0..rows).map(|r| vx[r * cols + c]).sum::<f64>() / rows as f64)
                .collect()
        }
        Op::Row { x, row, .. } => {
            let (_, cols) = shape(x);
            let r = row as usize;
            value(x)[r * cols..(r + 1) * cols].to_vec()
        }
    }
}

/// Runs the whole graph in f64 from the given tensors (`given[i]` for every tensor with an
/// [`Init`]) and the layers' f32 weights; returns every tensor's value.
pub fn eval(g: &Graph, given: &[Option<Vec<f32>>], weights: &[&[f32]]) -> Vec<Vec<f64>> {
    let mut values: Vec<Vec<f64>> = given
        .iter()
        .map(|v| {
            v.as_ref()
                .map(|v| v.iter().map(|x| f64::from(*x)).collect())
                .unwrap_or_default()
        })
        .collect();
    for op in &g.ops {
        let y = {
            let vals = &values;
            eval_op(g, op, &|id| vals[id.index()].as_slice(), &|l| {
                weights[l as usize]
            })
        };
        values[op.output().index()] = y;
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::resolve;

    fn size(layers: u32, seq_len: u32, head: bool) -> WorkloadSize {
        WorkloadSize {
            layers,
            seq_len,
            head,
        }
    }

    fn lowered(name: &str, s: WorkloadSize) -> Graph {
        let r = resolve(name).expect(name);
        lower(r.family.key, r.model, s)
    }

    /// Every op reads tensors of the shapes it needs: what the page and WebNN rely on.
    fn assert_consistent(g: &Graph) {
        let sh = |id: TensorId| (g.tensor(id).rows, g.tensor(id).cols);
        let mut written = vec![false; g.tensors.len()];
        for (i, op) in g.ops.iter().enumerate() {
            for x in op.inputs() {
                assert!(
                    g.tensor(x).init.is_some() || written[x.index()],
                    "op {i} reads {} before it is written",
                    g.tensor(x).name
                );
            }
            let y = sh(op.output());
            let ok = match *op {
                Op::Linear { x, layer, .. } => {
                    let l = &g.layers[layer as usize];
                    sh(x) == (l.m, l.k) && y == (l.m, l.n)
                }
                Op::LayerNorm { x, gamma, beta, .. } => {
                    sh(x) == y && sh(gamma) == (1, y.1) && sh(beta) == (1, y.1)
                }
                Op::RmsNorm { x, gamma, .. } => sh(x) == y && sh(gamma) == (1, y.1),
                Op::Act { x, .. } => sh(x) == y,
                Op::Add { a, b, .. } => sh(a) == y && (sh(b) == y || sh(b) == (1, y.1)),
                Op::Mul { a, b, .. } => sh(a) == y && sh(b) == y,
                Op::Rope {
                    x,
                    cos,
                    sin,
                    heads,
                    head_dim,
                    ..
                } => {
                    sh(x) == y
                        && y.1 == heads * head_dim
                        && sh(cos) == (y.0, head_dim / 2)
                        && sh(sin) == sh(cos)
                }
                Op::Concat { a, b, .. } => {
                    sh(a).1 == y.1 && sh(b).1 == y.1 && sh(a).0 + sh(b).0 == y.0
                }
                Op::Attention {
                    q,
                    k,
                    v,
                    heads,
                    kv_heads,
                    head_dim,
                    alibi,
                    ..
                } => {
                    sh(q) == y
                        && y.1 == heads * head_dim
                        && sh(k) == sh(v)
                        && sh(k).1 == kv_heads * head_dim
                        && sh(k).0 >= y.0
                        && heads % kv_heads == 0
                        && alibi.is_none_or(|a| sh(a) == (1, heads))
                }
                Op::MeanPool { x, .. } | Op::Row { x, .. } => y == (1, sh(x).1),
            };
            assert!(ok, "op {i} {op:?} has inconsistent shapes");
            written[op.output().index()] = true;
        }
        for id in g.outputs.iter().chain(&g.logits) {
            assert!(
                written[id.index()],
                "result {} is never written",
                g.tensor(*id).name
            );
        }
    }

    #[test]
    fn a_bert_layer_is_the_published_post_norm_block() {
        // bert-base-uncased: its embeddings' LayerNorm, then hidden 768, 12 heads, FFN 3072,
        // GELU (erf), LayerNorm eps 1e-12 after each residual
        let g = lowered("bert", size(1, 8, false));
        assert_consistent(&g);
        let sig = g.signature();
        assert_eq!(
            sig,
            [
                "layer_norm(8×768)",
                "linear(8×768)",
                "add(8×768)",
                "linear(8×768)",
                "add(8×768)",
                "linear(8×768)",
                "add(8×768)",
                "attention(8×768)",
                "linear(8×768)",
                "add(8×768)",
                "add(8×768)",
                "layer_norm(8×768)",
                "linear(8×3072)",
                "add(8×3072)",
                "act(8×3072)",
                "linear(8×768)",
                "add(8×768)",
                "add(8×768)",
                "layer_norm(8×768)",
            ]
        );
        assert!(g.ops.iter().any(|o| matches!(
            o,
            Op::Act {
                f: Activation::GeluErf,
                ..
            }
        )));
        assert!(
            g.ops
                .iter()
                .any(|o| matches!(o, Op::LayerNorm { eps, .. } if *eps == 1e-12))
        );
        assert!(g.ops.iter().any(|o| matches!(
            o,
            Op::Attention {
                heads: 12,
                head_dim: 64,
                causal: false,
                ..
            }
        )));
        assert_eq!(g.outputs.len(), 1);
    }

    #[test]
    fn a_llama_decode_step_has_rms_norm_rotary_gqa_and_a_kv_cache() {
        // TinyLlama-1.1B: hidden 2048, 32 query heads sharing 4 KV heads of 64, SwiGLU 5632,
        // RMSNorm eps 1e-5, rotary θ = 10000; one step after 7 cached positions
        let g = lowered("tinyllama", size(1, 8, true));
        assert_consistent(&g);
        assert_eq!(
            g.signature(),
            [
                "rms_norm(1×2048)",
                "linear(1×2048)",
                "linear(1×256)",
                "linear(1×256)",
                "rope(1×2048)",
                "rope(1×256)",
                "concat(8×256)",
                "concat(8×256)",
                "attention(1×2048)",
                "linear(1×2048)",
                "add(1×2048)",
                "rms_norm(1×2048)",
                "linear(1×5632)",
                "act(1×5632)",
                "linear(1×5632)",
                "mul(1×5632)",
                "linear(1×2048)",
                "add(1×2048)",
                "rms_norm(1×2048)",
                "linear(1×32000)",
            ]
        );
        assert!(g.ops.iter().any(|o| matches!(
            o,
            Op::Attention {
                heads: 32,
                kv_heads: 4,
                causal: true,
                ..
            }
        )));
        let cos = g
            .tensors
            .iter()
            .find(|t| t.name.ends_with("rope.cos"))
            .expect("rope");
        assert_eq!(
            cos.init,
            Some(Init::RopeCos {
                theta: 10_000.0,
                first: 7
            })
        );
        assert_eq!(g.logits.len(), 1);
        // the final hidden state is a result too: its cosine is measured for every cell
        assert_eq!(g.outputs.len(), 1);
        assert_eq!(g.tensor(g.outputs[0]).name, "decoder.final_norm");
    }

    #[test]
    fn decoder_families_keep_their_own_positions_norms_and_ffns() {
        let attention = |g: &Graph| {
            g.ops
                .iter()
                .find_map(|o| match o {
                    Op::Attention {
                        scale,
                        alibi,
                        kv_heads,
                        ..
                    } => Some((*scale, alibi.is_some(), *kv_heads)),
                    _ => None,
                })
                .expect("attention")
        };
        let s = size(1, 4, false);
        // GPT-2: pre-LayerNorm, GELU-tanh, learned positions (in the embeddings)
        let gpt2 = lowered("gpt2", s);
        assert!(gpt2.ops.iter().any(|o| matches!(
            o,
            Op::Act {
                f: Activation::GeluTanh,
                ..
            }
        )));
        assert!(!gpt2.ops.iter().any(|o| matches!(o, Op::Rope { .. })));
        // BLOOM: ALiBi; GPT-Neo: unscaled scores; Falcon: multi-query, parallel branches
        assert!(attention(&lowered("bloom", s)).1);
        assert_eq!(attention(&lowered("gpt_neo", s)).0, 1.0);
        let falcon = lowered("falcon", s);
        assert_eq!(attention(&falcon).2, 1);
        assert_eq!(
            falcon
                .ops
                .iter()
                .filter(|o| matches!(o, Op::LayerNorm { .. }))
                .count(),
            2,
            "one norm per block and the final one"
        );
        // OPT: ReLU; Gemma: GeGLU (tanh) with RMSNorm; Qwen: rotary θ = 10⁶ with Q/K/V biases
        assert!(lowered("opt", s).ops.iter().any(|o| matches!(
            o,
            Op::Act {
                f: Activation::Relu,
                ..
            }
        )));
        let gemma = lowered("gemma", s);
        assert!(gemma.ops.iter().any(|o| matches!(
            o,
            Op::Act {
                f: Activation::GeluTanh,
                ..
            }
        )));
        assert!(gemma.ops.iter().any(|o| matches!(o, Op::Mul { .. })));
        let qwen = lowered("qwen", s);
        let biases: Vec<&str> = qwen
            .tensors
            .iter()
            .filter(|t| t.init == Some(Init::Bias))
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            biases,
            [
                "decoder.0.attn.q.bias",
                "decoder.0.attn.k.bias",
                "decoder.0.attn.v.bias"
            ]
        );
        assert!(
            qwen.tensors
                .iter()
                .any(|t| matches!(t.init, Some(Init::RopeCos { theta, .. }) if theta == 1e6))
        );
        for name in [
            "gpt2", "llama", "opt", "gpt_neo", "bloom", "falcon", "gemma", "qwen",
        ] {
            assert_consistent(&lowered(name, size(2, 6, true)));
        }
    }

    #[test]
    fn a_vit_is_a_patch_embedding_a_pre_norm_encoder_and_a_pooled_classifier() {
        // ViT-B/16: 16×16×3 patches to 768, pre-LayerNorm (eps 1e-12), GELU, CLS classifier
        let g = lowered("vit", size(1, 8, false));
        assert_consistent(&g);
        let sig = g.signature();
        assert_eq!(
            &sig[..4],
            [
                "linear(8×768)",
                "add(8×768)",
                "add(8×768)",
                "layer_norm(8×768)"
            ]
        );
        assert!(g.tensors.iter().any(|t| t.init == Some(Init::Position)));
        assert_eq!(
            &sig[sig.len() - 4..],
            [
                "layer_norm(8×768)",
                "row(1×768)",
                "linear(1×1000)",
                "add(1×1000)"
            ]
        );
        assert_eq!(g.layers[0].k, 16 * 16 * 3);
        // ResNet: its convolutions as GEMMs with (folded) bias and ReLU, average pooled
        let resnet = lowered("resnet", size(1, 16, false));
        assert_consistent(&resnet);
        assert_eq!(
            &resnet.signature()[..3],
            ["linear(16×64)", "add(16×64)", "act(16×64)"]
        );
        assert!(resnet.ops.iter().any(|o| matches!(o, Op::MeanPool { .. })));
        // ConvNeXt's pointwise MLP: GELU after the up projection only
        let convnext = lowered("convnext", size(1, 4, false));
        let acts = convnext
            .ops
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Op::Act {
                        f: Activation::GeluErf,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(acts, 4, "{:?}", convnext.signature());
    }

    #[test]
    fn audio_and_multimodal_towers_lower_to_their_blocks() {
        // Whisper: two GELU convolutions feeding a pre-norm encoder; its decoder decodes
        let whisper = lowered("whisper", size(1, 4, false));
        assert_consistent(&whisper);
        let sig = whisper.signature();
        assert_eq!(&sig[..3], ["linear(4×384)", "add(4×384)", "act(4×384)"]);
        assert!(
            whisper
                .ops
                .iter()
                .any(|o| matches!(o, Op::Attention { causal: true, .. }))
        );
        // wav2vec2: post-norm encoder, eps 1e-5
        let w2v = lowered("wav2vec2", size(1, 4, false));
        assert!(
            w2v.ops
                .iter()
                .any(|o| matches!(o, Op::LayerNorm { eps, .. } if *eps == 1e-5))
        );
        // CLIP: QuickGELU in both towers, a causal text tower over its whole sequence
        let clip = lowered("clip", size(1, 4, false));
        assert_consistent(&clip);
        assert!(clip.ops.iter().any(|o| matches!(
            o,
            Op::Act {
                f: Activation::QuickGelu,
                ..
            }
        )));
        let text_attention = clip
            .ops
            .iter()
            .filter(|o| matches!(o, Op::Attention { causal: true, .. }))
            .count();
        assert_eq!(text_attention, 1);
        assert_eq!(clip.outputs.len(), 2, "two towers, two results");
    }

    #[test]
    fn every_family_lowers_to_a_consistent_graph() {
        for f in crate::family::families() {
            for m in f.models {
                for s in [size(1, 1, false), size(2, 5, true)] {
                    let g = lower(f.key, m, s);
                    assert!(!g.layers.is_empty(), "{}", m.id);
                    assert!(!g.outputs.is_empty() || !g.logits.is_empty(), "{}", m.id);
                    assert_consistent(&g);
                }
            }
        }
    }

    #[test]
    fn alibi_slopes_are_blooms() {
        // 8 heads: 2^-1 … 2^-8; 12 heads: the 8 of 8, then every other one of 16
        let s = alibi_slopes(8);
        assert!(
            s.iter()
                .enumerate()
                .all(|(i, v)| (v - 2f64.powi(-(i as i32) - 1)).abs() < 1e-15)
        );
        let s = alibi_slopes(12);
        assert_eq!(s.len(), 12);
        assert!((s[8] - 2f64.powf(-0.5)).abs() < 1e-15 && (s[9] - 2f64.powf(-1.5)).abs() < 1e-15);
    }
}
