//! Reads: the accepted result of every cell for the matrix, result listings, sweep summaries.

use super::{Doing, Store, StoreError};
use duckdb::Row;
use quantgrid_matrix::render::{Entry, Outcome};
use quantgrid_matrix::result::{AdapterInfo, Environment, RanOn, Thresholds, WebnnDevice};
use quantgrid_matrix::{Bits, Browser, Cell, Platform, Scheme, Status, WorkloadSize, family};
use serde::Serialize;

/// One stored result, flattened for `quantgrid results`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub sweep_id: String,
    pub attempt_id: String,
    pub cell_id: String,
    pub label: String,
    pub status: Status,
    pub effective_bits: u32,
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub weight_bytes: Option<u64>,
    pub accuracy_rel_err: Option<f64>,
    pub error_text: Option<String>,
    pub browser_version: Option<String>,
    pub adapter: Option<String>,
    pub simulated: bool,
    pub accepted: bool,
    /// GPU-timestamp samples stored beside the page-clock ones.
    pub gpu_samples: usize,
    pub kernel_err_ratio: Option<f64>,
    pub environment_id: Option<String>,
    /// The WebNN context: request, device and evidence.
    pub webnn: Option<String>,
    pub accuracy_cosine: Option<f64>,
    pub accuracy_top1: Option<f64>,
    pub accuracy_kl: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepSummary {
    pub sweep_id: String,
    pub name: String,
    pub state: String,
    pub cells: u64,
    pub results: u64,
    /// Cells with an accepted result, and how many of those passed or were unsupported.
    pub done: u64,
    pub passed: u64,
    pub unsupported: u64,
    /// Cells whose accepted result is simulated.
    pub simulated: u64,
    /// The thresholds its spec stated (only `max_rel_err` before schema 5).
    pub accuracy: Thresholds,
}

const CELL_COLUMNS: &str = "c.cell_id, c.model, c.browser, c.platform, c.requested_bits, \
    c.mixed_precision, c.experimental_precision, c.scheme, c.group_size, c.layers, c.seq_len, c.head, \
    c.weights";

/// Rebuilds a cell from `CELL_COLUMNS` starting at `at`, and checks its stored id.
pub(super) fn cell_at(row: &Row<'_>, at: usize) -> Result<Result<Cell, String>, duckdb::Error> {
    let id: String = row.get(at)?;
    let model: String = row.get(at + 1)?;
    let browser: String = row.get(at + 2)?;
    let platform: String = row.get(at + 3)?;
    let bits: u8 = row.get(at + 4)?;
    let scheme: String = row.get(at + 7)?;
    let parsed = (|| {
        let target = family::resolve(&model).map_err(|e| e.to_string())?;
        let browser = Browser::parse(&browser).ok_or(format!("unknown browser {browser}"))?;
        let platform = Platform::parse(&platform).ok_or(format!("unknown platform {platform}"))?;
        let bits = Bits::from_u32(u32::from(bits)).ok_or(format!("bad bit width {bits}"))?;
        let scheme = match scheme.as_str() {
            "symmetric" => Scheme::Symmetric,
            "asymmetric" => Scheme::Asymmetric,
            other => return Err(format!("unknown scheme {other}")),
        };
        Ok((target, browser, platform, bits, scheme))
    })();
    let (target, browser, platform, bits, scheme) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("cell {id}: {e}"))),
    };
    let cell = Cell::new(
        target,
        browser,
        platform,
        bits,
        row.get(at + 5)?,
        row.get(at + 6)?,
        scheme,
        row.get(at + 8)?,
        WorkloadSize {
            layers: row.get(at + 9)?,
            seq_len: row.get(at + 10)?,
            head: row.get(at + 11)?,
        },
    )
    .with_weights(row.get(at + 12)?);
    if cell.id.0 != id {
        return Ok(Err(format!(
            "cell {id} is stored with content that hashes to {}",
            cell.id
        )));
    }
    Ok(Ok(cell))
}

fn status(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status `{s}`")))
}

impl Store {
    /// Every cell of `sweep` (or of every sweep) with its latest accepted result. Simulated
    /// results are left out unless `include_simulated`.
    pub fn matrix_entries(
        &self,
        sweep: Option<&str>,
        include_simulated: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        self.matrix_entries_from(sweep, include_simulated, false)
    }

    /// [`Store::matrix_entries`], with `trusted_only` counting only results signed by a key
    /// pinned here (an unsigned result, or one signed by a key that came with a merged file,
    /// leaves its cell without a result).
    pub fn matrix_entries_from(
        &self,
        sweep: Option<&str>,
        include_simulated: bool,
        trusted_only: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        let sql = format!(
            "WITH cell AS (
                SELECT DISTINCT ON (cell_id) * FROM cells WHERE ($1 IS NULL OR sweep_id = $1)
                ORDER BY cell_id, sweep_id
            ), newest AS (
                -- an aggregate finds each cell's newest time in one pass; the window below
                -- then only breaks ties among a few rows instead of sorting every result
                -- (the filter is written twice: a CTE read twice would be materialized whole)
                SELECT cell_id, max(recorded_at) AS at FROM results
                WHERE accepted AND ($1 IS NULL OR sweep_id = $1) AND (NOT simulated OR $2)
                    AND (NOT $3 OR key_id IN (SELECT key_id FROM agent_keys WHERE state = 'pinned'))
                GROUP BY cell_id
            ), latest AS (
                SELECT r.* FROM results r JOIN newest n ON r.cell_id = n.cell_id AND r.recorded_at = n.at
                WHERE r.accepted AND ($1 IS NULL OR r.sweep_id = $1) AND (NOT r.simulated OR $2)
                    AND (NOT $3 OR r.key_id IN (SELECT key_id FROM agent_keys WHERE state = 'pinned'))
                QUALIFY row_number() OVER (PARTITION BY r.cell_id ORDER BY r.attempt_id DESC) = 1
            )
            SELECT {CELL_COLUMNS},
                r.status, r.error_text, r.effective_bits, r.p50_ms, len(r.samples_ms),
                r.accuracy_rel_err, r.simulated,
                e.browser, e.browser_channel, e.browser_version, array_to_string(e.browser_flags, chr(31)),
                e.driver, e.driver_version, e.os, e.os_version, e.arch,
                e.adapter_vendor, e.adapter_architecture, e.adapter_device, e.adapter_description,
                e.adapter_is_fallback, e.webnn_device_type, e.webnn_info, r.timer,
                e.webnn_ran_on, e.webnn_evidence, r.gpu_p50_ms, r.weight_bytes,
                r.accuracy_cosine, r.accuracy_top1, r.accuracy_kl, r.weights_sha256, r.weights_source
            FROM cell c
            LEFT JOIN latest r USING (cell_id)
            LEFT JOIN environments e USING (environment_id)
            ORDER BY c.family, c.cell_id"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .doing("preparing the matrix query")?;
        let mut rows = stmt
            .query(duckdb::params![sweep, include_simulated, trusted_only])
            .doing("running the matrix query")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().doing("reading the matrix query")? {
            let cell = cell_at(row, 0)
                .doing("reading a cell")?
                .map_err(StoreError::Corrupt)?;
            let st: Option<String> = row.get(13).doing("reading a status")?;
            let outcome = match st {
                None => None,
                Some(st) => Some(outcome(row, &st).doing("reading a result")??),
            };
            out.push(Entry { cell, outcome });
        }
        Ok(out)
    }

    /// Stored results, newest first.
    pub fn results(&self, sweep: Option<&str>, limit: usize) -> Result<Vec<ResultRow>, StoreError> {
        let sql = format!(
            "WITH cell AS (SELECT DISTINCT ON (cell_id) * FROM cells ORDER BY cell_id, sweep_id)
            SELECT {CELL_COLUMNS},
                r.sweep_id, r.attempt_id, r.status, r.effective_bits, len(r.samples_ms), r.p50_ms,
                r.p90_ms, r.weight_bytes, r.accuracy_rel_err, r.error_text, e.browser_version,
                e.adapter_vendor || ' ' || e.adapter_architecture
                    || CASE WHEN e.adapter_is_software THEN ' (software)' ELSE '' END,
                r.simulated, r.accepted, len(r.gpu_samples_ms), r.kernel_err_ratio, r.environment_id,
                e.webnn_device_type, e.webnn_ran_on, e.webnn_evidence, r.accuracy_cosine,
                r.accuracy_top1, r.accuracy_kl
            FROM results r
            JOIN cell c USING (cell_id)
            LEFT JOIN environments e USING (environment_id)
            WHERE ($1 IS NULL OR r.sweep_id = $1)
            ORDER BY r.recorded_at DESC, r.attempt_id
            LIMIT $2"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .doing("preparing the results query")?;
        let mut rows = stmt
            .query(duckdb::params![sweep, limit as u64])
            .doing("running the results query")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().doing("reading results")? {
            let cell = cell_at(row, 0)
                .doing("reading a cell")?
                .map_err(StoreError::Corrupt)?;
            let st: String = row.get(15).doing("reading a status")?;
            let st = status(&st)?;
            let read = |row: &Row<'_>| -> Result<ResultRow, duckdb::Error> {
                Ok(ResultRow {
                    sweep_id: row.get(13)?,
                    attempt_id: row.get(14)?,
                    cell_id: cell.id.0.clone(),
                    label: cell.label(),
                    status: st,
                    effective_bits: row.get::<_, u8>(16)?.into(),
                    samples: row.get::<_, Option<u64>>(17)?.unwrap_or(0) as usize,
                    p50_ms: row.get(18)?,
                    p90_ms: row.get(19)?,
                    weight_bytes: row.get(20)?,
                    accuracy_rel_err: row.get(21)?,
                    error_text: row.get(22)?,
                    browser_version: row.get(23)?,
                    adapter: row.get(24)?,
                    simulated: row.get(25)?,
                    accepted: row.get(26)?,
                    gpu_samples: row.get::<_, Option<u64>>(27)?.unwrap_or(0) as usize,
                    kernel_err_ratio: row.get(28)?,
                    environment_id: row.get(29)?,
                    webnn: webnn_device(row.get(30)?, row.get(31)?, row.get(32)?)
                        .map(|d| d.label()),
                    accuracy_cosine: row.get(33)?,
                    accuracy_top1: row.get(34)?,
                    accuracy_kl: row.get(35)?,
                })
            };
            out.push(read(row).doing("reading a result")?);
        }
        Ok(out)
    }

    pub fn sweeps(&self) -> Result<Vec<SweepSummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.sweep_id, s.name, s.state,
                    (SELECT count(*) FROM cells c WHERE c.sweep_id = s.sweep_id),
                    (SELECT count(*) FROM results r WHERE r.sweep_id = s.sweep_id),
                    (SELECT count(DISTINCT cell_id) FROM results r WHERE r.sweep_id = s.sweep_id AND r.accepted),
                    (SELECT count(DISTINCT cell_id) FROM results r
                        WHERE r.sweep_id = s.sweep_id AND r.accepted AND r.status = 'pass' AND NOT r.simulated),
                    s.accuracy_tolerance,
                    (SELECT count(DISTINCT cell_id) FROM results r
                        WHERE r.sweep_id = s.sweep_id AND r.accepted AND r.status = 'unsupported'),
                    (SELECT count(DISTINCT cell_id) FROM results r
                        WHERE r.sweep_id = s.sweep_id AND r.accepted AND r.simulated),
                    s.min_cosine, s.min_top1, s.max_kl
                FROM sweeps s ORDER BY s.created_at, s.sweep_id",
            )
            .doing("preparing the sweeps query")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SweepSummary {
                    sweep_id: r.get(0)?,
                    name: r.get(1)?,
                    state: r.get(2)?,
                    cells: r.get(3)?,
                    results: r.get(4)?,
                    done: r.get(5)?,
                    passed: r.get(6)?,
                    unsupported: r.get(8)?,
                    simulated: r.get(9)?,
                    accuracy: Thresholds {
                        max_rel_err: r.get(7)?,
                        min_cosine: r.get(10)?,
                        min_top1: r.get(11)?,
                        max_kl: r.get(12)?,
                    },
                })
            })
            .doing("running the sweeps query")?;
        rows.collect::<Result<_, _>>().doing("reading sweeps")
    }

    /// The accuracy thresholds of `sweep` (or of every sweep), without counting anything.
    pub fn sweep_thresholds(&self, sweep: Option<&str>) -> Result<Vec<Thresholds>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT accuracy_tolerance, min_cosine, min_top1, max_kl FROM sweeps
                WHERE $1 IS NULL OR sweep_id = $1",
            )
            .doing("preparing the thresholds query")?;
        let rows = stmt
            .query_map(duckdb::params![sweep], |r| {
                Ok(Thresholds {
                    max_rel_err: r.get(0)?,
                    min_cosine: r.get(1)?,
                    min_top1: r.get(2)?,
                    max_kl: r.get(3)?,
                })
            })
            .doing("running the thresholds query")?;
        rows.collect::<Result<_, _>>().doing("reading thresholds")
    }

    pub fn result_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM results", [], |r| r.get(0))
            .doing("counting results")
    }
}

fn outcome(row: &Row<'_>, st: &str) -> Result<Result<Outcome, StoreError>, duckdb::Error> {
    let status = match status(st) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let bits: u8 = row.get(15)?;
    let Some(effective_bits) = Bits::from_u32(u32::from(bits)) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "bad effective bit width {bits}"
        ))));
    };
    let browser: Option<String> = row.get(20)?;
    let environment = match browser.as_deref().and_then(Browser::parse) {
        None => None,
        Some(browser) => {
            let flags: String = row.get(23)?;
            let vendor: Option<String> = row.get(29)?;
            let adapter = match vendor {
                None => None,
                Some(vendor) => Some(AdapterInfo {
                    vendor,
                    architecture: row.get::<_, Option<String>>(30)?.unwrap_or_default(),
                    device: row.get::<_, Option<String>>(31)?.unwrap_or_default(),
                    description: row.get::<_, Option<String>>(32)?.unwrap_or_default(),
                    is_fallback: row.get::<_, Option<bool>>(33)?.unwrap_or(false),
                }),
            };
            Some(Environment {
                browser,
                browser_channel: row.get(21)?,
                browser_version: row.get(22)?,
                browser_flags: flags
                    .split('\u{1f}')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect(),
                driver: row.get(24)?,
                driver_version: row.get(25)?,
                os: row.get(26)?,
                os_version: row.get(27)?,
                arch: row.get(28)?,
                adapter,
                webnn: webnn_device(row.get(34)?, row.get(37)?, row.get(38)?),
                webnn_info: row.get(35)?,
            })
        }
    };
    Ok(Ok(Outcome {
        status,
        error_text: row.get(14)?,
        effective_bits,
        p50_ms: row.get(16)?,
        samples: row.get::<_, Option<u64>>(17)?.unwrap_or(0) as u32,
        accuracy_rel_err: row.get(18)?,
        environment,
        simulated: row.get(19)?,
        timer: row.get(36)?,
        gpu_p50_ms: row.get(39)?,
        weight_bytes: row.get(40)?,
        accuracy_cosine: row.get(41)?,
        accuracy_top1: row.get(42)?,
        accuracy_kl: row.get(43)?,
        weights_sha256: row.get(44)?,
        weights_source: row.get(45)?,
    }))
}

/// A stored WebNN context; a request without a device is `unknown`, never the request.
fn webnn_device(
    requested: Option<String>,
    ran_on: Option<String>,
    evidence: Option<String>,
) -> Option<WebnnDevice> {
    let requested = requested?;
    Some(WebnnDevice {
        requested,
        ran_on: ran_on
            .as_deref()
            .and_then(RanOn::parse)
            .unwrap_or(RanOn::Unknown),
        evidence: evidence.unwrap_or_else(|| "no evidence was stored".into()),
    })
}

/// A sweep that was running when the coordinator stopped, with what it needs to resume.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSweep {
    pub sweep_id: String,
    pub spec_file: String,
    pub spec_yaml: String,
    pub client_request_id: Option<String>,
    pub cells: Vec<Cell>,
    pub done: std::collections::HashSet<quantgrid_matrix::CellId>,
    /// Of `done`, the cells whose accepted result passed.
    pub passed: std::collections::HashSet<quantgrid_matrix::CellId>,
    /// Of `done`, the cells whose accepted result is `unsupported`.
    pub unsupported: std::collections::HashSet<quantgrid_matrix::CellId>,
    pub attempts: std::collections::HashMap<quantgrid_matrix::CellId, u32>,
    /// `(lease_id, cell_id, agent_id, attempt_no, started_at_us)`
    pub outstanding: Vec<(String, quantgrid_matrix::CellId, String, u32, i64)>,
    pub reported: std::collections::HashSet<String>,
    /// A load test.
    pub simulated: bool,
    /// Of `done`, the cells whose accepted result is simulated.
    pub simulated_done: std::collections::HashSet<quantgrid_matrix::CellId>,
    /// The only agent its cells go to, if any.
    pub pinned_agent: Option<String>,
}

impl Store {
    /// Sweeps still running, for the scheduler to resume.
    pub fn running_sweeps(&self) -> Result<Vec<StoredSweep>, StoreError> {
        use quantgrid_matrix::CellId;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sweep_id, spec_file, spec_yaml, client_request_id, coalesce(simulated, false),
                    pinned_agent
                 FROM sweeps WHERE state = 'running' ORDER BY created_at, sweep_id",
            )
            .doing("preparing the running sweeps query")?;
        type Head = (String, String, String, Option<String>, bool, Option<String>);
        let heads: Vec<Head> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .doing("reading running sweeps")?
            .collect::<Result<_, _>>()
            .doing("reading running sweeps")?;
        let mut out = Vec::new();
        for (sweep_id, spec_file, spec_yaml, client_request_id, simulated, pinned_agent) in heads {
            let sql = format!(
                "SELECT {CELL_COLUMNS} FROM cells c WHERE c.sweep_id = ? ORDER BY c.family, c.cell_id"
            );
            let mut stmt = self.conn.prepare(&sql).doing("preparing the cells query")?;
            let mut rows = stmt.query([&sweep_id]).doing("reading cells")?;
            let mut cells = Vec::new();
            while let Some(row) = rows.next().doing("reading cells")? {
                cells.push(
                    cell_at(row, 0)
                        .doing("reading a cell")?
                        .map_err(StoreError::Corrupt)?,
                );
            }
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT attempt_id, cell_id, accepted, status, simulated FROM results WHERE sweep_id = ?",
                )
                .doing("preparing the results query")?;
            let rows: Vec<(String, String, bool, String, bool)> = stmt
                .query_map([&sweep_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .doing("reading results")?
                .collect::<Result<_, _>>()
                .doing("reading results")?;
            let mut done = std::collections::HashSet::new();
            let mut passed = std::collections::HashSet::new();
            let mut unsupported = std::collections::HashSet::new();
            let mut reported = std::collections::HashSet::new();
            let mut simulated_done = std::collections::HashSet::new();
            for (attempt, cell, accepted, status, sim) in rows {
                if accepted && sim {
                    simulated_done.insert(CellId(cell.clone()));
                }
                if accepted && status == "pass" && !sim {
                    passed.insert(CellId(cell.clone()));
                }
                if accepted && status == "unsupported" {
                    unsupported.insert(CellId(cell.clone()));
                }
                if accepted {
                    done.insert(CellId(cell));
                }
                reported.insert(attempt);
            }
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT cell_id, max(attempt_no) FROM (
                        SELECT cell_id, attempt_no FROM attempts WHERE sweep_id = $1
                        UNION ALL SELECT cell_id, attempt_no FROM leases WHERE sweep_id = $1)
                     GROUP BY cell_id",
                )
                .doing("preparing the attempts query")?;
            let attempts = stmt
                .query_map([&sweep_id], |r| {
                    Ok((CellId(r.get(0)?), r.get::<_, u32>(1)?))
                })
                .doing("reading attempts")?
                .collect::<Result<_, _>>()
                .doing("reading attempts")?;
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT lease_id, cell_id, agent_id, attempt_no, epoch_us(started_at) FROM leases
                     WHERE sweep_id = ? ORDER BY lease_id",
                )
                .doing("preparing the leases query")?;
            let outstanding = stmt
                .query_map([&sweep_id], |r| {
                    Ok((
                        r.get(0)?,
                        CellId(r.get(1)?),
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })
                .doing("reading leases")?
                .collect::<Result<_, _>>()
                .doing("reading leases")?;
            out.push(StoredSweep {
                sweep_id,
                spec_file,
                spec_yaml,
                client_request_id,
                cells,
                done,
                passed,
                unsupported,
                attempts,
                outstanding,
                reported,
                simulated,
                simulated_done,
                pinned_agent,
            });
        }
        Ok(out)
    }

    /// The sweep a client request id already created, if any.
    pub fn sweep_for_request(&self, client_request_id: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sweep_id FROM sweeps WHERE client_request_id = ? LIMIT 1")
            .doing("preparing the request lookup")?;
        let mut rows = stmt
            .query([client_request_id])
            .doing("looking up a request")?;
        match rows.next().doing("looking up a request")? {
            Some(r) => Ok(Some(r.get(0).doing("reading a sweep id")?)),
            None => Ok(None),
        }
    }
}
