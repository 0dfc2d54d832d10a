//! Model-level accuracy of quantization per family and width, from the references alone (the
//! whole block in f64 with dequantized against fp32 weights: what a correct kernel reports):
//! `cargo run --release -p quantgrid-matrix --example accuracy`. LM heads over the cell's
//! fixed set of inputs, as the executor runs them.

use quantgrid_matrix::block::{BlockVerdict, block_case_given, check, input_count, input_values};
use quantgrid_matrix::family::resolve;
use quantgrid_matrix::quant::{Bits, QuantParams, Scheme};
use quantgrid_matrix::{WorkloadSize, graph, reference};

fn main() {
    println!("| family | bits | cosine | rel err | top-1 | KL (nats) |");
    println!("|---|---|---|---|---|---|");
    for (model, seq, head) in [
        ("bert", 8, false),
        ("vit", 8, false),
        ("whisper", 8, false),
        ("gpt2", 8, true),
        ("tinyllama", 8, false),
        ("speech_to_text", 8, true),
    ] {
        let r = resolve(model).expect(model);
        for bits in [Bits::B2, Bits::B3, Bits::B4, Bits::B8] {
            let g = graph::lower(
                r.family.key,
                r.model,
                WorkloadSize {
                    layers: 2,
                    seq_len: seq,
                    head,
                },
            );
            let p = vec![
                QuantParams {
                    bits,
                    scheme: Scheme::Symmetric,
                    group_size: 32
                };
                g.layers.len()
            ];
            let mut verdicts = Vec::new();
            for i in 0..input_count(&g) {
                let c = block_case_given(
                    g.clone(),
                    1,
                    &p,
                    |l| Ok::<_, ()>(reference::weights(1, l)),
                    |t| Ok(input_values(1, i, t)),
                )
                .expect("case");
                // the page's values: the kernel reference itself, rounded to f32
                let mut values: Vec<Option<Vec<f32>>> = vec![None; c.graph.tensors.len()];
                let deq: Vec<&[f32]> = c.dequantized.iter().map(Vec::as_slice).collect();
                for (i, v) in graph::eval(&c.graph, &c.given, &deq)
                    .into_iter()
                    .enumerate()
                {
                    if c.graph.tensors[i].init.is_none() {
                        values[i] = Some(v.iter().map(|x| *x as f32).collect());
                    }
                }
                verdicts.push(check(&c, &values).expect("sizes"));
            }
            let a = BlockVerdict::over(verdicts).expect("inputs").accuracy;
            let opt =
                |v: Option<f64>, d: usize| v.map_or("—".to_string(), |x| format!("{x:.d$}"));
            println!(
                "| {model} | {bits} | {:.5} | {:.4} | {} | {} |",
                a.cosine,
                a.rel_err,
                opt(a.top1_agreement, 2),
                opt(a.kl_divergence, 4)
            );
        }
    }
}
