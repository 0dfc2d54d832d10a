//! The results store: the only module that knows DuckDB. It owns the schema and migrations,
//! batched writes (one writer thread, Appenders), and the reads behind the matrix and
//! `quantgrid results`.

mod history;
mod keys;
mod merge;
mod read;
mod schedules;
mod schema;
mod tokens;
mod write;
mod writer;

pub use history::{AgentHealth, HistoryRow};
pub use keys::{KeyRefused, KeyRow};
pub use merge::Merged;
pub use read::{ResultRow, StoredSweep, SweepSummary};
pub use schedules::StoredSchedule;
pub use tokens::{TokenCreated, TokenInfo, TokenKind, TokenRefused};
pub use writer::{Faults, StoreWriter, Unstored};

use duckdb::Connection;
use quantgrid_matrix::spec::RunParams;
use quantgrid_matrix::{Cell, CellResult};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open results database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: duckdb::Error,
    },
    #[error(
        "results database {path} has schema version {found}, newer than this quantgrid ({supported}); upgrade quantgrid"
    )]
    TooNew {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error(
        "results database {path} is in use by another process (a running coordinator or `quantgrid run`): {detail}; read it through that coordinator or stop it first"
    )]
    Locked { path: PathBuf, detail: String },
    #[error(
        "results database {path} has schema version {found}, and this quantgrid reads version {supported}: migrate it first with `quantgrid migrate --db-path {path}` (read commands never change the file)"
    )]
    OlderSchema {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error("database error while {doing}")]
    Db {
        doing: &'static str,
        #[source]
        source: duckdb::Error,
    },
    #[error("stored row is inconsistent: {0}")]
    Corrupt(String),
    #[error("a batched write failed and was rolled back: {0}")]
    BatchFailed(String),
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("merge refused, nothing merged: {0}")]
    MergeRefused(String),
}

trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, duckdb::Error> {
    fn doing(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Db {
            doing: what,
            source,
        })
    }
}

/// Microseconds since the Unix epoch, the unit DuckDB timestamps use.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A sweep as submitted: the spec text is kept verbatim so a sweep can be re-run or audited.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRecord {
    pub sweep_id: String,
    pub name: String,
    pub spec_file: String,
    pub spec_yaml: String,
    pub client_request_id: Option<String>,
    pub priority: i32,
    pub accuracy: quantgrid_matrix::result::Thresholds,
    pub run: RunParams,
    pub created_at_us: i64,
    /// A load test: only simulated agents take its cells.
    pub simulated: bool,
    /// The schedule that started it, if one did.
    pub schedule: Option<String>,
    /// The run whose undecided time verdicts this sweep repeats cells of, if it does.
    pub confirms: Option<String>,
    /// The only agent its cells go to (a confirmation runs on the agent of the run it
    /// confirms).
    pub pinned_agent: Option<String>,
}

/// A schedule as stored: the spec verbatim, its cron, zone and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub name: String,
    pub spec_file: String,
    pub spec_yaml: String,
    pub cron: String,
    pub time_zone: String,
    /// `skip`, `queue` or `cancel-previous`.
    pub overlap: String,
    /// `none` or `once`.
    pub catch_up: String,
    pub paused: bool,
    pub created_at_us: i64,
}

/// One decision of a schedule: a run started (`started`, `caught-up`, `queued`, `manual`) or
/// a due time skipped (`overrun`, `missed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRunRecord {
    pub schedule: String,
    pub due_at_us: i64,
    pub decided_at_us: i64,
    pub outcome: &'static str,
    pub sweep_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub agent_id: String,
    pub name: String,
    pub version: String,
    pub os: String,
    pub arch: String,
    pub labels: BTreeMap<String, String>,
    pub registered_at_us: i64,
}

/// One try at one cell by one agent, and why it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt_id: String,
    pub sweep_id: String,
    pub cell_id: String,
    pub attempt_no: u32,
    pub agent_id: Option<String>,
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
    pub end_reason: Option<String>,
}

/// A result to store. `accepted` marks the one attempt whose result the matrix shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    pub attempt_id: String,
    pub sweep_id: String,
    pub result: CellResult,
    pub accepted: bool,
    pub recorded_at_us: i64,
    /// The agent's signature over this very result (None: unsigned, or made by the
    /// coordinator: a timeout, a lost agent, a report that did not check out).
    pub signed: Option<Signed>,
}

/// A result as its agent signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub key_id: String,
    pub signature: Vec<u8>,
    /// The signed encoding of the result (quantgrid_proto::signing::payload).
    pub payload: Vec<u8>,
}

/// A lease handed to an agent; deleted when its attempt is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub lease_id: String,
    pub sweep_id: String,
    pub cell_id: String,
    pub agent_id: String,
    pub attempt_no: u32,
    pub started_at_us: i64,
}

/// Everything the store writes. A batch of records is written in one transaction.
// results are the hot variant and the biggest; boxing them would add an allocation per result
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Sweep(Box<SweepRecord>, Vec<Cell>),
    Agent(AgentRecord),
    /// An ended attempt; also retires the lease of the same id.
    Attempt(AttemptRecord),
    Result(ResultRecord),
    Lease(LeaseRecord),
    SweepEnded {
        sweep_id: String,
        state: &'static str,
        at_us: i64,
    },
    /// A new schedule (its name is not in use).
    Schedule(ScheduleRecord),
    SchedulePaused {
        name: String,
        paused: bool,
    },
    /// The schedule is gone; its runs and sweeps stay.
    ScheduleRemoved {
        name: String,
    },
    ScheduleRun(ScheduleRunRecord),
}

/// A connection to the results database. Single-threaded: share it through [`StoreWriter`].
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Environments already stored, so the hot path skips the lookup.
    known_environments: HashSet<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Store::init(conn, path.to_path_buf())
    }

    /// Opens an existing database for reading only: never creates, migrates or writes, and
    /// says so when a running coordinator holds the file or its schema is another version.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let conn = Connection::open_with_flags(path, config).map_err(|source| {
            let text = source.to_string();
            if text.contains("lock") {
                StoreError::Locked {
                    path: path.to_path_buf(),
                    detail: text.lines().next().unwrap_or_default().to_string(),
                }
            } else {
                StoreError::Open {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            known_environments: HashSet::new(),
        };
        let has_versions: bool = store
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .doing("looking for the schema version")?;
        let found = if has_versions {
            store.schema_version()?
        } else {
            0
        };
        match found.cmp(&schema::LATEST) {
            std::cmp::Ordering::Equal => Ok(store),
            std::cmp::Ordering::Greater => Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: schema::LATEST,
            }),
            std::cmp::Ordering::Less => Err(StoreError::OlderSchema {
                path: path.to_path_buf(),
                found,
                supported: schema::LATEST,
            }),
        }
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Store::init(conn, PathBuf::from(":memory:"))
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let mut store = Store {
            conn,
            path,
            known_environments: HashSet::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Caps DuckDB's worker threads. The coordinator gives its writer one, so a checkpoint
    /// cannot take every core from the scheduler and the agent sessions.
    /// Another connection to the same open database, for reads that need not wait behind the
    /// writer thread (the dashboard): it sees what is committed.
    pub fn reader(&self) -> Result<Store, StoreError> {
        Ok(Store {
            conn: self.conn.try_clone().doing("opening a second connection")?,
            path: self.path.clone(),
            known_environments: HashSet::new(),
        })
    }

    pub fn limit_threads(&mut self, threads: u32) -> Result<(), StoreError> {
        self.conn
            .execute_batch(&format!("SET threads = {}", threads.max(1)))
            .doing("limiting DuckDB threads")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i32, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .doing("reading the schema version")
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_version (
                    version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)",
            )
            .doing("creating schema_version")?;
        let current = self.schema_version()?;
        let latest = schema::LATEST;
        if current > latest {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: current,
                supported: latest,
            });
        }
        for (version, sql) in schema::MIGRATIONS.iter().filter(|m| m.0 > current) {
            let tx = self.conn.transaction().doing("starting a migration")?;
            tx.execute_batch(sql).doing("migrating the schema")?;
            tx.execute(
                "INSERT INTO schema_version VALUES (?, current_timestamp::TIMESTAMP)",
                [version],
            )
            .doing("recording the schema version")?;
            tx.commit().doing("committing a migration")?;
        }
        Ok(())
    }

    /// Writes `records` in one transaction: all or nothing.
    pub fn write(&mut self, records: &[Record]) -> Result<(), StoreError> {
        write::write(self, records)
    }
}

#[cfg(test)]
mod tests;
