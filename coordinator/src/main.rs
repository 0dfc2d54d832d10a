//! `quantgrid`: the coordinator's command line.

mod cli;
mod local;
mod remote;
mod runs;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::{Cli, Command, MatrixArgs, RunArgs, TokenAction};
use quantgrid_coordinator::report::{MatrixOptions, matrix_markdown};
use quantgrid_coordinator::service::auth;
use quantgrid_coordinator::store::{Store, TokenCreated, TokenKind};
use quantgrid_matrix::spec::{self, MatrixSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let Cli {
        command,
        generate_matrix,
        db_path,
        output,
        verbose: _,
    } = cli;
    match command {
        Some(Command::Validate { configs }) => validate(&configs),
        Some(Command::Expand {
            config,
            count,
            json,
            narrow,
        }) => {
            let (spec, _) = load_spec(&config)?;
            let filter = narrow.filter()?;
            let cells: Vec<_> = spec
                .expand()
                .into_iter()
                .filter(|c| filter.matches(c))
                .collect();
            let mut out = std::io::stdout().lock();
            if count {
                writeln!(out, "{}", cells.len())?;
            } else {
                for c in &cells {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(c)?)?;
                    } else {
                        writeln!(out, "{}  {}", c.id, c.label())?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Matrix(args)) => matrix(db_path.as_deref(), output.as_deref(), &args),
        None if generate_matrix => matrix(
            db_path.as_deref(),
            output.as_deref(),
            &MatrixArgs {
                sweep: None,
                include_simulated: false,
                trusted_only: false,
                accuracy_tolerance: None,
            },
        ),
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            Ok(ExitCode::from(2))
        }
        Some(Command::Results { sweep, limit, json }) => {
            let store = open_existing(db_path.as_deref())?;
            results(&store, sweep.as_deref(), limit, json)
        }
        Some(Command::History { cell, json, narrow }) => {
            let store = open_existing(db_path.as_deref())?;
            runs::history(&store, cell.as_deref(), &narrow, json)
        }
        Some(Command::Diff {
            sweeps,
            json,
            flaky_days,
        }) => {
            let store = open_existing(db_path.as_deref())?;
            runs::diff(&store, &sweeps, json, flaky_days)
        }
        Some(Command::Merge { other }) => {
            let Some(path) = db_path.as_deref() else {
                bail!("--db-path is required")
            };
            runs::merge(path, &other)
        }
        Some(Command::Export { format, dir }) => {
            let store = open_existing(db_path.as_deref())?;
            runs::export(&store, format, &dir)
        }
        Some(Command::Run(args)) => run_sweep(
            &args,
            db_path.unwrap_or_else(|| PathBuf::from("results.duckdb")),
            output.or_else(|| generate_matrix.then(|| PathBuf::from("matrix.md"))),
        ),
        Some(Command::Schema) => {
            print!("{}", spec::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Serve(args)) => remote::serve(db_path, &args),
        Some(Command::Token { action }) => token(db_path.as_deref(), action),
        Some(Command::Submit {
            config,
            wait,
            request_id,
            simulated,
            remote,
        }) => remote::submit(&config, wait, request_id, simulated, &remote),
        Some(Command::Migrate) => {
            let Some(path) = db_path.as_deref() else {
                bail!("--db-path is required")
            };
            if !path.exists() {
                bail!("results database {} does not exist", path.display());
            }
            let store = Store::open(path)?;
            eprintln!(
                "{} is at schema version {}",
                path.display(),
                store.schema_version()?
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Agents {
            action: None,
            remote,
            ..
        }) => remote::agents(&remote),
        Some(Command::Agents {
            action: Some(action),
            name,
            remote,
        }) => remote::agent_key(action, name.as_deref().unwrap_or_default(), &remote),
        Some(Command::Schedule { action }) => remote::schedule(action),
        Some(Command::Cancel { sweep, remote }) => remote::cancel(&sweep, &remote),
        Some(Command::Drain {
            agent,
            undo,
            remote,
        }) => remote::drain(&agent, undo, &remote),
    }
}

fn token(db_path: Option<&Path>, action: TokenAction) -> Result<ExitCode> {
    let via = match &action {
        TokenAction::Create { via, .. }
        | TokenAction::List { via }
        | TokenAction::Revoke { via, .. } => via,
    };
    if let Some(remote) = via.remote()? {
        return remote::token(action, &remote);
    }
    let Some(path) = db_path else {
        bail!("--db-path is required (or --coordinator, for a running one)")
    };
    let running =
        "token commands on a running coordinator take --coordinator URL and an admin --token";
    match action {
        TokenAction::Create {
            name,
            admin,
            viewer,
            rotate,
            ..
        } => {
            let kind = match (admin, viewer) {
                (true, _) => TokenKind::Admin,
                (false, true) => TokenKind::Viewer,
                (false, false) => TokenKind::Agent,
            };
            quantgrid_coordinator::service::auth::check_token_name(&name)?;
            let mut store = Store::open(path).context(running)?;
            let token =
                auth::generate_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let created = store.create_token(&name, &auth::hash_token(&token), kind, rotate)??;
            remote::say_created(&name, kind, created == TokenCreated::Rotated, None);
            println!("{token}");
        }
        TokenAction::List { .. } => {
            let store = open_existing(Some(path)).context(running)?;
            remote::print_tokens(
                store
                    .tokens()?
                    .into_iter()
                    .map(|t| (t.name, t.kind.to_string(), t.created_at, t.revoked)),
            );
        }
        TokenAction::Revoke { name, .. } => {
            if !path.exists() {
                bail!("results database {} does not exist", path.display());
            }
            let mut store = Store::open(path).context(running)?;
            store.revoke_token(&name)??;
            eprintln!("token `{name}` revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_spec(path: &Path) -> Result<(MatrixSpec, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read matrix spec {}", path.display()))?;
    let spec = spec::parse(&text, &path.display().to_string())?;
    Ok((spec, text))
}

fn validate(configs: &[PathBuf]) -> Result<ExitCode> {
    let mut bad = 0;
    for path in configs {
        match load_spec(path) {
            Ok((spec, _)) => println!("ok {}: {} cells", path.display(), spec.expand().len()),
            Err(e) => {
                bad += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Read-only commands must not create an empty database where the user mistyped a path, nor
/// migrate or lock one: they open it read-only.
fn open_existing(db_path: Option<&Path>) -> Result<Store> {
    let Some(path) = db_path else {
        bail!("--db-path is required");
    };
    if !path.exists() {
        bail!("results database {} does not exist", path.display());
    }
    Ok(Store::open_read_only(path)?)
}

/// Writes next to `path` and renames, so a failure never leaves a half-written file behind.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("md.partial");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn matrix(db_path: Option<&Path>, output: Option<&Path>, args: &MatrixArgs) -> Result<ExitCode> {
    let store = open_existing(db_path)?;
    if let Some(t) = args.accuracy_tolerance
        && !(t.is_finite() && t > 0.0)
    {
        bail!("--accuracy-tolerance must be a positive number, not {t}");
    }
    let md = matrix_markdown(
        &store,
        &MatrixOptions {
            sweep: args.sweep.as_deref(),
            include_simulated: args.include_simulated,
            trusted_only: args.trusted_only,
            accuracy_tolerance: args.accuracy_tolerance,
        },
    )?;
    match output {
        Some(path) => {
            write_atomically(path, &md)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{md}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn results(store: &Store, sweep: Option<&str>, limit: usize, json: bool) -> Result<ExitCode> {
    let rows = store.results(sweep, limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        for r in &rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<10} {:<16} {:<46} {:<16} {:>4} {:>7} {:>10} {:>8} {:>7}  note",
        "sweep", "cell", "configuration", "status", "bits", "samples", "p50 ms", "err", "cos"
    )?;
    for r in &rows {
        let note = match (&r.error_text, r.simulated, r.accepted) {
            (_, true, _) => "simulated".to_string(),
            (_, _, false) => "not accepted".to_string(),
            (Some(e), _, _) => e
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect(),
            (None, _, _) => r.adapter.clone().unwrap_or_default(),
        };
        writeln!(
            out,
            "{:<10} {:<16} {:<46} {:<16} {:>4} {:>7} {:>10} {:>8} {:>7}  {note}",
            r.sweep_id,
            r.cell_id,
            r.label,
            r.status.as_str(),
            r.effective_bits,
            r.samples,
            r.p50_ms.map_or("-".into(), |v| format!("{v:.3}")),
            r.accuracy_rel_err
                .map_or("-".into(), |v| format!("{:.2}%", v * 100.0)),
            r.accuracy_cosine.map_or("-".into(), |v| format!("{v:.4}")),
        )?;
    }
    if rows.is_empty() {
        writeln!(out, "(no results stored)")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_sweep(args: &RunArgs, db_path: PathBuf, output: Option<PathBuf>) -> Result<ExitCode> {
    let (spec, yaml, file) = match &args.config {
        Some(path) => {
            let (spec, yaml) = load_spec(path)?;
            (spec, yaml, path.display().to_string())
        }
        None => {
            let yaml = args.narrow.to_spec_yaml(args.test_all_families)?;
            let spec = spec::parse(&yaml, "<command line>")?;
            (spec, yaml, "<command line>".to_string())
        }
    };
    // a spec from a file can still be narrowed by flags
    let filter = args.narrow.filter()?;
    let cells: Vec<_> = spec
        .expand()
        .into_iter()
        .filter(|c| filter.matches(c))
        .collect();
    if cells.is_empty() {
        bail!("the flags leave no cell of {file} to run");
    }
    if let Some(url) = &args.coordinator {
        if output.is_some() {
            bail!(
                "--output and --generate-matrix render this machine's database; with --coordinator the results are in the lab's (run `quantgrid matrix --sweep ID` where it is)"
            );
        }
        let Some(token) = args.token.clone() else {
            bail!(
                "--coordinator needs --token (or QUANTGRID_TOKEN): an admin token of that coordinator"
            );
        };
        let remote = cli::Remote {
            coordinator: url.clone(),
            token,
            tls_ca: args.tls_ca.clone(),
            tls_cert: None,
            tls_key: None,
        };
        return remote::submit_yaml(
            yaml,
            &file,
            cells.into_iter().map(|c| c.id.0).collect(),
            true,
            None,
            false,
            &remote,
        );
    }
    let http = match &args.http {
        Some(at) => {
            let l = std::net::TcpListener::bind(at)
                .with_context(|| format!("cannot listen on {at} (--http)"))?;
            let bound = l.local_addr().context("reading the bound http address")?;
            if !bound.ip().is_loopback() {
                bail!(
                    "--http {bound} is reachable from other machines, and a local run serves plaintext: bind it to 127.0.0.1, or serve the database with `quantgrid serve --http` and TLS"
                );
            }
            Some(l)
        }
        None => None,
    };
    local::run(local::LocalRun {
        spec_yaml: &yaml,
        spec_file: &file,
        cells: cells.into_iter().map(|c| c.id.0).collect(),
        db_path: &db_path,
        output: output.as_deref(),
        headed: args.headed,
        http,
    })
}
