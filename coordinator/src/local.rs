//! The local main job: an embedded coordinator on 127.0.0.1 and a `quantgrid-agent` child
//! process on this machine's browsers, so a laptop run and a lab run share one code path.

use anyhow::{Context, Result, bail};
use quantgrid_coordinator::report::{MatrixOptions, matrix_markdown};
use quantgrid_coordinator::service::{self, ServeConfig, auth};
use quantgrid_coordinator::store::{Store, TokenKind};
use quantgrid_proto::client::{self, Bearer, Tls};
use quantgrid_proto::pb::{self, admin_service_client::AdminServiceClient};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long cells wait for the local agent before ending as `no_capable_agent`: it has
/// registered long before this, and no other agent is coming.
const LOCAL_AGENT_WAIT_SECS: u32 = 20;

pub struct LocalRun<'a> {
    pub spec_yaml: &'a str,
    pub spec_file: &'a str,
    pub cells: Vec<String>,
    pub db_path: &'a Path,
    pub output: Option<&'a Path>,
    pub headed: bool,
    /// Serve the dashboard here during the sweep, and after it until Ctrl-C (loopback only:
    /// the local run has no TLS).
    pub http: Option<std::net::TcpListener>,
}

pub fn run(job: LocalRun<'_>) -> Result<ExitCode> {
    let agent_bin = std::env::current_exe()
        .context("locating this executable")?
        .with_file_name(format!("quantgrid-agent{}", std::env::consts::EXE_SUFFIX));
    if !agent_bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p quantgrid-agent` (./x run does)",
            agent_bin.display()
        );
    }
    // one-off credentials for this run; revoked when it ends
    // random, not the process id: ids repeat (a container's first processes), names may not
    let suffix = &auth::generate_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?[4..16];
    let (agent_name, admin_name) = (
        format!("local-agent-{suffix}"),
        format!("local-admin-{suffix}"),
    );
    let agent_token = auth::generate_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let admin_token = auth::generate_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let viewer_name = format!("local-viewer-{suffix}");
    let viewer_token = auth::generate_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    {
        let mut store = Store::open(job.db_path)?;
        store.put_tokens(&[
            (agent_name.clone(), auth::hash_token(&agent_token), false),
            (admin_name.clone(), auth::hash_token(&admin_token), true),
        ])?;
        if job.http.is_some() {
            let _ = store.create_token(
                &viewer_name,
                &auth::hash_token(&viewer_token),
                TokenKind::Viewer,
                false,
            )?;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // the dashboard's socket outlives the sweep's coordinator: the one that serves the
    // finished sweep takes it over, and a browser waiting meanwhile is kept in its backlog
    let dashboard = match &job.http {
        Some(l) => {
            let addr = l.local_addr().context("reading the dashboard's address")?;
            eprintln!("dashboard on http://{addr}/ (sign in with the viewer token {viewer_token})");
            Some(l.try_clone().context("sharing the dashboard's socket")?)
        }
        None => None,
    };
    let outcome = rt.block_on(sweep(&job, &agent_bin, &agent_token, &admin_token));
    let mut store = Store::open(job.db_path)?;
    // both were created above: "not live" cannot happen, and would need no undoing
    let _ = store.revoke_token(&agent_name)?;
    let _ = store.revoke_token(&admin_name)?;
    let (sweep_id, all_answered) = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = store.revoke_token(&viewer_name)?;
            return Err(e);
        }
    };
    if let Some(out) = job.output {
        let md = matrix_markdown(
            &store,
            &MatrixOptions {
                sweep: Some(&sweep_id),
                include_simulated: false,
                trusted_only: false,
                accuracy_tolerance: None,
            },
        )?;
        let tmp = out.with_extension("md.partial");
        std::fs::write(&tmp, md).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot replace {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    println!("{sweep_id}");
    if let Some(listener) = dashboard {
        drop(store);
        let served = rt.block_on(keep_serving(job.db_path, listener));
        let _ = Store::open(job.db_path)?.revoke_token(&viewer_name)?;
        served?;
    }
    Ok(if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn sweep(
    job: &LocalRun<'_>,
    agent_bin: &PathBuf,
    agent_token: &str,
    admin_token: &str,
) -> Result<(String, bool)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1")?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let mut config = ServeConfig::new(job.db_path.to_path_buf());
    if let Some(l) = &job.http {
        config.http = Some(service::HttpListener::new(
            l.try_clone().context("sharing the dashboard's socket")?,
        ));
    }
    let server = tokio::spawn(service::run(config, listener, shutdown.clone()));
    let mut agent = tokio::process::Command::new(agent_bin);
    agent.args(["run", "--coordinator", &url, "--executor", "browser"]);
    // in the environment, not on the command line, where `ps` shows it to every user
    agent.env("QUANTGRID_TOKEN", agent_token);
    if job.headed {
        agent.arg("--headed");
    }
    let mut agent = agent
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", agent_bin.display()))?;
    let result = async {
        let channel = client::connect(&url, &Tls::default()).await?;
        let mut admin = AdminServiceClient::with_interceptor(channel, Bearer::new(admin_token)?);
        let resp = admin
            .submit_sweep(pb::SubmitSweepRequest {
                client_request_id: String::new(),
                spec_yaml: job.spec_yaml.to_string(),
                spec_name: job.spec_file.to_string(),
                only_cells: job.cells.clone(),
                agent_wait_secs: Some(LOCAL_AGENT_WAIT_SECS),
                simulated: false,
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        eprintln!(
            "sweep {}: {} cells on this machine's browsers",
            resp.sweep_id, resp.cells
        );
        let p = crate::remote::follow(&mut admin, &resp.sweep_id, resp.cells).await?;
        Ok::<_, anyhow::Error>((resp.sweep_id, crate::remote::answered(&p)))
    }
    .await;
    stop_agent(&mut agent).await;
    shutdown.cancel();
    server
        .await
        .context("the embedded coordinator panicked")?
        .context("the embedded coordinator failed")?;
    result
}

/// The dashboard over the finished sweep, until Ctrl-C or SIGTERM.
async fn keep_serving(db_path: &Path, listener: std::net::TcpListener) -> Result<()> {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1")?;
    let mut config = ServeConfig::new(db_path.to_path_buf());
    config.http = Some(service::HttpListener::new(listener));
    let shutdown = CancellationToken::new();
    let ready = config.ready.clone();
    let server = tokio::spawn(service::run(config, grpc, shutdown.clone()));
    ready.cancelled().await;
    eprintln!("the sweep is done; the dashboard stays up until Ctrl-C");
    crate::remote::wait_for_signal().await;
    shutdown.cancel();
    server
        .await
        .context("the dashboard's coordinator panicked")?
        .context("the dashboard's coordinator failed")
}

/// SIGTERM first, so the agent closes its browsers itself; a kill only if it does not exit.
async fn stop_agent(agent: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = agent.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(30), agent.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = agent.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
}
