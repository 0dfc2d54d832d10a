//! A cell's graph with its tensors, and the verdict on what the page computed from it.
//!
//! [`block_case`] draws every given tensor, quantizes every layer and runs the whole graph in
//! f64 twice: with the fp32 weights (the accuracy reference) and with the dequantized weights
//! the kernels actually see (the kernel reference). [`check`] then judges the page's values of
//! every tensor: each matmul against the floating-point error bound of the truth issue
//! ([`check_kernel`]) on the page's own input, every other op against its f64 result on the
//! page's own inputs within [`OP_BOUND`], and the block's results end to end within
//! [`END_TO_END_BOUND`] of the kernel reference; a wrong softmax, norm or activation is a
//! failure, never a pass. Accuracy is the model's: the cosine and relative error of the final
//! hidden states against fp32, and for LM heads next-token agreement and KL divergence.

use crate::graph::{self, Graph, Init, Op, Tensor, TensorId, alibi_slopes};
use crate::quant::{QuantParams, Quantized, quantize};
use crate::reference::{self, KernelCheck, check_kernel, matmul_with_magnitude};
use crate::result::OpFigure;
use crate::workload::Layer;

/// The largest error of a non-matmul op, as a fraction of the largest magnitude it works
/// with: 2⁻¹⁶ (128 f32 ulps of the largest value). A correct f32 kernel is far below it
/// (transcendentals included: WGSL's `exp` is 3 + 2·|x| ulp); the smallest planted mistakes
/// are well above it: LayerNorm with the unbiased variance at width 768 (a factor
/// √(767/768)), or the tanh approximation of GELU in an erf family (up to 4.7·10⁻⁴ apart).
pub const OP_BOUND: f64 = 1.0 / 65536.0;

/// The largest relative error (‖got − want‖ / ‖want‖) of a result against the whole graph run
/// in f64 with the dequantized weights: 2⁻¹⁰. Rounding of correct f32 kernels through a block
/// stays near 10⁻⁶; a wrong op anywhere moves the result by far more than this.
pub const END_TO_END_BOUND: f64 = 1.0 / 1024.0;

/// The given tensor `t` of a cell (`None` for computed ones), drawn from ChaCha8 seeded with
/// the cell's seed and the tensor's name, so every machine draws the same.
pub fn init_values(seed: u64, t: &Tensor) -> Option<Vec<f32>> {
    let init = t.init?;
    let n = t.len();
    let mut r = reference::rng(seed, "block", &t.name);
    let mut draw = |sd: f64, mean: f64| -> Vec<f32> {
        (0..n)
            .map(|_| (mean + sd * reference::normal(&mut r)) as f32)
            .collect()
    };
    let table = |first: u32, theta: f64, f: fn(f64) -> f64| -> Vec<f32> {
        let half = t.cols as usize;
        (0..t.rows as usize)
            .flat_map(|row| {
                (0..half).map(move |i| {
                    let freq = theta.powf(-(i as f64) / half as f64);
                    f((f64::from(first) + row as f64) * freq) as f32
                })
            })
            .collect()
    };
    Some(match init {
        Init::Input => draw(1.0, 0.0),
        Init::Gain => draw(0.1, 1.0),
        Init::Shift => draw(0.1, 0.0),
        Init::Bias => draw(0.02, 0.0),
        Init::Position => draw(0.02, 0.0),
        Init::RopeCos { theta, first } => table(first, theta, f64::cos),
        Init::RopeSin { theta, first } => table(first, theta, f64::sin),
        Init::Alibi => alibi_slopes(t.cols).into_iter().map(|s| s as f32).collect(),
    })
}

/// Everything needed to run a cell's graph in the page and judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockCase {
    pub graph: Graph,
    /// Per tensor: the values of given ones, `None` for computed ones.
    pub given: Vec<Option<Vec<f32>>>,
    pub quantized: Vec<Quantized>,
    /// What the kernels see: the quantized weights expanded back to f32.
    pub dequantized: Vec<Vec<f32>>,
    /// The results ([`BlockCase::results`]) with the dequantized weights, in f64.
    pub kernel_ref: Vec<Vec<f64>>,
    /// The results with the original fp32 weights: quantization's cost is measured here.
    pub fp32_ref: Vec<Vec<f64>>,
}

impl BlockCase {
    /// The tensors a cell's accuracy is read from: hidden states, then logits.
    pub fn results(&self) -> Vec<TensorId> {
        self.graph
            .outputs
            .iter()
            .chain(&self.graph.logits)
            .copied()
            .collect()
    }
}

/// Draws `graph`'s tensors, quantizes each layer at `params[i]` (its fp32 weights from
/// `weights`: synthetic or a checkpoint's) and computes both references.
pub fn block_case<E>(
    graph: Graph,
    seed: u64,
    params: &[QuantParams],
    weights: impl Fn(&Layer) -> Result<Vec<f32>, E>,
) -> Result<BlockCase, E> {
    block_case_given(graph, seed, params, weights, |_| Ok(None))
}

/// [`block_case`] where `given` supplies the values of given tensors a checkpoint or a real
/// input holds (`Ok(None)`: drawn from `seed`); a value of the wrong length is the caller's
/// error to report, so it is checked there.
pub fn block_case_given<E>(
    graph: Graph,
    seed: u64,
    params: &[QuantParams],
    weights: impl Fn(&Layer) -> Result<Vec<f32>, E>,
    given: impl Fn(&Tensor) -> Result<Option<Vec<f32>>, E>,
) -> Result<BlockCase, E> {
    let mut values: Vec<Option<Vec<f32>>> = Vec::with_capacity(graph.tensors.len());
    for t in &graph.tensors {
        let v = match t.init {
            None => None,
            Some(_) => match given(t)? {
                Some(v) => Some(v),
                None => init_values(seed, t),
            },
        };
        values.push(v);
    }
    let given = values;
    let mut fp32 = Vec::with_capacity(graph.layers.len());
    for l in &graph.layers {
        fp32.push(weights(l)?);
    }
    let quantized: Vec<Quantized> = graph
        .layers
        .iter()
        .zip(&fp32)
        .zip(params)
        .map(|((l, w), p)| quantize(w, l.n, l.k, *p))
        .collect();
    let dequantized: Vec<Vec<f32>> = quantized.iter().map(Quantized::dequantize).collect();
    let pick = |values: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        graph
            .outputs
            .iter()
            .chain(&graph.logits)
            .map(|id| values[id.index()].clone())
            .collect()
    };
    let refs = |w: &[Vec<f32>]| {
        let w: Vec<&[f32]> = w.iter().map(Vec::as_slice).collect();
        pick(graph::eval(&graph, &given, &w))
    };
    let fp32_ref = refs(&fp32);
    drop(fp32);
    let kernel_ref = refs(&dequantized);
    Ok(BlockCase {
        graph,
        given,
        quantized,
        dequantized,
        kernel_ref,
        fp32_ref,
    })
}

/// How one non-matmul op's output compares with its f64 result on the page's inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCheck {
    pub max_abs_err: f64,
    /// What the error is measured against: the largest magnitude the op works with.
    pub scale: f64,
}

impl OpCheck {
    pub fn ratio(&self) -> f64 {
        if self.max_abs_err.is_nan() {
            return f64::INFINITY;
        }
        self.max_abs_err / (OP_BOUND * self.scale.max(f64::MIN_POSITIVE))
    }

    pub fn passed(&self) -> bool {
        self.ratio() <= 1.0
    }
}

/// The model-level accuracy of a run against fp32: the worst over the cell's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    pub cosine: f64,
    /// ‖got − fp32‖ / ‖fp32‖.
    pub rel_err: f64,
    /// LM heads: the share of rows (over a cell's inputs) whose most likely next token
    /// matches fp32's.
    pub top1_agreement: Option<f64>,
    /// LM heads: mean KL(fp32 ‖ run) of the next-token distributions over a cell's inputs,
    /// in nats.
    pub kl_divergence: Option<f64>,
}

/// The verdict on a cell's block run.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockVerdict {
    /// The first check that failed, in words; `None` when all passed.
    pub failure: Option<String>,
    /// The matmul whose error is closest to its bound.
    pub kernel: KernelCheck,
    /// The op (not a matmul) closest to [`OP_BOUND`], as a ratio to it.
    pub op_ratio: f64,
    /// The results' worst relative error against the kernel reference.
    pub end_to_end_rel_err: f64,
    pub accuracy: Accuracy,
    /// Every op's error against its bound, in run order: what the database keeps per op.
    pub ops: Vec<OpFigure>,
}

/// How many inputs a cell of `graph` runs: LM heads judge next-token agreement and KL over
/// [`LM_INPUTS`] inputs (a rate, not one coin flip); other graphs one.
pub fn input_count(graph: &Graph) -> u32 {
    if graph.logits.is_empty() {
        1
    } else {
        LM_INPUTS
    }
}

/// The fixed set of inputs an LM head is judged on: this many decode steps, each from its own
/// hidden state and KV cache, through the same weights.
pub const LM_INPUTS: u32 = 8;

/// Input `i` of a cell's fixed set: the given tensor `t` where it is an input (hidden states,
/// a KV cache) drawn with its own seed, `None` (the cell's own draw) for everything else and
/// for input 0, so a one-input cell is what it always was.
pub fn input_values(seed: u64, i: u32, t: &Tensor) -> Option<Vec<f32>> {
    (i > 0 && t.init == Some(Init::Input))
        .then(|| init_values(seed ^ (u64::from(i) << 32), t))
        .flatten()
}

impl BlockVerdict {
    /// The verdict on a cell's inputs (an LM's fixed set, a checkpoint's sentences): the first
    /// failure, the worst of every check, the worst cosine and relative error, and the
    /// next-token agreement and KL averaged over the inputs. `None` for no inputs.
    pub fn over(verdicts: Vec<BlockVerdict>) -> Option<BlockVerdict> {
        // NaN (a non-finite result) is the worst of all, not a value to skip
        fn larger(a: f64, b: f64) -> f64 {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        }
        fn smaller(a: f64, b: f64) -> f64 {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        }
        let mean = |f: fn(&Accuracy) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = verdicts.iter().filter_map(|v| f(&v.accuracy)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let top1 = mean(|a| a.top1_agreement);
        let kl = mean(|a| a.kl_divergence);
        let mut it = verdicts.into_iter();
        let first = it.next()?;
        let mut out = it.fold(first, |acc, v| BlockVerdict {
            failure: acc.failure.or(v.failure),
            kernel: if v.kernel.worst_ratio.is_nan()
                || v.kernel.worst_ratio > acc.kernel.worst_ratio
            {
                v.kernel
            } else {
                acc.kernel
            },
            op_ratio: larger(acc.op_ratio, v.op_ratio),
            end_to_end_rel_err: larger(acc.end_to_end_rel_err, v.end_to_end_rel_err),
            accuracy: Accuracy {
                cosine: smaller(acc.accuracy.cosine, v.accuracy.cosine),
                rel_err: larger(acc.accuracy.rel_err, v.accuracy.rel_err),
                ..acc.accuracy
            },
            // the inputs run the same ops (rows differ): each op's worst input
            ops: if acc.ops.len() == v.ops.len() {
                acc.ops
                    .into_iter()
                    .zip(v.ops)
                    .map(|(a, b)| {
                        if b.bound_ratio.is_nan() || b.bound_ratio > a.bound_ratio {
                            b
                        } else {
                            a
                        }
                    })
                    .collect()
            } else {
                acc.ops
            },
        });
        out.accuracy.top1_agreement = top1;
        out.accuracy.kl_divergence = kl;
        Some(out)
    }
}

/// Why the page's values cannot be judged at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor {name}: {got} values for {want}")]
pub struct WrongSize {
    pub name: String,
    pub got: usize,
    pub want: usize,
}

/// Judges the page's values of every computed tensor (`page[i]` for computed tensor `i`; given
/// ones are the case's own). Non-finite values arrive as NaN and fail.
pub fn check(case: &BlockCase, page: &[Option<Vec<f32>>]) -> Result<BlockVerdict, WrongSize> {
    let g = &case.graph;
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(g.tensors.len());
    for (i, t) in g.tensors.iter().enumerate() {
        let v = case.given[i]
            .clone()
            .or_else(|| page.get(i).cloned().flatten())
            .unwrap_or_default();
        if v.len() != t.len() {
            return Err(WrongSize {
                name: t.name.clone(),
                got: v.len(),
                want: t.len(),
            });
        }
        values.push(v);
    }
    let wide: Vec<Vec<f64>> = values
        .iter()
        .map(|v| v.iter().map(|x| f64::from(*x)).collect())
        .collect();
    let mut failure = None;
    let mut kernel: Option<KernelCheck> = None;
    let mut op_ratio = 0f64;
    let mut ops = Vec::with_capacity(g.ops.len());
    for (i, op) in g.ops.iter().enumerate() {
        let y = op.output();
        let got = &values[y.index()];
        let name = &g.tensor(y).name;
        let why = if let Op::Linear { x, layer, .. } = *op {
            let l = &g.layers[layer as usize];
            let (want, mag) = matmul_with_magnitude(
                &values[x.index()],
                &case.dequantized[layer as usize],
                l.m as usize,
                l.k as usize,
                l.n as usize,
            );
            let c = check_kernel(got, &want, &mag, l.k).expect("sizes checked above");
            if kernel.is_none_or(|k| c.worst_ratio > k.worst_ratio || c.worst_ratio.is_nan()) {
                kernel = Some(c);
            }
            ops.push(OpFigure {
                tensor: name.clone(),
                op: op.kind().into(),
                max_abs_err: c.max_abs_err,
                bound_ratio: c.worst_ratio,
            });
            (!c.passed()).then(|| {
                format!(
                    "op {i} linear {} ({}-bit): output differs from the dequantized reference by up to {:.3e}, {:.2}× the floating-point error bound (c·max(k, 256) + 2)·2⁻²⁴·Σ|x·w| with c = {} and k = {}",
                    l.name,
                    case.quantized[layer as usize].params.bits,
                    c.max_abs_err,
                    c.worst_ratio,
                    c.bound_c,
                    l.k
                )
            })
        } else {
            let want = graph::eval_op(g, op, &|id| wide[id.index()].as_slice(), &|_| &[]);
            let c = op_check(op, got, &want, &|id| wide[id.index()].as_slice());
            op_ratio = op_ratio.max(c.ratio());
            ops.push(OpFigure {
                tensor: name.clone(),
                op: op.kind().into(),
                max_abs_err: c.max_abs_err,
                bound_ratio: c.ratio(),
            });
            (!c.passed()).then(|| {
                format!(
                    "op {i} {} {name}: output differs from its f64 result on the page's own inputs by up to {:.3e}, {:.2}× the bound 2⁻¹⁶·{:.3e}",
                    op.kind(),
                    c.max_abs_err,
                    c.ratio(),
                    c.scale
                )
            })
        };
        if failure.is_none() {
            failure = why;
        }
    }
    let mut end_to_end = 0f64;
    let mut acc = Accuracy {
        cosine: 1.0,
        rel_err: 0.0,
        top1_agreement: None,
        kl_divergence: None,
    };
    for (r, id) in case.results().iter().enumerate() {
        let got = &wide[id.index()];
        let e = rel_err(got, &case.kernel_ref[r]);
        end_to_end = end_to_end.max(e);
        if failure.is_none() && beyond(e, END_TO_END_BOUND) {
            failure = Some(format!(
                "{}: relative error {e:.3e} against the whole block run in f64 with the dequantized weights, above the end-to-end bound 2⁻¹⁰",
                g.tensor(*id).name
            ));
        }
        let fp32 = &case.fp32_ref[r];
        if g.logits.contains(id) {
            let cols = g.tensor(*id).cols as usize;
            let (top1, kl) = next_token(got, fp32, cols);
            acc.top1_agreement = Some(acc.top1_agreement.map_or(top1, |t| t.min(top1)));
            acc.kl_divergence = Some(acc.kl_divergence.map_or(kl, |k| k.max(kl)));
        } else {
            acc.cosine = acc.cosine.min(crate::ops::cosine(got, fp32));
            acc.rel_err = acc.rel_err.max(rel_err(got, fp32));
        }
    }
    Ok(BlockVerdict {
        failure,
        kernel: kernel.unwrap_or(KernelCheck {
            max_abs_err: 0.0,
            bound_c: reference::KERNEL_BOUND_C,
            worst_ratio: 0.0,
        }),
        op_ratio,
        end_to_end_rel_err: end_to_end,
        accuracy: acc,
        ops,
    })
}

/// NaN compares false with everything: a NaN error is beyond every bound.
fn beyond(e: f64, bound: f64) -> bool {
    e.is_nan() || e > bound
}

/// The error of one op and the magnitude it is measured against: for sums and products the
/// largest term (cancellation leaves a small result with its terms' rounding), else the
/// largest value of the reference.
fn op_check<'a>(
    op: &Op,
    got: &[f32],
    want: &[f64],
    value: &dyn Fn(TensorId) -> &'a [f64],
) -> OpCheck {
    let mut max_abs_err = 0f64;
    for (g, w) in got.iter().zip(want) {
        let d = (f64::from(*g) - w).abs();
        if d.is_nan() {
            max_abs_err = f64::NAN;
            break;
        }
        max_abs_err = max_abs_err.max(d);
    }
    let max_abs = |v: &[f64]| v.iter().fold(0f64, |m, x| m.max(x.abs()));
    let scale = match *op {
        Op::Add { a, b, .. } | Op::Mul { a, b, .. } => {
            let (a, b) = (max_abs(value(a)), max_abs(value(b)));
            if matches!(op, Op::Mul { .. }) {
                a * b
            } else {
                a + b
            }
        }
        Op::Rope { x, .. } => max_abs(value(x)),
        _ => max_abs(want),
    };
    OpCheck { max_abs_err, scale }
}

fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let (mut d2, mut w2) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        d2 += (g - w) * (g - w);
        w2 += w * w;
    }
    (d2 / w2.max(f64::MIN_POSITIVE)).sqrt()
}

/// Next-token agreement and KL(fp32 ‖ got) over the rows of `cols`-wide logits.
fn next_token(got: &[f64], fp32: &[f64], cols: usize) -> (f64, f64) {
    let argmax = |r: &[f64]| {
        r.iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, v)| {
                if *v > bv { (i, *v) } else { (bi, bv) }
            })
            .0
    };
    let log_softmax = |r: &[f64]| -> Vec<f64> {
        let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + r.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        r.iter().map(|v| v - lse).collect()
    };
    let rows = (fp32.len() / cols.max(1)).max(1);
    let (mut agree, mut kl) = (0usize, 0f64);
    for (g, f) in got.chunks(cols).zip(fp32.chunks(cols)) {
        agree += usize::from(argmax(g) == argmax(f));
        let (lg, lf) = (log_softmax(g), log_softmax(f));
        kl += lf
            .iter()
            .zip(&lg)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
    }
    (agree as f64 / rows as f64, kl / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::resolve;
    use crate::graph::lower;
    use crate::ops::Activation;
    use crate::quant::{Bits, Scheme};
    use crate::workload::WorkloadSize;

    fn case(model: &str, layers: u32, seq_len: u32, head: bool, bits: Bits) -> BlockCase {
        let r = resolve(model).expect(model);
        let g = lower(
            r.family.key,
            r.model,
            WorkloadSize {
                layers,
                seq_len,
                head,
            },
        );
        let params = vec![
            QuantParams {
                bits,
                scheme: Scheme::Symmetric,
                group_size: 32,
            };
            g.layers.len()
        ];
        block_case(g, 7, &params, |l| Ok::<_, ()>(reference::weights(7, l))).expect("case")
    }

    /// A planted mistake: the op a page runs instead of the graph's, and what it does to the
    /// op's output.
    type Wrong<'a> = &'a dyn Fn(&Op, Vec<f64>) -> Vec<f64>;
    type Swap<'a> = &'a dyn Fn(&Op) -> Op;

    /// What a page computes: each op in f64 on the f32 values before it (`swap` may replace
    /// the op), rounded to f32, then `wrong` applied to its output.
    fn page(case: &BlockCase, swap: &dyn Fn(&Op) -> Op, wrong: Wrong<'_>) -> Vec<Option<Vec<f32>>> {
        let g = &case.graph;
        let mut values: Vec<Vec<f64>> = case
            .given
            .iter()
            .map(|v| {
                v.as_ref()
                    .map(|v| v.iter().map(|x| f64::from(*x)).collect())
                    .unwrap_or_default()
            })
            .collect();
        for op in &g.ops {
            let run = swap(op);
            let y = {
                let vals = &values;
                graph::eval_op(g, &run, &|id| vals[id.index()].as_slice(), &|l| {
                    case.dequantized[l as usize].as_slice()
                })
            };
            let y = wrong(op, y);
            values[op.output().index()] = y.iter().map(|v| f64::from(*v as f32)).collect();
        }
        g.tensors
            .iter()
            .zip(values)
            .map(|(t, v)| {
                t.init
                    .is_none()
                    .then(|| v.iter().map(|x| *x as f32).collect())
            })
            .collect()
    }

    fn same(op: &Op) -> Op {
        op.clone()
    }

    fn right(_: &Op, y: Vec<f64>) -> Vec<f64> {
        y
    }

    fn verdict(failure: Option<&str>, cosine: f64, top1: Option<f64>, ratio: f64) -> BlockVerdict {
        BlockVerdict {
            failure: failure.map(str::to_string),
            kernel: KernelCheck {
                max_abs_err: ratio,
                bound_c: reference::KERNEL_BOUND_C,
                worst_ratio: ratio,
            },
            op_ratio: ratio,
            end_to_end_rel_err: ratio,
            accuracy: Accuracy {
                cosine,
                rel_err: 1.0 - cosine,
                top1_agreement: top1,
                kl_divergence: top1.map(|t| 1.0 - t),
            },
            ops: vec![OpFigure {
                tensor: "x".into(),
                op: "add".into(),
                max_abs_err: ratio,
                bound_ratio: ratio,
            }],
        }
    }

    #[test]
    fn a_cells_inputs_keep_the_first_failure_the_worst_checks_and_average_next_token_figures() {
        assert_eq!(BlockVerdict::over(Vec::new()), None);
        let v = BlockVerdict::over(vec![
            verdict(None, 0.99, Some(1.0), 0.5),
            verdict(Some("second"), 0.9, Some(0.0), 0.25),
            verdict(Some("third"), f64::NAN, None, f64::NAN),
        ])
        .expect("verdict");
        assert_eq!(v.failure.as_deref(), Some("second"));
        assert!(
            v.kernel.worst_ratio.is_nan() && v.op_ratio.is_nan(),
            "NaN is the worst"
        );
        assert!(v.accuracy.cosine.is_nan());
        assert_eq!(
            v.accuracy.top1_agreement,
            Some(0.5),
            "a rate over the inputs"
        );
        assert_eq!(v.accuracy.kl_divergence, Some(0.5));
        let clean = BlockVerdict::over(vec![
            verdict(None, 0.99, None, 0.5),
            verdict(None, 0.95, None, 0.75),
        ])
        .expect("verdict");
        assert_eq!(
            (
                clean.failure,
                clean.accuracy.cosine,
                clean.kernel.worst_ratio,
                clean.accuracy.top1_agreement
            ),
            (None, 0.95, 0.75, None)
        );
    }

    #[test]
    fn an_lm_head_runs_a_fixed_set_of_inputs_that_differ_only_in_their_inputs() {
        let r = resolve("gpt2").expect("gpt2");
        let size = |head| WorkloadSize {
            layers: 1,
            seq_len: 4,
            head,
        };
        let with_head = lower(r.family.key, r.model, size(true));
        assert_eq!(input_count(&with_head), LM_INPUTS);
        assert_eq!(input_count(&lower(r.family.key, r.model, size(false))), 1);
        for t in &with_head.tensors {
            assert_eq!(
                input_values(7, 0, t),
                None,
                "input 0 is the cell's own draw"
            );
            match t.init {
                Some(Init::Input) => {
                    let other = input_values(7, 1, t).expect("drawn");
                    assert_ne!(Some(other), init_values(7, t), "{}", t.name);
                }
                _ => assert_eq!(input_values(7, 3, t), None, "{} is the model's", t.name),
            }
        }
    }

    #[test]
    fn a_correct_page_passes_every_check() {
        for (model, seq, head) in [
            ("bert", 8, false),
            ("tinyllama", 8, false),
            ("bloom", 4, true),
            ("vit", 4, false),
        ] {
            let c = case(model, 1, seq, head, Bits::B4);
            let v = check(&c, &page(&c, &same, &right)).expect("sizes");
            assert_eq!(v.failure, None, "{model}");
            assert!(
                v.op_ratio < 0.05 && v.kernel.worst_ratio < 0.1,
                "{model}: {v:?}"
            );
            assert!(v.end_to_end_rel_err < 1e-5, "{model}: {v:?}");
        }
    }

    #[test]
    fn a_wrong_softmax_norm_or_activation_fails_naming_the_op() {
        let c = case("bert", 1, 8, false, Bits::B8);
        // exp2 instead of exp in the softmax: the scores scaled by ln 2
        let exp2 = |op: &Op| {
            let mut op = op.clone();
            if let Op::Attention { scale, .. } = &mut op {
                *scale *= std::f64::consts::LN_2;
            }
            op
        };
        // LayerNorm with the unbiased variance at width 768: off by a factor √(767/768)
        let unbiased = |op: &Op, y: Vec<f64>| match op {
            Op::LayerNorm { .. } => y.iter().map(|v| v * (767f64 / 768.0).sqrt()).collect(),
            _ => y,
        };
        // GELU-tanh where the family has the exact erf GELU
        let tanh = |op: &Op| match op.clone() {
            Op::Act { x, y, .. } => Op::Act {
                x,
                f: Activation::GeluTanh,
                y,
            },
            other => other,
        };
        let planted: [(&str, Swap<'_>, Wrong<'_>, &str); 3] = [
            ("softmax", &exp2, &right, "attention"),
            ("layer norm", &same, &unbiased, "layer_norm"),
            ("activation", &tanh, &right, "act"),
        ];
        for (what, swap, wrong, kind) in planted {
            let v = check(&c, &page(&c, swap, wrong)).expect("sizes");
            let text = v
                .failure
                .clone()
                .unwrap_or_else(|| panic!("a wrong {what} passed"));
            assert!(text.contains(&format!(" {kind} ")), "{what}: {text}");
            assert!(
                v.end_to_end_rel_err > END_TO_END_BOUND || what != "softmax",
                "{what}: {v:?}"
            );
        }
        // a non-finite value fails too
        let nan = |op: &Op, y: Vec<f64>| match op {
            Op::MeanPool { .. } | Op::Act { .. } => y.iter().map(|_| f64::NAN).collect(),
            _ => y,
        };
        assert!(
            check(&c, &page(&c, &same, &nan))
                .expect("sizes")
                .failure
                .is_some()
        );
    }

    #[test]
    fn accuracy_is_the_models_and_falls_with_the_width() {
        let acc = |bits| {
            // the smallest LM head in the registry (256 × 10000): fast references
            let c = case("speech_to_text", 1, 4, true, bits);
            check(&c, &page(&c, &same, &right)).expect("sizes").accuracy
        };
        let (b4, b8) = (acc(Bits::B4), acc(Bits::B8));
        assert!(b8.cosine > b4.cosine && b4.cosine > 0.9, "{b4:?} {b8:?}");
        assert!(b8.rel_err < b4.rel_err, "{b4:?} {b8:?}");
        assert!(b8.kl_divergence.expect("an LM head") < b4.kl_divergence.expect("an LM head"));
        assert!(b8.top1_agreement.is_some());
    }

    #[test]
    fn page_values_of_the_wrong_size_are_refused() {
        let c = case("bert", 1, 2, false, Bits::B8);
        let mut values = page(&c, &same, &right);
        let last = values
            .iter()
            .rposition(Option::is_some)
            .expect("a computed tensor");
        values[last].as_mut().expect("computed").pop();
        assert!(matches!(check(&c, &values), Err(WrongSize { .. })));
    }
}
