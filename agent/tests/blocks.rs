//! Whole blocks in real browsers: a BERT-base encoder layer (8 positions) and a TinyLlama
//! decode step (after 7 cached positions) at 4 and 8 bits in Chromium 156 (SwiftShader) and
//! Firefox (lavapipe), every tensor the page computed checked in Rust; and planted mistakes in
//! the page's softmax, LayerNorm and GELU each fail, naming the op.

use quantgrid_agent::block::{block_args, run_block};
use quantgrid_agent::server;
use quantgrid_agent::webdriver::{Driver, Launch, Session};
use quantgrid_matrix::block::{BlockCase, block_case, check};
use quantgrid_matrix::family::resolve;
use quantgrid_matrix::quant::{Bits, QuantParams, Scheme};
use quantgrid_matrix::{Browser, WorkloadSize, graph, reference};

struct Page {
    harness: server::Harness,
    _driver: Driver,
    session: Session,
}

async fn page(browser: Browser, what: &str) -> Page {
    let found = quantgrid_agent::discovery::browsers();
    let build = found
        .iter()
        .filter(|f| f.candidate.browser == browser && f.candidate.driver.is_some())
        .max_by_key(|f| quantgrid_agent::discovery::browser::major(&f.version))
        .unwrap_or_else(|| panic!("{what} are installed (./x test installs them)"));
    let harness = server::Harness::start().await.expect("harness");
    let launch = Launch::of(build, true);
    let driver = Driver::start(build.candidate.driver.as_ref().expect("driver"), &launch)
        .await
        .expect("driver");
    let session = Session::open(&driver, &launch).await.expect("session");
    session
        .goto(&harness.url("block.html"))
        .await
        .expect("goto");
    Page {
        harness,
        _driver: driver,
        session,
    }
}

fn case(model: &str, seq_len: u32, bits: Bits) -> BlockCase {
    let r = resolve(model).expect(model);
    let size = WorkloadSize {
        layers: 1,
        seq_len,
        head: false,
    };
    let g = graph::lower(r.family.key, r.model, size);
    let params = vec![
        QuantParams {
            bits,
            scheme: Scheme::Symmetric,
            group_size: 32,
        };
        g.layers.len()
    ];
    block_case(g, 11, &params, |l| Ok::<_, ()>(reference::weights(11, l))).expect("case")
}

async fn verdict(p: &Page, case: &BlockCase) -> quantgrid_matrix::block::BlockVerdict {
    let (args, _served) = block_args(p.harness.blobs(), case, 0, 2);
    let run = run_block(&p.session, args).await.expect("the block runs");
    assert_eq!(run.clock.samples_ms.len(), 2);
    check(case, &run.values).expect("every tensor read back")
}

async fn blocks_pass(browser: Browser, what: &str) {
    let p = page(browser, what).await;
    for (model, seq) in [("bert", 8), ("tinyllama", 8)] {
        let mut cosines = Vec::new();
        for bits in [Bits::B4, Bits::B8] {
            let c = case(model, seq, bits);
            let v = verdict(&p, &c).await;
            assert_eq!(v.failure, None, "{browser} {model} {bits}-bit: {v:?}");
            assert!(
                v.end_to_end_rel_err < 1e-4,
                "{browser} {model} {bits}-bit: {v:?}"
            );
            cosines.push(v.accuracy.cosine);
        }
        // quantization costs accuracy, more at 4 bits than at 8
        assert!(
            cosines[0] < cosines[1] && cosines[1] < 1.0,
            "{model}: {cosines:?}"
        );
    }
}

#[tokio::test]
async fn a_bert_block_and_a_llama_decode_step_pass_in_chromium() {
    blocks_pass(Browser::Chromium, "Chromium and chromedriver").await;
}

#[tokio::test]
async fn a_bert_block_and_a_llama_decode_step_pass_in_firefox() {
    blocks_pass(Browser::Firefox, "Firefox ESR and geckodriver").await;
}

#[tokio::test]
async fn a_wrong_softmax_layer_norm_or_gelu_in_the_page_fails() {
    let p = page(Browser::Chromium, "Chromium and chromedriver").await;
    let c = case("bert", 8, Bits::B8);
    let served = server::FILES
        .iter()
        .find(|(name, _, _)| *name == "kernels/block.wgsl")
        .expect("served")
        .2;
    let planted = [
        (
            "softmax",
            "let e = exp(scores[j] - m);",
            "let e = exp2(scores[j] - m);",
            " attention ",
        ),
        (
            "layer norm",
            "let inv = inverseSqrt(total(v, lid.x) / f32(p.cols) + p.eps);",
            "let inv = inverseSqrt(total(v, lid.x) / f32(p.cols - 1u) + p.eps);",
            " layer_norm ",
        ),
        (
            "gelu",
            "case GELU_ERF: { return 0.5 * x * (1.0 + erf(x * 0.7071067811865476)); }",
            "case GELU_ERF: { return 0.5 * x * (1.0 + tanh_exp(0.7978845608028654 * (x + 0.044715 * x * x * x))); }",
            " act ",
        ),
    ];
    for (what, from, to, op) in planted {
        assert!(
            served.contains(from),
            "{what}: the kernel no longer has {from}"
        );
        p.session
            .run_async_with(
                "window.quantgridKernel('block.wgsl', arguments[0]); done(null);",
                vec![serde_json::json!(served.replace(from, to))],
            )
            .await
            .expect("planted");
        let v = verdict(&p, &c).await;
        let text = v.failure.unwrap_or_else(|| panic!("a wrong {what} passed"));
        assert!(text.contains(op), "{what}: {text}");
    }
    // the served kernels again: the same block passes
    p.session
        .run_async_with(
            "window.quantgridKernel('block.wgsl', null); done(null);",
            vec![],
        )
        .await
        .expect("restored");
    assert_eq!(verdict(&p, &c).await.failure, None);
}
