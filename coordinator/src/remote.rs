//! The commands that talk to a running coordinator (`serve` runs one).

use crate::cli::{AgentsAction, Remote, ScheduleAction, ServeArgs, TokenAction};
use anyhow::{Context, Result, bail};
use quantgrid_coordinator::scheduler::SchedulerConfig;
use quantgrid_coordinator::service::{self, ServeConfig, TlsFiles};
use quantgrid_coordinator::store::TokenKind;
use quantgrid_proto::client::{self, Bearer, Tls};
use quantgrid_proto::pb::{self, admin_service_client::AdminServiceClient};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn secs(v: f64, flag: &str) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{flag} must be a positive number of seconds, not {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn serve(db_path: Option<PathBuf>, args: &ServeArgs) -> Result<ExitCode> {
    let Some(db_path) = db_path else {
        bail!("--db-path is required")
    };
    let lease = secs(args.lease_ttl_secs, "--lease-ttl-secs")?;
    let heartbeat = secs(args.heartbeat_secs, "--heartbeat-secs")?;
    let grace = secs(args.disconnect_grace_secs, "--disconnect-grace-secs")?;
    if heartbeat >= lease {
        bail!(
            "--heartbeat-secs ({}) must be shorter than --lease-ttl-secs ({})",
            args.heartbeat_secs,
            args.lease_ttl_secs
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_pem: read(cert, "TLS certificate")?,
            key_pem: read(key, "TLS key")?,
            client_ca_pem: args
                .tls_client_ca
                .as_deref()
                .map(|p| read(p, "client CA"))
                .transpose()?,
        }),
        _ => None,
    };
    let mut config = ServeConfig::new(db_path);
    config.scheduler = SchedulerConfig {
        lease_ttl_ms: lease.as_millis() as u64,
        disconnect_grace_ms: grace.as_millis() as u64,
        ..SchedulerConfig::default()
    };
    config.heartbeat_interval = heartbeat;
    config.tls = tls;
    let rt = runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let http = match &args.http {
            Some(at) => {
                let l = std::net::TcpListener::bind(at)
                    .with_context(|| format!("cannot listen on {at} (--http)"))?;
                let bound = l.local_addr().context("reading the bound http address")?;
                if !bound.ip().is_loopback() && args.tls_cert.is_none() && !args.insecure {
                    bail!(
                        "--http {bound} is reachable from other machines and would carry tokens in plaintext: give --tls-cert and --tls-key, or --insecure to accept that"
                    );
                }
                config.http = Some(service::HttpListener::new(l));
                Some(bound)
            }
            None => None,
        };
        if !addr.ip().is_loopback() && args.tls_cert.is_none() && !args.insecure {
            bail!(
                "{addr} is reachable from other machines and would carry tokens in plaintext: give --tls-cert and --tls-key, or --insecure to accept that"
            );
        }
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("shutting down");
            signals.cancel();
        });
        let ready = config.ready.clone();
        let tls = args.tls_cert.is_some();
        tokio::spawn(async move {
            ready.cancelled().await;
            // tests and scripts read the port from this line: it comes once the store is open
            // (and locked), so a command run after it sees a coordinator that holds the file
            println!("listening {addr}");
            if let Some(http) = http {
                // with --tls-cert the dashboard is served over TLS too: https://ADDR
                println!("http {http}");
            }
            eprintln!(
                "quantgrid coordinator on {addr} ({})",
                if tls {
                    "tls"
                } else if addr.ip().is_loopback() {
                    "plaintext, this machine only"
                } else {
                    "plaintext: --insecure"
                }
            );
        });
        service::run(config, listener, shutdown)
            .await
            .context("coordinator failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn admin(remote: &Remote) -> Result<Admin> {
    let identity = match (&remote.tls_cert, &remote.tls_key) {
        (Some(c), Some(k)) => Some((read(c, "client certificate")?, read(k, "client key")?)),
        _ => None,
    };
    let tls = Tls {
        ca_pem: remote
            .tls_ca
            .as_deref()
            .map(|p| read(p, "CA certificate"))
            .transpose()?,
        identity,
    };
    let channel = client::connect(&remote.coordinator, &tls).await?;
    Ok(AdminServiceClient::with_interceptor(
        channel,
        Bearer::new(&remote.token)?,
    ))
}

fn status_error(e: tonic::Status) -> anyhow::Error {
    let mut text = format!("{} ({:?})", e.message(), e.code());
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    anyhow::anyhow!(text)
}

pub fn submit(
    config: &Path,
    wait: bool,
    request_id: Option<String>,
    simulated: bool,
    remote: &Remote,
) -> Result<ExitCode> {
    let yaml = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read matrix spec {}", config.display()))?;
    // fail fast, with positions, before talking to anyone
    quantgrid_matrix::spec::parse(&yaml, &config.display().to_string())?;
    submit_yaml(
        yaml,
        &config.display().to_string(),
        Vec::new(),
        wait,
        request_id,
        simulated,
        remote,
    )
}

/// Submits a parsed spec (only `only_cells` of it, when given) and, with `wait`, follows it
/// to the end: `submit`, and `run --coordinator` for a lab.
pub fn submit_yaml(
    yaml: String,
    name: &str,
    only_cells: Vec<String>,
    wait: bool,
    request_id: Option<String>,
    simulated: bool,
    remote: &Remote,
) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut client = admin(remote).await?;
        let resp = client
            .submit_sweep(pb::SubmitSweepRequest {
                client_request_id: request_id.unwrap_or_default(),
                spec_yaml: yaml,
                spec_name: name.to_string(),
                only_cells,
                agent_wait_secs: None,
                simulated,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        eprintln!("sweep {} submitted: {} cells", resp.sweep_id, resp.cells);
        if !wait {
            println!("{}", resp.sweep_id);
            return Ok(ExitCode::SUCCESS);
        }
        let p = follow(&mut client, &resp.sweep_id, resp.cells).await?;
        println!("{}", resp.sweep_id);
        Ok(if answered(&p) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// Shows a sweep's progress until it ends and returns its last progress.
pub async fn follow(client: &mut Admin, sweep_id: &str, cells: u32) -> Result<pb::SweepProgress> {
    let mut stream = client
        .watch_sweep(pb::SweepRef {
            sweep_id: sweep_id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let bar = indicatif::ProgressBar::new(u64::from(cells));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cells {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut last = None;
    while let Some(p) = stream.message().await.map_err(status_error)? {
        bar.set_length(u64::from(p.total));
        bar.set_position(u64::from(p.done));
        bar.set_message(format!(
            "{} passed, {} unsupported{}",
            p.passed,
            p.unsupported,
            simulated_note(&p)
        ));
        let finished = p.finished;
        last = Some(p);
        if finished {
            break;
        }
    }
    bar.finish();
    let Some(p) = last.filter(|p| p.finished) else {
        bail!("the coordinator ended the watch before sweep {sweep_id} finished");
    };
    eprintln!(
        "sweep {} {}: {}/{} cells passed, {} unsupported{}",
        p.sweep_id,
        p.state,
        p.passed,
        p.total,
        p.unsupported,
        simulated_note(&p)
    );
    Ok(p)
}

fn simulated_note(p: &pb::SweepProgress) -> String {
    if p.simulated == 0 {
        String::new()
    } else {
        format!(", {} simulated (a load test: never passes)", p.simulated)
    }
}

/// Every cell of a finished sweep passed or was answered `unsupported` (the browser's own
/// answer, not a failure of the run).
pub fn answered(p: &pb::SweepProgress) -> bool {
    p.state == "finished" && p.passed + p.unsupported == p.total
}

pub fn agents(remote: &Remote) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let list = admin(remote)
            .await?
            .list_agents(pb::ListAgentsRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        println!(
            "{:<24} {:<10} {:<9} {:>5} {:<16} os",
            "agent", "connected", "draining", "busy", "key"
        );
        for a in list.agents {
            let key = if a.key_id.is_empty() {
                "unsigned"
            } else {
                a.key_id.as_str()
            };
            println!(
                "{:<24} {:<10} {:<9} {:>2}/{} {key:<16} {}",
                a.name, a.connected, a.draining, a.busy_slots, a.slots, a.os
            );
            // each browser build as the agent probed it from inside
            for b in &a.browsers {
                let Ok(b) = quantgrid_matrix::agent::BrowserCapability::try_from(b) else {
                    continue;
                };
                let webgpu = b.webgpu.as_ref().map_or("no WebGPU".to_string(), |ad| {
                    format!("WebGPU {}", ad.label())
                });
                // a build may accept every device type and run them all on the CPU: these are
                // requests it accepted, not devices (each result says where it ran)
                let webnn = if b.webnn_devices.is_empty() {
                    "no WebNN".to_string()
                } else {
                    format!("WebNN contexts accepted for {}", b.webnn_devices.join("/"))
                };
                println!("  {} {}: {webgpu}; {webnn}", b.browser, b.version);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `quantgrid agents trust|forget NAME`.
pub fn agent_key(action: AgentsAction, agent: &str, remote: &Remote) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut admin = admin(remote).await?;
        let req = pb::AgentKeyRequest {
            agent: agent.to_string(),
        };
        let r = match action {
            AgentsAction::Trust => admin.trust_agent(req).await,
            AgentsAction::Forget => admin.forget_agent(req).await,
        }
        .map_err(status_error)?
        .into_inner();
        match action {
            AgentsAction::Trust => eprintln!(
                "agent `{agent}`: key {} pinned; {} live session(s) closed",
                r.key_id, r.sessions_closed
            ),
            AgentsAction::Forget => eprintln!(
                "agent `{agent}`: key {} unpinned (its next registration pins the key it presents); {} live session(s) closed",
                r.key_id, r.sessions_closed
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `quantgrid token …` through a running coordinator's admin RPCs.
pub fn token(action: TokenAction, remote: &Remote) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut admin = admin(remote).await?;
        match action {
            TokenAction::Create {
                name,
                admin: is_admin,
                viewer,
                rotate,
                ..
            } => {
                let r = admin
                    .create_token(pb::CreateTokenRequest {
                        name: name.clone(),
                        admin: is_admin,
                        rotate,
                        viewer,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let kind = match (is_admin, viewer) {
                    (true, _) => TokenKind::Admin,
                    (false, true) => TokenKind::Viewer,
                    (false, false) => TokenKind::Agent,
                };
                say_created(&name, kind, r.rotated, Some(r.sessions_closed));
                println!("{}", r.token);
            }
            TokenAction::List { .. } => {
                let list = admin
                    .list_tokens(pb::ListTokensRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                print_tokens(
                    list.tokens
                        .into_iter()
                        .map(|t| (t.name, t.kind, t.created_at, t.revoked)),
                );
            }
            TokenAction::Revoke { name, .. } => {
                let r = admin
                    .revoke_token(pb::RevokeTokenRequest { name: name.clone() })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                eprintln!(
                    "token `{name}` revoked; {} live session(s) closed",
                    r.sessions_closed
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What a token create says on stderr (the token itself goes alone on stdout).
pub fn say_created(name: &str, kind: TokenKind, rotated: bool, closed: Option<u32>) {
    let what = if rotated {
        "rotated: its old secret no longer works"
    } else {
        "created"
    };
    let closed = closed
        .filter(|n| *n > 0)
        .map(|n| format!(" ({n} session(s) of the old secret closed)"))
        .unwrap_or_default();
    eprintln!("{kind} token `{name}` {what}{closed}; it is shown once, only its hash is stored");
}

pub fn print_tokens(tokens: impl Iterator<Item = (String, String, String, bool)>) {
    println!("{:<24} {:<6} {:<20} state", "name", "kind", "created");
    for (name, kind, created, revoked) in tokens {
        println!(
            "{name:<24} {kind:<6} {created:<20} {}",
            if revoked { "revoked" } else { "live" }
        );
    }
}

pub fn cancel(sweep: &str, remote: &Remote) -> Result<ExitCode> {
    runtime()?.block_on(async {
        admin(remote)
            .await?
            .cancel_sweep(pb::SweepRef {
                sweep_id: sweep.to_string(),
            })
            .await
            .map_err(status_error)?;
        eprintln!("sweep {sweep} cancelled");
        Ok(ExitCode::SUCCESS)
    })
}

pub fn drain(agent: &str, undo: bool, remote: &Remote) -> Result<ExitCode> {
    runtime()?.block_on(async {
        admin(remote)
            .await?
            .drain_agent(pb::DrainRequest {
                agent: agent.to_string(),
                undrain: undo,
            })
            .await
            .map_err(status_error)?;
        eprintln!(
            "agent {agent} {}",
            if undo {
                "takes cells again"
            } else {
                "is draining"
            }
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The name clap shows for a value (`cancel-previous`): what the coordinator reads.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

pub fn schedule(action: ScheduleAction) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut admin = admin(action.remote()).await?;
        match action {
            ScheduleAction::Add {
                name,
                spec,
                cron,
                tz,
                overlap,
                catch_up,
                ..
            } => {
                let yaml = std::fs::read_to_string(&spec)
                    .with_context(|| format!("cannot read matrix spec {}", spec.display()))?;
                let info = admin
                    .add_schedule(pb::ScheduleSpec {
                        name: name.clone(),
                        spec_yaml: yaml,
                        spec_name: spec.display().to_string(),
                        cron,
                        time_zone: tz,
                        overlap: value_name(overlap),
                        catch_up: value_name(catch_up),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                eprintln!("schedule `{name}` added; next run {}", info.next_due);
            }
            ScheduleAction::List { .. } => {
                let list = admin
                    .list_schedules(pb::ListSchedulesRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!(
                    "{:<20} {:<18} {:<16} {:<15} {:<8} {:<26} running",
                    "schedule", "cron", "zone", "overlap", "catch-up", "next due"
                );
                for s in list.schedules {
                    let spec = s.spec.unwrap_or_default();
                    let next = if s.paused {
                        "paused".to_string()
                    } else {
                        s.next_due
                    };
                    println!(
                        "{:<20} {:<18} {:<16} {:<15} {:<8} {:<26} {}",
                        spec.name,
                        spec.cron,
                        spec.time_zone,
                        spec.overlap,
                        spec.catch_up,
                        next,
                        s.running_sweep
                    );
                }
            }
            ScheduleAction::Pause { name, .. } => {
                admin
                    .set_schedule_paused(pb::SetScheduleRequest {
                        name: name.clone(),
                        paused: true,
                    })
                    .await
                    .map_err(status_error)?;
                eprintln!("schedule `{name}` paused");
            }
            ScheduleAction::Resume { name, .. } => {
                admin
                    .set_schedule_paused(pb::SetScheduleRequest {
                        name: name.clone(),
                        paused: false,
                    })
                    .await
                    .map_err(status_error)?;
                eprintln!("schedule `{name}` resumed");
            }
            ScheduleAction::Remove { name, .. } => {
                admin
                    .remove_schedule(pb::ScheduleRef { name: name.clone() })
                    .await
                    .map_err(status_error)?;
                eprintln!("schedule `{name}` removed (its runs stay in the store)");
            }
            ScheduleAction::RunNow { name, .. } => {
                let r = admin
                    .run_schedule_now(pb::ScheduleRef { name })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!("{}", r.sweep_id);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
