//! End-to-end tests of the commands that look across runs (`history`, `diff`, the matrix's
//! Changes section, `export`): the real `quantgrid` binary on a real DuckDB file holding three
//! nightly runs of one spec: an A/A pair, then a night with a planted 10% slowdown, a new
//! failure and a new browser build.

use quantgrid_coordinator::store::{AgentRecord, AttemptRecord, Record, ResultRecord, Store};
use quantgrid_matrix::{Cell, CellResult, Status, spec};
use std::path::Path;
use std::process::{Command, Output};

const SPEC: &str = "version: 1
name: nightly
families: [bert]
browsers: [chromium]
platforms: webgpu
bits: [4, 8, 16]
repetitions: 20
";

fn quantgrid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantgrid"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run quantgrid")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// 20 samples around `median` with ±2% spread, the same shape every night but drawn at another
/// phase, as an unchanged build's nights are.
fn samples(median: f64, night: u32) -> Vec<f64> {
    (0..20)
        .map(|i| median * (1.0 + 0.02 * (f64::from(i) * 2.399 + f64::from(night) * 0.7).sin()))
        .collect()
}

fn result(cell: &Cell, status: Status, samples_ms: Vec<f64>, version: &str) -> CellResult {
    let mut env = quantgrid_matrix::fixtures::chromium_environment();
    env.browser_version = version.into();
    let mut m = quantgrid_matrix::fixtures::measurement(samples_ms.len() as u32);
    m.samples_ms = samples_ms;
    m.accuracy_cosine = Some(0.99);
    CellResult {
        cell_id: cell.id.clone(),
        status,
        error_text: (status != Status::Pass).then(|| "output off by 1%".into()),
        effective_bits: cell.precision.effective,
        measurement: (status == Status::Pass).then_some(m),
        environment: Some(env),
        simulated: false,
    }
}

/// One night: `sweep` created at `night` hours, every cell's result from agent `lab-1`.
fn night(store: &mut Store, sweep: &str, night: u32, outcome: &dyn Fn(&Cell) -> CellResult) {
    let s = spec::parse(SPEC, "nightly.yaml").expect("spec");
    let cells = s.expand();
    let mut rec = quantgrid_coordinator::sweep::sweep_record(
        sweep,
        &s,
        cells.clone(),
        "nightly.yaml",
        SPEC,
        None,
        false,
    );
    let at = 1_800_000_000_000_000 + i64::from(night) * 86_400_000_000;
    if let Record::Sweep(r, _) = &mut rec {
        r.created_at_us = at;
    }
    let mut batch = vec![
        rec,
        Record::Agent(AgentRecord {
            agent_id: "agent-1".into(),
            name: "lab-1".into(),
            version: "0.1.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: Default::default(),
            registered_at_us: 1,
        }),
    ];
    for (i, c) in cells.iter().enumerate() {
        let attempt_id = format!("{sweep}.{}.1", c.id);
        batch.push(Record::Attempt(AttemptRecord {
            attempt_id: attempt_id.clone(),
            sweep_id: sweep.into(),
            cell_id: c.id.0.clone(),
            attempt_no: 1,
            agent_id: Some("agent-1".into()),
            started_at_us: at + i as i64,
            ended_at_us: Some(at + i as i64 + 1),
            end_reason: Some("result".into()),
        }));
        batch.push(Record::Result(ResultRecord {
            attempt_id,
            sweep_id: sweep.into(),
            result: outcome(c),
            accepted: true,
            recorded_at_us: at + i as i64 + 1,
            signed: None,
        }));
    }
    store.write(&batch).expect("write a night");
}

fn bits(c: &Cell) -> u32 {
    c.precision.requested.get()
}

/// Three nights: n1 and n2 the same build unchanged; n3 4-bit 10% slower, 8-bit failing,
/// 16-bit on a new browser build (and 30% slower there, which is not a regression).
fn three_nights(db: &Path) {
    let mut store = Store::open(db).expect("open");
    let v = "156.0.1.1";
    night(&mut store, "n1", 1, &|c| {
        result(c, Status::Pass, samples(10.0 * f64::from(bits(c)), 1), v)
    });
    night(&mut store, "n2", 2, &|c| {
        result(c, Status::Pass, samples(10.0 * f64::from(bits(c)), 2), v)
    });
    night(&mut store, "n3", 3, &|c| match bits(c) {
        4 => result(c, Status::Pass, samples(44.0, 3), v),
        8 => result(c, Status::Fail, Vec::new(), v),
        _ => result(c, Status::Pass, samples(208.0, 3), "157.0.1.1"),
    });
}

#[test]
fn diff_gates_on_a_regression_and_passes_an_a_a_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("results.duckdb");
    three_nights(&db);
    let db = db.display().to_string();

    // A/A: the same build on two nights
    let out = quantgrid(dir.path(), &["diff", "n1", "n2", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("n1 → n2: 0 regression(s), 0 improvement(s); 3 cell(s) timed"),
        "{stdout}"
    );

    // NEW alone: against the previous run of its name (n2)
    let out = quantgrid(dir.path(), &["diff", "n3", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("n2 → n3: 2 regression(s)"), "{stdout}");
    assert!(
        stdout.contains("REGRESSION bert chromium webgpu 4-bit") && stdout.contains("time +10."),
        "{stdout}"
    );
    assert!(stdout.contains("new failure (pass → fail)"), "{stdout}");
    assert!(
        stdout.contains("new build: chromium 156.0.1.1") && stdout.contains("157.0.1.1"),
        "{stdout}"
    );

    // nothing named: the latest run against its previous, as JSON
    let out = quantgrid(dir.path(), &["diff", "--json", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["old"], "n2");
    assert_eq!(json["new"], "n3");
    let regressions = json["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter(|c| c["regression"] == true)
        .count();
    assert_eq!(regressions, 2);

    // the first run has nothing before it; a sweep that does not exist is named
    let out = quantgrid(dir.path(), &["diff", "n1", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("first run of its name"),
        "{}",
        text(&out.stderr)
    );
    let out = quantgrid(dir.path(), &["diff", "n0", "n3", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no sweep `n0`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn history_follows_a_cell_across_runs_and_marks_a_new_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("results.duckdb");
    three_nights(&db);
    let db = db.display().to_string();
    let out = quantgrid(
        dir.path(),
        &[
            "history",
            "--test-family",
            "bert",
            "--bits",
            "16",
            "--json",
            "--db-path",
            &db,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 3);
    let sweeps: Vec<&str> = rows
        .iter()
        .map(|r| r["sweep_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(sweeps, ["n1", "n2", "n3"]);
    let new_build: Vec<bool> = rows.iter().map(|r| r["new_build"] == true).collect();
    assert_eq!(new_build, [false, false, true]);
    assert_eq!(rows[0]["agent"], "lab-1");
    assert_eq!(rows[0]["samples_ms"].as_array().map(Vec::len), Some(20));
    assert!(
        rows[2]["browser"]
            .as_str()
            .unwrap_or("")
            .contains("157.0.1.1")
    );

    // by cell id, as a table
    let id = rows[0]["cell_id"].as_str().expect("id").to_string();
    let out = quantgrid(dir.path(), &["history", &id, "--db-path", &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("[new build]").count(), 1, "{stdout}");
    assert!(stdout.contains("lab-1"), "{stdout}");

    let out = quantgrid(dir.path(), &["history", "nosuchcell", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no stored result for cell `nosuchcell`"));
}

#[test]
fn the_matrix_opens_with_what_changed_and_marks_slower_cells() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("results.duckdb");
    three_nights(&db);
    let db = db.display().to_string();
    let out = quantgrid(dir.path(), &["matrix", "--db-path", &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    let changes = md.find("## Changes since `n2`").expect("changes section");
    assert!(changes < md.find("## Per-family results").expect("family tables"));
    assert!(md.contains("2 regression(s)"), "{md}");
    assert!(md.contains("**Regressions**"), "{md}");
    assert!(md.contains("- new build: chromium 157.0.1.1"), "{md}");
    assert!(!md.contains("flaky"), "one step is not flakiness: {md}");
    assert_eq!(md.matches(" ▲ |").count(), 1, "{md}");

    // the first night has no previous run: no section
    let out = quantgrid(dir.path(), &["matrix", "--sweep", "n1", "--db-path", &db]);
    assert!(!text(&out.stdout).contains("## Changes"));
}

#[test]
fn export_writes_parquet_a_warehouse_can_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("results.duckdb");
    three_nights(&db);
    let db = db.display().to_string();
    let out = quantgrid(dir.path(), &["export", "out", "--db-path", &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = dir.path().join("out/results.parquet");
    assert!(results.exists());
    // read back by the stock Python duckdb package (./x test installs it): 9 results, each
    // with its 20 raw samples (the failed one none)
    let venv = std::env::var("HOME").map(|h| format!("{h}/.cache/quantgrid/venv/bin/python"));
    let python = std::env::var("QUANTGRID_PYTHON")
        .or_else(|_| {
            venv.and_then(|v| {
                if Path::new(&v).exists() {
                    Ok(v)
                } else {
                    Err(std::env::VarError::NotPresent)
                }
            })
        })
        .unwrap_or_else(|_| "python3".into());
    let read = Command::new(python)
        .arg("-c")
        .arg("import sys, duckdb; print(duckdb.sql(f\"SELECT count(*), sum(len(samples_ms)) FROM '{sys.argv[1]}'\").fetchone())")
        .arg(&results)
        .output()
        .expect("python");
    assert_eq!(
        text(&read.stdout).trim(),
        "(9, 160)",
        "{}",
        text(&read.stderr)
    );
    let again = quantgrid(dir.path(), &["export", "out", "--db-path", &db]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("is not empty"));
}

#[test]
fn merge_brings_a_contributors_run_in_once_and_says_where_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("results.duckdb");
    three_nights(&db);
    // a contributor's laptop ran the same spec on the fourth night
    let laptop = dir.path().join("laptop.duckdb");
    {
        let mut store = Store::open(&laptop).expect("open");
        night(&mut store, "c4", 4, &|c| {
            result(
                c,
                Status::Pass,
                samples(10.0 * f64::from(bits(c)), 4),
                "156.0.1.1",
            )
        });
    }
    let (db, laptop) = (db.display().to_string(), laptop.display().to_string());
    let out = quantgrid(dir.path(), &["merge", &laptop, "--db-path", &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("merged 1 run(s) with 3 result(s)"),
        "{}",
        text(&out.stderr)
    );
    // idempotent: the run is there already
    let again = quantgrid(dir.path(), &["merge", &laptop, "--db-path", &db]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("merged 0 run(s) with 0 result(s)"),
        "{}",
        text(&again.stderr)
    );

    let out = quantgrid(
        dir.path(),
        &["history", "--bits", "4", "--json", "--db-path", &db],
    );
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows[..3].iter().all(|r| r["origin"].is_null()));
    assert!(
        rows[3]["origin"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("merged from {laptop}")),
        "{:?}",
        rows[3]
    );

    // bad input names what is at fault and changes nothing
    let out = quantgrid(dir.path(), &["merge", "nowhere.duckdb", "--db-path", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nowhere.duckdb does not exist"));
    let out = quantgrid(dir.path(), &["merge", &db, "--db-path", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is --db-path itself"),
        "{}",
        text(&out.stderr)
    );
}
