//! What the dashboard shows of a running sweep: each queue (browser × platform) with its
//! waiting and running cells and the agents that can take them, and each cell's state and
//! place in its queue.

use super::{Millis, Queue, Scheduler};
use quantgrid_matrix::{Browser, Cell, Platform};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    pub browser: Browser,
    pub platform: Platform,
    pub waiting: u32,
    pub running: u32,
    /// Connected agents with this browser.
    pub agents: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellState {
    /// Waiting in its queue: `position` 1 is offered next (among this sweep's cells).
    Queued { position: u32, since: Millis },
    Running {
        agent: String,
        attempt: u32,
        since: Millis,
    },
    /// Its result is in (the store says which).
    Done,
    /// Between attempts: its lease ended and the next one is being decided.
    Between,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepView {
    pub queues: Vec<QueueView>,
    /// Every cell in the order of the sweep, with its state.
    pub cells: Vec<(Cell, CellState)>,
}

impl Scheduler {
    /// The running sweep `id` as the dashboard shows it; None once it has ended.
    pub fn sweep_view(&self, id: &str) -> Option<SweepView> {
        let sweep = self.sweeps.get(id)?;
        let mut queued: HashMap<usize, (u32, Millis)> = HashMap::new();
        for cells in sweep.pending.values() {
            for (at, &slot) in cells.iter().enumerate() {
                queued.insert(slot, (at as u32 + 1, sweep.slots[slot].queued_at));
            }
        }
        let mut running: HashMap<usize, (String, u32, Millis)> = HashMap::new();
        let mut out_per_queue: HashMap<Queue, u32> = HashMap::new();
        for lease in self.leases.values().filter(|l| l.sweep == id) {
            let cell = &sweep.slots[lease.slot].cell;
            *out_per_queue
                .entry((cell.browser, cell.platform))
                .or_default() += 1;
            running.insert(
                lease.slot,
                (lease.agent.clone(), lease.attempt_no, lease.started_at),
            );
        }
        let mut kinds: Vec<Queue> = sweep
            .slots
            .iter()
            .filter(|s| !s.done)
            .map(|s| (s.cell.browser, s.cell.platform))
            .collect();
        kinds.sort();
        kinds.dedup();
        let queues = kinds
            .into_iter()
            .map(|q| QueueView {
                browser: q.0,
                platform: q.1,
                waiting: sweep.pending.get(&q).map_or(0, |c| c.len() as u32),
                running: out_per_queue.get(&q).copied().unwrap_or(0),
                agents: self.capable.get(&q).copied().unwrap_or(0),
            })
            .collect();
        let cells = sweep
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let state = if slot.done {
                    CellState::Done
                } else if let Some((agent, attempt, since)) = running.remove(&i) {
                    CellState::Running {
                        agent,
                        attempt,
                        since,
                    }
                } else if let Some(&(position, since)) = queued.get(&i) {
                    CellState::Queued { position, since }
                } else {
                    CellState::Between
                };
                (slot.cell.clone(), state)
            })
            .collect();
        Some(SweepView { queues, cells })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Event, SchedulerConfig, SweepInput};
    use quantgrid_matrix::spec;

    #[test]
    fn cells_show_their_queue_position_agent_and_state() {
        let yaml = "version: 1\nname: t\nfamilies: [bert]\nbrowsers: [chromium, firefox]\nplatforms: webgpu\nbits: [4, 8]\n";
        let s = spec::parse(yaml, "t.yaml").expect("spec");
        let mut sch = Scheduler::new(SchedulerConfig::default());
        sch.handle(
            Event::Submit(SweepInput {
                id: "s".into(),
                priority: 0,
                cells: s.expand(),
                requirements: Default::default(),
                run: s.run,
                agent_wait_ms: 60_000,
                simulated: false,
                agent: None,
            }),
            1_000,
        );
        let caps = quantgrid_matrix::fixtures::chromium_capabilities(1);
        let offered = sch.handle(
            Event::AgentUp {
                agent: "a".into(),
                caps,
            },
            4_000,
        );
        let waited: Vec<Millis> = offered
            .iter()
            .filter_map(|a| match a {
                crate::scheduler::Action::Offer { offer, .. } => Some(offer.waited_ms),
                _ => None,
            })
            .collect();
        // submitted at 1 s, offered at 4 s when the first agent came
        assert_eq!(waited, vec![3_000]);
        let v = sch.sweep_view("s").expect("running");
        let chromium = v
            .queues
            .iter()
            .find(|q| q.browser == Browser::Chromium)
            .expect("chromium queue");
        assert_eq!(
            (chromium.waiting, chromium.running, chromium.agents),
            (1, 1, 1)
        );
        let firefox = v
            .queues
            .iter()
            .find(|q| q.browser == Browser::Firefox)
            .expect("firefox queue");
        assert_eq!(
            (firefox.waiting, firefox.running, firefox.agents),
            (2, 0, 0)
        );
        let states: Vec<&CellState> = v.cells.iter().map(|(_, s)| s).collect();
        assert!(states.contains(&&CellState::Running {
            agent: "a".into(),
            attempt: 1,
            since: 4_000
        }));
        assert!(states.contains(&&CellState::Queued {
            position: 1,
            since: 1_000
        }));
        assert!(states.contains(&&CellState::Queued {
            position: 2,
            since: 1_000
        }));
        assert!(sch.sweep_view("nope").is_none());
    }
}
