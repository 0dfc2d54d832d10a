//! Store benchmark: ingest rate of batched results against one transaction per result, and
//! matrix rendering over 1,000,000 stored results, side by side in one run.
//!
//! `cargo bench -p quantgrid-coordinator --bench store` (figures in docs/BENCHMARKS.md).

use quantgrid_coordinator::report::{MatrixOptions, matrix_markdown};
use quantgrid_coordinator::store::{Record, ResultRecord, Store, StoreWriter};
use quantgrid_coordinator::sweep::sweep_record;
use quantgrid_matrix::result::{Environment, Measurement};
use quantgrid_matrix::{Cell, CellResult, Status, spec};
use std::time::Instant;

const TOTAL: usize = 1_000_000;
const BATCH: usize = 10_000;
const UNBATCHED: usize = 2_000;

fn env(i: usize) -> Environment {
    let mut e = quantgrid_matrix::fixtures::chromium_environment();
    e.browser_version = format!("156.0.8078.{}", i % 4);
    e
}

fn result(cells: &[Cell], envs: &[Environment], i: usize) -> Record {
    let cell = &cells[i % cells.len()];
    let pass = !i.is_multiple_of(7);
    Record::Result(ResultRecord {
        attempt_id: format!("at-{i:08}"),
        sweep_id: "bench".into(),
        result: CellResult {
            cell_id: cell.id.clone(),
            status: if pass {
                Status::Pass
            } else {
                Status::Unsupported
            },
            error_text: (!pass)
                .then(|| "NotSupportedError: WebNN is not supported on this platform.".into()),
            effective_bits: cell.precision.effective,
            measurement: pass.then(|| Measurement {
                build_ms: 12.5,
                first_run_ms: 9.25,
                warmup: 3,
                samples_ms: (0..10)
                    .map(|k| 5.0 + ((i + k) % 13) as f64 * 0.25)
                    .collect(),
                weight_bytes: 4_718_592,
                kernel_max_abs_err: 1e-6,
                accuracy_rel_err: 0.02,
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
            environment: Some(envs[i % envs.len()].clone()),
            simulated: false,
        },
        accepted: true,
        recorded_at_us: i as i64,
        signed: None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/all-families.yaml"
    ))?;
    let spec = spec::parse(&yaml, "all-families.yaml")?;
    let cells = spec.expand();
    let envs: Vec<Environment> = (0..4).map(env).collect();
    let dir = tempfile::tempdir()?;

    // one transaction per result: the baseline a naive writer would get
    let mut naive = Store::open(&dir.path().join("naive.duckdb"))?;
    naive.write(&[sweep_record(
        "bench",
        &spec,
        cells.clone(),
        "all-families.yaml",
        &yaml,
        None,
        false,
    )])?;
    let records: Vec<Record> = (0..UNBATCHED).map(|i| result(&cells, &envs, i)).collect();
    let t = Instant::now();
    for r in &records {
        naive.write(std::slice::from_ref(r))?;
    }
    let naive_rate = UNBATCHED as f64 / t.elapsed().as_secs_f64();
    drop(naive);

    // batched through the writer thread, as the coordinator does
    let path = dir.path().join("batched.duckdb");
    let mut store = Store::open(&path)?;
    store.write(&[sweep_record(
        "bench",
        &spec,
        cells.clone(),
        "all-families.yaml",
        &yaml,
        None,
        false,
    )])?;
    let (writer, handle) = StoreWriter::spawn(store);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // records are built before timing: this measures the store, not the generator
    let batches: Vec<Vec<Record>> = (0..TOTAL)
        .step_by(BATCH)
        .map(|start| {
            (start..start + BATCH)
                .map(|i| result(&cells, &envs, i))
                .collect()
        })
        .collect();
    let t = Instant::now();
    rt.block_on(async {
        let mut pending = tokio::task::JoinSet::new();
        for batch in batches {
            let w = writer.clone();
            pending.spawn(async move { w.write(batch).await });
            while pending.len() > 4 {
                pending
                    .join_next()
                    .await
                    .expect("task")
                    .expect("join")
                    .expect("write");
            }
        }
        while let Some(r) = pending.join_next().await {
            r.expect("join").expect("write");
        }
    });
    let elapsed = t.elapsed();
    let batched_rate = TOTAL as f64 / elapsed.as_secs_f64();
    drop(writer);
    let store = handle.join().map_err(|_| "writer thread panicked")?;
    assert_eq!(store.result_count()?, TOTAL as u64);
    drop(store);

    let t = Instant::now();
    let store = Store::open(&path)?;
    let md = matrix_markdown(
        &store,
        &MatrixOptions {
            sweep: None,
            include_simulated: false,
            trusted_only: false,
            accuracy_tolerance: None,
        },
    )?;
    let render = t.elapsed().as_secs_f64();
    assert!(md.contains("✅"));

    println!(
        "store ingest ({} results of 10 raw samples, {} cells, batches of {BATCH})",
        TOTAL,
        cells.len()
    );
    println!(
        "  batched writer      {:>12.0} results/s  (wall {:.2} s)",
        batched_rate,
        elapsed.as_secs_f64()
    );
    println!(
        "  one txn per result  {:>12.0} results/s  ({UNBATCHED} results)",
        naive_rate
    );
    println!("  batched / naive     {:>12.1}x", batched_rate / naive_rate);
    println!(
        "  goal 200,000/s      {:>12.2}x of goal",
        batched_rate / 200_000.0
    );
    println!("matrix over {} stored results", TOTAL);
    println!(
        "  open + query + render {:>8.3} s  ({} bytes of Markdown)",
        render,
        md.len()
    );
    println!(
        "  goal < 1 s            {:>8.2}x of the budget used",
        render / 1.0
    );
    Ok(())
}
