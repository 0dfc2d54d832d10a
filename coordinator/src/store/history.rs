//! Reads across runs: a cell's history (every accepted result of it, with the build, driver,
//! adapter and agent it came from), one run's accepted results for a diff, which sweep ran
//! before another of the same name, and which cells were flaky.

use super::{Doing, Store, StoreError};
use duckdb::Row;
use duckdb::types::Value;
use quantgrid_matrix::changes::{self, RunResult};
use quantgrid_matrix::{Cell, CellId, Status};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// An agent's recent record: its last results and the failures among them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentHealth {
    pub agent: String,
    /// Of its last results (at most the number asked for).
    pub results: u64,
    /// Those that passed or were answered unsupported (the browser's own answer).
    pub answered: u64,
    /// The newest failures (fail, error, crash, timeout), newest first, with their text.
    pub failures: Vec<String>,
}

/// One result of a cell in its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub cell_id: String,
    pub label: String,
    pub sweep_id: String,
    pub sweep_name: String,
    pub attempt_id: String,
    pub recorded_at: String,
    pub status: Status,
    pub samples_ms: Vec<f64>,
    pub p10_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub accuracy_cosine: Option<f64>,
    pub accuracy_rel_err: Option<f64>,
    pub accuracy_top1: Option<f64>,
    /// Browser build, e.g. `chromium 156.0.8078.114`.
    pub browser: Option<String>,
    pub driver: Option<String>,
    pub os: Option<String>,
    /// The adapter, `(software)` where it is one.
    pub adapter: Option<String>,
    pub agent: Option<String>,
    pub environment_id: Option<String>,
    /// The first result of this cell on this build: times before it came from another one.
    pub new_build: bool,
    /// Where the run was made when it was merged from another file (`quantgrid merge`).
    pub origin: Option<String>,
}

/// The cell columns of `cell_at`, then the result's; `{samples}` is the raw samples or none.
const HISTORY_COLUMNS: &str = "c.cell_id, c.model, c.browser, c.platform, c.requested_bits, \
    c.mixed_precision, c.experimental_precision, c.scheme, c.group_size, c.layers, c.seq_len, c.head, \
    c.weights, \
    r.sweep_id, s.name, r.attempt_id, strftime(r.recorded_at, '%Y-%m-%d %H:%M:%S'), r.status, \
    {samples}, r.p50_ms, r.p90_ms, r.accuracy_cosine, r.accuracy_rel_err, r.accuracy_top1, \
    e.browser || ' ' || e.browser_version, e.driver || ' ' || e.driver_version, \
    e.os || ' ' || e.os_version, \
    nullif(concat_ws(' ', nullif(e.adapter_vendor, ''), nullif(e.adapter_architecture, ''), \
        nullif(e.adapter_description, '')), '') \
        || CASE WHEN e.adapter_is_software THEN ' (software)' ELSE '' END, \
    g.name, r.environment_id, s.origin, r.p10_ms";

/// [`HISTORY_COLUMNS`] with the raw samples where a caller needs them: reading them costs most
/// of a year's history (their lists are scattered over every night's row groups).
fn history_columns(samples: bool) -> String {
    HISTORY_COLUMNS.replace(
        "{samples}",
        if samples {
            "r.samples_ms"
        } else {
            "NULL::DOUBLE[]"
        },
    )
}

/// A cell's label and stored cell of the row (its id checked).
fn row_cell(row: &Row<'_>) -> Result<Cell, StoreError> {
    super::read::cell_at(row, 0)
        .doing("reading a cell")?
        .map_err(StoreError::Corrupt)
}

pub(super) fn samples(v: Value) -> Vec<f64> {
    match v {
        Value::List(items) => items
            .into_iter()
            .filter_map(|x| match x {
                Value::Double(d) => Some(d),
                Value::Float(f) => Some(f64::from(f)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn history_row(
    row: &Row<'_>,
    cell: &Cell,
) -> Result<Result<HistoryRow, StoreError>, duckdb::Error> {
    let st: String = row.get(17)?;
    let Some(status) = Status::parse(&st) else {
        return Ok(Err(StoreError::Corrupt(format!("unknown status `{st}`"))));
    };
    let samples_ms = samples(row.get(18)?);
    Ok(Ok(HistoryRow {
        cell_id: cell.id.0.clone(),
        label: cell.label(),
        sweep_id: row.get(13)?,
        sweep_name: row.get(14)?,
        attempt_id: row.get(15)?,
        recorded_at: row.get(16)?,
        status,
        p10_ms: row.get(31)?,
        samples_ms,
        p50_ms: row.get(19)?,
        p90_ms: row.get(20)?,
        accuracy_cosine: row.get(21)?,
        accuracy_rel_err: row.get(22)?,
        accuracy_top1: row.get(23)?,
        browser: row.get(24)?,
        driver: row.get(25)?,
        os: row.get(26)?,
        adapter: row.get(27)?,
        agent: row.get(28)?,
        environment_id: row.get(29)?,
        new_build: false,
        origin: row.get(30)?,
    }))
}

impl Store {
    /// Every accepted, real (not simulated) result of the cells `keep` picks, oldest first,
    /// each cell's rows together; `cell_id` narrows the query to one cell; the raw samples
    /// only `with_samples` (else empty).
    pub fn history(
        &self,
        cell_id: Option<&str>,
        keep: &dyn Fn(&Cell) -> bool,
        with_samples: bool,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let columns = history_columns(with_samples);
        // a plain equality (not `$1 IS NULL OR ...`) lets DuckDB push the filter into both scans;
        // every sweep stores a cell with the same content (its id is a hash of it), so one row
        // will do and the scan of the cells can stop at the first
        let (one, cells) = if cell_id.is_some() {
            (
                "cell_id = $1",
                "SELECT * FROM cells WHERE cell_id = $1 LIMIT 1",
            )
        } else {
            (
                "$1 IS NULL",
                "SELECT DISTINCT ON (cell_id) * FROM cells ORDER BY cell_id, sweep_id",
            )
        };
        let sql = format!(
            "WITH cell AS ({cells})
            SELECT {columns}
            FROM (SELECT * FROM results WHERE {one}) r
            JOIN cell c USING (cell_id)
            JOIN sweeps s ON s.sweep_id = r.sweep_id
            LEFT JOIN attempts a USING (attempt_id)
            LEFT JOIN agents g ON g.agent_id = a.agent_id
            LEFT JOIN environments e USING (environment_id)
            WHERE r.accepted AND NOT r.simulated
            ORDER BY c.family, r.cell_id, r.recorded_at, r.attempt_id"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .doing("preparing the history query")?;
        let mut rows = stmt
            .query(duckdb::params![cell_id])
            .doing("running the history query")?;
        let mut out: Vec<HistoryRow> = Vec::new();
        let mut seen: BTreeSet<(String, Option<String>)> = BTreeSet::new();
        // rows come grouped by cell: each cell is parsed (and its id checked) once, not once
        // per result
        let mut current: Option<(Cell, bool)> = None;
        while let Some(row) = rows.next().doing("reading the history")? {
            let id: String = row.get(0).doing("reading a cell id")?;
            if current.as_ref().is_none_or(|(c, _)| c.id.0 != id) {
                let cell = row_cell(row)?;
                let kept = keep(&cell);
                current = Some((cell, kept));
            }
            let Some((cell, true)) = &current else {
                continue;
            };
            let mut h = history_row(row, cell).doing("reading a result")??;
            let first_of_cell = out.last().is_none_or(|p| p.cell_id != h.cell_id);
            h.new_build =
                seen.insert((h.cell_id.clone(), h.environment_id.clone())) && !first_of_cell;
            out.push(h);
        }
        Ok(out)
    }

    /// Every agent's last `n` results of the past week (accepted or not: a retried crash counts
    /// against the agent that crashed), how many passed or were answered unsupported, and its
    /// newest failures with their text (at most 3). The week bounds the read: results are
    /// appended in time order, so older row groups are skipped by their zone maps.
    pub fn agent_records(&self, n: usize) -> Result<Vec<AgentHealth>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "WITH recent AS (
                    SELECT a.agent_id, r.status, r.error_text, r.recorded_at,
                        row_number() OVER (PARTITION BY a.agent_id ORDER BY r.recorded_at DESC) AS k
                    FROM results r JOIN attempts a USING (attempt_id)
                    WHERE a.agent_id IS NOT NULL
                        AND r.recorded_at >= current_timestamp::TIMESTAMP - INTERVAL 7 DAY
                )
                SELECT agent_id, count(*),
                    count(*) FILTER (WHERE status IN ('pass', 'unsupported')),
                    coalesce(list(status || ': ' || coalesce(error_text, '') ORDER BY recorded_at DESC)
                        FILTER (WHERE status NOT IN ('pass', 'unsupported')), [])[1:3]
                FROM recent WHERE k <= ? GROUP BY agent_id ORDER BY agent_id",
            )
            .doing("preparing the agents' records")?;
        stmt.query_map([n as i64], |r| {
            let failures: Value = r.get(3)?;
            Ok(AgentHealth {
                agent: r.get(0)?,
                results: r.get(1)?,
                answered: r.get(2)?,
                failures: match failures {
                    Value::List(items) => items
                        .into_iter()
                        .filter_map(|v| match v {
                            Value::Text(t) => Some(t),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                },
            })
        })
        .doing("reading the agents' records")?
        .collect::<Result<_, _>>()
        .doing("reading the agents' records")
    }

    /// The accepted, real result of every cell of `sweep` (its latest, where retried).
    pub fn run_results(&self, sweep: &str) -> Result<Vec<RunResult>, StoreError> {
        let columns = history_columns(true);
        let sql = format!(
            "WITH cell AS (SELECT * FROM cells WHERE sweep_id = $1)
            SELECT {columns}
            FROM results r
            JOIN cell c USING (cell_id, sweep_id)
            JOIN sweeps s USING (sweep_id)
            LEFT JOIN attempts a USING (attempt_id)
            LEFT JOIN agents g ON g.agent_id = a.agent_id
            LEFT JOIN environments e USING (environment_id)
            WHERE r.sweep_id = $1 AND r.accepted AND NOT r.simulated
            QUALIFY row_number() OVER (PARTITION BY r.cell_id ORDER BY r.recorded_at DESC, r.attempt_id DESC) = 1
            ORDER BY c.family, r.cell_id"
        );
        let mut stmt = self.conn.prepare(&sql).doing("preparing the run query")?;
        let mut rows = stmt
            .query(duckdb::params![sweep])
            .doing("running the run query")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().doing("reading a run")? {
            let cell = row_cell(row)?;
            let h = history_row(row, &cell).doing("reading a result")??;
            let build = h.browser.as_ref().map(|b| {
                [Some(b.as_str()), h.driver.as_deref(), h.adapter.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · ")
            });
            out.push(RunResult {
                cell,
                status: h.status,
                samples_ms: h.samples_ms,
                accuracy_cosine: h.accuracy_cosine,
                environment_id: h.environment_id,
                build,
                agent: h.agent,
                repeated: 0,
            });
        }
        self.pool_confirmations(sweep, &mut out)?;
        Ok(out)
    }

    /// Adds to each passed result of `sweep` the samples its confirmation runs took of the
    /// same cell on the same build and agent.
    fn pool_confirmations(&self, sweep: &str, run: &mut [RunResult]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.cell_id, r.environment_id, g.name, r.samples_ms
                FROM results r
                JOIN sweeps s ON s.sweep_id = r.sweep_id
                LEFT JOIN attempts a USING (attempt_id)
                LEFT JOIN agents g ON g.agent_id = a.agent_id
                WHERE s.confirms = $1 AND r.accepted AND NOT r.simulated AND r.status = 'pass'
                ORDER BY r.recorded_at, r.attempt_id",
            )
            .doing("preparing the confirmations query")?;
        let mut rows = stmt
            .query(duckdb::params![sweep])
            .doing("running the confirmations query")?;
        while let Some(row) = rows.next().doing("reading confirmations")? {
            let cell: String = row.get(0).doing("reading a confirmation")?;
            let env: Option<String> = row.get(1).doing("reading a confirmation")?;
            let agent: Option<String> = row.get(2).doing("reading a confirmation")?;
            let extra = samples(row.get(3).doing("reading a confirmation")?);
            if let Some(r) = run.iter_mut().find(|r| {
                r.cell.id.0 == cell
                    && r.status == Status::Pass
                    && r.environment_id.is_some()
                    && r.environment_id == env
                    && r.agent == agent
            }) {
                r.samples_ms.extend(extra);
                r.repeated += 1;
            }
        }
        Ok(())
    }

    /// The run `sweep` confirms, if it is a confirmation, and how many confirmations `sweep`
    /// (as a run) already has.
    pub fn confirmation_of(&self, sweep: &str) -> Result<(Option<String>, u32), StoreError> {
        let confirms: Option<String> = self
            .conn
            .query_row(
                "SELECT confirms FROM sweeps WHERE sweep_id = $1",
                duckdb::params![sweep],
                |r| r.get(0),
            )
            .doing("looking up a confirmation")?;
        let root = confirms.clone().unwrap_or_else(|| sweep.to_string());
        let rounds: u32 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sweeps WHERE confirms = $1",
                duckdb::params![root],
                |r| r.get(0),
            )
            .doing("counting confirmations")?;
        Ok((confirms, rounds))
    }

    /// The previous run of `sweep`'s series, if any: the sweep created last before it by the
    /// same schedule (or by none) with the same name.
    pub fn previous_sweep(&self, sweep: &str) -> Result<Option<String>, StoreError> {
        self.one_id(
            "SELECT p.sweep_id FROM sweeps s JOIN sweeps p ON p.name = s.name
                AND p.schedule IS NOT DISTINCT FROM s.schedule
                AND p.confirms IS NULL
                AND (p.created_at, p.sweep_id) < (s.created_at, s.sweep_id)
                AND coalesce(p.simulated, false) = coalesce(s.simulated, false)
            WHERE s.sweep_id = $1
            ORDER BY p.created_at DESC, p.sweep_id DESC LIMIT 1",
            sweep,
        )
    }

    /// The newest real run (not a load test, not a confirmation), if any.
    pub fn latest_sweep(&self) -> Result<Option<String>, StoreError> {
        self.one_id(
            "SELECT sweep_id FROM sweeps
            WHERE NOT coalesce(simulated, false) AND confirms IS NULL AND $1 = $1
            ORDER BY created_at DESC, sweep_id DESC LIMIT 1",
            "",
        )
    }

    /// Whether a sweep of this id is stored.
    pub fn has_sweep(&self, sweep: &str) -> Result<bool, StoreError> {
        Ok(self
            .one_id("SELECT sweep_id FROM sweeps WHERE sweep_id = $1", sweep)?
            .is_some())
    }

    /// The spec a sweep was submitted with: its file name and text, verbatim.
    pub fn sweep_spec(&self, sweep: &str) -> Result<Option<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT spec_file, spec_yaml FROM sweeps WHERE sweep_id = $1")
            .doing("preparing a spec lookup")?;
        let mut rows = stmt
            .query(duckdb::params![sweep])
            .doing("looking up a spec")?;
        match rows.next().doing("reading a spec")? {
            Some(r) => Ok(Some((
                r.get(0).doing("reading a spec")?,
                r.get(1).doing("reading a spec")?,
            ))),
            None => Ok(None),
        }
    }

    /// Every table as Parquet files in `dir`, with DuckDB's own `EXPORT DATABASE` (a
    /// `schema.sql` and `load.sql` beside them re-create the database).
    pub fn export_parquet(&self, dir: &std::path::Path) -> Result<(), StoreError> {
        let dir = dir.display().to_string().replace('\'', "''");
        self.conn
            .execute_batch(&format!("EXPORT DATABASE '{dir}' (FORMAT parquet)"))
            .doing("exporting the database as parquet")
    }

    fn one_id(&self, sql: &str, arg: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self.conn.prepare(sql).doing("preparing a sweep lookup")?;
        let mut rows = stmt
            .query(duckdb::params![arg])
            .doing("looking up a sweep")?;
        match rows.next().doing("reading a sweep id")? {
            Some(r) => Ok(Some(r.get(0).doing("reading a sweep id")?)),
            None => Ok(None),
        }
    }

    /// Cells of `sweep` that both passed and did not on one build and agent, counting every
    /// attempt (retries included) from `window_us` before the sweep was created to now.
    pub fn flaky_cells(&self, sweep: &str, window_us: i64) -> Result<BTreeSet<CellId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.cell_id, r.environment_id, a.agent_id, r.status
                FROM results r
                JOIN attempts a USING (attempt_id)
                WHERE NOT r.simulated
                    AND r.cell_id IN (SELECT cell_id FROM cells WHERE sweep_id = $1)
                    AND r.recorded_at >= (SELECT created_at FROM sweeps WHERE sweep_id = $1)
                        - to_microseconds($2)
                ORDER BY r.recorded_at, r.attempt_id",
            )
            .doing("preparing the flakiness query")?;
        let rows = stmt
            .query_map(duckdb::params![sweep, window_us], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .doing("running the flakiness query")?;
        // per cell, agent and build, oldest first; a result without an environment (a crash
        // before the browser said what it is) counts with every build of its agent
        type Seen = Vec<(Option<String>, Status)>;
        let mut by: BTreeMap<(String, Option<String>), Seen> = BTreeMap::new();
        for row in rows {
            let (cell, env, agent, st) = row.doing("reading the flakiness query")?;
            if let Some(s) = Status::parse(&st) {
                by.entry((cell, agent)).or_default().push((env, s));
            }
        }
        Ok(by
            .into_iter()
            .filter(|(_, seen)| {
                let builds: BTreeSet<&String> =
                    seen.iter().filter_map(|(e, _)| e.as_ref()).collect();
                builds.into_iter().any(|b| {
                    let on_b: Vec<Status> = seen
                        .iter()
                        .filter(|(e, _)| e.as_ref().is_none_or(|e| e == b))
                        .map(|(_, s)| *s)
                        .collect();
                    changes::flaky(&on_b)
                })
            })
            .map(|((cell, _), _)| CellId(cell))
            .collect())
    }
}
