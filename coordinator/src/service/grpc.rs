//! The gRPC services: translate calls into [`Command`]s for the coordinator component and its
//! answers back. Identity comes from the auth interceptors.

use super::actor::{Command, SessionTx};
use super::auth::{self, Identity, Tokens};
use super::error::ServiceError;
use super::keys::{self, KeyCheck, PinnedKeys};
use super::limits;
use crate::report::{MatrixOptions, matrix_markdown};
use crate::store::Signed;
use crate::store::StoreWriter;
use quantgrid_matrix::agent::Capabilities;
use quantgrid_matrix::{CellResult, spec};
use quantgrid_proto::pb::{
    self, admin_service_server::AdminService, agent_service_server::AgentService,
};
use quantgrid_proto::signing;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
pub struct Grid {
    pub commands: mpsc::Sender<Command>,
    pub tokens: Tokens,
    pub keys: PinnedKeys,
    pub metrics: Arc<super::metrics::Metrics>,
    /// Registrations per agent name.
    pub registrations: Arc<std::sync::Mutex<limits::Limiter>>,
    pub writer: StoreWriter,
    pub tracker: TaskTracker,
    pub sessions: Arc<AtomicU64>,
    pub heartbeat_interval_ms: u32,
    pub lease_ttl_ms: u32,
}

fn identity<T>(req: &Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| ServiceError::Unauthenticated("no identity on the request".into()).into())
}

impl Grid {
    async fn send(&self, cmd: Command) -> Result<(), Status> {
        self.commands.send(cmd).await.map_err(|_| {
            ServiceError::Unavailable("the coordinator is shutting down".into()).into()
        })
    }

    /// A report of an agent with a pinned key must be signed by that key (checked against the
    /// re-encoded result); the signature is kept with the result. An agent without a pinned
    /// key reports unsigned.
    fn verify_report(
        &self,
        agent: &str,
        r: &pb::Report,
    ) -> Result<Option<Box<Signed>>, ServiceError> {
        let Some(public) = self.keys.get(agent) else {
            return Ok(None);
        };
        let payload = r.result.as_ref().map(signing::payload).unwrap_or_default();
        signing::verify(&public, &r.lease_id, &payload, &r.signature).map_err(|e| {
            self.metrics.report("refused", "signature");
            tracing::warn!(agent, lease = r.lease_id, error = %e, "report refused");
            ServiceError::PermissionDenied(format!(
                "report on lease {} refused: {e} (agent `{agent}`'s pinned key is {})",
                r.lease_id,
                signing::key_id(&public)
            ))
        })?;
        Ok(Some(Box::new(Signed {
            key_id: signing::key_id(&public),
            signature: r.signature.clone(),
            payload,
        })))
    }

    /// Pins an agent's first key, passes the pinned one, refuses any other (recording it for
    /// `agents trust`) and none once one is pinned.
    async fn check_key(&self, agent: &str, offered: &[u8]) -> Result<(), Status> {
        let pinned = self.keys.get(agent);
        match keys::check(agent, pinned.as_deref(), offered) {
            KeyCheck::Match | KeyCheck::Unsigned => Ok(()),
            KeyCheck::Pin => {
                let (a, k) = (agent.to_string(), offered.to_vec());
                self.writer
                    .read(move |store| store.pin_key(&a, &signing::key_id(&k), &k))
                    .await
                    .map_err(ServiceError::from)?
                    .map_err(ServiceError::from)?;
                self.keys.set(agent, offered.to_vec());
                tracing::info!(agent, key = %signing::key_id(offered), "pinned the agent's key");
                Ok(())
            }
            KeyCheck::Refuse { why, offered: seen } => {
                if seen {
                    let (a, k) = (agent.to_string(), offered.to_vec());
                    self.writer
                        .read(move |store| store.offer_key(&a, &signing::key_id(&k), &k))
                        .await
                        .map_err(ServiceError::from)?
                        .map_err(ServiceError::from)?;
                }
                tracing::warn!(agent, why, "registration refused");
                Err(ServiceError::PermissionDenied(why).into())
            }
        }
    }

    async fn close_sessions(&self, agent: &str, why: String) -> Result<u32, Status> {
        let agent = agent.to_string();
        self.ask(|reply| Command::CloseSessions { agent, why, reply })
            .await
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| {
            ServiceError::Unavailable("the coordinator is shutting down".into()).into()
        })
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Grid {
    #[tracing::instrument(name = "rpc", skip_all, fields(method = "register"))]
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let id = identity(&req)?;
        let body = req.into_inner();
        limits::check_register(&body)?;
        let allowed = self
            .registrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(&id.name, super::actor::now_ms());
        if !allowed {
            self.metrics.report("refused", "registration rate");
            return Err(ServiceError::ResourceExhausted(format!(
                "agent `{}` registers too often: at most {} at once, then one every {:.0} s",
                id.name,
                limits::REGISTRATIONS.burst,
                1.0 / limits::REGISTRATIONS.per_second
            ))
            .into());
        }
        if !body.name.is_empty() && body.name != id.name {
            return Err(ServiceError::PermissionDenied(format!(
                "this token belongs to agent `{}`, not `{}`",
                id.name, body.name
            ))
            .into());
        }
        let caps = Capabilities::try_from(&body).map_err(ServiceError::from)?;
        self.check_key(&id.name, &body.public_key).await?;
        self.send(Command::Register {
            agent: id.name.clone(),
            caps,
            version: body.version,
        })
        .await?;
        Ok(Response::new(pb::RegisterResponse {
            agent_id: id.name,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            lease_ttl_ms: self.lease_ttl_ms,
        }))
    }

    type SessionStream = BoxStream<pb::CoordinatorMessage>;

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "session"))]
    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let agent = identity(&req)?.name;
        let mut inbound = req.into_inner();
        let (tx, rx): (SessionTx, _) = mpsc::channel(1024);
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        self.send(Command::SessionOpen {
            agent: agent.clone(),
            session,
            tx: tx.clone(),
        })
        .await?;
        let grid = self.clone();
        self.tracker.spawn(async move {
            let mut rate = limits::Limiter::new(limits::SESSION_MESSAGES);
            loop {
                // a session the coordinator closed (revoked, replaced) stops being read
                let msg = tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(m)) => m,
                        Ok(None) | Err(_) => break,
                    },
                    _ = tx.closed() => break,
                };
                if !rate.allow("", super::actor::now_ms()) {
                    grid.metrics.report("refused", "session rate");
                    let why = format!(
                        "agent {agent} sends more than {} messages a second on its session: closed",
                        limits::SESSION_MESSAGES.per_second
                    );
                    let _ = tx
                        .send(Err(ServiceError::ResourceExhausted(why).into()))
                        .await;
                    break;
                }
                let cmd = match msg.kind {
                    Some(pb::agent_message::Kind::Heartbeat(h)) => Command::Heartbeat {
                        agent: agent.clone(),
                        session,
                        leases: h.lease_ids,
                    },
                    Some(pb::agent_message::Kind::Report(r)) => {
                        let parsed = r
                            .result
                            .as_ref()
                            .ok_or(quantgrid_proto::ConvertError::Missing("result"))
                            .and_then(CellResult::try_from);
                        let signed = match grid.verify_report(&agent, &r) {
                            Ok(signed) => signed,
                            Err(e) => {
                                let _ = tx.send(Err(e.into())).await;
                                break;
                            }
                        };
                        match parsed {
                            Ok(result) => Command::Report {
                                agent: agent.clone(),
                                session,
                                signed,
                                lease: r.lease_id,
                                result,
                            },
                            Err(e) => {
                                let _ = tx.send(Err(ServiceError::from(e).into())).await;
                                break;
                            }
                        }
                    }
                    Some(pb::agent_message::Kind::Leaving(_)) => Command::Leaving {
                        agent: agent.clone(),
                        session,
                    },
                    Some(pb::agent_message::Kind::Progress(_)) | None => continue,
                };
                if grid.commands.send(cmd).await.is_err() {
                    break;
                }
            }
            let _ = grid
                .commands
                .send(Command::SessionClosed { agent, session })
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl AdminService for Grid {
    #[tracing::instrument(name = "rpc", skip_all, fields(method = "submit_sweep"))]
    async fn submit_sweep(
        &self,
        req: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::SubmitSweepResponse>, Status> {
        let body = req.into_inner();
        let file = if body.spec_name.is_empty() {
            "<submitted spec>".to_string()
        } else {
            body.spec_name
        };
        let mut spec = spec::parse(&body.spec_yaml, &file)
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        if let Some(wait) = body.agent_wait_secs {
            spec.agent_wait_secs = wait;
        }
        let only_cells = body.only_cells;
        let client_request_id =
            (!body.client_request_id.is_empty()).then_some(body.client_request_id);
        let (sweep_id, cells) = self
            .ask(|reply| Command::Submit {
                spec,
                only_cells,
                yaml: body.spec_yaml,
                file,
                client_request_id,
                simulated: body.simulated,
                reply,
            })
            .await??;
        Ok(Response::new(pb::SubmitSweepResponse { sweep_id, cells }))
    }

    type WatchSweepStream = BoxStream<pb::SweepProgress>;

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "watch_sweep"))]
    async fn watch_sweep(
        &self,
        req: Request<pb::SweepRef>,
    ) -> Result<Response<Self::WatchSweepStream>, Status> {
        let sweep = req.into_inner().sweep_id;
        let mut rx = self.ask(|reply| Command::Watch { sweep, reply }).await??;
        let (tx, out) = mpsc::channel(16);
        // forward every change, and end the stream right after the final state
        self.tracker.spawn(async move {
            loop {
                let p = rx.borrow_and_update().clone();
                let finished = p.finished;
                if tx.send(Ok(p)).await.is_err() || finished || rx.changed().await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "cancel_sweep"))]
    async fn cancel_sweep(
        &self,
        req: Request<pb::SweepRef>,
    ) -> Result<Response<pb::CancelSweepResponse>, Status> {
        let sweep = req.into_inner().sweep_id;
        self.ask(|reply| Command::Cancel { sweep, reply }).await??;
        Ok(Response::new(pb::CancelSweepResponse {}))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "list_agents"))]
    async fn list_agents(
        &self,
        _: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let mut agents = self.ask(|reply| Command::Agents { reply }).await?;
        for a in &mut agents {
            a.key_id = self
                .keys
                .get(&a.name)
                .map(|k| signing::key_id(&k))
                .unwrap_or_default();
        }
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "drain_agent"))]
    async fn drain_agent(
        &self,
        req: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let body = req.into_inner();
        self.ask(|reply| Command::Drain {
            agent: body.agent,
            draining: !body.undrain,
            reply,
        })
        .await??;
        Ok(Response::new(pb::DrainResponse {}))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "sweep_matrix"))]
    async fn sweep_matrix(
        &self,
        req: Request<pb::SweepRef>,
    ) -> Result<Response<pb::MatrixResponse>, Status> {
        let sweep = req.into_inner().sweep_id;
        let markdown = self
            .writer
            .read(move |store| {
                let opts = MatrixOptions {
                    sweep: (!sweep.is_empty()).then_some(sweep.as_str()),
                    include_simulated: false,
                    trusted_only: false,
                    accuracy_tolerance: None,
                };
                matrix_markdown(store, &opts)
            })
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?;
        Ok(Response::new(pb::MatrixResponse { markdown }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "add_schedule"))]
    async fn add_schedule(
        &self,
        req: Request<pb::ScheduleSpec>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let body = req.into_inner();
        if body.name.is_empty()
            || !body
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ServiceError::InvalidArgument(format!(
                "schedule name `{}` must be letters, digits, `-`, `_` or `.`",
                body.name
            ))
            .into());
        }
        let or = |v: String, default: &str| if v.is_empty() { default.to_string() } else { v };
        let record = crate::store::ScheduleRecord {
            name: body.name,
            spec_file: or(body.spec_name, "<submitted spec>"),
            spec_yaml: body.spec_yaml,
            cron: body.cron,
            time_zone: or(body.time_zone, "UTC"),
            overlap: or(body.overlap, "skip"),
            catch_up: or(body.catch_up, "none"),
            paused: false,
            created_at_us: crate::store::now_micros(),
        };
        let info = self
            .ask(|reply| Command::ScheduleAdd { record, reply })
            .await??;
        Ok(Response::new(info))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "list_schedules"))]
    async fn list_schedules(
        &self,
        _: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let schedules = self.ask(|reply| Command::ScheduleList { reply }).await?;
        Ok(Response::new(pb::ListSchedulesResponse { schedules }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "set_schedule_paused"))]
    async fn set_schedule_paused(
        &self,
        req: Request<pb::SetScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let body = req.into_inner();
        self.ask(|reply| Command::SchedulePause {
            name: body.name,
            paused: body.paused,
            reply,
        })
        .await??;
        Ok(Response::new(pb::ScheduleResponse {}))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "remove_schedule"))]
    async fn remove_schedule(
        &self,
        req: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let name = req.into_inner().name;
        self.ask(|reply| Command::ScheduleRemove { name, reply })
            .await??;
        Ok(Response::new(pb::ScheduleResponse {}))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "create_token"))]
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let pb::CreateTokenRequest {
            name,
            admin,
            rotate,
            viewer,
        } = req.into_inner();
        let kind = match (admin, viewer) {
            (true, true) => {
                return Err(ServiceError::InvalidArgument(
                    "a token is admin or viewer, not both".into(),
                )
                .into());
            }
            (true, false) => auth::TokenKind::Admin,
            (false, true) => auth::TokenKind::Viewer,
            (false, false) => auth::TokenKind::Agent,
        };
        auth::check_token_name(&name)?;
        let token = auth::generate_token()
            .map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
        let hash = auth::hash_token(&token);
        let (n, h) = (name.clone(), hash.clone());
        let created = self
            .writer
            .read(move |store| store.create_token(&n, &h, kind, rotate))
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?;
        // durable: the new secret works from now on, the old one (a rotation) no longer
        self.tokens.set(&name, hash, kind);
        let rotated = created == crate::store::TokenCreated::Rotated;
        let sessions_closed = if rotated {
            self.close_sessions(&name, format!("token `{name}` was rotated"))
                .await?
        } else {
            0
        };
        Ok(Response::new(pb::CreateTokenResponse {
            token,
            rotated,
            sessions_closed,
        }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "list_tokens"))]
    async fn list_tokens(
        &self,
        _: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let tokens = self
            .writer
            .read(|store| store.tokens())
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens
                .into_iter()
                .map(|t| pb::TokenInfo {
                    name: t.name,
                    admin: t.kind == auth::TokenKind::Admin,
                    kind: t.kind.to_string(),
                    created_at: t.created_at,
                    revoked: t.revoked,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "revoke_token"))]
    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let name = req.into_inner().name;
        let n = name.clone();
        self.writer
            .read(move |store| store.revoke_token(&n))
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?;
        self.tokens.revoke(&name);
        let sessions_closed = self
            .close_sessions(&name, format!("token `{name}` was revoked"))
            .await?;
        Ok(Response::new(pb::RevokeTokenResponse { sessions_closed }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "trust_agent"))]
    async fn trust_agent(
        &self,
        req: Request<pb::AgentKeyRequest>,
    ) -> Result<Response<pb::AgentKeyResponse>, Status> {
        let agent = req.into_inner().agent;
        let a = agent.clone();
        let key = self
            .writer
            .read(move |store| store.trust_agent(&a))
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?
            .map_err(|e| ServiceError::NotFound(e.to_string()))?;
        self.keys.set(&agent, key.public_key.clone());
        let sessions_closed = self
            .close_sessions(&agent, format!("agent `{agent}`'s pinned key changed"))
            .await?;
        Ok(Response::new(pb::AgentKeyResponse {
            key_id: key.key_id,
            sessions_closed,
        }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "forget_agent"))]
    async fn forget_agent(
        &self,
        req: Request<pb::AgentKeyRequest>,
    ) -> Result<Response<pb::AgentKeyResponse>, Status> {
        let agent = req.into_inner().agent;
        let key_id = self
            .keys
            .get(&agent)
            .map(|k| signing::key_id(&k))
            .unwrap_or_default();
        let a = agent.clone();
        self.writer
            .read(move |store| store.forget_agent(&a))
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?
            .map_err(|e| ServiceError::NotFound(e.to_string()))?;
        self.keys.remove(&agent);
        let sessions_closed = self
            .close_sessions(&agent, format!("agent `{agent}`'s key was unpinned"))
            .await?;
        Ok(Response::new(pb::AgentKeyResponse {
            key_id,
            sessions_closed,
        }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "run_schedule_now"))]
    async fn run_schedule_now(
        &self,
        req: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::RunScheduleNowResponse>, Status> {
        let name = req.into_inner().name;
        let sweep_id = self
            .ask(|reply| Command::ScheduleRunNow { name, reply })
            .await??;
        Ok(Response::new(pb::RunScheduleNowResponse { sweep_id }))
    }
}
