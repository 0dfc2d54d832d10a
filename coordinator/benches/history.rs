//! History benchmark (docs/BENCHMARKS.md), side by side in one run:
//!
//! 1. **A/A and a planted step on replayed real samples.** Each cell's real page-clock samples
//!    (every accepted pass in the file `QUANTGRID_REPLAY_DB` names, e.g. a `quantgrid run`
//!    with many repetitions) are a pool; a night draws `repetitions` of them (seeded). Pairs
//!    of consecutive nights of an unchanged build must give at most one false regression in
//!    1,000 cell-nights; the same nights with the new one 3% slower must be found. Both with
//!    the samples one run has, and with up to three more rounds of samples for the pairs the
//!    first round could not decide (the bounded re-runs an UNKNOWN verdict asks for).
//! 2. **A year of all-families.** 365 nightly runs of `configs/all-families.yaml` (3,850
//!    cells) with 7 results per cell per night: 9,852,500 stored results. Then the history of
//!    one cell (target < 50 ms) and the matrix with its Changes section (target < 1 s).
//!
//! `QUANTGRID_REPLAY_DB=replay.duckdb cargo bench -p quantgrid-coordinator --bench history`

use quantgrid_coordinator::report::{MatrixOptions, matrix_markdown};
use quantgrid_coordinator::store::{Record, ResultRecord, Store};
use quantgrid_coordinator::sweep::sweep_record;
use quantgrid_matrix::compare::{self, Policy, Verdict};
use quantgrid_matrix::result::Environment;
use quantgrid_matrix::{Cell, CellResult, Status, spec};
use std::collections::BTreeMap;
use std::time::Instant;

const NIGHTS: usize = 365;
const REPLICATES: usize = 7;
const CELL_NIGHTS: usize = 1000;
const EXTRA_ROUNDS: usize = 3;

/// xorshift64*: a seeded stream for drawing nights from a pool.
struct Draw(u64);

impl Draw {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn night(&mut self, pool: &[f64], n: usize) -> Vec<f64> {
        (0..n).map(|_| pool[self.next(pool.len())]).collect()
    }
}

/// How one comparison of two nights ends: the verdict after the first round, and after up
/// to `EXTRA_ROUNDS` more rounds of samples where the first could not decide.
fn judge(
    draw: &mut Draw,
    pool: &[f64],
    n: usize,
    step: f64,
    policy: Policy,
) -> (Verdict, f64, Verdict, usize) {
    let mut old = draw.night(pool, n);
    let mut new: Vec<f64> = draw.night(pool, n).iter().map(|v| v * step).collect();
    let first = compare::compare(&old, &new, policy);
    let mut last = first;
    let mut rounds = 0;
    while last.verdict == Verdict::Unknown && rounds < EXTRA_ROUNDS {
        old.extend(draw.night(pool, n));
        new.extend(draw.night(pool, n).iter().map(|v| v * step));
        last = compare::compare(&old, &new, policy);
        rounds += 1;
    }
    (first.verdict, first.change, last.verdict, rounds)
}

fn replay(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open_read_only(std::path::Path::new(path))?;
    let mut pools: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
    let mut repetitions = usize::MAX;
    for r in store.history(None, &|_| true)? {
        if r.status == Status::Pass && !r.samples_ms.is_empty() {
            repetitions = repetitions.min(r.samples_ms.len());
            let e = pools
                .entry(r.cell_id.clone())
                .or_insert((r.label.clone(), Vec::new()));
            e.1.extend(r.samples_ms);
        }
    }
    let pools: Vec<(String, Vec<f64>)> =
        pools.into_values().filter(|(_, p)| p.len() >= 20).collect();
    if pools.is_empty() {
        return Err(format!("{path} has no cell with 20 or more real samples").into());
    }
    let n = repetitions.min(10);
    println!(
        "replayed: {} cells of {path}, {} real samples in all; a night is {n} samples drawn from its cell's pool",
        pools.len(),
        pools.iter().map(|(_, p)| p.len()).sum::<usize>()
    );
    for (label, p) in &pools {
        let med = compare::median(p);
        println!(
            "  {label}: {} samples, median {med:.3} ms, IQR {:.1}% of it",
            p.len(),
            compare::iqr(p) / med * 100.0
        );
    }
    let policy = Policy::default();
    for (what, step) in [("A/A (same build)", 1.0), ("3% slower", 1.03)] {
        let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
        let (mut first, mut last) = (BTreeMap::new(), BTreeMap::new());
        let mut slower_first = 0;
        let mut slower_last = 0;
        let mut rounds = 0;
        for i in 0..CELL_NIGHTS {
            let (_, pool) = &pools[i % pools.len()];
            let (v1, change, v2, r) = judge(&mut draw, pool, n, step, policy);
            *first.entry(v1.as_str()).or_insert(0) += 1;
            *last.entry(v2.as_str()).or_insert(0) += 1;
            slower_first += usize::from(v1 == Verdict::Different && change > 0.0);
            slower_last += usize::from(v2 == Verdict::Different);
            rounds += r;
        }
        println!(
            "{what}: {CELL_NIGHTS} cell-nights; first round {first:?}, {slower_first} reported slower; with up to {EXTRA_ROUNDS} more rounds for undecided pairs ({rounds} rounds run) {last:?}, {slower_last} different"
        );
    }
    Ok(())
}

fn env() -> Environment {
    quantgrid_matrix::fixtures::chromium_environment()
}

fn night_records(
    sweep: &str,
    night: usize,
    cells: &[Cell],
    spec: &spec::MatrixSpec,
    yaml: &str,
) -> Vec<Record> {
    let at = 1_700_000_000_000_000 + night as i64 * 86_400_000_000;
    let mut rec = sweep_record(
        sweep,
        spec,
        cells.to_vec(),
        "all-families.yaml",
        yaml,
        None,
        false,
    );
    if let Record::Sweep(r, _) = &mut rec {
        r.created_at_us = at;
    }
    let mut out = vec![rec];
    let mut m = quantgrid_matrix::fixtures::measurement(10);
    m.accuracy_cosine = Some(0.99);
    for (i, c) in cells.iter().enumerate() {
        for k in 0..REPLICATES {
            let base = 5.0 + (i % 50) as f64;
            m.samples_ms = (0..10)
                .map(|j| base * (1.0 + 0.01 * (((night + j + k) % 7) as f64 - 3.0)))
                .collect();
            out.push(Record::Result(ResultRecord {
                attempt_id: format!("{sweep}.{}.{k}", c.id),
                sweep_id: sweep.into(),
                result: CellResult {
                    cell_id: c.id.clone(),
                    status: Status::Pass,
                    error_text: None,
                    effective_bits: c.precision.effective,
                    measurement: Some(m.clone()),
                    environment: Some(env()),
                    simulated: false,
                },
                accepted: true,
                recorded_at_us: at + (i * REPLICATES + k) as i64,
            }));
        }
    }
    out
}

fn year() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/all-families.yaml"
    ))?;
    let spec = spec::parse(&yaml, "all-families.yaml")?;
    let cells = spec.expand();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("year.duckdb");
    let mut store = Store::open(&path)?;
    let t = Instant::now();
    for night in 0..NIGHTS {
        let records = night_records(&format!("n{night:03}"), night, &cells, &spec, &yaml);
        store.write(&records)?;
    }
    let total = store.result_count()?;
    println!(
        "a year: {NIGHTS} nights × {} cells × {REPLICATES} results = {total} results, written in {:.0} s ({:.1} GB on disk)",
        cells.len(),
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&path)?.len() as f64 / 1e9
    );
    drop(store);
    let store = Store::open_read_only(&path)?;
    let id = cells[0].id.0.clone();
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..20 {
        let t = Instant::now();
        rows = store.history(Some(&id), &|_| true)?.len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "history of one cell: {rows} results, median {:.1} ms (20 calls, target < 50 ms)",
        compare::median(&times)
    );
    let mut times = Vec::new();
    let mut md = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        md = matrix_markdown(
            &store,
            &MatrixOptions {
                sweep: None,
                include_simulated: false,
                accuracy_tolerance: None,
            },
        )?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    assert!(
        md.contains("## Changes since `n363`"),
        "the Changes section"
    );
    println!(
        "matrix with its Changes section over {total} results: median {:.0} ms (5 renders, target < 1 s)",
        compare::median(&times)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("QUANTGRID_REPLAY_DB") {
        Ok(path) => replay(&path)?,
        Err(_) => {
            println!("replay skipped: set QUANTGRID_REPLAY_DB to a results file of a real run")
        }
    }
    year()
}
