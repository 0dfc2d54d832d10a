//! History benchmark (docs/BENCHMARKS.md), side by side in one run:
//!
//! 1. **A/A and a planted step on replayed real samples.** Each cell's real page-clock samples
//!    (the latest run in the file `QUANTGRID_REPLAY_DB` names, e.g. a `quantgrid run` with
//!    many repetitions) are a pool; a night draws 10 of them per cell (seeded), and two
//!    nights are compared as `quantgrid diff` compares two runs (every cell at once). An
//!    unchanged build must give at most one false regression in 1,000 cell-nights; the same
//!    nights with the new one 3% slower must be found. Both with the samples one run has, and
//!    after the coordinator's confirmations (undecided cells measured again, up to twice).
//!    Then the build as a whole (every cell of the build on the agent judged together, as the
//!    diff does): over 1,000 nights, how often an unchanged build is called slower and how
//!    often the 3% slower one is found on its first night, with 8, 20 and every replayed cell.
//! 2. **A year of all-families.** 365 nightly runs of `configs/all-families.yaml` (3,850
//!    cells) with 7 results per cell per night: 9,852,500 stored results. Then the history of
//!    one cell (target < 50 ms), the matrix with its Changes section (target < 1 s), and the
//!    dashboard's page of that cell, served over HTTP (target < 100 ms).
//!
//! `QUANTGRID_REPLAY_DB=replay.duckdb cargo bench -p quantgrid-coordinator --bench history`
//! (`QUANTGRID_YEAR_DB=FILE` keeps the year's database there, and reuses it next time)

use quantgrid_coordinator::report::{MAX_CONFIRMATIONS, MatrixOptions, matrix_markdown};
use quantgrid_coordinator::store::{Record, ResultRecord, Store};
use quantgrid_coordinator::sweep::sweep_record;
use quantgrid_matrix::changes::{self, RunResult};
use quantgrid_matrix::compare::{self, Policy, Verdict};
use quantgrid_matrix::result::Environment;
use quantgrid_matrix::{Cell, CellId, CellResult, Status, spec};
use std::collections::BTreeMap;
use std::time::Instant;

const NIGHTS: usize = 365;
const REPLICATES: usize = 7;
const CELL_NIGHTS: usize = 1000;
const BUILD_NIGHTS: usize = 1000;

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

/// One night of every replayed cell: `n` samples drawn from each cell's pool, × `step`.
fn night(draw: &mut Draw, pools: &[RunResult], n: usize, step: f64) -> Vec<RunResult> {
    pools
        .iter()
        .map(|p| RunResult {
            samples_ms: draw
                .night(&p.samples_ms, n)
                .iter()
                .map(|v| v * step)
                .collect(),
            ..p.clone()
        })
        .collect()
}

/// Counts over the nights of one comparison scenario.
#[derive(Default)]
struct Tally {
    verdicts: BTreeMap<&'static str, usize>,
    slower: usize,
    nights_flagged: usize,
}

impl Tally {
    fn add(&mut self, d: &changes::Diff, cells: usize) {
        let different = d
            .cells
            .iter()
            .filter(|c| c.time.is_some_and(|t| t.verdict == Verdict::Different))
            .count();
        let unknown = d.unknown;
        *self.verdicts.entry("different").or_default() += different;
        *self.verdicts.entry("unknown").or_default() += unknown;
        *self.verdicts.entry("same").or_default() += cells - different - unknown;
        let slower = d.cells.iter().filter(|c| c.arrow() == Some("▲")).count();
        self.slower += slower;
        self.nights_flagged += usize::from(slower > 0);
    }
}

fn replay(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open_read_only(std::path::Path::new(path))?;
    let sweep = store
        .latest_sweep()?
        .ok_or_else(|| format!("{path} has no run"))?;
    let pools: Vec<RunResult> = store
        .run_results(&sweep)?
        .into_iter()
        .filter(|r| r.status == Status::Pass && r.samples_ms.len() >= 20)
        .collect();
    if pools.is_empty() {
        return Err(format!("{path} has no cell with 20 or more real samples").into());
    }
    let n = 10;
    let nights = CELL_NIGHTS.div_ceil(pools.len());
    println!(
        "replayed: run {sweep} of {path}, {} cells, {} real samples in all; a night draws {n} samples per cell from its pool; {nights} nights × {} cells = {} cell-nights",
        pools.len(),
        pools.iter().map(|r| r.samples_ms.len()).sum::<usize>(),
        pools.len(),
        nights * pools.len()
    );
    for r in &pools {
        let med = compare::median(&r.samples_ms);
        println!(
            "  {}: {} samples, median {med:.3} ms, IQR {:.1}% of it",
            r.cell.label(),
            r.samples_ms.len(),
            compare::iqr(&r.samples_ms) / med * 100.0
        );
    }
    let policy = Policy::default();
    let none = std::collections::BTreeSet::new();
    for (what, step) in [("A/A (same build)", 1.0), ("3% slower", 1.03)] {
        let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
        let (mut first, mut last) = (Tally::default(), Tally::default());
        let mut rounds = 0;
        for _ in 0..nights {
            let old = night(&mut draw, &pools, n, 1.0);
            let mut new = night(&mut draw, &pools, n, step);
            let mut d = changes::diff("old", &old, "new", &new, &none, policy);
            first.add(&d, pools.len());
            // the coordinator's confirmations: undecided cells measured again on the new build
            for _ in 0..MAX_CONFIRMATIONS {
                let undecided: Vec<CellId> = d
                    .cells
                    .iter()
                    .filter(|c| c.time.is_some_and(|t| t.verdict == Verdict::Unknown))
                    .map(|c| c.cell_id.clone())
                    .collect();
                if undecided.is_empty() {
                    break;
                }
                rounds += 1;
                for r in new.iter_mut().filter(|r| undecided.contains(&r.cell.id)) {
                    let pool = &pools
                        .iter()
                        .find(|p| p.cell.id == r.cell.id)
                        .expect("pool")
                        .samples_ms;
                    r.samples_ms
                        .extend(draw.night(pool, n).iter().map(|v| v * step));
                    r.repeated += 1;
                }
                d = changes::diff("old", &old, "new", &new, &none, policy);
            }
            last.add(&d, pools.len());
        }
        println!(
            "{what}: first round {:?}, {} cells reported slower, on {} of {nights} nights; after up to {MAX_CONFIRMATIONS} confirmations ({rounds} rounds) {:?}, {} cells reported slower, on {} nights",
            first.verdicts,
            first.slower,
            first.nights_flagged,
            last.verdicts,
            last.slower,
            last.nights_flagged
        );
    }
    for cells in [8, 20, pools.len()] {
        for (what, step) in [("A/A (same build)", 1.0), ("3% slower", 1.03)] {
            let (slower, faster, p) = build_nights(&pools, cells, step);
            println!(
                "the build as a whole, {cells} cells, {what}: called slower on {slower} and faster on {faster} of {BUILD_NIGHTS} first nights (median p {p:.2e})"
            );
        }
    }
    Ok(())
}

/// The build as a whole over [`BUILD_NIGHTS`] first nights of the first `cells` pools: how
/// many nights it was called slower and faster, with the median of its p-values.
fn build_nights(pools: &[RunResult], cells: usize, step: f64) -> (usize, usize, f64) {
    let pools = &pools[..cells.min(pools.len())];
    let none = std::collections::BTreeSet::new();
    let mut draw = Draw(0xD1B5_4A32_D192_ED03);
    let (mut slower, mut faster, mut p) = (0, 0, Vec::new());
    for _ in 0..BUILD_NIGHTS {
        let old = night(&mut draw, pools, 10, 1.0);
        let new = night(&mut draw, pools, 10, step);
        let d = changes::diff("old", &old, "new", &new, &none, Policy::default());
        slower += d.build_regressions();
        faster += d.builds.iter().filter(|b| b.improvement()).count();
        p.extend(d.builds.iter().map(|b| b.pooled.p_value));
    }
    (slower, faster, compare::median(&p))
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
                signed: None,
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
    // QUANTGRID_YEAR_DB keeps the year's file (and reuses it when it exists) for profiling
    let dir = tempfile::tempdir()?;
    let path = std::env::var("QUANTGRID_YEAR_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("year.duckdb"));
    let fresh = !path.exists();
    let mut store = Store::open(&path)?;
    let t = Instant::now();
    for night in (0..NIGHTS).filter(|_| fresh) {
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
        rows = store.history(Some(&id), &|_| true, false)?.len();
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
                trusted_only: false,
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
    let time = |f: &dyn Fn() -> Result<usize, Box<dyn std::error::Error>>| -> Result<String, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let n = f()?;
        Ok(format!("{:.0} ms ({n})", t.elapsed().as_secs_f64() * 1e3))
    };
    let request = quantgrid_coordinator::report::DiffRequest {
        old: None,
        new: None,
        flaky_window_us: quantgrid_coordinator::report::FLAKY_WINDOW_US,
    };
    println!(
        "  of which: the latest result of every cell {}, one run's results {}, the diff of two runs {}",
        time(&|| Ok(store.matrix_entries(None, false)?.len()))?,
        time(&|| Ok(store.run_results("n364")?.len()))?,
        time(&|| Ok(quantgrid_coordinator::report::diff_runs(&store, request)?.compared))?,
    );
    drop(store);
    cell_page(&path, &id)
}

/// The dashboard's page of one cell over the year (`quantgrid serve --http`'s `/cell/ID`: the
/// history query, the SVG plot and the table), timed to the last byte over loopback.
fn cell_page(path: &std::path::Path, id: &str) -> Result<(), Box<dyn std::error::Error>> {
    use quantgrid_coordinator::service::{self, HttpListener, ServeConfig, auth};
    use quantgrid_coordinator::store::TokenKind;
    let token = auth::generate_token().map_err(|e| format!("no randomness: {e}"))?;
    let name = format!("bench-viewer-{}", &token[4..16]);
    Store::open(path)?
        .create_token(&name, &auth::hash_token(&token), TokenKind::Viewer, false)?
        .map_err(|e| e.to_string())?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = http.local_addr()?.to_string();
    let rt = tokio::runtime::Runtime::new()?;
    let (times, bytes) = rt.block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut config = ServeConfig::new(path.to_path_buf());
        config.http = Some(HttpListener::new(http));
        let ready = config.ready.clone();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(service::run(config, grpc, shutdown.clone()));
        ready.cancelled().await;
        let (addr, page, token) = (addr.clone(), format!("/cell/{id}"), token.clone());
        // the first GET apart: it reads the cell's row groups into DuckDB's cache
        let timed = tokio::task::spawn_blocking(move || {
            (0..41)
                .map(|_| get(&addr, &page, &token))
                .collect::<Vec<_>>()
        })
        .await?;
        shutdown.cancel();
        server.await??;
        Ok::<_, Box<dyn std::error::Error>>((
            timed.iter().map(|(ms, _)| *ms).collect::<Vec<f64>>(),
            timed.last().map_or(0, |(_, b)| *b),
        ))
    })?;
    let (first, times) = (times[0], times[1..].to_vec());
    let _ = Store::open(path)?.revoke_token(&name)?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "dashboard cell page over {NIGHTS} runs ({REPLICATES} results each): p95 {:.1} ms, median {:.1} ms (40 GETs after a first of {first:.1} ms, {:.0} kB; target < 100 ms)",
        sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)],
        compare::median(&times),
        bytes as f64 / 1e3
    );
    Ok(())
}

/// A GET over a fresh loopback connection: milliseconds to the last byte, and the bytes.
fn get(addr: &str, path: &str, token: &str) -> (f64, usize) {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{path}");
    (t.elapsed().as_secs_f64() * 1e3, raw.len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // the year first: `quantgrid history` and `matrix` run as fresh processes
    year()?;
    match std::env::var("QUANTGRID_REPLAY_DB") {
        Ok(path) => replay(&path),
        Err(_) => {
            println!("replay skipped: set QUANTGRID_REPLAY_DB to a results file of a real run");
            Ok(())
        }
    }
}
