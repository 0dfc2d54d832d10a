//! Schedules: when to start a spec's next run. A synchronous state machine with an injected
//! clock, like the sweep scheduler: `handle(event, now) -> Vec<Action>`; the coordinator's
//! actor turns its actions into sweeps and durable records.
//!
//! - **Times** are the cron expression's wall clock in the schedule's IANA zone (`croner` on
//!   `chrono-tz`). At a DST change: a time that does not exist (spring forward, 02:30 on the
//!   night the clock jumps from 02:00 to 03:00) runs at the first instant after the gap
//!   (03:00); a time that happens twice (fall back) runs once, at its first instant.
//! - **On time** means within [`START_WINDOW_SECS`] of the due time: the actor ticks every
//!   second, so a run starts within a second or two of its time.
//! - **Downtime**: occurrences whose start window passed while the coordinator was down are
//!   missed. `catch_up: none` records them as skipped; `catch_up: once` starts one run for
//!   the latest of them when the coordinator is back, and records the others as skipped.
//! - **Overlap**: when a run is due while the previous one is still going, `skip` records an
//!   overrun and starts nothing; `queue` starts it when the previous run ends (at most one
//!   waits); `cancel-previous` cancels the previous run and starts the new one.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::collections::BTreeMap;
use std::str::FromStr;

/// How long after its due time a run still counts as on time.
pub const START_WINDOW_SECS: i64 = 60;

/// How many missed occurrences one tick looks at before it stops counting (a schedule
/// every second, down for a day, would otherwise count 86,400).
const MAX_MISSED: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
    CancelPrevious,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    None,
    Once,
}

/// A schedule as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub tz: Tz,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub paused: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("cron expression `{cron}` is not valid: {reason}")]
    Cron { cron: String, reason: String },
    #[error("`{0}` is not an IANA time zone (e.g. Europe/Berlin, UTC)")]
    Zone(String),
    #[error("cron expression `{0}` never fires")]
    Never(String),
}

/// Parses an IANA zone name.
pub fn zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::Zone(name.to_string()))
}

/// Why a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    OnTime,
    /// The latest occurrence missed while the coordinator was down (`catch_up: once`).
    CatchUp,
    /// It waited for the previous run to end (`overlap: queue`).
    Queued,
    /// `schedule run-now`.
    Manual,
}

/// Why a due run did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The previous run was still going (`overlap: skip`), or one already waits (`queue`).
    Overrun,
    /// Its start window passed while the coordinator was down.
    Missed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A schedule added, or restored after a restart with the due time of its last run.
    Added {
        schedule: Schedule,
        last_due: Option<DateTime<Utc>>,
    },
    Removed(String),
    Paused(String),
    Resumed(String),
    RunNow(String),
    /// The actor started the sweep of a `Start`.
    Started {
        schedule: String,
        sweep_id: String,
    },
    /// A sweep ended (finished or cancelled); only a schedule's own sweep matters.
    SweepEnded {
        sweep_id: String,
    },
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Start {
        schedule: String,
        due: DateTime<Utc>,
        why: Why,
    },
    Cancel {
        schedule: String,
        sweep_id: String,
    },
    Skipped {
        schedule: String,
        due: DateTime<Utc>,
        why: Skip,
    },
}

#[derive(Debug)]
struct State {
    schedule: Schedule,
    cron: Cron,
    /// The next due time not yet handled.
    next: Option<DateTime<Utc>>,
    running: Option<String>,
    last_started: Option<String>,
    queued: Option<DateTime<Utc>>,
}

/// Every schedule and what it is doing.
#[derive(Debug, Default)]
pub struct Schedules {
    states: BTreeMap<String, State>,
}

/// Parses a cron expression (5 fields, or 6 with seconds first).
pub fn parse_cron(cron: &str) -> Result<Cron, ScheduleError> {
    Cron::from_str(cron).map_err(|e| ScheduleError::Cron {
        cron: cron.to_string(),
        reason: e.to_string(),
    })
}

/// The first occurrence of `cron` in `tz` strictly after `after`.
fn next_after(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Schedules {
    /// Checks a schedule before it is stored: its cron parses and fires at least once.
    pub fn check(schedule: &Schedule, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let cron = parse_cron(&schedule.cron)?;
        next_after(&cron, schedule.tz, now)
            .map(|_| ())
            .ok_or_else(|| ScheduleError::Never(schedule.cron.clone()))
    }

    /// When `name` runs next, if it is known and not paused.
    pub fn next_due(&self, name: &str) -> Option<DateTime<Utc>> {
        let s = self.states.get(name)?;
        (!s.schedule.paused).then_some(s.next).flatten()
    }

    /// `name`'s sweep still running, if any.
    pub fn running(&self, name: &str) -> Option<String> {
        self.states.get(name)?.running.clone()
    }

    /// The sweep `name` started last, if any.
    pub fn last_started(&self, name: &str) -> Option<String> {
        self.states.get(name)?.last_started.clone()
    }

    pub fn handle(&mut self, event: Event, now: DateTime<Utc>) -> Vec<Action> {
        match event {
            Event::Added { schedule, last_due } => {
                let Ok(cron) = parse_cron(&schedule.cron) else {
                    return Vec::new();
                };
                let next = next_after(&cron, schedule.tz, last_due.unwrap_or(now));
                self.states.insert(
                    schedule.name.clone(),
                    State {
                        schedule,
                        cron,
                        next,
                        running: None,
                        last_started: None,
                        queued: None,
                    },
                );
                Vec::new()
            }
            Event::Removed(name) => {
                self.states.remove(&name);
                Vec::new()
            }
            Event::Paused(name) => {
                if let Some(s) = self.states.get_mut(&name) {
                    s.schedule.paused = true;
                    s.queued = None;
                }
                Vec::new()
            }
            Event::Resumed(name) => {
                if let Some(s) = self.states.get_mut(&name) {
                    // what fell due while paused is not owed: start from now
                    s.schedule.paused = false;
                    s.next = next_after(&s.cron, s.schedule.tz, now);
                }
                Vec::new()
            }
            Event::RunNow(name) => match self.states.get(&name) {
                Some(_) => vec![Action::Start {
                    schedule: name,
                    due: now,
                    why: Why::Manual,
                }],
                None => Vec::new(),
            },
            Event::Started { schedule, sweep_id } => {
                if let Some(s) = self.states.get_mut(&schedule) {
                    s.last_started = Some(sweep_id.clone());
                    s.running = Some(sweep_id);
                }
                Vec::new()
            }
            Event::SweepEnded { sweep_id } => self.ended(&sweep_id),
            Event::Tick => {
                let names: Vec<String> = self.states.keys().cloned().collect();
                names.iter().flat_map(|n| self.tick(n, now)).collect()
            }
        }
    }

    fn ended(&mut self, sweep_id: &str) -> Vec<Action> {
        let Some((name, s)) = self
            .states
            .iter_mut()
            .find(|(_, s)| s.running.as_deref() == Some(sweep_id))
        else {
            return Vec::new();
        };
        s.running = None;
        match s.queued.take() {
            Some(due) => vec![Action::Start {
                schedule: name.clone(),
                due,
                why: Why::Queued,
            }],
            None => Vec::new(),
        }
    }

    /// What is due for `name` at `now`.
    fn tick(&mut self, name: &str, now: DateTime<Utc>) -> Vec<Action> {
        let Some(s) = self.states.get_mut(name) else {
            return Vec::new();
        };
        if s.schedule.paused {
            return Vec::new();
        }
        let mut due = Vec::new();
        while let Some(next) = s.next.filter(|n| *n <= now) {
            if due.len() == MAX_MISSED {
                // too many to list: the latest stands for the rest
                if let Ok(latest) = s
                    .cron
                    .find_previous_occurrence(&now.with_timezone(&s.schedule.tz), true)
                {
                    due.push(latest.with_timezone(&Utc));
                }
                s.next = next_after(&s.cron, s.schedule.tz, now);
                break;
            }
            due.push(next);
            s.next = next_after(&s.cron, s.schedule.tz, next);
        }
        let Some(&latest) = due.last() else {
            return Vec::new();
        };
        let on_time = (now - latest).num_seconds() <= START_WINDOW_SECS;
        let mut actions: Vec<Action> = Vec::new();
        let skipped = |at: DateTime<Utc>, why: Skip| Action::Skipped {
            schedule: name.to_string(),
            due: at,
            why,
        };
        let (start, why) = match (on_time, s.schedule.catch_up) {
            (true, _) => (Some(latest), Why::OnTime),
            (false, CatchUp::Once) => (Some(latest), Why::CatchUp),
            (false, CatchUp::None) => (None, Why::OnTime),
        };
        for &at in &due {
            if Some(at) != start {
                actions.push(skipped(at, Skip::Missed));
            }
        }
        let Some(at) = start else {
            return actions;
        };
        match (&s.running, s.schedule.overlap) {
            (None, _) => actions.push(Action::Start {
                schedule: name.to_string(),
                due: at,
                why,
            }),
            (Some(_), Overlap::Skip) => actions.push(skipped(at, Skip::Overrun)),
            (Some(_), Overlap::Queue) => match s.queued {
                None => s.queued = Some(at),
                Some(_) => actions.push(skipped(at, Skip::Overrun)),
            },
            (Some(previous), Overlap::CancelPrevious) => {
                actions.push(Action::Cancel {
                    schedule: name.to_string(),
                    sweep_id: previous.clone(),
                });
                actions.push(Action::Start {
                    schedule: name.to_string(),
                    due: at,
                    why,
                });
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn schedule(cron: &str, tz: &str, overlap: Overlap, catch_up: CatchUp) -> Schedule {
        Schedule {
            name: "nightly".into(),
            cron: cron.into(),
            tz: zone(tz).expect("zone"),
            overlap,
            catch_up,
            paused: false,
        }
    }

    fn local(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        zone(tz)
            .expect("zone")
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .expect("a local time")
            .with_timezone(&Utc)
    }

    fn added(s: Schedule, now: DateTime<Utc>) -> Schedules {
        let mut all = Schedules::default();
        all.handle(
            Event::Added {
                schedule: s,
                last_due: None,
            },
            now,
        );
        all
    }

    /// Ticks every `step` seconds from `from` to `to`; every Start with the tick it came on.
    fn run(
        all: &mut Schedules,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: i64,
    ) -> Vec<(Action, DateTime<Utc>)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            for a in all.handle(Event::Tick, t) {
                out.push((a, t));
            }
            t += chrono::Duration::seconds(step);
        }
        out
    }

    fn starts(actions: &[(Action, DateTime<Utc>)]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        actions
            .iter()
            .filter_map(|(a, t)| match a {
                Action::Start { due, .. } => Some((*due, *t)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_nightly_run_starts_within_its_window_once_a_night() {
        let tz = "Europe/Berlin";
        let from = local(tz, 2026, 6, 1, 0, 0);
        let mut all = added(
            schedule("0 2 * * *", tz, Overlap::Skip, CatchUp::None),
            from,
        );
        let acts = run(&mut all, from, local(tz, 2026, 6, 3, 23, 0), 30);
        let s = starts(&acts);
        assert_eq!(s.len(), 3, "{s:?}");
        for (due, at) in &s {
            assert_eq!(
                due.with_timezone(&zone(tz).expect("tz"))
                    .format("%H:%M")
                    .to_string(),
                "02:00"
            );
            assert!((*at - *due).num_seconds() < START_WINDOW_SECS);
        }
    }

    /// The local due times a nightly `30 2 * * *` in Berlin starts on, ticking every 30 s
    /// from noon of the day `d` before to noon of the day after.
    fn berlin_nightly(month: u32, d: u32) -> Vec<String> {
        let tz = "Europe/Berlin";
        let from = local(tz, 2026, month, d, 12, 0);
        let mut all = added(
            schedule("30 2 * * *", tz, Overlap::Skip, CatchUp::None),
            from,
        );
        let to = local(tz, 2026, month, d + 2, 12, 0);
        let berlin = zone(tz).expect("tz");
        starts(&run(&mut all, from, to, 30))
            .iter()
            .map(|(due, _)| {
                due.with_timezone(&berlin)
                    .format("%m-%d %H:%M %Z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn spring_forward_runs_a_missing_time_once_right_after_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night
        assert_eq!(
            berlin_nightly(3, 28),
            ["03-29 03:00 CEST", "03-30 02:30 CEST"]
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice
        assert_eq!(
            berlin_nightly(10, 24),
            ["10-25 02:30 CEST", "10-26 02:30 CET"]
        );
    }

    #[test]
    fn downtime_is_skipped_or_caught_up_once() {
        let tz = "UTC";
        let last = local(tz, 2026, 6, 1, 2, 0);
        // restored at noon on the 4th: the 2nd, 3rd and 4th at 02:00 were missed
        let back = local(tz, 2026, 6, 4, 12, 0);
        for (catch_up, started) in [(CatchUp::None, 0), (CatchUp::Once, 1)] {
            let mut all = Schedules::default();
            all.handle(
                Event::Added {
                    schedule: schedule("0 2 * * *", tz, Overlap::Skip, catch_up),
                    last_due: Some(last),
                },
                back,
            );
            let acts = all.handle(Event::Tick, back);
            let s: Vec<&Action> = acts
                .iter()
                .filter(|a| matches!(a, Action::Start { .. }))
                .collect();
            assert_eq!(s.len(), started, "{catch_up:?}: {acts:?}");
            let missed = acts
                .iter()
                .filter(|a| {
                    matches!(
                        a,
                        Action::Skipped {
                            why: Skip::Missed,
                            ..
                        }
                    )
                })
                .count();
            assert_eq!(missed, 3 - started, "{catch_up:?}: {acts:?}");
            if let Some(Action::Start { due, why, .. }) = s.first() {
                assert_eq!((*due, *why), (local(tz, 2026, 6, 4, 2, 0), Why::CatchUp));
            }
            // and the next night is on time again
            let next = all.handle(Event::Tick, local(tz, 2026, 6, 5, 2, 0));
            assert!(
                matches!(
                    next[..],
                    [Action::Start {
                        why: Why::OnTime,
                        ..
                    }]
                ),
                "{next:?}"
            );
        }
    }

    #[test]
    fn a_run_due_while_the_previous_goes_on_follows_the_overlap_policy() {
        let tz = "UTC";
        let t0 = local(tz, 2026, 6, 1, 0, 0);
        let due = local(tz, 2026, 6, 1, 1, 0);
        for overlap in [Overlap::Skip, Overlap::Queue, Overlap::CancelPrevious] {
            let mut all = added(schedule("0 * * * *", tz, overlap, CatchUp::None), t0);
            all.handle(
                Event::Started {
                    schedule: "nightly".into(),
                    sweep_id: "s1".into(),
                },
                t0,
            );
            let acts = all.handle(Event::Tick, due);
            let ended = all.handle(
                Event::SweepEnded {
                    sweep_id: "s1".into(),
                },
                due + chrono::Duration::minutes(5),
            );
            match overlap {
                Overlap::Skip => {
                    assert!(matches!(
                        acts[..],
                        [Action::Skipped {
                            why: Skip::Overrun,
                            ..
                        }]
                    ));
                    assert!(ended.is_empty());
                }
                Overlap::Queue => {
                    assert!(acts.is_empty(), "{acts:?}");
                    assert!(matches!(
                        ended[..],
                        [Action::Start {
                            why: Why::Queued,
                            ..
                        }]
                    ));
                }
                Overlap::CancelPrevious => {
                    assert!(
                        matches!(&acts[..], [Action::Cancel { sweep_id, .. }, Action::Start { .. }] if sweep_id == "s1"),
                        "{acts:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn paused_schedules_do_not_run_and_resume_from_now() {
        let tz = "UTC";
        let t0 = local(tz, 2026, 6, 1, 0, 0);
        let mut all = added(schedule("0 2 * * *", tz, Overlap::Skip, CatchUp::Once), t0);
        all.handle(Event::Paused("nightly".into()), t0);
        assert!(
            all.handle(Event::Tick, local(tz, 2026, 6, 3, 12, 0))
                .is_empty()
        );
        assert_eq!(all.next_due("nightly"), None);
        all.handle(
            Event::Resumed("nightly".into()),
            local(tz, 2026, 6, 3, 12, 0),
        );
        assert_eq!(all.next_due("nightly"), Some(local(tz, 2026, 6, 4, 2, 0)));
        assert!(
            all.handle(Event::Tick, local(tz, 2026, 6, 3, 12, 1))
                .is_empty()
        );
        let now = all.handle(Event::RunNow("nightly".into()), t0);
        assert!(matches!(
            now[..],
            [Action::Start {
                why: Why::Manual,
                ..
            }]
        ));
    }

    #[test]
    fn bad_cron_and_zones_are_named() {
        let e = zone("Mars/Olympus").expect_err("zone");
        assert_eq!(
            e.to_string(),
            "`Mars/Olympus` is not an IANA time zone (e.g. Europe/Berlin, UTC)"
        );
        let s = schedule("61 * * * *", "UTC", Overlap::Skip, CatchUp::None);
        let e = Schedules::check(&s, Utc::now()).expect_err("cron");
        assert!(
            e.to_string()
                .starts_with("cron expression `61 * * * *` is not valid"),
            "{e}"
        );
    }
}
