//! The coordinator's schedules: `crate::schedule::Schedules` decides, this turns its actions
//! into sweeps, cancellations and durable `schedule_runs` rows, and answers the admin
//! commands. Everything here runs on the coordinator's one loop.

use super::{Coordinator, Millis, sweep_input};
use crate::schedule::{self, Action, CatchUp, Event, Overlap, Schedule, Skip, Why};
use crate::scheduler::Event as SweepEvent;
use crate::service::error::ServiceError;
use crate::store::{Record, ScheduleRecord, ScheduleRunRecord, StoredSchedule};
use crate::sweep::{new_sweep_id, sweep_record};
use chrono::{DateTime, Utc};
use quantgrid_matrix::spec::{self, MatrixSpec};
use quantgrid_proto::pb;

/// A schedule the coordinator runs: as stored, and its spec parsed once.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub record: ScheduleRecord,
    pub spec: MatrixSpec,
}

fn utc(now: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(now as i64).unwrap_or_default()
}

pub fn overlap(s: &str) -> Option<Overlap> {
    match s {
        "skip" => Some(Overlap::Skip),
        "queue" => Some(Overlap::Queue),
        "cancel-previous" => Some(Overlap::CancelPrevious),
        _ => None,
    }
}

pub fn catch_up(s: &str) -> Option<CatchUp> {
    match s {
        "none" => Some(CatchUp::None),
        "once" => Some(CatchUp::Once),
        _ => None,
    }
}

/// A stored or submitted schedule, checked: its spec parses, its cron fires, its zone and
/// policies are known.
pub(super) fn validate(
    record: &ScheduleRecord,
    now: Millis,
) -> Result<(Schedule, MatrixSpec), String> {
    let spec = spec::parse(&record.spec_yaml, &record.spec_file).map_err(|e| e.to_string())?;
    let s = Schedule {
        name: record.name.clone(),
        cron: record.cron.clone(),
        tz: schedule::zone(&record.time_zone).map_err(|e| e.to_string())?,
        overlap: overlap(&record.overlap).ok_or_else(|| {
            format!(
                "overlap `{}` is not skip, queue or cancel-previous",
                record.overlap
            )
        })?,
        catch_up: catch_up(&record.catch_up)
            .ok_or_else(|| format!("catch-up `{}` is not none or once", record.catch_up))?,
        paused: record.paused,
    };
    crate::schedule::Schedules::check(&s, utc(now)).map_err(|e| e.to_string())?;
    Ok((s, spec))
}

impl Coordinator {
    /// Takes up the stored schedules: each resumes from the due time of its last decision, so
    /// what fell due while the coordinator was down is missed (or caught up once).
    pub fn restore_schedules(&mut self, stored: Vec<StoredSchedule>, now: Millis) {
        for s in stored {
            let (schedule, spec) = match validate(&s.record, now) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(schedule = %s.record.name, error = %e, "stored schedule no longer validates; it is not run");
                    continue;
                }
            };
            let name = schedule.name.clone();
            self.schedules.handle(
                Event::Added {
                    schedule,
                    last_due: s.last_due_us.and_then(DateTime::from_timestamp_micros),
                },
                utc(now),
            );
            if let Some((sweep_id, running)) = s.last_sweep.clone() {
                self.schedules.handle(
                    Event::Started {
                        schedule: name.clone(),
                        sweep_id: sweep_id.clone(),
                    },
                    utc(now),
                );
                if !running {
                    self.schedules
                        .handle(Event::SweepEnded { sweep_id }, utc(now));
                }
            }
            self.scheduled.insert(
                name,
                Scheduled {
                    record: s.record,
                    spec,
                },
            );
        }
    }

    /// Ticks the schedules, tells them which of their sweeps ended, and looks for what the
    /// ended runs left undecided.
    pub(super) fn step_schedules(&mut self, now: Millis) {
        for sweep_id in std::mem::take(&mut self.ended) {
            self.look_for_undecided(&sweep_id);
            self.schedule_event(Event::SweepEnded { sweep_id }, now);
        }
        self.schedule_event(Event::Tick, now);
    }

    fn schedule_event(&mut self, event: Event, now: Millis) -> Option<String> {
        let mut started = None;
        for action in self.schedules.handle(event, utc(now)) {
            started = self.schedule_action(action, now).or(started);
        }
        started
    }

    /// Carries out one decision; the id of a sweep it started.
    fn schedule_action(&mut self, action: Action, now: Millis) -> Option<String> {
        let run = |schedule: &str, due: DateTime<Utc>, outcome, sweep_id| {
            Record::ScheduleRun(ScheduleRunRecord {
                schedule: schedule.to_string(),
                due_at_us: due.timestamp_micros(),
                decided_at_us: (now * 1000) as i64,
                outcome,
                sweep_id,
            })
        };
        match action {
            Action::Start { schedule, due, why } => {
                let id = self.start_scheduled(&schedule, now)?;
                let outcome = match why {
                    Why::OnTime => "started",
                    Why::CatchUp => "caught-up",
                    Why::Queued => "queued",
                    Why::Manual => "manual",
                };
                tracing::info!(schedule, sweep = %id, due = %due, outcome, "scheduled run started");
                let lag_ms = now as i64 - due.timestamp_millis();
                self.metrics
                    .schedule_lag_seconds
                    .observe(lag_ms.max(0) as f64 / 1000.0);
                self.outbox
                    .records
                    .push(run(&schedule, due, outcome, Some(id.clone())));
                self.schedules.handle(
                    Event::Started {
                        schedule,
                        sweep_id: id.clone(),
                    },
                    utc(now),
                );
                Some(id)
            }
            Action::Cancel { schedule, sweep_id } => {
                tracing::warn!(schedule, sweep = %sweep_id, "cancelling the previous run for the next one");
                let actions = self.scheduler.handle(
                    SweepEvent::Cancel {
                        sweep: sweep_id.clone(),
                    },
                    now,
                );
                self.execute(actions, Vec::new(), now);
                self.outbox.records.push(run(
                    &schedule,
                    utc(now),
                    "cancelled-previous",
                    Some(sweep_id),
                ));
                None
            }
            Action::Skipped { schedule, due, why } => {
                let outcome = match why {
                    Skip::Overrun => "overrun",
                    Skip::Missed => "missed",
                };
                tracing::warn!(schedule, due = %due, outcome, "scheduled run not started");
                self.outbox.records.push(run(&schedule, due, outcome, None));
                None
            }
        }
    }

    /// Starts a sweep of `schedule`'s spec, recorded as the schedule's.
    fn start_scheduled(&mut self, schedule: &str, now: Millis) -> Option<String> {
        let s = self.scheduled.get(schedule)?;
        let spec = s.spec.clone();
        let (yaml, file) = (s.record.spec_yaml.clone(), s.record.spec_file.clone());
        let id = new_sweep_id(&format!("{schedule}\n{now}\n{yaml}"));
        let cells = spec.expand();
        let mut record = sweep_record(&id, &spec, cells.clone(), &file, &yaml, None, false);
        if let Record::Sweep(r, _) = &mut record {
            r.schedule = Some(schedule.to_string());
        }
        // the sweep row goes first in the batch, before anything the scheduler does with it
        self.outbox.records.push(record);
        self.watch(&id, cells.len() as u32);
        let actions = self.scheduler.handle(
            SweepEvent::Submit(sweep_input(&id, &spec, cells, false)),
            now,
        );
        self.execute(actions, Vec::new(), now);
        Some(id)
    }

    /// Adds a schedule; its record, to be durable before the caller hears of it.
    pub(super) fn add_schedule(
        &mut self,
        record: ScheduleRecord,
        now: Millis,
    ) -> Result<(pb::ScheduleInfo, Record), ServiceError> {
        if self.scheduled.contains_key(&record.name) {
            return Err(ServiceError::AlreadyExists(format!(
                "a schedule named `{}` exists; remove it first",
                record.name
            )));
        }
        let (schedule, spec) = validate(&record, now).map_err(ServiceError::InvalidArgument)?;
        let name = record.name.clone();
        let stored = Record::Schedule(record.clone());
        self.schedules.handle(
            Event::Added {
                schedule,
                last_due: None,
            },
            utc(now),
        );
        self.scheduled
            .insert(name.clone(), Scheduled { record, spec });
        Ok((self.schedule_info(&name), stored))
    }

    pub(super) fn schedule_infos(&self) -> Vec<pb::ScheduleInfo> {
        self.scheduled
            .keys()
            .map(|n| self.schedule_info(n))
            .collect()
    }

    fn schedule_info(&self, name: &str) -> pb::ScheduleInfo {
        let s = &self.scheduled[name];
        let r = &s.record;
        pb::ScheduleInfo {
            spec: Some(pb::ScheduleSpec {
                name: r.name.clone(),
                spec_yaml: r.spec_yaml.clone(),
                spec_name: r.spec_file.clone(),
                cron: r.cron.clone(),
                time_zone: r.time_zone.clone(),
                overlap: r.overlap.clone(),
                catch_up: r.catch_up.clone(),
            }),
            paused: r.paused,
            next_due: self
                .schedules
                .next_due(name)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            running_sweep: self.schedules.running(name).unwrap_or_default(),
            last_sweep: self.schedules.last_started(name).unwrap_or_default(),
        }
    }

    fn known(&self, name: &str) -> Result<(), ServiceError> {
        if self.scheduled.contains_key(name) {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "no schedule named `{name}`"
            )))
        }
    }

    pub(super) fn pause_schedule(
        &mut self,
        name: String,
        paused: bool,
        now: Millis,
    ) -> Result<Record, ServiceError> {
        self.known(&name)?;
        if let Some(s) = self.scheduled.get_mut(&name) {
            s.record.paused = paused;
        }
        let stored = Record::SchedulePaused {
            name: name.clone(),
            paused,
        };
        let event = if paused {
            Event::Paused(name)
        } else {
            Event::Resumed(name)
        };
        self.schedules.handle(event, utc(now));
        Ok(stored)
    }

    pub(super) fn remove_schedule(
        &mut self,
        name: String,
        now: Millis,
    ) -> Result<Record, ServiceError> {
        self.known(&name)?;
        self.scheduled.remove(&name);
        self.schedules
            .handle(Event::Removed(name.clone()), utc(now));
        Ok(Record::ScheduleRemoved { name })
    }

    pub(super) fn run_schedule_now(
        &mut self,
        name: String,
        now: Millis,
    ) -> Result<String, ServiceError> {
        self.known(&name)?;
        self.schedule_event(Event::RunNow(name.clone()), now)
            .ok_or_else(|| ServiceError::Internal(format!("schedule `{name}` did not start")))
    }
}
