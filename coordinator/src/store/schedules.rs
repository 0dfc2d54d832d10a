//! Stored schedules, read back when the coordinator starts: each with the due time of its last
//! decision (so downtime is seen as missed runs) and its sweep still running, if any.

use super::{Doing, ScheduleRecord, Store, StoreError};

/// A schedule and where it stood when the coordinator stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub record: ScheduleRecord,
    /// The due time of its last decision (a run started or skipped), in µs.
    pub last_due_us: Option<i64>,
    /// Its latest sweep, and whether that sweep is still running.
    pub last_sweep: Option<(String, bool)>,
}

impl Store {
    pub fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.name, s.spec_file, s.spec_yaml, s.cron, s.time_zone, s.overlap,
                    s.catch_up, s.paused, epoch_us(s.created_at),
                    (SELECT epoch_us(max(due_at)) FROM schedule_runs r WHERE r.schedule = s.name),
                    w.sweep_id, w.state = 'running'
                FROM schedules s
                LEFT JOIN (
                    SELECT schedule, sweep_id, state FROM sweeps WHERE schedule IS NOT NULL
                    QUALIFY row_number() OVER (PARTITION BY schedule ORDER BY created_at DESC, sweep_id DESC) = 1
                ) w ON w.schedule = s.name
                ORDER BY s.name",
            )
            .doing("preparing the schedules query")?;
        let rows = stmt
            .query_map([], |r| {
                let sweep: Option<String> = r.get(10)?;
                let running: Option<bool> = r.get(11)?;
                Ok(StoredSchedule {
                    record: ScheduleRecord {
                        name: r.get(0)?,
                        spec_file: r.get(1)?,
                        spec_yaml: r.get(2)?,
                        cron: r.get(3)?,
                        time_zone: r.get(4)?,
                        overlap: r.get(5)?,
                        catch_up: r.get(6)?,
                        paused: r.get(7)?,
                        created_at_us: r.get(8)?,
                    },
                    last_due_us: r.get(9)?,
                    last_sweep: sweep.map(|s| (s, running.unwrap_or(false))),
                })
            })
            .doing("running the schedules query")?;
        rows.collect::<Result<_, _>>().doing("reading schedules")
    }

    /// Every decision `schedule` made, oldest first: `(due_at µs, outcome, sweep_id)`.
    pub fn schedule_runs(
        &self,
        schedule: &str,
    ) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT epoch_us(due_at), outcome, sweep_id FROM schedule_runs
                WHERE schedule = $1 ORDER BY decided_at, due_at",
            )
            .doing("preparing the schedule runs query")?;
        let rows = stmt
            .query_map(duckdb::params![schedule], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .doing("running the schedule runs query")?;
        rows.collect::<Result<_, _>>()
            .doing("reading schedule runs")
    }
}
