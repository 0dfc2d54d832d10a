//! The agent component: dial out, register, hold one session, run offered cells through the
//! executor, heartbeat, and report. Reconnects with exponential backoff and jitter; reports stay
//! in an outbox until the coordinator acknowledges them, so a reconnect resends them (the
//! coordinator stores each once).
//!
//! Signals: `graceful` = take nothing new, finish running cells, report, disconnect;
//! `abandon` = stop running cells, report them as abandoned, exit.

use crate::executor::{Executor, Job, abandoned};
use quantgrid_matrix::{Cell, CellResult};
use quantgrid_proto::client::{self, Bearer, ConnectError, Tls};
use quantgrid_proto::pb::{self, agent_service_client::AgentServiceClient};
use quantgrid_proto::signing::{self, SigningKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub coordinator: String,
    pub token: String,
    pub name: String,
    pub tls: Tls,
    pub max_backoff: Duration,
    /// Signs every report; its public half is registered (and pinned by the coordinator).
    pub key: SigningKey,
}

#[derive(Debug, Clone)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub abandon: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the coordinator refused this agent: {0}")]
    Refused(String),
}

/// What ended one session.
enum SessionEnd {
    /// Everything reported; the agent may exit.
    Done,
    /// The connection broke; reconnect.
    Lost(String),
}

struct Running {
    cell: Cell,
    abandon: CancellationToken,
}

/// State that survives reconnects.
struct Agent {
    config: AgentConfig,
    executor: Arc<dyn Executor>,
    shutdown: Shutdown,
    tracker: TaskTracker,
    running: HashMap<String, Running>,
    /// Reports not yet acknowledged, by lease.
    outbox: BTreeMap<String, CellResult>,
    done_tx: mpsc::Sender<(String, CellResult)>,
    done_rx: mpsc::Receiver<(String, CellResult)>,
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let frac = if getrandom::fill(&mut b).is_ok() {
        f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
    } else {
        0.5
    };
    // between half and all of the delay, so a lab of agents does not reconnect in lockstep
    d.mul_f64(0.5 + 0.5 * frac)
}

/// Runs until shut down. Refusals (bad token, wrong kind of token) end it with an error.
pub async fn run(
    config: AgentConfig,
    executor: Arc<dyn Executor>,
    shutdown: Shutdown,
) -> Result<(), AgentError> {
    let (done_tx, done_rx) = mpsc::channel(64);
    let mut agent = Agent {
        config,
        executor,
        shutdown,
        tracker: TaskTracker::new(),
        running: HashMap::new(),
        outbox: BTreeMap::new(),
        done_tx,
        done_rx,
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        let leaving =
            agent.shutdown.graceful.is_cancelled() || agent.shutdown.abandon.is_cancelled();
        if leaving && agent.running.is_empty() && agent.outbox.is_empty() {
            break;
        }
        match agent.session().await {
            Ok(SessionEnd::Done) => break,
            Ok(SessionEnd::Lost(why)) => {
                tracing::warn!(why, "session lost; reconnecting");
                backoff = Duration::from_millis(250);
            }
            Err(AgentError::Refused(why)) => return Err(AgentError::Refused(why)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the coordinator");
                if agent.shutdown.abandon.is_cancelled() {
                    tracing::error!(
                        unreported = agent.outbox.len(),
                        "exiting without reporting: the coordinator will rerun these cells"
                    );
                    break;
                }
            }
        }
        let wait = jitter(backoff);
        backoff = (backoff * 2).min(agent.config.max_backoff);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = agent.shutdown.abandon.cancelled() => {
                if agent.outbox.is_empty() && agent.running.is_empty() { break; }
            }
        }
    }
    agent.tracker.close();
    agent.tracker.wait().await;
    Ok(())
}

fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied | tonic::Code::InvalidArgument
    )
}

impl Agent {
    async fn session(&mut self) -> Result<SessionEnd, AgentError> {
        let channel = client::connect(&self.config.coordinator, &self.config.tls).await?;
        let mut client =
            AgentServiceClient::with_interceptor(channel, Bearer::new(&self.config.token)?);
        let caps = self.executor.capabilities();
        let mut reg = quantgrid_proto::convert::register_request(
            &self.config.name,
            env!("CARGO_PKG_VERSION"),
            &caps,
        );
        reg.public_key = self.config.key.verifying_key().to_bytes().to_vec();
        let registered = match client.register(reg).await {
            Ok(r) => r.into_inner(),
            Err(s) if refused(&s) => return Err(AgentError::Refused(s.message().to_string())),
            Err(s) => return Ok(SessionEnd::Lost(s.message().to_string())),
        };
        tracing::info!(agent = %registered.agent_id, "registered");
        let (up, up_rx) = mpsc::channel::<pb::AgentMessage>(256);
        let agent_id = registered.agent_id.clone();
        let mut inbound = match client
            .session(tokio_stream::wrappers::ReceiverStream::new(up_rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if refused(&s) => return Err(AgentError::Refused(s.message().to_string())),
            Err(s) => return Ok(SessionEnd::Lost(s.message().to_string())),
        };
        let msg = |kind| pb::AgentMessage {
            agent_id: agent_id.clone(),
            kind: Some(kind),
        };
        // leases still running from before a reconnect, then every unacknowledged report
        let _ = up
            .send(msg(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                lease_ids: self.held_leases(),
            })))
            .await;
        for (lease, result) in &self.outbox {
            let report = signing::report(&self.config.key, lease, result.into());
            let _ = up.send(msg(pb::agent_message::Kind::Report(report))).await;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_millis(u64::from(
            registered.heartbeat_interval_ms.max(100),
        )));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut graceful_seen = false;
        let mut abandon_seen = false;
        loop {
            let leaving =
                self.shutdown.graceful.is_cancelled() || self.shutdown.abandon.is_cancelled();
            if leaving && self.running.is_empty() && self.outbox.is_empty() {
                return Ok(SessionEnd::Done);
            }
            tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(m)) => self.on_message(m, &up, &msg).await,
                    Ok(None) => return Ok(SessionEnd::Lost("the coordinator closed the session".into())),
                    Err(s) if refused(&s) || s.code() == tonic::Code::FailedPrecondition => {
                        return Err(AgentError::Refused(s.message().to_string()));
                    }
                    Err(s) => return Ok(SessionEnd::Lost(s.message().to_string())),
                },
                Some((lease, result)) = self.done_rx.recv() => {
                    if self.running.remove(&lease).is_some() {
                        let report = signing::report(&self.config.key, &lease, (&result).into());
                        self.outbox.insert(lease, result);
                        let _ = up.send(msg(pb::agent_message::Kind::Report(report))).await;
                    }
                }
                _ = heartbeat.tick() => {
                    let hb = pb::Heartbeat { lease_ids: self.held_leases() };
                    if up.send(msg(pb::agent_message::Kind::Heartbeat(hb))).await.is_err() {
                        return Ok(SessionEnd::Lost("the session stream closed".into()));
                    }
                }
                _ = self.shutdown.graceful.cancelled(), if !graceful_seen => {
                    graceful_seen = true;
                    let _ = up.send(msg(pb::agent_message::Kind::Leaving(pb::Leaving {}))).await;
                    tracing::info!(running = self.running.len(), "finishing running cells, then exiting");
                }
                _ = self.shutdown.abandon.cancelled(), if !abandon_seen => {
                    abandon_seen = true;
                    let _ = up.send(msg(pb::agent_message::Kind::Leaving(pb::Leaving {}))).await;
                    tracing::warn!(running = self.running.len(), "abandoning running cells");
                    for r in self.running.values() {
                        r.abandon.cancel();
                    }
                }
            }
        }
    }

    /// Leases this agent still answers for: cells running, and reports not yet acknowledged
    /// (a coordinator whose store is failing refuses reports; the lease must not expire while
    /// the agent holds its result).
    fn held_leases(&self) -> Vec<String> {
        self.running
            .keys()
            .chain(self.outbox.keys())
            .cloned()
            .collect()
    }

    async fn on_message(
        &mut self,
        m: pb::CoordinatorMessage,
        up: &mpsc::Sender<pb::AgentMessage>,
        msg: &impl Fn(pb::agent_message::Kind) -> pb::AgentMessage,
    ) {
        match m.kind {
            Some(pb::coordinator_message::Kind::Offer(offer)) => {
                let cell = match offer.cell.as_ref().map(Cell::try_from) {
                    Some(Ok(c)) => c,
                    other => {
                        tracing::error!(lease = %offer.lease_id, problem = ?other.map(|r| r.err()), "refusing an offer whose cell does not check out");
                        return;
                    }
                };
                if self.shutdown.graceful.is_cancelled() || self.shutdown.abandon.is_cancelled() {
                    // leaving: hand it straight back so the coordinator requeues it
                    let result = abandoned(&cell, "not started: the agent is shutting down");
                    let report =
                        signing::report(&self.config.key, &offer.lease_id, (&result).into());
                    self.outbox.insert(offer.lease_id, result);
                    let _ = up.send(msg(pb::agent_message::Kind::Report(report))).await;
                    return;
                }
                if self.running.contains_key(&offer.lease_id)
                    || self.outbox.contains_key(&offer.lease_id)
                {
                    return;
                }
                let job = Job {
                    lease_id: offer.lease_id.clone(),
                    cell: cell.clone(),
                    warmup: offer.warmup,
                    repetitions: offer.repetitions,
                    timeout: Duration::from_secs(u64::from(offer.timeout_secs)),
                };
                let abandon = CancellationToken::new();
                let fut = self.executor.run(job, abandon.clone());
                let done = self.done_tx.clone();
                let lease = offer.lease_id.clone();
                self.tracker.spawn(async move {
                    let result = fut.await;
                    let _ = done.send((lease, result)).await;
                });
                tracing::info!(lease = %offer.lease_id, cell = %cell.label(), "running cell");
                self.running
                    .insert(offer.lease_id, Running { cell, abandon });
            }
            Some(pb::coordinator_message::Kind::Cancel(c)) => {
                if let Some(r) = self.running.remove(&c.lease_id) {
                    tracing::info!(lease = %c.lease_id, cell = %r.cell.id, "cell cancelled by the coordinator");
                    r.abandon.cancel();
                }
            }
            Some(pb::coordinator_message::Kind::Ack(a)) => {
                self.outbox.remove(&a.lease_id);
            }
            Some(pb::coordinator_message::Kind::Drain(d)) => {
                tracing::info!(
                    draining = d.draining,
                    "drain state changed by the coordinator"
                );
            }
            None => {}
        }
    }
}
