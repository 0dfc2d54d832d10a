//! The results file is a plain DuckDB database: the stock Python package reads it with the
//! SQL documented in docs/SCHEMA.md. `./x test` provides a Python with `duckdb` installed and
//! names it in QUANTGRID_PYTHON.

use quantgrid_coordinator::store::{Record, ResultRecord, Store};
use quantgrid_coordinator::sweep::sweep_record;
use quantgrid_matrix::result::Measurement;
use quantgrid_matrix::{CellResult, Status, spec};
use std::path::Path;
use std::process::Command;

#[test]
fn stock_python_duckdb_reads_the_file_with_plain_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("results.duckdb");
    let yaml = "version: 1\nname: py\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n";
    let spec = spec::parse(yaml, "py.yaml").expect("spec");
    let cells = spec.expand();
    {
        let mut store = Store::open(&path).expect("open");
        store
            .write(&[
                sweep_record("sw-py", &spec, cells.clone(), "py.yaml", yaml, None, false),
                Record::Result(ResultRecord {
                    attempt_id: "at-1".into(),
                    sweep_id: "sw-py".into(),
                    result: CellResult {
                        cell_id: cells[0].id.clone(),
                        status: Status::Pass,
                        error_text: None,
                        effective_bits: cells[0].precision.effective,
                        measurement: Some(Measurement {
                            build_ms: 1.0,
                            first_run_ms: 1.0,
                            warmup: 1,
                            samples_ms: vec![3.0, 1.0, 2.0],
                            weight_bytes: 1024,
                            kernel_max_abs_err: 0.0,
                            accuracy_rel_err: 0.01,
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
                        environment: None,
                        simulated: false,
                    },
                    accepted: true,
                    recorded_at_us: 1,
                    signed: None,
                }),
            ])
            .expect("write");
    }
    // ./x test names its venv; a plain `cargo test` after it finds the same one
    let venv = std::env::var("HOME").map(|h| format!("{h}/.cache/quantgrid/venv/bin/python"));
    let python = std::env::var("QUANTGRID_PYTHON")
        .or_else(|_| {
            venv.clone().and_then(|v| {
                if Path::new(&v).exists() {
                    Ok(v)
                } else {
                    Err(std::env::VarError::NotPresent)
                }
            })
        })
        .unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT min(version) FROM schema_version").fetchone()[0])
print(con.execute("""
    SELECT c.family, c.browser, c.platform, c.requested_bits, r.status,
           len(r.samples_ms), list_median(r.samples_ms), r.p50_ms
    FROM results r JOIN cells c USING (sweep_id, cell_id)
    WHERE r.accepted AND NOT r.simulated
""").fetchall())
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the tests with ./x test"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{python} could not read the file (./x test installs the duckdb package): {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "1\n[('bert', 'chromium', 'webgpu', 4, 'pass', 3, 2.0, 2.0)]"
    );
}
