//! The `quantgrid` command line: argument types (clap derive) and how flags become a spec or a
//! cell filter. Flag names follow the tool quantgrid replaces.

use clap::{Args, Parser, Subcommand, ValueEnum};
use quantgrid_matrix::spec::Filter;
use quantgrid_matrix::{Bits, Browser, Modality, Platform, family};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "quantgrid",
    version,
    about = "Measure how browsers run quantized ML models through WebGPU and WebNN",
    after_help = "Exit codes: 0 ok; 1 some cell did not pass; 2 usage, config, input or database error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Same as `quantgrid matrix` (kept for the flags of the tool quantgrid replaces).
    #[arg(long, global = true)]
    pub generate_matrix: bool,

    /// Results database (DuckDB file).
    #[arg(long, global = true, value_name = "DB")]
    pub db_path: Option<PathBuf>,

    /// Where to write the Markdown matrix.
    #[arg(long, global = true, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// More logging; repeat for more (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check matrix specs and report the first error in each, with file:line:col.
    Validate {
        #[arg(required = true, value_name = "CONFIG")]
        configs: Vec<PathBuf>,
    },
    /// List the cells a spec expands to.
    Expand {
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
        /// Print only the number of cells.
        #[arg(long)]
        count: bool,
        /// Print cells as JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        narrow: Narrow,
    },
    /// Render the Markdown compatibility matrix from stored results.
    Matrix(MatrixArgs),
    /// List stored results.
    Results {
        /// Only this sweep.
        #[arg(long)]
        sweep: Option<String>,
        /// At most this many rows, newest first.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Every stored result of a cell across runs: status, p10/p50/p90, accuracy, browser
    /// build, driver, adapter and agent (a new build is marked, never read as a change).
    History {
        /// A cell id (from `quantgrid results` or `expand`); without it, the cells the flags
        /// below pick.
        #[arg(value_name = "CELL")]
        cell: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        narrow: Narrow,
    },
    /// What changed from run OLD to run NEW: status, time (raw samples, same build and agent
    /// only) and accuracy changes per family. Exit 1 when anything regressed.
    Diff {
        /// `OLD NEW`; `NEW` alone: against the previous run of its name; none: the latest run
        /// against its previous.
        #[arg(value_name = "SWEEP", num_args = 0..=2)]
        sweeps: Vec<String>,
        /// The diff as one JSON object.
        #[arg(long)]
        json: bool,
        /// A cell that both passed and failed on one build and agent within this many days
        /// before NEW is flaky.
        #[arg(long, default_value_t = 7.0)]
        flaky_days: f64,
    },
    /// Bring the runs of another results file (a contributor's `quantgrid run`) into this
    /// one; a run already here is skipped, so merging twice adds nothing. Stop the
    /// coordinator that holds --db-path first.
    Merge {
        #[arg(value_name = "OTHER")]
        other: PathBuf,
    },
    /// Write every table of the results database out for a warehouse.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Parquet)]
        format: ExportFormat,
        /// A directory that does not exist yet, or is empty.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Run a matrix on this machine's browsers: an embedded coordinator and a local agent.
    Run(RunArgs),
    /// Print the JSON schema of matrix specs (`configs/spec.schema.json`).
    Schema,
    /// Migrate a results database to this quantgrid's schema (stop its coordinator first).
    Migrate,
    /// Run the coordinator: agents and admin commands connect to it.
    Serve(ServeArgs),
    /// Manage agent and admin tokens (only hashes are stored): on a running coordinator with
    /// --coordinator and an admin token, else directly in --db-path (coordinator stopped; how
    /// the first admin token is made).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Submit a spec to a coordinator; prints the sweep id on the last line.
    Submit {
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
        /// Show progress until the sweep ends; exit 0 only if every cell passed or was
        /// unsupported (the browser's own answer).
        #[arg(long)]
        wait: bool,
        /// Resubmitting with the same id returns the first sweep instead of a new one.
        #[arg(long)]
        request_id: Option<String>,
        /// A load test: only simulated agents (`quantgrid-agent run --executor simulated`)
        /// take its cells, and its results never count as passes.
        #[arg(long)]
        simulated: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the agents a coordinator knows, with their pinned keys; `trust NAME` pins the key
    /// an agent was refused with, `forget NAME` unpins its key (its next registration pins
    /// the key it presents).
    Agents {
        #[arg(value_enum)]
        action: Option<AgentsAction>,
        /// The agent to trust or forget.
        #[arg(required_if_eq_any = [("action", "trust"), ("action", "forget")])]
        name: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a spec on a cron schedule, owned by the coordinator (durable across restarts).
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Cancel a running sweep.
    Cancel {
        sweep: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop giving an agent new cells (it finishes the one it has); --undo reverses it.
    Drain {
        agent: String,
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentsAction {
    Trust,
    Forget,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it once, alone on the last line. A name in use is refused
    /// unless --rotate is given.
    Create {
        name: String,
        /// A token for admin commands instead of an agent.
        #[arg(long, conflicts_with = "viewer")]
        admin: bool,
        /// A token that reads the dashboard and /metrics only.
        #[arg(long)]
        viewer: bool,
        /// Give the existing token of this name a new secret (same kind); the old secret stops
        /// working and its agent's session is closed.
        #[arg(long)]
        rotate: bool,
        #[command(flatten)]
        via: MaybeRemote,
    },
    List {
        #[command(flatten)]
        via: MaybeRemote,
    },
    /// Revoke a token: on a running coordinator it stops working at once and its agent's
    /// session is closed.
    Revoke {
        name: String,
        #[command(flatten)]
        via: MaybeRemote,
    },
}

/// A running coordinator to ask, or none (the database is changed directly).
#[derive(Debug, Args)]
pub struct MaybeRemote {
    /// Coordinator URL; without it, --db-path is changed directly.
    #[arg(long, env = "QUANTGRID_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Admin token of --coordinator.
    #[arg(long, env = "QUANTGRID_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl MaybeRemote {
    /// The coordinator to ask, when one was named.
    pub fn remote(&self) -> anyhow::Result<Option<Remote>> {
        let Some(coordinator) = &self.coordinator else {
            return Ok(None);
        };
        let Some(token) = &self.token else {
            anyhow::bail!("--coordinator needs an admin --token (or QUANTGRID_TOKEN)")
        };
        Ok(Some(Remote {
            coordinator: coordinator.clone(),
            token: token.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: None,
            tls_key: None,
        }))
    }
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Add a schedule: SPEC runs at every time CRON names in the zone TZ.
    Add {
        name: String,
        #[arg(value_name = "SPEC")]
        spec: PathBuf,
        /// Five fields (minute hour day month weekday), or six with seconds first.
        #[arg(long)]
        cron: String,
        /// IANA time zone the cron's wall clock is in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// When a run is due while the previous one still runs.
        #[arg(long, value_enum, default_value_t = OverlapArg::Skip)]
        overlap: OverlapArg,
        /// What to do about runs that fell due while the coordinator was down.
        #[arg(long, value_enum, default_value_t = CatchUpArg::None)]
        catch_up: CatchUpArg,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every schedule with its next due time and its running sweep.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    Pause {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    Resume {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    Remove {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Start a run now (the schedule's overlap policy does not apply).
    RunNow {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

impl ScheduleAction {
    pub fn remote(&self) -> &Remote {
        match self {
            ScheduleAction::Add { remote, .. }
            | ScheduleAction::List { remote }
            | ScheduleAction::Pause { remote, .. }
            | ScheduleAction::Resume { remote, .. }
            | ScheduleAction::Remove { remote, .. }
            | ScheduleAction::RunNow { remote, .. } => remote,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverlapArg {
    /// Start nothing; record an overrun.
    Skip,
    /// Start it when the previous run ends (at most one waits).
    Queue,
    /// Cancel the previous run and start this one.
    CancelPrevious,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatchUpArg {
    /// Record them as missed.
    None,
    /// Start one run for the latest of them.
    Once,
}

/// Where the coordinator is and how to prove who we are.
#[derive(Debug, Args)]
pub struct Remote {
    /// Coordinator URL, e.g. http://127.0.0.1:7700 or https://grid.lab:7700.
    #[arg(long, env = "QUANTGRID_COORDINATOR")]
    pub coordinator: String,
    /// Admin token.
    #[arg(long, env = "QUANTGRID_TOKEN", hide_env_values = true)]
    pub token: String,
    /// CA certificate (PEM) that signed the coordinator's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a coordinator that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// Also serve the dashboard and `/metrics` (admin or viewer token) here, over TLS with the
    /// same --tls-* files as gRPC where they are given. Port 0 picks a free port (printed on
    /// stdout as `http ADDR`, after the `listening` line). Plaintext: beyond loopback only with
    /// --insecure.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Serve plaintext on an address other machines can reach (tokens then cross the network
    /// readable by anyone on it); without it such an address needs --tls-cert.
    #[arg(long)]
    pub insecure: bool,
    /// Serve TLS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// A lease not renewed by a heartbeat for this long is lost and its cell requeued.
    #[arg(long, default_value_t = 30.0)]
    pub lease_ttl_secs: f64,
    /// How often agents heartbeat.
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat_secs: f64,
    /// How long an agent's stream may be gone before its cells are requeued.
    #[arg(long, default_value_t = 10.0)]
    pub disconnect_grace_secs: f64,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Only this sweep (default: the latest result of every cell in the database).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Show results of the simulated load-test executor (marked 🧪).
    #[arg(long)]
    pub include_simulated: bool,
    /// Only results signed by an agent key pinned here (unsigned ones, and those of keys that
    /// came with a merged file and were not trusted, leave their cells empty).
    #[arg(long)]
    pub trusted_only: bool,
    /// Relative error against fp32 that still counts as accurate (default: the sweep's).
    #[arg(long)]
    pub accuracy_tolerance: Option<f64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A matrix spec; without it the flags below describe the matrix.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Every family in the registry.
    #[arg(long)]
    pub test_all_families: bool,
    /// Run browsers headless (the default; kept for the flags of the tool quantgrid replaces).
    #[arg(long, conflicts_with = "headed")]
    pub headless: bool,
    /// Show the browser windows.
    #[arg(long)]
    pub headed: bool,
    /// Submit to this lab coordinator and follow the sweep there, instead of running on this
    /// machine (the results then live in the coordinator's database).
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// Admin token of `--coordinator`.
    #[arg(
        long,
        env = "QUANTGRID_TOKEN",
        hide_env_values = true,
        requires = "coordinator"
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) of an https `--coordinator`.
    #[arg(long, value_name = "FILE", requires = "coordinator")]
    pub tls_ca: Option<PathBuf>,
    /// Serve the dashboard on this loopback address (port 0: any) while the sweep runs, and
    /// after it until Ctrl-C; a viewer token for it is printed.
    #[arg(long, value_name = "ADDR", conflicts_with = "coordinator")]
    pub http: Option<String>,
    #[command(flatten)]
    pub narrow: Narrow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// DuckDB's `EXPORT DATABASE ... (FORMAT parquet)`: a Parquet file per table.
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformArg {
    Webgpu,
    Webnn,
    Both,
    /// The WebGPU graph without the browser: wgpu on the agent's own GPU.
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelType {
    Auto,
    Text,
    TextGeneration,
    Vision,
    Audio,
    Multimodal,
}

/// Flags that pick part of a matrix.
#[derive(Debug, Args, Default)]
pub struct Narrow {
    /// Only these families (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "FAMILY")]
    pub test_family: Vec<String>,
    /// Only these models: an id, an alias or a family name.
    #[arg(long, value_delimiter = ',', value_name = "MODEL")]
    pub model: Vec<String>,
    /// Only this modality (`auto`: whatever --model resolves to).
    #[arg(long, value_enum)]
    pub model_type: Option<ModelType>,
    #[arg(long, value_enum)]
    pub platform: Option<PlatformArg>,
    /// Only these browsers (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_parser = parse_browser)]
    pub browser: Vec<Browser>,
    /// Only these bit widths (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_parser = parse_bits)]
    pub bits: Vec<Bits>,
    /// Only mixed-precision cells (attention and heads at 8 bits).
    #[arg(long)]
    pub mixed_precision: bool,
    /// Only WebNN experimental-precision cells (sub-8-bit run as requested).
    #[arg(long)]
    pub experimental_precision: bool,
}

fn parse_browser(s: &str) -> Result<Browser, String> {
    Browser::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
        format!("unknown browser `{s}`; expected chrome, chromium, edge, firefox or safari")
    })
}

fn parse_bits(s: &str) -> Result<Bits, String> {
    s.parse::<u32>()
        .ok()
        .and_then(Bits::from_u32)
        .ok_or_else(|| format!("bits must be one of 2, 3, 4, 8, 16, not `{s}`"))
}

impl ModelType {
    fn modality(self) -> Option<Modality> {
        match self {
            ModelType::Auto => None,
            ModelType::Text => Some(Modality::Text),
            ModelType::TextGeneration => Some(Modality::TextGeneration),
            ModelType::Vision => Some(Modality::Vision),
            ModelType::Audio => Some(Modality::Audio),
            ModelType::Multimodal => Some(Modality::Multimodal),
        }
    }
}

impl Narrow {
    pub fn filter(&self) -> Result<Filter, family::UnknownName> {
        Ok(Filter {
            families: self
                .test_family
                .iter()
                .map(|f| family::resolve_family(f))
                .collect::<Result<_, _>>()?,
            models: self
                .model
                .iter()
                .map(|m| family::resolve(m))
                .collect::<Result<_, _>>()?,
            modality: self.model_type.and_then(ModelType::modality),
            browsers: self.browser.clone(),
            platforms: match self.platform {
                None | Some(PlatformArg::Both) => Vec::new(),
                Some(PlatformArg::Webgpu) => vec![Platform::Webgpu],
                Some(PlatformArg::Webnn) => vec![Platform::Webnn],
                Some(PlatformArg::Native) => vec![Platform::Native],
            },
            bits: self.bits.clone(),
            mixed: self.mixed_precision.then_some(true),
            experimental: self.experimental_precision.then_some(true),
        })
    }

    /// The spec the old tool's flags describe, as YAML, so it is validated and stored exactly
    /// like a file would be.
    pub fn to_spec_yaml(&self, all_families: bool) -> Result<String, family::UnknownName> {
        let filter = self.filter()?;
        let mut y = String::from("version: 1\nname: command-line\n");
        let modality_families = |m: Modality| -> Vec<&'static str> {
            family::families()
                .iter()
                .filter(|f| f.modality == m)
                .map(|f| f.key)
                .collect()
        };
        if all_families {
            match filter.modality {
                Some(m) => y.push_str(&format!(
                    "families: [{}]\n",
                    modality_families(m).join(", ")
                )),
                None => y.push_str("families: all\n"),
            }
        } else if !filter.families.is_empty() {
            let keys: Vec<&str> = filter.families.iter().map(|f| f.key).collect();
            y.push_str(&format!("families: [{}]\n", keys.join(", ")));
        } else if filter.models.is_empty() {
            match filter.modality {
                Some(m) => y.push_str(&format!(
                    "families: [{}]\n",
                    modality_families(m).join(", ")
                )),
                None => y.push_str("families: [bert]\n"),
            }
        }
        if !filter.models.is_empty() {
            let ids: Vec<String> = filter
                .models
                .iter()
                .map(|m| format!("\"{}\"", m.model.id))
                .collect();
            y.push_str(&format!("models: [{}]\n", ids.join(", ")));
        }
        let browsers: Vec<&str> = if self.browser.is_empty() {
            vec!["chromium"]
        } else {
            self.browser.iter().map(|b| b.as_str()).collect()
        };
        y.push_str(&format!("browsers: [{}]\n", browsers.join(", ")));
        let platforms = match self.platform {
            None | Some(PlatformArg::Both) => "both",
            Some(PlatformArg::Webgpu) => "webgpu",
            Some(PlatformArg::Webnn) => "webnn",
            Some(PlatformArg::Native) => "native",
        };
        y.push_str(&format!("platforms: {platforms}\n"));
        let bits: Vec<String> = if self.bits.is_empty() {
            vec!["4".into()]
        } else {
            self.bits.iter().map(|b| b.to_string()).collect()
        };
        y.push_str(&format!("bits: [{}]\n", bits.join(", ")));
        y.push_str(&format!("mixed_precision: [{}]\n", self.mixed_precision));
        y.push_str(&format!(
            "experimental_precision: [{}]\n",
            self.experimental_precision
        ));
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantgrid_matrix::spec;

    fn narrow(args: &[&str]) -> Narrow {
        let mut full = vec!["quantgrid", "expand", "x.yaml"];
        full.extend(args);
        match Cli::parse_from(full).command {
            Some(Command::Expand { narrow, .. }) => narrow,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn old_flags_become_a_valid_spec() {
        let n = narrow(&[
            "--model",
            "llama-7b",
            "--platform",
            "webnn",
            "--bits",
            "4,8",
            "--experimental-precision",
        ]);
        let yaml = n.to_spec_yaml(false).expect("yaml");
        let s = spec::parse(&yaml, "<command line>").expect("spec");
        let cells = s.expand();
        assert_eq!(cells.len(), 2);
        assert!(cells.iter().all(|c| c.model == "meta-llama/Llama-2-7b-hf"));
        // experimental mode only changes the sub-8-bit request
        let experimental: Vec<_> = cells.iter().filter(|c| c.precision.experimental).collect();
        assert_eq!(experimental.len(), 1);
        assert_eq!(
            experimental[0].precision.effective,
            quantgrid_matrix::Bits::B4
        );
    }

    #[test]
    fn all_families_of_one_modality() {
        let n = narrow(&["--model-type", "audio"]);
        let s = spec::parse(&n.to_spec_yaml(true).expect("yaml"), "<command line>").expect("spec");
        assert_eq!(s.targets.len(), 5);
    }

    #[test]
    fn bad_flag_values_name_the_culprit() {
        let err = Cli::try_parse_from(["quantgrid", "expand", "x.yaml", "--bits", "5"])
            .expect_err("bits");
        assert!(
            err.to_string()
                .contains("bits must be one of 2, 3, 4, 8, 16, not `5`"),
            "{err}"
        );
        let err = narrow(&["--test-family", "bret"])
            .filter()
            .expect_err("family");
        assert!(err.to_string().contains("did you mean bert"), "{err}");
    }
}
