//! The scheduler: a synchronous state machine, `handle(event, now) -> actions`, that matches
//! cells to agents, leases them, retries infrastructure failures, and decides when a cell and a
//! sweep are done. No I/O and no clock of its own: time is passed in, so tests drive it.

use quantgrid_matrix::agent::Capabilities;
use quantgrid_matrix::spec::{Requirements, RunParams};
use quantgrid_matrix::{Browser, Cell, CellId, CellResult, Platform, Status};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

mod reports;
mod restore;
#[cfg(test)]
mod tests;
mod timers;
mod view;

pub use view::{CellState, QueueView, SweepView};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A slow agent leaves an end-game cell to a faster one only when that saves at least this.
const END_GAME_MIN_GAIN_MS: f64 = 50.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// How long a lease lives without a heartbeat naming it.
    pub lease_ttl_ms: u64,
    /// How long an agent's stream may be gone before its leases are reclaimed.
    pub disconnect_grace_ms: u64,
    /// Past the cell timeout, how long to wait for the agent's own timeout report.
    pub timeout_margin_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease_ttl_ms: 30_000,
            disconnect_grace_ms: 10_000,
            timeout_margin_ms: 30_000,
        }
    }
}

/// A sweep handed to the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepInput {
    pub id: String,
    pub priority: i32,
    pub cells: Vec<Cell>,
    pub requirements: Requirements,
    pub run: RunParams,
    pub agent_wait_ms: u64,
    /// A load test: only simulated agents take its cells (and they take no other).
    pub simulated: bool,
    /// The only agent its cells go to (a confirmation of an undecided time verdict repeats
    /// cells on the agent that measured them).
    pub agent: Option<String>,
}

/// A sweep rebuilt from the store after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredSweep {
    pub input: SweepInput,
    /// Cells with an accepted result.
    pub done: HashSet<CellId>,
    /// Of those, the ones that passed.
    pub passed: HashSet<CellId>,
    /// And the ones the browser answered `unsupported`.
    pub unsupported: HashSet<CellId>,
    /// And the ones whose result is simulated.
    pub simulated: HashSet<CellId>,
    /// Highest attempt number used per cell, so new lease ids never repeat old ones.
    pub attempts: HashMap<CellId, u32>,
    /// Leases that were out when the coordinator stopped.
    pub outstanding: Vec<RestoredLease>,
    /// Leases that already have a stored result: a resent result is a duplicate.
    pub reported: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredLease {
    pub lease_id: String,
    pub cell_id: CellId,
    pub agent: String,
    pub attempt_no: u32,
    pub started_at: Millis,
}

// one event is handled at a time, so its size does not matter; boxing would only add noise
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An agent registered or its session (re)opened.
    AgentUp {
        agent: String,
        caps: Capabilities,
    },
    /// An agent's session stream ended.
    AgentDown {
        agent: String,
    },
    Heartbeat {
        agent: String,
        leases: Vec<String>,
    },
    Report {
        agent: String,
        lease: String,
        result: CellResult,
    },
    Submit(SweepInput),
    Cancel {
        sweep: String,
    },
    Drain {
        agent: String,
        draining: bool,
    },
    /// The agent is shutting down; its next session clears this.
    Leaving {
        agent: String,
    },
    Tick,
}

/// Why an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Reported(Status),
    LeaseExpired,
    AgentLost,
    /// The agent never reported, past the cell timeout and margin.
    TimedOut,
    Cancelled,
}

impl EndReason {
    pub fn as_str(self) -> String {
        match self {
            EndReason::Reported(s) => format!("reported {s}"),
            EndReason::LeaseExpired => "lease expired".into(),
            EndReason::AgentLost => "agent lost".into(),
            EndReason::TimedOut => "no report before the timeout".into(),
            EndReason::Cancelled => "sweep cancelled".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub lease_id: String,
    pub sweep: String,
    pub cell: Cell,
    pub run: RunParams,
    pub attempt_no: u32,
    pub expires_at: Millis,
    /// How long the cell waited in its queue for this offer (the dispatch latency).
    pub waited_ms: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepEnd {
    Finished,
    Cancelled,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the lease to the agent; persist it as outstanding.
    Offer {
        agent: String,
        offer: Offer,
    },
    /// Tell the agent to stop working on a lease.
    Revoke {
        agent: String,
        lease_id: String,
    },
    /// Persist the attempt and forget the outstanding lease.
    AttemptEnded {
        lease_id: String,
        sweep: String,
        cell_id: CellId,
        agent: String,
        attempt_no: u32,
        started_at: Millis,
        ended_at: Millis,
        reason: EndReason,
    },
    /// Persist a result. Only an accepted one counts in the matrix.
    StoreResult {
        lease_id: String,
        sweep: String,
        result: CellResult,
        accepted: bool,
    },
    Progress {
        sweep: String,
        progress: Progress,
    },
    SweepDone {
        sweep: String,
        end: SweepEnd,
    },
    /// A report that did not check out: stored as an `error` with `why` and retried.
    Rejected {
        agent: String,
        lease_id: String,
        why: String,
    },
    /// A report that was not stored, and why (duplicate, unknown lease).
    Ignored {
        agent: String,
        lease_id: String,
        why: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub total: u32,
    pub done: u32,
    pub passed: u32,
    /// Done cells the browser answered `unsupported`: an answer, not a failure.
    pub unsupported: u32,
    /// Done cells whose result is simulated: never counted as passed.
    pub simulated: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub agent: String,
    pub connected: bool,
    pub draining: bool,
    pub busy: u32,
    pub slots: u32,
    /// What the agent registered.
    pub caps: Capabilities,
    /// When the coordinator last heard from it (session, heartbeat or report).
    pub last_heard: Millis,
}

struct Agent {
    caps: Capabilities,
    connected: bool,
    disconnected_at: Option<Millis>,
    draining: bool,
    leaving: bool,
    leases: HashSet<String>,
    /// Moving average of how long this agent's cells take, from its own reports.
    cell_ms: Option<f64>,
    last_heard: Millis,
}

impl Agent {
    fn free(&self) -> u32 {
        self.caps.slots.saturating_sub(self.leases.len() as u32)
    }
    fn accepting(&self) -> bool {
        self.connected && !self.draining && !self.leaving && self.free() > 0
    }
}

struct Slot {
    cell: Cell,
    attempts: u32,
    done: bool,
    /// When it joined its queue (last): submitted, restored or requeued for another attempt.
    queued_at: Millis,
    /// Agents whose report for this cell was invalid: the retry goes to another agent when
    /// one can take it.
    avoid: Vec<String>,
}

type Queue = (Browser, Platform);

struct Sweep {
    input_priority: i32,
    seq: u64,
    requirements: Requirements,
    run: RunParams,
    agent_wait_ms: u64,
    waiting_since: Millis,
    simulated: bool,
    agent: Option<String>,
    slots: Vec<Slot>,
    index: HashMap<CellId, usize>,
    pending: BTreeMap<Queue, VecDeque<usize>>,
    outstanding: u32,
    done: u32,
    passed: u32,
    unsupported: u32,
    simulated_done: u32,
    /// Leases of this sweep that ended without a stored result, with the agent that held each:
    /// a late report is kept, from that agent only.
    ended: HashMap<String, String>,
    reported: HashSet<String>,
}

impl Sweep {
    fn progress(&self) -> Progress {
        Progress {
            total: self.slots.len() as u32,
            done: self.done,
            passed: self.passed,
            unsupported: self.unsupported,
            simulated: self.simulated_done,
        }
    }
    fn max_attempts(&self) -> u32 {
        1 + self.run.retries
    }
}

struct Lease {
    sweep: String,
    slot: usize,
    agent: String,
    attempt_no: u32,
    started_at: Millis,
    expires_at: Millis,
    deadline: Millis,
}

/// Statuses that say the infrastructure failed, not the browser: worth another attempt.
fn retryable(status: Status) -> bool {
    matches!(status, Status::Error | Status::Crash)
}

pub struct Scheduler {
    config: SchedulerConfig,
    agents: BTreeMap<String, Agent>,
    sweeps: BTreeMap<String, Sweep>,
    leases: HashMap<String, Lease>,
    /// Restored leases whose agent has not come back yet.
    orphans: HashMap<String, Vec<String>>,
    /// Connected agents with the browser of each queue, and those that also reported its
    /// platform; kept incrementally so matching never scans every agent.
    capable: HashMap<Queue, u32>,
    reporting: HashMap<Queue, u32>,
    next_seq: u64,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("agents", &self.agents.len())
            .field("sweeps", &self.sweeps.len())
            .field("leases", &self.leases.len())
            .finish()
    }
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config,
            agents: BTreeMap::new(),
            sweeps: BTreeMap::new(),
            leases: HashMap::new(),
            orphans: HashMap::new(),
            capable: HashMap::new(),
            reporting: HashMap::new(),
            next_seq: 0,
        }
    }

    pub fn agents(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(name, a)| AgentView {
                agent: name.clone(),
                connected: a.connected,
                draining: a.draining,
                busy: a.leases.len() as u32,
                slots: a.caps.slots,
                caps: a.caps.clone(),
                last_heard: a.last_heard,
            })
            .collect()
    }

    /// Agents connected, draining and busy (the metrics' gauges), without copying any.
    pub fn agent_counts(&self) -> (i64, i64, i64) {
        let count =
            |f: &dyn Fn(&Agent) -> bool| self.agents.values().filter(|a| f(a)).count() as i64;
        (
            count(&|a| a.connected),
            count(&|a| a.draining),
            count(&|a| !a.leases.is_empty()),
        )
    }

    pub fn progress(&self, sweep: &str) -> Option<Progress> {
        self.sweeps.get(sweep).map(Sweep::progress)
    }

    pub fn has_agent(&self, agent: &str) -> bool {
        self.agents.contains_key(agent)
    }

    pub fn handle(&mut self, event: Event, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::AgentUp { agent, caps } => {
                // forget what a previous session counted, then count this one
                if let Some(old) = self
                    .agents
                    .get(&agent)
                    .filter(|a| a.connected)
                    .map(|a| a.caps.clone())
                {
                    self.count(&old, -1);
                }
                self.count(&caps, 1);
                let a = self.agents.entry(agent.clone()).or_insert_with(|| Agent {
                    caps: caps.clone(),
                    connected: true,
                    disconnected_at: None,
                    draining: false,
                    leaving: false,
                    leases: HashSet::new(),
                    cell_ms: None,
                    last_heard: now,
                });
                a.caps = caps;
                a.last_heard = now;
                a.connected = true;
                a.leaving = false;
                a.disconnected_at = None;
                // leases restored from the store belong to this agent again
                for id in self.orphans.remove(&agent).unwrap_or_default() {
                    if self.leases.contains_key(&id) {
                        a.leases.insert(id);
                    }
                }
                self.fill(&agent, now, &mut out);
            }
            Event::AgentDown { agent } => {
                if let Some(a) = self.agents.get_mut(&agent).filter(|a| a.connected) {
                    a.connected = false;
                    a.disconnected_at = Some(now);
                    let caps = a.caps.clone();
                    self.count(&caps, -1);
                    // cells an end game held back for this agent may now suit another
                    self.fill_all(now, &mut out);
                }
            }
            Event::Heartbeat { agent, leases } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.last_heard = now;
                }
                let ttl = self.config.lease_ttl_ms;
                for id in leases {
                    if let Some(l) = self.leases.get_mut(&id)
                        && l.agent == agent
                    {
                        l.expires_at = now + ttl;
                    }
                }
            }
            Event::Report {
                agent,
                lease,
                result,
            } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.last_heard = now;
                }
                self.report(agent, lease, result, now, &mut out)
            }
            Event::Submit(input) => {
                let id = input.id.clone();
                if !self.sweeps.contains_key(&id) {
                    self.add_sweep(input, now);
                    if let Some(s) = self.sweeps.get(&id) {
                        out.push(Action::Progress {
                            sweep: id.clone(),
                            progress: s.progress(),
                        });
                    }
                    self.fill_all(now, &mut out);
                }
            }
            Event::Cancel { sweep } => self.cancel(&sweep, now, &mut out),
            Event::Drain { agent, draining } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.draining = draining;
                }
                if !draining {
                    self.fill(&agent, now, &mut out);
                }
            }
            Event::Leaving { agent } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.leaving = true;
                }
            }
            Event::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn add_sweep(&mut self, input: SweepInput, now: Millis) {
        let mut pending: BTreeMap<Queue, VecDeque<usize>> = BTreeMap::new();
        let mut index = HashMap::new();
        let mut slots = Vec::with_capacity(input.cells.len());
        for (i, cell) in input.cells.into_iter().enumerate() {
            pending
                .entry((cell.browser, cell.platform))
                .or_default()
                .push_back(i);
            index.insert(cell.id.clone(), i);
            slots.push(Slot {
                cell,
                attempts: 0,
                done: false,
                queued_at: now,
                avoid: Vec::new(),
            });
        }
        self.next_seq += 1;
        self.sweeps.insert(
            input.id,
            Sweep {
                input_priority: input.priority,
                seq: self.next_seq,
                requirements: input.requirements,
                run: input.run,
                agent_wait_ms: input.agent_wait_ms,
                // a restarted coordinator gives agents the whole window to come back
                waiting_since: now,
                simulated: input.simulated,
                agent: input.agent,
                slots,
                index,
                pending,
                outstanding: 0,
                done: 0,
                passed: 0,
                unsupported: 0,
                simulated_done: 0,
                ended: HashMap::new(),
                reported: HashSet::new(),
            },
        );
    }

    /// Whether `agent` should get cells of queue `(b, p)`: it has the browser, and either it
    /// reported the platform or no connected agent did (then the browser answers for itself).
    fn eligible(&self, agent: &Agent, b: Browser, p: Platform) -> bool {
        agent.caps.has_platform(b, p)
            || (agent.caps.has_browser(b) && self.reporting.get(&(b, p)).copied().unwrap_or(0) == 0)
    }

    /// Keeps the per-queue agent counts in step as an agent connects (`+1`) or goes (`-1`).
    fn count(&mut self, caps: &Capabilities, delta: i64) {
        for b in Browser::ALL {
            if !caps.has_browser(b) {
                continue;
            }
            for p in Platform::ALL {
                let bump = |m: &mut HashMap<Queue, u32>| {
                    let v = m.entry((b, p)).or_default();
                    *v = (i64::from(*v) + delta).max(0) as u32;
                };
                bump(&mut self.capable);
                if caps.has_platform(b, p) {
                    bump(&mut self.reporting);
                }
            }
        }
    }

    /// The next cell for `agent`: highest priority first; among equals, the sweep with the
    /// fewest cells out (so a big sweep cannot starve a small one), then the oldest.
    fn pick(&self, name: &str) -> Option<(String, Queue)> {
        let agent = self.agents.get(name)?;
        let mut best: Option<((i32, u32, u64), String, Queue)> = None;
        for (id, s) in &self.sweeps {
            if let Some(((prio, _, _), _, _)) = &best
                && s.input_priority < *prio
            {
                continue;
            }
            // load tests go to simulated agents only, and simulated agents take nothing else
            if s.simulated != agent.caps.simulated {
                continue;
            }
            if s.agent.as_deref().is_some_and(|pinned| pinned != name) {
                continue;
            }
            // the scarcest kind of cell first: what few agents can run should not wait for
            // the agents that can run anything to finish the common cells
            let queue = s
                .pending
                .iter()
                .filter(|(q, cells)| {
                    agent.caps.meets(&s.requirements, q.0)
                        && self.eligible(agent, q.0, q.1)
                        && cells.iter().any(|i| self.may_take(s, *i, name, **q))
                })
                .min_by_key(|(q, _)| self.capable.get(q).copied().unwrap_or(0))
                .map(|(q, _)| *q);
            let Some(q) = queue else { continue };
            let key = (s.input_priority, s.outstanding, s.seq);
            let better = match &best {
                None => true,
                Some((k, _, _)) => key.0 > k.0 || (key.0 == k.0 && (key.1, key.2) < (k.1, k.2)),
            };
            if better {
                best = Some((key, id.clone(), q));
            }
        }
        best.map(|(_, id, q)| (id, q))
    }

    /// Whether `agent` may take slot `i`: not when its report for the cell was invalid and
    /// another connected agent could run the cell instead.
    fn may_take(&self, s: &Sweep, i: usize, agent: &str, q: Queue) -> bool {
        let avoid = &s.slots[i].avoid;
        if !avoid.iter().any(|a| a == agent) {
            return true;
        }
        let others = self
            .agents
            .iter()
            .filter(|(n, a)| {
                a.connected
                    && !avoid.contains(n)
                    && a.caps.simulated == s.simulated
                    && a.caps.has_browser(q.0)
            })
            .count();
        others == 0
    }

    fn fill(&mut self, agent: &str, now: Millis, out: &mut Vec<Action>) {
        while self.agents.get(agent).is_some_and(Agent::accepting) {
            let Some((sweep_id, q)) = self.pick(agent) else {
                return;
            };
            if self.leave_for_faster(agent, &sweep_id, q) {
                return;
            }
            let ttl = self.config.lease_ttl_ms;
            let margin = self.config.timeout_margin_ms;
            let at = {
                let sweep = &self.sweeps[&sweep_id];
                sweep.pending[&q]
                    .iter()
                    .position(|i| self.may_take(sweep, *i, agent, q))
                    .expect("picked")
            };
            let sweep = self.sweeps.get_mut(&sweep_id).expect("picked");
            let slot_i = sweep
                .pending
                .get_mut(&q)
                .and_then(|cells| cells.remove(at))
                .expect("picked");
            let slot = &mut sweep.slots[slot_i];
            slot.attempts += 1;
            let waited_ms = now.saturating_sub(slot.queued_at);
            let lease_id = format!("{sweep_id}.{}.{}", slot.cell.id, slot.attempts);
            let offer = Offer {
                lease_id: lease_id.clone(),
                sweep: sweep_id.clone(),
                cell: slot.cell.clone(),
                run: sweep.run,
                attempt_no: slot.attempts,
                expires_at: now + ttl,
                waited_ms,
            };
            sweep.outstanding += 1;
            self.leases.insert(
                lease_id.clone(),
                Lease {
                    sweep: sweep_id,
                    slot: slot_i,
                    agent: agent.to_string(),
                    attempt_no: offer.attempt_no,
                    started_at: now,
                    expires_at: now + ttl,
                    deadline: now + u64::from(sweep.run.timeout_secs) * 1000 + margin,
                },
            );
            self.agents
                .get_mut(agent)
                .expect("accepting")
                .leases
                .insert(lease_id);
            out.push(Action::Offer {
                agent: agent.to_string(),
                offer,
            });
        }
    }

    /// The end game of a sweep: once its remaining cells fit in one wave, a slow agent leaves
    /// them to an agent at least twice as fast, which finishes sooner even after waiting for
    /// its current cell. This is what keeps a heterogeneous lab's makespan near the bound.
    fn leave_for_faster(&self, agent: &str, sweep_id: &str, q: Queue) -> bool {
        let Some(mine) = self.agents.get(agent).and_then(|a| a.cell_ms) else {
            return false;
        };
        let Some(sweep) = self.sweeps.get(sweep_id) else {
            return false;
        };
        let remaining: usize = sweep.pending.values().map(VecDeque::len).sum();
        let capable = self.capable.get(&q).copied().unwrap_or(0) as usize;
        if remaining > capable {
            return false;
        }
        let fastest = self
            .agents
            .iter()
            .filter(|(n, a)| {
                n.as_str() != agent
                    && a.connected
                    && !a.draining
                    && !a.leaving
                    && a.caps.has_browser(q.0)
            })
            .filter_map(|(_, a)| a.cell_ms)
            .fold(f64::INFINITY, f64::min);
        // waiting only pays when it saves more than dispatch overhead and timer noise
        mine > 2.0 * fastest + END_GAME_MIN_GAIN_MS
    }

    fn fill_all(&mut self, now: Millis, out: &mut Vec<Action>) {
        let names: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.accepting())
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            self.fill(&n, now, out);
        }
    }

    /// Ends a lease: frees the agent slot and records the attempt.
    fn end_lease(
        &mut self,
        id: &str,
        reason: EndReason,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Option<Lease> {
        let lease = self.leases.remove(id)?;
        if let Some(a) = self.agents.get_mut(&lease.agent) {
            a.leases.remove(id);
        }
        let sweep = self.sweeps.get_mut(&lease.sweep)?;
        sweep.outstanding = sweep.outstanding.saturating_sub(1);
        out.push(Action::AttemptEnded {
            lease_id: id.to_string(),
            sweep: lease.sweep.clone(),
            cell_id: sweep.slots[lease.slot].cell.id.clone(),
            agent: lease.agent.clone(),
            attempt_no: lease.attempt_no,
            started_at: lease.started_at,
            ended_at: now,
            reason,
        });
        Some(lease)
    }

    /// After an attempt without an accepted result: try again, or give up with `give_up`.
    fn retry_or_finish(
        &mut self,
        lease_id: &str,
        lease: &Lease,
        give_up: CellResult,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(sweep) = self.sweeps.get_mut(&lease.sweep) else {
            return;
        };
        let max_attempts = sweep.max_attempts();
        let slot = &mut sweep.slots[lease.slot];
        if slot.done {
            return;
        }
        if slot.attempts < max_attempts {
            slot.queued_at = now;
            let q = (slot.cell.browser, slot.cell.platform);
            // retries go first: a sweep should finish what it started
            sweep.pending.entry(q).or_default().push_front(lease.slot);
        } else {
            sweep.reported.insert(lease_id.to_string());
            out.push(Action::StoreResult {
                lease_id: lease_id.to_string(),
                sweep: lease.sweep.clone(),
                result: give_up.clone(),
                accepted: true,
            });
            self.cell_done(&lease.sweep, lease.slot, give_up.status, false, out);
        }
    }

    fn cell_done(
        &mut self,
        sweep_id: &str,
        slot: usize,
        status: Status,
        simulated: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(sweep) = self.sweeps.get_mut(sweep_id) else {
            return;
        };
        if sweep.slots[slot].done {
            return;
        }
        sweep.slots[slot].done = true;
        sweep.done += 1;
        // a simulated result is never a pass, whatever it says
        sweep.passed += u32::from(status == Status::Pass && !simulated);
        sweep.unsupported += u32::from(status == Status::Unsupported && !simulated);
        sweep.simulated_done += u32::from(simulated);
        out.push(Action::Progress {
            sweep: sweep_id.to_string(),
            progress: sweep.progress(),
        });
        self.maybe_finished(sweep_id, out);
    }

    fn maybe_finished(&mut self, sweep_id: &str, out: &mut Vec<Action>) {
        let Some(s) = self.sweeps.get(sweep_id) else {
            return;
        };
        if s.done as usize == s.slots.len() && s.outstanding == 0 {
            self.sweeps.remove(sweep_id);
            out.push(Action::SweepDone {
                sweep: sweep_id.to_string(),
                end: SweepEnd::Finished,
            });
        }
    }

    fn synthetic(cell: &Cell, status: Status, text: String) -> CellResult {
        CellResult {
            cell_id: cell.id.clone(),
            status,
            error_text: Some(text),
            effective_bits: cell.precision.effective,
            measurement: None,
            environment: None,
            simulated: false,
        }
    }

    fn cancel(&mut self, sweep_id: &str, now: Millis, out: &mut Vec<Action>) {
        if !self.sweeps.contains_key(sweep_id) {
            return;
        }
        let ids: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.sweep == sweep_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut freed = Vec::new();
        for id in ids {
            if let Some(l) = self.end_lease(&id, EndReason::Cancelled, now, out) {
                out.push(Action::Revoke {
                    agent: l.agent.clone(),
                    lease_id: id,
                });
                freed.push(l.agent);
            }
        }
        self.sweeps.remove(sweep_id);
        out.push(Action::SweepDone {
            sweep: sweep_id.to_string(),
            end: SweepEnd::Cancelled,
        });
        for a in freed {
            self.fill(&a, now, out);
        }
    }
}
