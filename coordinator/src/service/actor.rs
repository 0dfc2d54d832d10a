//! The coordinator component: one async loop that owns the scheduler, the agent sessions and
//! the sweep watchers. gRPC handlers talk to it only through [`Command`]s; it talks to the
//! store only through the writer queue.

use super::error::ServiceError;
use super::metrics::Metrics;
use crate::scheduler::{
    Action, Event, Millis, Progress, RestoredLease, RestoredSweep, Scheduler, SchedulerConfig,
    SweepEnd, SweepInput,
};
use crate::store::{
    AgentRecord, AttemptRecord, LeaseRecord, Record, ResultRecord, StoreWriter, StoredSweep,
    Unstored,
};
use crate::sweep::{new_sweep_id, sweep_record};
use quantgrid_matrix::agent::Capabilities;
use quantgrid_matrix::spec::{self, MatrixSpec};
use quantgrid_matrix::{Cell, CellResult};
use quantgrid_proto::pb;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;

mod confirm;
mod scheduled;

pub type SessionTx = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Everything the gRPC layer can ask of the coordinator.
pub enum Command {
    Register {
        agent: String,
        caps: Capabilities,
        version: String,
    },
    SessionOpen {
        agent: String,
        session: u64,
        tx: SessionTx,
    },
    SessionClosed {
        agent: String,
        session: u64,
    },
    /// The agent's token was revoked or rotated: its live session ends with `why`
    /// (UNAUTHENTICATED); replies how many were closed.
    CloseSessions {
        agent: String,
        why: String,
        reply: oneshot::Sender<u32>,
    },
    /// Set the metrics' gauges (agents, cells of running sweeps) from the current state.
    Gauges {
        reply: oneshot::Sender<()>,
    },
    /// Heartbeats, leavings and reports name the session they came on: only the agent's live
    /// session speaks for it (a replaced or revoked one is ignored, and its unacknowledged
    /// reports come again on the new session).
    Heartbeat {
        agent: String,
        session: u64,
        leases: Vec<String>,
    },
    Leaving {
        agent: String,
        session: u64,
    },
    Report {
        agent: String,
        session: u64,
        lease: String,
        result: CellResult,
        /// The agent's signature, verified against its pinned key (None: unsigned agent).
        signed: Option<Box<crate::store::Signed>>,
    },
    Submit {
        spec: MatrixSpec,
        only_cells: Vec<String>,
        yaml: String,
        file: String,
        client_request_id: Option<String>,
        simulated: bool,
        reply: oneshot::Sender<Result<(String, u32), ServiceError>>,
    },
    Watch {
        sweep: String,
        reply: oneshot::Sender<Result<watch::Receiver<pb::SweepProgress>, ServiceError>>,
    },
    Cancel {
        sweep: String,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
    Drain {
        agent: String,
        draining: bool,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
    Agents {
        reply: oneshot::Sender<Vec<pb::AgentInfo>>,
    },
    /// A running sweep's queues and each cell's state (None once it has ended).
    SweepView {
        sweep: String,
        reply: oneshot::Sender<Option<crate::scheduler::SweepView>>,
    },
    ScheduleAdd {
        record: crate::store::ScheduleRecord,
        reply: oneshot::Sender<Result<pb::ScheduleInfo, ServiceError>>,
    },
    ScheduleList {
        reply: oneshot::Sender<Vec<pb::ScheduleInfo>>,
    },
    SchedulePause {
        name: String,
        paused: bool,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
    ScheduleRemove {
        name: String,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
    ScheduleRunNow {
        name: String,
        reply: oneshot::Sender<Result<String, ServiceError>>,
    },
    /// What an ended run left undecided, read off the loop.
    Confirm {
        found: Result<Option<crate::report::Confirmation>, String>,
    },
    /// A queued write ended: `leases` names the lease of every lease-bearing record it held
    /// (one entry per record), `unstored` what could not be stored.
    Written {
        leases: Vec<String>,
        unstored: Option<Unstored>,
        retry: bool,
    },
}

/// Commands handled before their records are queued as one write.
const MAX_COMMANDS_PER_BATCH: usize = 512;

/// What a batch of commands produced for the store, and who waits for it to be durable.
#[derive(Default)]
struct Outbox {
    records: Vec<Record>,
    acks: Vec<(SessionTx, String)>,
    finals: Vec<(watch::Sender<pb::SweepProgress>, pb::SweepProgress)>,
}

/// The lease a record belongs to, for the records an ack waits for.
fn lease_of(r: &Record) -> Option<&str> {
    match r {
        Record::Result(r) => Some(&r.attempt_id),
        Record::Attempt(a) => Some(&a.attempt_id),
        _ => None,
    }
}

/// Longest wait between retries of records the store refused.
const MAX_RETRY_BACKOFF_MS: Millis = 10_000;

/// What has not reached the store yet, and who waits for it. An ack is sent only once
/// every record of its lease is durable; records the store refused are kept and retried, and
/// while any are kept the coordinator takes no reports (agents keep theirs).
#[derive(Default)]
struct Durability {
    /// Per lease, its records queued or refused and not yet stored.
    not_durable: HashMap<String, u32>,
    /// Acks waiting for their lease's records.
    awaiting: HashMap<String, Vec<SessionTx>>,
    /// Finished sweeps, announced once nothing of theirs is pending.
    finals: Vec<(watch::Sender<pb::SweepProgress>, pb::SweepProgress)>,
    /// Records the store refused, to write again.
    retry: Vec<Record>,
    retry_in_flight: bool,
    retry_at: Millis,
    backoff: Millis,
    /// The store's last error while it is failing.
    failing: Option<String>,
    /// Agents whose reports were refused meanwhile: told to reconnect (and so resend) once
    /// the store takes writes again.
    refused: std::collections::BTreeSet<String>,
}

impl Durability {
    fn pending(&mut self, lease: &str, delta: i64) {
        let n = self.not_durable.entry(lease.to_string()).or_default();
        *n = (i64::from(*n) + delta).max(0) as u32;
        if *n == 0 {
            self.not_durable.remove(lease);
        }
    }

    fn sweep_pending(&self, sweep: &str) -> bool {
        let prefix = format!("{sweep}.");
        self.not_durable.keys().any(|l| l.starts_with(&prefix))
    }
}

pub struct Coordinator {
    outbox: Outbox,
    durability: Durability,
    /// The component's own queue, for write outcomes coming back.
    commands: mpsc::Sender<Command>,
    health: Option<tonic_health::server::HealthReporter>,
    scheduler: Scheduler,
    writer: StoreWriter,
    sessions: HashMap<String, (u64, SessionTx)>,
    /// Verified signatures of reports on their way to the store, by lease.
    signed: HashMap<String, crate::store::Signed>,
    registered: HashMap<String, Capabilities>,
    watchers: HashMap<String, watch::Sender<pb::SweepProgress>>,
    requests: HashMap<String, String>,
    tracker: TaskTracker,
    schedules: crate::schedule::Schedules,
    scheduled: std::collections::BTreeMap<String, scheduled::Scheduled>,
    /// Sweeps that ended since the schedules last heard.
    ended: Vec<String>,
    metrics: Arc<Metrics>,
}

fn progress_msg(sweep: &str, p: Progress, state: &str) -> pb::SweepProgress {
    pb::SweepProgress {
        sweep_id: sweep.to_string(),
        total: p.total,
        done: p.done,
        passed: p.passed,
        unsupported: p.unsupported,
        simulated: p.simulated,
        finished: state != "running",
        state: state.to_string(),
    }
}

/// Rebuilds the scheduler's view of running sweeps from the store.
pub fn restore(
    stored: Vec<StoredSweep>,
    config: SchedulerConfig,
    now: Millis,
) -> (Scheduler, Vec<(String, Progress)>, HashMap<String, String>) {
    let mut restored = Vec::new();
    let mut requests = HashMap::new();
    for s in stored {
        let spec = match spec::parse(&s.spec_yaml, &s.spec_file) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(sweep = %s.sweep_id, error = %e, "stored spec no longer parses; the sweep is not resumed");
                continue;
            }
        };
        if let Some(r) = &s.client_request_id {
            requests.insert(r.clone(), s.sweep_id.clone());
        }
        let mut input = sweep_input(&s.sweep_id, &spec, s.cells, s.simulated);
        input.agent = s.pinned_agent;
        restored.push(RestoredSweep {
            input,
            done: s.done,
            passed: s.passed,
            unsupported: s.unsupported,
            simulated: s.simulated_done,
            attempts: s.attempts,
            outstanding: s
                .outstanding
                .into_iter()
                .map(
                    |(lease_id, cell_id, agent, attempt_no, started_us)| RestoredLease {
                        lease_id,
                        cell_id,
                        agent,
                        attempt_no,
                        started_at: (started_us / 1000).max(0) as Millis,
                    },
                )
                .collect(),
            reported: s.reported,
        });
    }
    let ids: Vec<String> = restored.iter().map(|r| r.input.id.clone()).collect();
    let scheduler = Scheduler::restore(config, restored, now);
    let progress = ids
        .into_iter()
        .filter_map(|id| scheduler.progress(&id).map(|p| (id, p)))
        .collect();
    (scheduler, progress, requests)
}

fn sweep_input(id: &str, spec: &MatrixSpec, cells: Vec<Cell>, simulated: bool) -> SweepInput {
    SweepInput {
        simulated,
        id: id.to_string(),
        priority: spec.priority,
        cells,
        requirements: spec.requirements.clone(),
        run: spec.run,
        agent_wait_ms: u64::from(spec.agent_wait_secs) * 1000,
        agent: None,
    }
}

impl Coordinator {
    pub fn new(
        scheduler: Scheduler,
        writer: StoreWriter,
        progress: Vec<(String, Progress)>,
        requests: HashMap<String, String>,
        tracker: TaskTracker,
        commands: mpsc::Sender<Command>,
        health: Option<tonic_health::server::HealthReporter>,
    ) -> Coordinator {
        let watchers = progress
            .into_iter()
            .map(|(id, p)| {
                let (tx, _) = watch::channel(progress_msg(&id, p, "running"));
                (id, tx)
            })
            .collect();
        Coordinator {
            outbox: Outbox::default(),
            durability: Durability::default(),
            commands,
            health,
            scheduler,
            writer,
            sessions: HashMap::new(),
            signed: HashMap::new(),
            registered: HashMap::new(),
            watchers,
            requests,
            tracker,
            schedules: Default::default(),
            scheduled: Default::default(),
            ended: Vec::new(),
            metrics: Metrics::new(),
        }
    }

    /// A progress watcher for a new sweep of `total` cells.
    fn watch(&mut self, id: &str, total: u32) {
        let (tx, _) = watch::channel(progress_msg(
            id,
            Progress {
                total,
                done: 0,
                passed: 0,
                unsupported: 0,
                simulated: 0,
            },
            "running",
        ));
        self.watchers.insert(id.to_string(), tx);
    }

    /// The component's loop: commands and ticks in, scheduler actions out.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        tick: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let cmd = tokio::select! {
                _ = shutdown.cancelled() => break,
                c = rx.recv() => match c {
                    Some(c) => Some(c),
                    None => break,
                },
                _ = ticker.tick() => None,
            };
            match cmd {
                Some(c) => {
                    self.command(c, now_ms()).await;
                    // handle whatever else is already queued, then write it all as one batch
                    for _ in 0..MAX_COMMANDS_PER_BATCH {
                        match rx.try_recv() {
                            Ok(c) => self.command(c, now_ms()).await,
                            Err(_) => break,
                        }
                    }
                }
                None => {
                    let now = now_ms();
                    let actions = self.scheduler.handle(Event::Tick, now);
                    self.execute(actions, Vec::new(), now);
                    self.step_schedules(now);
                    self.retry_refused(now).await;
                }
            }
            self.flush().await;
        }
        let kept = self.durability.retry.len();
        if kept > 0 {
            tracing::error!(
                records = kept,
                "stopping with records the store refused: unacknowledged reports stay with their agents, which resend them to the next coordinator"
            );
        }
        // dropping the sessions ends every agent stream, so the server can stop
        self.sessions.clear();
    }

    /// Writes the refused records again once their backoff has passed.
    async fn retry_refused(&mut self, now: Millis) {
        let d = &mut self.durability;
        if d.retry.is_empty() || d.retry_in_flight || now < d.retry_at {
            return;
        }
        let records = std::mem::take(&mut d.retry);
        d.retry_in_flight = true;
        tracing::info!(records = records.len(), "writing refused records again");
        self.queue_write(records, true).await;
    }

    /// Queues `records`; their outcome comes back as [`Command::Written`].
    async fn queue_write(&mut self, records: Vec<Record>, retry: bool) {
        let leases: Vec<String> = records
            .iter()
            .filter_map(lease_of)
            .map(str::to_string)
            .collect();
        if !retry {
            for l in &leases {
                self.durability.pending(l, 1);
            }
        }
        let committed = self.writer.queue(records).await;
        let back = self.commands.clone();
        self.tracker.spawn(async move {
            let unstored = match committed {
                Ok(c) => c.outcome().await.err(),
                // the writer is gone: the coordinator is stopping, and nothing is acked
                Err(e) => Some(Unstored {
                    records: Vec::new(),
                    error: e.to_string(),
                }),
            };
            let _ = back
                .send(Command::Written {
                    leases,
                    unstored,
                    retry,
                })
                .await;
        });
    }

    /// A write ended: what was stored is durable, what was refused is kept for a retry.
    fn written(
        &mut self,
        leases: Vec<String>,
        unstored: Option<Unstored>,
        retry: bool,
        now: Millis,
    ) {
        let d = &mut self.durability;
        for l in &leases {
            d.pending(l, -1);
        }
        if retry {
            d.retry_in_flight = false;
        }
        match unstored {
            Some(u) => {
                for r in &u.records {
                    if let Some(l) = lease_of(r) {
                        d.pending(l, 1);
                    }
                }
                if d.failing.is_none() {
                    tracing::error!(error = %u.error, "the results store is failing: reports are refused until it takes writes again; agents keep theirs");
                    if let Some(h) = &self.health {
                        let h = h.clone();
                        self.tracker.spawn(async move {
                            h.set_service_status("", tonic_health::ServingStatus::NotServing)
                                .await;
                        });
                    }
                }
                d.failing = Some(u.error);
                d.retry.extend(u.records);
                d.backoff = (d.backoff * 2).clamp(250, MAX_RETRY_BACKOFF_MS);
                d.retry_at = now + d.backoff;
            }
            None if d.failing.is_some() && d.retry.is_empty() && !d.retry_in_flight => {
                tracing::info!(
                    "the results store takes writes again: agents resend what was refused"
                );
                d.failing = None;
                d.backoff = 0;
                if let Some(h) = &self.health {
                    let h = h.clone();
                    self.tracker.spawn(async move {
                        h.set_service_status("", tonic_health::ServingStatus::Serving)
                            .await;
                    });
                }
                let refused = std::mem::take(&mut d.refused);
                // acks first: what is durable is acknowledged before the session ends
                self.release();
                for agent in refused {
                    if let Some((_, tx)) = self.sessions.get(&agent) {
                        // ends the session: the agent reconnects and resends its outbox
                        let _ = tx.try_send(Err(Status::unavailable(
                            "the results store takes writes again: reconnect and resend unacknowledged reports",
                        )));
                    }
                }
            }
            None => {}
        }
        self.release();
    }

    /// Sends the acks and final states whose records are all durable.
    fn release(&mut self) {
        let d = &mut self.durability;
        let ready: Vec<String> = d
            .awaiting
            .keys()
            .filter(|l| !d.not_durable.contains_key(*l))
            .cloned()
            .collect();
        for lease_id in ready {
            for tx in d.awaiting.remove(&lease_id).unwrap_or_default() {
                let msg = pb::CoordinatorMessage {
                    kind: Some(pb::coordinator_message::Kind::Ack(pb::ReportAck {
                        lease_id: lease_id.clone(),
                    })),
                };
                // a full or closed stream: the agent resends after reconnecting
                let _ = tx.try_send(Ok(msg));
            }
        }
        let finals = std::mem::take(&mut d.finals);
        for (tx, last) in finals {
            if d.failing.is_none() && !d.sweep_pending(&last.sweep_id) {
                // watchers see the final state only once everything of the sweep is durable
                tx.send_replace(last);
            } else {
                d.finals.push((tx, last));
            }
        }
    }

    async fn command(&mut self, cmd: Command, now: Millis) {
        match cmd {
            Command::Register {
                agent,
                caps,
                version,
            } => {
                let record = Record::Agent(AgentRecord {
                    agent_id: agent.clone(),
                    name: agent.clone(),
                    version,
                    os: caps.os.map(|o| o.as_str().to_string()).unwrap_or_default(),
                    arch: caps.arch.clone(),
                    labels: caps.labels.clone(),
                    registered_at_us: (now * 1000) as i64,
                });
                self.outbox.records.push(record);
                // a live session picks up new capabilities at once
                if self.sessions.contains_key(&agent) {
                    let actions = self.scheduler.handle(
                        Event::AgentUp {
                            agent: agent.clone(),
                            caps: caps.clone(),
                        },
                        now,
                    );
                    self.registered.insert(agent, caps);
                    self.execute(actions, Vec::new(), now);
                } else {
                    self.registered.insert(agent, caps);
                }
            }
            Command::SessionOpen { agent, session, tx } => {
                let Some(caps) = self.registered.get(&agent).cloned() else {
                    let _ = tx.try_send(Err(Status::failed_precondition(
                        "call Register before opening a session",
                    )));
                    return;
                };
                // one live session per agent: the newer one wins, and the older is told why
                if let Some((_, old)) = self.sessions.get(&agent) {
                    tracing::warn!(agent, "a newer session replaced the agent's open one");
                    let _ = old.try_send(Err(ServiceError::Aborted(format!(
                        "a newer session of agent {agent} replaced this one (is the agent running twice with one token?)"
                    ))
                    .into()));
                }
                self.sessions.insert(agent.clone(), (session, tx));
                let actions = self.scheduler.handle(Event::AgentUp { agent, caps }, now);
                self.execute(actions, Vec::new(), now);
            }
            Command::SessionClosed { agent, session } => {
                if self
                    .sessions
                    .get(&agent)
                    .is_some_and(|(s, _)| *s == session)
                {
                    self.sessions.remove(&agent);
                    let actions = self.scheduler.handle(Event::AgentDown { agent }, now);
                    self.execute(actions, Vec::new(), now);
                }
            }
            Command::SweepView { sweep, reply } => {
                let _ = reply.send(self.scheduler.sweep_view(&sweep));
            }
            Command::Gauges { reply } => {
                self.set_gauges();
                let _ = reply.send(());
            }
            Command::CloseSessions { agent, why, reply } => {
                let mut closed = 0;
                if let Some((_, tx)) = self.sessions.remove(&agent) {
                    let _ = tx.try_send(Err(ServiceError::Unauthenticated(why).into()));
                    self.registered.remove(&agent);
                    let actions = self.scheduler.handle(Event::AgentDown { agent }, now);
                    self.execute(actions, Vec::new(), now);
                    closed = 1;
                }
                let _ = reply.send(closed);
            }
            Command::Heartbeat { agent, session, .. }
            | Command::Leaving { agent, session }
            | Command::Report { agent, session, .. }
                if !self.is_live(&agent, session) =>
            {
                tracing::info!(
                    agent,
                    session,
                    "a message on a session that is no longer live"
                );
            }
            Command::Heartbeat { agent, leases, .. } => {
                let actions = self
                    .scheduler
                    .handle(Event::Heartbeat { agent, leases }, now);
                self.execute(actions, Vec::new(), now);
            }
            Command::Leaving { agent, .. } => {
                let actions = self.scheduler.handle(Event::Leaving { agent }, now);
                self.execute(actions, Vec::new(), now);
            }
            Command::Written {
                leases,
                unstored,
                retry,
            } => self.written(leases, unstored, retry, now),
            Command::Report {
                agent,
                lease,
                result,
                signed,
                ..
            } => {
                if let Some(signed) = signed {
                    self.signed.insert(lease.clone(), *signed);
                }
                if let Some(error) = &self.durability.failing {
                    // not stored, not acked: the agent keeps it and resends it when told
                    tracing::warn!(agent, lease, error = %error, "report refused while the results store is failing");
                    self.durability.refused.insert(agent);
                    return;
                }
                let ack = self
                    .sessions
                    .get(&agent)
                    .map(|(_, tx)| (tx.clone(), lease.clone()));
                let actions = self.scheduler.handle(
                    Event::Report {
                        agent,
                        lease,
                        result,
                    },
                    now,
                );
                self.execute(actions, ack.into_iter().collect(), now);
            }
            Command::Submit {
                spec,
                only_cells,
                yaml,
                file,
                client_request_id,
                simulated,
                reply,
            } => {
                if let Some(existing) = client_request_id
                    .as_ref()
                    .and_then(|r| self.requests.get(r))
                {
                    let total = self.scheduler.progress(existing).map_or(0, |p| p.total);
                    let _ = reply.send(Ok((existing.clone(), total)));
                    return;
                }
                let id = new_sweep_id(&yaml);
                let mut cells = spec.expand();
                if !only_cells.is_empty() {
                    cells.retain(|c| only_cells.contains(&c.id.0));
                    if cells.is_empty() {
                        let _ = reply.send(Err(ServiceError::InvalidArgument(
                            "none of the requested cells is in the spec".into(),
                        )));
                        return;
                    }
                }
                let total = cells.len() as u32;
                let record = sweep_record(
                    &id,
                    &spec,
                    cells.clone(),
                    &file,
                    &yaml,
                    client_request_id.clone(),
                    simulated,
                );
                if let Some(r) = client_request_id {
                    self.requests.insert(r, id.clone());
                }
                self.watch(&id, total);
                // the sweep row is queued before anything the scheduler does with it
                let committed = self.writer.queue(vec![record]).await;
                let reply_id = id.clone();
                self.tracker.spawn(async move {
                    let outcome = match committed {
                        Ok(c) => c
                            .wait()
                            .await
                            .map(|()| (reply_id, total))
                            .map_err(ServiceError::from),
                        Err(e) => Err(e.into()),
                    };
                    let _ = reply.send(outcome);
                });
                let actions = self.scheduler.handle(
                    Event::Submit(sweep_input(&id, &spec, cells, simulated)),
                    now,
                );
                self.execute(actions, Vec::new(), now);
            }
            Command::Watch { sweep, reply } => match self.watchers.get(&sweep) {
                Some(tx) => {
                    let _ = reply.send(Ok(tx.subscribe()));
                }
                None => {
                    let writer = self.writer.clone();
                    self.tracker.spawn(async move {
                        let found = writer
                            .read(move |store| {
                                store
                                    .sweeps()
                                    .map(|all| all.into_iter().find(|s| s.sweep_id == sweep))
                            })
                            .await;
                        let answer = match found {
                            Ok(Ok(Some(s))) => {
                                let p = Progress {
                                    total: s.cells as u32,
                                    done: s.done as u32,
                                    passed: s.passed as u32,
                                    unsupported: s.unsupported as u32,
                                    simulated: s.simulated as u32,
                                };
                                let (tx, rx) =
                                    watch::channel(progress_msg(&s.sweep_id, p, &s.state));
                                drop(tx);
                                Ok(rx)
                            }
                            Ok(Ok(None)) => Err(ServiceError::NotFound("no such sweep".into())),
                            Ok(Err(e)) | Err(e) => Err(e.into()),
                        };
                        let _ = reply.send(answer);
                    });
                }
            },
            Command::Cancel { sweep, reply } => {
                if self.scheduler.progress(&sweep).is_none() {
                    let _ = reply.send(Err(ServiceError::NotFound(format!(
                        "sweep {sweep} is not running"
                    ))));
                    return;
                }
                let actions = self.scheduler.handle(Event::Cancel { sweep }, now);
                self.execute(actions, Vec::new(), now);
                let _ = reply.send(Ok(()));
            }
            Command::Drain {
                agent,
                draining,
                reply,
            } => {
                if !self.scheduler.has_agent(&agent) {
                    let _ = reply.send(Err(ServiceError::NotFound(format!(
                        "no agent named {agent} has registered"
                    ))));
                    return;
                }
                if let Some((_, tx)) = self.sessions.get(&agent) {
                    let msg = pb::CoordinatorMessage {
                        kind: Some(pb::coordinator_message::Kind::Drain(pb::Drain { draining })),
                    };
                    let _ = tx.try_send(Ok(msg));
                }
                let actions = self.scheduler.handle(Event::Drain { agent, draining }, now);
                self.execute(actions, Vec::new(), now);
                let _ = reply.send(Ok(()));
            }
            // a schedule change is answered once it is durable
            Command::ScheduleAdd { record, reply } => match self.add_schedule(record, now) {
                Ok((info, stored)) => self.reply_when_durable(stored, reply, info).await,
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Confirm { found } => match found {
                Ok(Some(c)) => self.confirm(c, now),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not read what a finished run left undecided")
                }
            },
            Command::ScheduleList { reply } => {
                let _ = reply.send(self.schedule_infos());
            }
            Command::SchedulePause {
                name,
                paused,
                reply,
            } => match self.pause_schedule(name, paused, now) {
                Ok(stored) => self.reply_when_durable(stored, reply, ()).await,
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::ScheduleRemove { name, reply } => match self.remove_schedule(name, now) {
                Ok(stored) => self.reply_when_durable(stored, reply, ()).await,
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::ScheduleRunNow { name, reply } => match self.run_schedule_now(name, now) {
                Ok(sweep) => {
                    // its sweep row is in this batch: write it now, answer once it is stored
                    self.flush().await;
                    let writer = self.writer.clone();
                    self.tracker.spawn(async move {
                        let id = sweep.clone();
                        let stored = writer.read(move |s| s.has_sweep(&id)).await;
                        let _ = reply.send(match stored {
                            Ok(Ok(true)) => Ok(sweep),
                            Ok(Ok(false)) => Err(ServiceError::Unavailable(format!(
                                "the store has not taken run {sweep} yet; it is retried"
                            ))),
                            Ok(Err(e)) | Err(e) => Err(e.into()),
                        });
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Agents { reply } => {
                let list = self
                    .scheduler
                    .agents()
                    .into_iter()
                    .map(|a| pb::AgentInfo {
                        agent_id: a.agent.clone(),
                        name: a.agent,
                        connected: a.connected,
                        draining: a.draining,
                        busy_slots: a.busy,
                        slots: a.slots,
                        os: a
                            .caps
                            .os
                            .map(|o| o.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        browsers: a.caps.browsers.iter().map(Into::into).collect(),
                        // the gRPC layer, which holds the pinned keys, fills it in
                        key_id: String::new(),
                        last_heard_unix_ms: a.last_heard,
                    })
                    .collect();
                let _ = reply.send(list);
            }
        }
    }

    /// Uses `metrics` instead of a registry of its own (the HTTP server scrapes the same).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Coordinator {
        self.metrics = metrics;
        self
    }

    fn set_gauges(&self) {
        let (connected, draining, busy) = self.scheduler.agent_counts();
        self.metrics.set_agents("connected", connected);
        self.metrics.set_agents("draining", draining);
        self.metrics.set_agents("busy", busy);
        let (mut total, mut done, mut passed, mut unsupported) = (0, 0, 0, 0);
        for p in self
            .watchers
            .values()
            .map(|w| w.borrow().clone())
            .filter(|p| !p.finished)
        {
            total += i64::from(p.total);
            done += i64::from(p.done);
            passed += i64::from(p.passed);
            unsupported += i64::from(p.unsupported);
        }
        self.metrics.set_cells("waiting_or_running", total - done);
        self.metrics.set_cells("done", done);
        self.metrics.set_cells("passed", passed);
        self.metrics.set_cells("unsupported", unsupported);
    }

    /// Whether `session` is `agent`'s live session.
    fn is_live(&self, agent: &str, session: u64) -> bool {
        self.sessions.get(agent).is_some_and(|(s, _)| *s == session)
    }

    fn send(&self, agent: &str, kind: pb::coordinator_message::Kind) {
        if let Some((_, tx)) = self.sessions.get(agent)
            && tx
                .try_send(Ok(pb::CoordinatorMessage { kind: Some(kind) }))
                .is_err()
        {
            tracing::warn!(agent, "agent stream is full or gone; the lease will expire");
        }
    }

    fn execute(&mut self, actions: Vec<Action>, acks: Vec<(SessionTx, String)>, now: Millis) {
        let mut records = std::mem::take(&mut self.outbox.records);
        for action in actions {
            match action {
                Action::Offer { agent, offer } => {
                    self.metrics
                        .dispatch_seconds
                        .observe(offer.waited_ms as f64 / 1000.0);
                    records.push(Record::Lease(LeaseRecord {
                        lease_id: offer.lease_id.clone(),
                        sweep_id: offer.sweep.clone(),
                        cell_id: offer.cell.id.0.clone(),
                        agent_id: agent.clone(),
                        attempt_no: offer.attempt_no,
                        started_at_us: (now * 1000) as i64,
                    }));
                    let msg = pb::Offer {
                        lease_id: offer.lease_id,
                        cell: Some(pb::Cell::from(&offer.cell)),
                        warmup: offer.run.warmup,
                        repetitions: offer.run.repetitions,
                        timeout_secs: offer.run.timeout_secs,
                        lease_expires_unix_ms: offer.expires_at,
                    };
                    self.send(&agent, pb::coordinator_message::Kind::Offer(msg));
                }
                Action::Revoke { agent, lease_id } => {
                    self.send(
                        &agent,
                        pb::coordinator_message::Kind::Cancel(pb::Cancel { lease_id }),
                    );
                }
                Action::AttemptEnded {
                    lease_id,
                    sweep,
                    cell_id,
                    agent,
                    attempt_no,
                    started_at,
                    ended_at,
                    reason,
                } => {
                    self.metrics
                        .cell_seconds
                        .observe(ended_at.saturating_sub(started_at) as f64 / 1000.0);
                    if let crate::scheduler::EndReason::Reported(status) = reason {
                        self.metrics.report("reported", status.as_str());
                    }
                    records.push(Record::Attempt(AttemptRecord {
                        attempt_id: lease_id,
                        sweep_id: sweep,
                        cell_id: cell_id.0,
                        attempt_no,
                        agent_id: Some(agent),
                        started_at_us: (started_at * 1000) as i64,
                        ended_at_us: Some((ended_at * 1000) as i64),
                        end_reason: Some(reason.as_str()),
                    }));
                }
                Action::StoreResult {
                    lease_id,
                    sweep,
                    result,
                    accepted,
                } => {
                    // the agent's signature goes with the result it signed, never with one the
                    // coordinator made in its place (a rejection, a timeout)
                    let signed = self.signed.remove(&lease_id).filter(|s| {
                        s.payload == quantgrid_proto::signing::payload(&(&result).into())
                    });
                    records.push(Record::Result(ResultRecord {
                        attempt_id: lease_id,
                        sweep_id: sweep,
                        result,
                        accepted,
                        recorded_at_us: (now * 1000) as i64,
                        signed,
                    }));
                }
                Action::Progress { sweep, progress } => {
                    if let Some(tx) = self.watchers.get(&sweep) {
                        tx.send_replace(progress_msg(&sweep, progress, "running"));
                    }
                }
                Action::SweepDone { sweep, end } => {
                    let state = match end {
                        SweepEnd::Finished => "finished",
                        SweepEnd::Cancelled => "cancelled",
                    };
                    records.push(Record::SweepEnded {
                        sweep_id: sweep.clone(),
                        state,
                        at_us: (now * 1000) as i64,
                    });
                    self.ended.push(sweep.clone());
                    if let Some(tx) = self.watchers.remove(&sweep) {
                        let mut last = tx.borrow().clone();
                        last.finished = true;
                        last.state = state.to_string();
                        // watchers see the final state only once it is durable
                        self.outbox.finals.push((tx, last));
                    }
                }
                Action::Ignored {
                    agent,
                    lease_id,
                    why,
                } => {
                    self.metrics.report("ignored", why);
                    self.signed.remove(&lease_id);
                    tracing::info!(agent, lease_id, why, "report not stored");
                }
                Action::Rejected {
                    agent,
                    lease_id,
                    why,
                } => {
                    self.metrics.report("rejected", "failed checks");
                    tracing::warn!(
                        agent,
                        lease_id,
                        why,
                        "invalid report: stored as an error and retried"
                    );
                }
            }
        }
        self.outbox.records = records;
        self.outbox.acks.extend(acks);
    }

    /// Writes `record` on its own and answers `reply` with `value` once it is durable.
    async fn reply_when_durable<T: Send + 'static>(
        &mut self,
        record: Record,
        reply: oneshot::Sender<Result<T, ServiceError>>,
        value: T,
    ) {
        let committed = self.writer.queue(vec![record]).await;
        self.tracker.spawn(async move {
            let outcome = match committed {
                Ok(c) => c.wait().await.map(|()| value).map_err(ServiceError::from),
                Err(e) => Err(e.into()),
            };
            let _ = reply.send(outcome);
        });
    }

    /// Queues the batch's records; its reports are acknowledged, and finished sweeps announced,
    /// once what they depend on is durable.
    async fn flush(&mut self) {
        let Outbox {
            records,
            acks,
            finals,
        } = std::mem::take(&mut self.outbox);
        for (tx, lease) in acks {
            self.durability.awaiting.entry(lease).or_default().push(tx);
        }
        self.durability.finals.extend(finals);
        if !records.is_empty() {
            self.queue_write(records, false).await;
        }
        self.release();
    }
}
