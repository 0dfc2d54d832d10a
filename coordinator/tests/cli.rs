//! End-to-end tests of the `quantgrid` binary: real process, real DuckDB file, real configs.

use quantgrid_coordinator::store::{Record, ResultRecord, Store};
use quantgrid_matrix::result::Measurement;
use quantgrid_matrix::{CellResult, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quantgrid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantgrid"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run quantgrid")
}

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_shipped_config_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yamls: Vec<String> = std::fs::read_dir(configs())
        .expect("configs dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| p.display().to_string())
        .collect();
    yamls.sort();
    assert!(yamls.len() >= 3, "{yamls:?}");
    let mut args = vec!["validate"];
    args.extend(yamls.iter().map(String::as_str));
    let out = quantgrid(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        yamls.len()
    );
}

#[test]
fn checked_in_schema_matches_the_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = quantgrid(dir.path(), &["schema"]);
    let checked_in = std::fs::read_to_string(configs().join("spec.schema.json")).expect("schema");
    assert!(
        text(&out.stdout) == checked_in,
        "configs/spec.schema.json is stale: run `quantgrid schema > configs/spec.schema.json`"
    );
}

#[test]
fn a_bad_spec_exits_2_with_file_line_col() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "version: 1\nname: t\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: both\nbits: [4]\nrepetitons: 3\n",
    )
    .expect("write");
    let out = quantgrid(dir.path(), &["validate", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.yaml:7:1: unknown field `repetitons`"),
        "{err}"
    );
    let out = quantgrid(dir.path(), &["expand", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read matrix spec missing.yaml"));
}

#[test]
fn expand_counts_and_narrows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smoke = configs().join("smoke.yaml").display().to_string();
    let count = |extra: &[&str]| {
        let mut args = vec!["expand", smoke.as_str(), "--count"];
        args.extend(extra);
        let out = quantgrid(dir.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().parse::<usize>().expect("count")
    };
    // 20 cells of bert and gpt2, and MiniLM on Chromium: WebGPU at 4 and 8, WebNN at int4
    // (experimental) and 8
    assert_eq!(count(&[]), 24);
    assert_eq!(count(&["--platform", "webgpu"]), 10);
    assert_eq!(count(&["--test-family", "bert", "--browser", "firefox"]), 5);
    assert_eq!(count(&["--experimental-precision"]), 5);
    assert_eq!(count(&["--bits", "8"]), 10);
}

fn stored_result(store_path: &Path) {
    let mut store = Store::open(store_path).expect("open");
    let entries = store.matrix_entries(None, false).expect("entries");
    let cell = entries
        .iter()
        .map(|e| &e.cell)
        .find(|c| c.family == "bert" && c.platform == quantgrid_matrix::Platform::Webgpu)
        .expect("a bert webgpu cell")
        .clone();
    let sweep = store.sweeps().expect("sweeps")[0].sweep_id.clone();
    store
        .write(&[Record::Result(ResultRecord {
            attempt_id: "a-1".into(),
            sweep_id: sweep,
            result: CellResult {
                cell_id: cell.id.clone(),
                status: Status::Pass,
                error_text: None,
                effective_bits: cell.precision.effective,
                measurement: Some(Measurement {
                    build_ms: 10.0,
                    first_run_ms: 8.0,
                    warmup: 2,
                    samples_ms: vec![4.0, 5.0, 6.0, 7.0, 8.0],
                    weight_bytes: 4_718_592,
                    kernel_max_abs_err: 2e-6,
                    accuracy_rel_err: 0.012,
                    runs_per_sample: 1,
                    kernel_ms: 0.0,
                    timer: "performance.now".into(),
                    weights_sha256: None,
                    weights_source: None,
                    ops: Vec::new(),
                    gpu_samples_ms: Vec::new(),
                    latency_ms: None,
                    kernel_bound_c: quantgrid_matrix::reference::KERNEL_BOUND_C,
                    kernel_err_ratio: 0.01,
                    accuracy_cosine: None,
                    accuracy_top1: None,
                    accuracy_kl: None,
                }),
                environment: Some(quantgrid_matrix::fixtures::chromium_environment()),
                simulated: false,
            },
            accepted: true,
            recorded_at_us: 1,
            signed: None,
        })])
        .expect("write");
}

#[test]
fn the_matrix_shows_stored_results_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    record_smoke_sweep(&dir.path().join("results.duckdb"));
    let out = quantgrid(
        dir.path(),
        &[
            "matrix",
            "--db-path",
            "results.duckdb",
            "--output",
            "matrix.md",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = std::fs::read_to_string(dir.path().join("matrix.md")).expect("matrix.md");
    assert!(
        md.contains("| BERT | `bert-base-uncased` | — not run | — not run |"),
        "{md}"
    );
    assert!(!md.contains('✅'), "nothing ran, nothing may pass:\n{md}");

    stored_result(&dir.path().join("results.duckdb"));
    let out = quantgrid(
        dir.path(),
        &[
            "matrix",
            "--db-path",
            "results.duckdb",
            "--output",
            "matrix.md",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = std::fs::read_to_string(dir.path().join("matrix.md")).expect("matrix.md");
    assert!(md.contains("✅ 4-bit 6.0 ms (1/1 pass)"), "{md}");
    assert!(
        md.contains("google swiftshader") && md.contains("(software, fallback)"),
        "{md}"
    );

    let out = quantgrid(
        dir.path(),
        &["results", "--db-path", "results.duckdb", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().expect("a row")).expect("json");
    assert_eq!(
        (row["status"].as_str(), row["samples"].as_u64()),
        (Some("pass"), Some(5))
    );
}

#[test]
fn read_commands_never_create_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["matrix", "--db-path", "typo.duckdb"][..],
        &["results", "--db-path", "typo.duckdb"][..],
        &[
            "--generate-matrix",
            "--db-path",
            "typo.duckdb",
            "--output",
            "m.md",
        ][..],
    ] {
        let out = quantgrid(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains("results database typo.duckdb does not exist"));
    }
    assert!(!dir.path().join("typo.duckdb").exists());
    assert!(!dir.path().join("m.md").exists());
}

#[test]
fn a_bad_flag_fails_before_touching_an_existing_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smoke = configs().join("smoke.yaml").display().to_string();
    record_smoke_sweep(&dir.path().join("results.duckdb"));
    let before = std::fs::read(dir.path().join("results.duckdb")).expect("db");
    let out = quantgrid(
        dir.path(),
        &[
            "run",
            "--config",
            &smoke,
            "--db-path",
            "results.duckdb",
            "--test-family",
            "bret",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown model or family `bret`"));
    let store = Store::open(&dir.path().join("results.duckdb")).expect("reopen");
    assert_eq!(store.sweeps().expect("sweeps").len(), 1);
    assert!(!before.is_empty());
}

/// A stored smoke sweep with no results yet.
fn record_smoke_sweep(db: &Path) {
    let yaml = std::fs::read_to_string(configs().join("smoke.yaml")).expect("smoke.yaml");
    let spec = quantgrid_matrix::spec::parse(&yaml, "smoke.yaml").expect("spec");
    let mut store = Store::open(db).expect("open");
    store
        .write(&[quantgrid_coordinator::sweep::sweep_record(
            "sw-smoke",
            &spec,
            spec.expand(),
            "smoke.yaml",
            &yaml,
            None,
            false,
        )])
        .expect("write");
}

#[test]
fn run_with_the_old_flags_measures_a_real_cell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = quantgrid(
        dir.path(),
        &[
            "run",
            "--model",
            "bert-base-uncased",
            "--platform",
            "webgpu",
            "--browser",
            "chromium",
            "--bits",
            "8",
            "--headless",
            "--db-path",
            "results.duckdb",
            "--generate-matrix",
            "--output",
            "matrix.md",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("sw-"))
    );
    let md = std::fs::read_to_string(dir.path().join("matrix.md")).expect("matrix.md");
    assert!(md.contains("✅ 8-bit") && md.contains("(1/1 pass)"), "{md}");
    assert!(
        md.contains("google swiftshader") && md.contains("(software, fallback)"),
        "{md}"
    );
    // the run's one-off tokens do not outlive it
    let store = Store::open(&dir.path().join("results.duckdb")).expect("open");
    assert!(store.tokens().expect("tokens").iter().all(|t| t.revoked));
}

#[test]
fn a_native_cell_runs_beside_its_browser_and_the_matrix_divides_the_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Firefox's WebGPU and the native run are both on lavapipe here
    std::fs::write(
        dir.path().join("native.yaml"),
        "version: 1\nname: native\nfamilies: [bert]\nbrowsers: [firefox]\nplatforms: [webgpu, native]\nbits: [8]\n",
    )
    .expect("spec");
    let out = quantgrid(
        dir.path(),
        &[
            "run",
            "--config",
            "native.yaml",
            "--db-path",
            "results.duckdb",
            "--generate-matrix",
            "--output",
            "matrix.md",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = std::fs::read_to_string(dir.path().join("matrix.md")).expect("matrix.md");
    let native = md
        .lines()
        .find(|l| l.starts_with("| firefox | Native |"))
        .unwrap_or_else(|| panic!("a native row in:\n{md}"));
    assert!(
        native.contains("✅") && native.contains("· browser "),
        "{native}"
    );
    // what ran it is named: wgpu on the host's adapter, a CPU here
    assert!(md.contains("wgpu 30 (native)"), "{md}");
    let store = Store::open(&dir.path().join("results.duckdb")).expect("open");
    let rows = store.results(None, 10).expect("results");
    let native = rows
        .iter()
        .find(|r| r.label.contains("native"))
        .expect("a native result");
    assert_eq!(native.status, Status::Pass, "{native:?}");
    assert!(
        native.kernel_err_ratio.is_some_and(|r| r <= 1.0),
        "{native:?}"
    );
    assert!(
        native
            .adapter
            .as_deref()
            .is_some_and(|a| a.contains("(software)")),
        "{native:?}"
    );
}
