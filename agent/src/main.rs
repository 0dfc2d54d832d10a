//! `quantgrid-agent`: runs cells for a coordinator on this machine's browsers.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use quantgrid_agent::executor::{Executor, SimulatedExecutor};
use quantgrid_agent::runtime::{self, AgentConfig, Shutdown};
use quantgrid_agent::{config, install};
use quantgrid_proto::client::Tls;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "quantgrid-agent",
    version,
    about = "Run quantgrid cells on this machine's browsers"
)]
struct Cli {
    /// More logging; repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExecutorKind {
    /// Real browsers (arrives with browser discovery and the harness).
    Browser,
    /// Sleep instead of measuring; results are flagged simulated. For drills and load tests.
    Simulated,
}

// parsed once at start-up: the size difference costs nothing
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Print this machine's GPUs and browsers, each with what it reports from inside about
    /// WebGPU and WebNN (a headless session per browser), as JSON.
    Probe {
        /// Agent config whose `browsers:` are probed too.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print this machine's GPUs and browser builds as discovery finds them (versions read
    /// from the binaries and drivers), as JSON, without starting any browser.
    Discover {
        /// Agent config whose `browsers:` are listed too.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Connect to a coordinator and run the cells it offers until stopped. SIGTERM or Ctrl-C:
    /// finish the running cell, report, disconnect. A second signal: abandon it and exit.
    Run {
        /// Coordinator URL, e.g. http://127.0.0.1:7700.
        #[arg(long, env = "QUANTGRID_COORDINATOR")]
        coordinator: Option<String>,
        /// Agent token (quantgrid token create NAME). Prefer --token-file or the environment:
        /// an argument is visible to every user in `ps`.
        #[arg(long, env = "QUANTGRID_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// File holding the agent token (what `install` writes, readable by its owner only).
        /// Wins over --token and QUANTGRID_TOKEN.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The agent's ed25519 key, which signs every report (made, readable by this user only,
        /// when absent); default ~/.config/quantgrid/agent.key.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Agent name; must match the token's name.
        #[arg(long)]
        name: Option<String>,
        /// Labels sweeps can require, e.g. pool=nightly,gpu=nvidia.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Cells at once (a GPU is exclusive: keep 1 unless the machine has more).
        #[arg(long)]
        slots: Option<u32>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ExecutorKind::Browser)]
        executor: ExecutorKind,
        /// How long a simulated cell takes.
        #[arg(long, default_value_t = 50)]
        simulated_cell_ms: u64,
        /// Show browser windows instead of running headless.
        #[arg(long)]
        headed: bool,
        /// Where registry checkpoints are unpacked (`./x run` installs them); default
        /// ~/.cache/quantgrid/models.
        #[arg(long, env = "QUANTGRID_MODELS", value_name = "DIR")]
        models_dir: Option<PathBuf>,
        /// CA certificate of an https coordinator.
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// Client certificate (PEM), for a coordinator that requires mutual TLS.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Install the agent as a service that starts with the machine and runs in the user's
    /// session (systemd user unit with lingering, a LaunchAgent, a task at logon).
    Install {
        /// Coordinator URL the service dials.
        #[arg(long)]
        coordinator: String,
        /// File holding the agent token; it is copied beside the agent's state, readable by
        /// this user only, and never put on a command line.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        #[command(flatten)]
        scope: ScopeArgs,
        /// More `run` arguments for the service, after `--`, e.g. `-- --labels pool=nightly`.
        #[arg(last = true)]
        run_args: Vec<String>,
    },
    /// Stop and remove the service.
    Uninstall {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Remove the stored token and key too.
        #[arg(long)]
        purge: bool,
    },
    /// Say whether the service is installed and running, and whether its token is private.
    Status {
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Debug, clap::Args)]
struct ScopeArgs {
    /// The user's own service manager (the default: the browsers get the user's GPU session).
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// The machine's service manager, for lab machines.
    #[arg(long)]
    system: bool,
}

impl ScopeArgs {
    fn scope(&self) -> install::Scope {
        if self.system {
            install::Scope::System
        } else {
            install::Scope::User
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let level = ["warn", "info", "debug", "trace"][usize::from(cli.verbose.min(3))];
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Install {
            coordinator,
            token_file,
            scope,
            run_args,
        } => {
            let token = install::read_token(&token_file)?;
            let program = std::env::current_exe()
                .context("cannot find this program's path")?
                .canonicalize()
                .context("cannot resolve this program's path")?;
            let plan = install::host_plan(scope.scope(), program, coordinator, run_args)?;
            for step in install::install(&plan, &token)? {
                println!("{step}");
            }
            Ok(())
        }
        Command::Uninstall { scope, purge } => {
            let plan = install::host_plan(scope.scope(), PathBuf::new(), String::new(), vec![])?;
            for step in install::uninstall(&plan, purge)? {
                println!("{step}");
            }
            Ok(())
        }
        Command::Status { scope } => {
            let plan = install::host_plan(scope.scope(), PathBuf::new(), String::new(), vec![])?;
            for line in install::status(&plan) {
                println!("{line}");
            }
            Ok(())
        }
        Command::Discover { config } => {
            let raw = read_config(config.as_ref())?;
            let machine = quantgrid_agent::discovery::machine(
                raw.browsers.iter().map(|b| b.candidate()).collect(),
                raw.discover.unwrap_or(true),
            );
            println!("{}", serde_json::to_string_pretty(&machine)?);
            Ok(())
        }
        Command::Probe { config } => {
            reap_orphans();
            let raw = read_config(config.as_ref())?;
            let machine = quantgrid_agent::discovery::machine(
                raw.browsers.iter().map(|b| b.candidate()).collect(),
                raw.discover.unwrap_or(true),
            );
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let mut probed = Vec::new();
            for found in &machine.browsers {
                match rt.block_on(quantgrid_agent::probe::probe(found)) {
                    Ok(p) => probed.push(serde_json::json!({
                        "capability": p.capability(),
                        "driver": found.candidate.driver,
                        "report": p.report,
                    })),
                    Err(e) => probed.push(serde_json::json!({
                        "browser": found.candidate.browser,
                        "binary": found.candidate.binary,
                        "version": found.version,
                        "error": format!("{:#}", anyhow::Error::from(e)),
                    })),
                }
            }
            let out = serde_json::json!({
                "os": machine.os,
                "arch": machine.arch,
                "gpus": machine.gpus,
                "browsers": probed,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Run {
            coordinator,
            token,
            token_file,
            key_file,
            name,
            labels,
            slots,
            config: config_path,
            executor,
            simulated_cell_ms,
            tls_ca,
            tls_cert,
            tls_key,
            headed,
            models_dir,
        } => {
            let raw = read_config(config_path.as_ref())?;
            let declared: Vec<_> = raw.browsers.iter().map(|b| b.candidate()).collect();
            let discover = raw.discover.unwrap_or(true);
            let coordinator = coordinator
                .or(raw.coordinator)
                .context("--coordinator (or `coordinator:` in --config) is required")?;
            let token = match (token_file, token, raw.token, raw.token_file) {
                (None, Some(t), _, _) | (None, None, Some(t), _) => t,
                (Some(f), ..) | (None, None, None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read token file {}", f.display()))?
                    .trim()
                    .to_string(),
                (None, None, None, None) => {
                    bail!("--token (or QUANTGRID_TOKEN, or `token_file:` in --config) is required")
                }
            };
            let mut label_map: BTreeMap<String, String> = raw.labels;
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .with_context(|| format!("label `{l}` must be key=value"))?;
                label_map.insert(k.to_string(), v.to_string());
            }
            let slots = slots.or(raw.slots).unwrap_or(1);
            if slots == 0 {
                bail!("--slots must be at least 1");
            }
            let tls_ca = tls_ca.or(raw.tls_ca);
            let read = |p: PathBuf, what: &str| {
                std::fs::read(&p).with_context(|| format!("cannot read {what} {}", p.display()))
            };
            let identity = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => {
                    Some((read(c, "client certificate")?, read(k, "client key")?))
                }
                _ => None,
            };
            let tls = Tls {
                ca_pem: tls_ca.map(|p| read(p, "CA certificate")).transpose()?,
                identity,
            };
            let executor: Arc<dyn Executor> = match executor {
                ExecutorKind::Browser => {
                    reap_orphans();
                    let machine = quantgrid_agent::discovery::machine(declared, discover);
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let mut probed = Vec::new();
                    for found in &machine.browsers {
                        match rt.block_on(quantgrid_agent::probe::probe(found)) {
                            Ok(p) => probed.push(p),
                            Err(e) => eprintln!(
                                "skipping {} at {}: {e}",
                                found.candidate.browser,
                                found.candidate.binary.display()
                            ),
                        }
                    }
                    if probed.is_empty() {
                        bail!(
                            "no usable browser found (install Chromium and chromium-driver, or Firefox and geckodriver)"
                        );
                    }
                    let mut gpu_vendors: Vec<_> = machine.gpus.iter().map(|g| g.vendor).collect();
                    if probed
                        .iter()
                        .any(|p| p.capability().webgpu.is_some_and(|a| a.is_software()))
                    {
                        gpu_vendors.push(quantgrid_matrix::spec::GpuVendor::Software);
                    }
                    gpu_vendors.sort();
                    gpu_vendors.dedup();
                    // native cells: the host's own adapter through wgpu, where it has one
                    let native = match rt.block_on(quantgrid_agent::native::Gpu::open()) {
                        Ok(gpu) => Some(Arc::new(gpu)),
                        Err(e) => {
                            eprintln!("no native cells: {e}");
                            None
                        }
                    };
                    let caps = quantgrid_matrix::agent::Capabilities {
                        os: machine.os,
                        arch: machine.arch.to_string(),
                        browsers: probed.iter().map(|p| p.capability()).collect(),
                        gpu_vendors,
                        labels: label_map,
                        slots,
                        simulated: false,
                        native: native.as_ref().map(|g| g.adapter()),
                    };
                    let exec = quantgrid_agent::browser_executor::BrowserExecutor::new(
                        probed, caps, !headed,
                    )
                    .with_native(native);
                    Arc::new(match models_dir {
                        Some(dir) => exec.with_models_dir(dir),
                        None => exec,
                    })
                }

                ExecutorKind::Simulated => {
                    let sim = raw.simulated.unwrap_or_default();
                    let mut caps = SimulatedExecutor::every_browser(slots, label_map);
                    if let Some(only) = sim.browsers {
                        caps.browsers.retain(|b| only.contains(&b.browser));
                    }
                    Arc::new(SimulatedExecutor {
                        cell_time: Duration::from_millis(sim.cell_ms.unwrap_or(simulated_cell_ms)),
                        capabilities: caps,
                    })
                }
            };
            let key_file = match key_file {
                Some(f) => f,
                None => install::default_key_file()?,
            };
            let key = quantgrid_proto::signing::load_or_create_key(&key_file)?;
            tracing::info!(
                key = %quantgrid_proto::signing::key_id(&key.verifying_key().to_bytes()),
                file = %key_file.display(),
                "signing reports"
            );
            let config = AgentConfig {
                key,
                coordinator,
                token,
                name: name.or(raw.name).unwrap_or_default(),
                tls,
                max_backoff: Duration::from_secs(30),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let shutdown = Shutdown {
                    graceful: Default::default(),
                    abandon: Default::default(),
                };
                let signals = shutdown.clone();
                tokio::spawn(async move {
                    let mut signals_in = Signals::new();
                    signals_in.next().await;
                    eprintln!("finishing the running cell; signal again to abandon it");
                    signals.graceful.cancel();
                    signals_in.next().await;
                    eprintln!("abandoning");
                    signals.abandon.cancel();
                });
                runtime::run(config, executor, shutdown)
                    .await
                    .context("agent stopped")
            })
        }
    }
}

/// Browsers and drivers an earlier agent left when it was killed (SIGKILL runs no cleanup).
fn reap_orphans() {
    let n = quantgrid_agent::webdriver::reap_orphans();
    if n > 0 {
        eprintln!("killed {n} browser and driver processes left by an agent that was killed");
    }
}

fn read_config(path: Option<&PathBuf>) -> Result<config::RawAgentConfig> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read agent config {}", p.display()))?;
            Ok(config::parse(&text, &p.display().to_string())?)
        }
        None => Ok(config::RawAgentConfig {
            version: 1,
            ..Default::default()
        }),
    }
}

/// SIGTERM and Ctrl-C, listened for once: a second signal sent right after the first must
/// not slip through while a new listener is being set up.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
