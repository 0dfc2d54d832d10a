//! The real executor: runs a cell's whole graph in a real browser through the harness (WGSL
//! on WebGPU, one MLGraph on WebNN), one reused session per browser build, and turns what
//! happened into a result. Every figure comes from
//! the browser run; the checks against the Rust references decide pass or fail.

use crate::block;
use crate::checkpoint::Installed;
use crate::executor::{Executor, Job, RunFuture};
use crate::layers::LayerError;
use crate::probe::Probed;
use crate::server;
use crate::webdriver::{Driver, Launch, Session, WebDriverError};
use crate::weights::WeightsFile;
use quantgrid_matrix::agent::Capabilities;
use quantgrid_matrix::block::{
    BlockCase, BlockVerdict, block_case_given, input_count, input_values,
};
use quantgrid_matrix::checkpoint::{self, Checkpoint};
use quantgrid_matrix::graph::{self, Graph};
use quantgrid_matrix::quant::{PrecisionPolicy, QuantParams};
use quantgrid_matrix::reference;
use quantgrid_matrix::result::{Environment, Measurement, WebnnDevice, webnn_ran_on};
use quantgrid_matrix::workload::WorkloadSize;
use quantgrid_matrix::{Cell, CellResult, Platform, Status};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

mod native_cell;
use native_cell::native_cell;

/// Seed of the synthetic weights: fixed, so a cell measures the same tensors everywhere.
pub const WEIGHT_SEED: u64 = 0x5147_5249_4400_0001;

struct Live {
    _driver: Driver,
    session: Session,
}

struct State {
    harness: Option<server::Harness>,
    /// The last weights file read: consecutive cells of a sweep use the same one.
    weights: Option<Arc<WeightsFile>>,
    /// The last checkpoint opened, verified.
    checkpoint: Option<Arc<Installed>>,
    /// Open sessions by browser binary; dropped after a crash or timeout so the next cell
    /// gets a fresh browser.
    live: HashMap<std::path::PathBuf, Live>,
}

#[derive(Clone)]
pub struct BrowserExecutor {
    probed: Arc<Vec<Probed>>,
    capabilities: Capabilities,
    headless: bool,
    /// Off only to measure what reuse saves: every cell then pays a browser start.
    reuse_sessions: bool,
    /// Where registry checkpoints are unpacked ([`crate::checkpoint`]).
    models_dir: std::path::PathBuf,
    state: Arc<Mutex<State>>,
    /// The host's own adapter, for native cells.
    native: Option<Arc<crate::native::Gpu>>,
}

impl std::fmt::Debug for BrowserExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserExecutor")
            .field("browsers", &self.probed.len())
            .finish_non_exhaustive()
    }
}

impl BrowserExecutor {
    /// Profile directories of the open browser sessions, for diagnostics.
    pub async fn live_profiles(&self) -> Vec<std::path::PathBuf> {
        self.state
            .lock()
            .await
            .live
            .values()
            .map(|l| l.session.profile().to_path_buf())
            .collect()
    }

    pub fn new(probed: Vec<Probed>, capabilities: Capabilities, headless: bool) -> BrowserExecutor {
        BrowserExecutor {
            probed: Arc::new(probed),
            capabilities,
            headless,
            reuse_sessions: true,
            models_dir: std::env::var_os("QUANTGRID_MODELS")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(crate::checkpoint::default_models_dir),
            state: Arc::new(Mutex::new(State {
                harness: None,
                weights: None,
                checkpoint: None,
                live: HashMap::new(),
            })),
            native: None,
        }
    }

    /// Runs native cells on `gpu` (the capabilities should name its adapter).
    pub fn with_native(mut self, gpu: Option<Arc<crate::native::Gpu>>) -> BrowserExecutor {
        self.native = gpu;
        self
    }

    /// Registry checkpoints from `dir` instead of `QUANTGRID_MODELS` or the default cache.
    pub fn with_models_dir(mut self, dir: std::path::PathBuf) -> BrowserExecutor {
        self.models_dir = dir;
        self
    }

    /// A fresh browser session for every cell, as a grid without session reuse would do.
    pub fn without_session_reuse(mut self) -> BrowserExecutor {
        self.reuse_sessions = false;
        self
    }

    /// The build to run `cell` on: the newest whose probe reported the platform, else the
    /// newest of the browser (which then answers for itself, with its own error).
    fn build_for(&self, cell: &Cell) -> Option<&Probed> {
        let of_browser = || {
            self.probed
                .iter()
                .filter(|p| p.found.candidate.browser == cell.browser)
        };
        let newest = |p: &&Probed| version_key(&p.found.version);
        of_browser()
            .filter(|p| p.capability().has(cell.platform))
            .max_by_key(newest)
            .or_else(|| of_browser().max_by_key(newest))
    }
}

/// `153.8.0esr` → [153, 8, 0]: numeric parts compare as numbers.
fn version_key(v: &str) -> Vec<u64> {
    v.split('.')
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .collect()
}

fn result(cell: &Cell, status: Status, text: Option<String>) -> CellResult {
    CellResult {
        cell_id: cell.id.clone(),
        status,
        error_text: text,
        effective_bits: cell.precision.effective,
        measurement: None,
        environment: None,
        simulated: false,
    }
}

/// Where `build` answered: on every result the build gave, unsupported ones included.
/// `webnn_info` carries the probe's WebNN evidence (its contexts and `opSupportLimits()`, or
/// why there is no `navigator.ml`) for WebNN cells.
fn environment(
    cell: &Cell,
    build: &Probed,
    flags: Vec<String>,
    webnn: Option<WebnnDevice>,
) -> Environment {
    let os = crate::host::os()
        .map(|o| o.as_str().to_string())
        .unwrap_or_default();
    Environment {
        browser: cell.browser,
        browser_channel: build.found.candidate.channel.clone(),
        browser_version: build.found.version.clone(),
        browser_flags: flags,
        driver: build
            .found
            .candidate
            .driver
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        driver_version: build.found.driver_version.clone(),
        os,
        os_version: crate::host::os_version().to_string(),
        arch: std::env::consts::ARCH.to_string(),
        adapter: build.capability().webgpu.clone(),
        webnn,
        webnn_info: (cell.platform == Platform::Webnn).then(|| build.report["webnn"].to_string()),
    }
}

/// A dead browser or driver, as opposed to an error the page reported.
fn crashed(e: &WebDriverError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "not reachable",
        "session deleted",
        "invalid session",
        "disconnected",
        "connection refused",
        "no such window",
    ]
    .iter()
    .any(|w| text.contains(w))
}

async fn run_cell(exec: BrowserExecutor, job: Job) -> CellResult {
    let cell = job.cell.clone();
    let build = exec.build_for(&cell).cloned();
    let mut r = run_cell_in(exec, job).await;
    // every answer names the build that gave it; a measured one already carries its own (a
    // native cell's is the adapter's, never the browser's)
    if r.environment.is_none()
        && cell.platform != Platform::Native
        && let Some(build) = &build
    {
        r.environment = Some(environment(&cell, build, Vec::new(), None));
    }
    r
}

async fn run_cell_in(exec: BrowserExecutor, job: Job) -> CellResult {
    let cell = job.cell.clone();
    if cell.platform == Platform::Native {
        return native_cell(exec, job).await;
    }
    let Some(build) = exec.build_for(&cell).cloned() else {
        return result(
            &cell,
            Status::Error,
            Some(format!("this agent has no {} build", cell.browser)),
        );
    };
    let binary = build.found.candidate.binary.clone();
    let mut state = exec.state.lock().await;
    if state.harness.is_none() {
        match server::Harness::start().await {
            Ok(h) => state.harness = Some(h),
            Err(e) => return result(&cell, Status::Error, Some(e.to_string())),
        }
    }
    let (page, blobs) = {
        let h = state.harness.as_ref().expect("just started");
        (h.url("block.html"), h.blobs().clone())
    };
    if !state.live.contains_key(&binary) {
        let Some(driver_path) = build.found.candidate.driver.clone() else {
            return result(
                &cell,
                Status::Error,
                Some(format!("no WebDriver server for {}", binary.display())),
            );
        };
        let opened = async {
            let launch = Launch::of(&build.found, exec.headless);
            let driver = Driver::start(&driver_path, &launch).await?;
            let session = Session::open(&driver, &launch).await?;
            session.goto(&page).await?;
            Ok::<_, WebDriverError>(Live {
                _driver: driver,
                session,
            })
        }
        .await;
        match opened {
            Ok(live) => {
                state.live.insert(binary.clone(), live);
            }
            Err(e) => {
                return result(
                    &cell,
                    Status::Crash,
                    Some(format!("cannot start {}: {e}", binary.display())),
                );
            }
        }
    }
    let source = match source_for(&exec, &mut state, &cell).await {
        Ok(source) => source,
        Err(why) => return result(&cell, Status::Error, Some(why)),
    };
    let live = state.live.get(&binary).expect("just opened");
    let flags = live.session.flags.clone();
    let (r, keep) = block_cell(&cell, &build, &live.session, &blobs, source, &job, flags).await;
    if !keep {
        state.live.remove(&binary);
    }
    r
}

/// Where `cell`'s tensors come from: the spec's weights file, else the model's checkpoint,
/// else synthetic. Files are read off the async threads and kept for the next cells.
async fn source_for(
    exec: &BrowserExecutor,
    state: &mut State,
    cell: &Cell,
) -> Result<Source, String> {
    if let Some(path) = &cell.weights {
        if let Some(w) = state
            .weights
            .as_ref()
            .filter(|w| w.path() == std::path::Path::new(path))
        {
            return Ok(Source::File(w.clone()));
        }
        let p = std::path::PathBuf::from(path);
        let w = tokio::task::spawn_blocking(move || WeightsFile::open(&p))
            .await
            .map_err(|_| format!("reading {path} failed"))?
            .map_err(|e| e.to_string())?;
        let w = Arc::new(w);
        state.weights = Some(w.clone());
        return Ok(Source::File(w));
    }
    let Some(ckpt) = checkpoint::checkpoint(&cell.model) else {
        return Ok(Source::Synthetic);
    };
    if let Some(inst) = state.checkpoint.as_ref().filter(|i| i.checkpoint == ckpt) {
        return Ok(Source::Checkpoint(inst.clone()));
    }
    let dir = exec.models_dir.clone();
    let inst = tokio::task::spawn_blocking(move || Installed::open(&dir, ckpt))
        .await
        .map_err(|_| format!("reading the checkpoint of {} failed", cell.model))?
        .map_err(|e| e.to_string())?;
    let inst = Arc::new(inst);
    state.checkpoint = Some(inst.clone());
    Ok(Source::Checkpoint(inst))
}

/// The result of a page call that did not run, and whether the session is still good: a dead
/// browser or driver is a crash and drops it; otherwise the page says which, never its text.
fn page_failure(
    cell: &Cell,
    build: &Probed,
    flags: Vec<String>,
    e: LayerError,
) -> (CellResult, bool) {
    let answered = |status: Status, text: String| CellResult {
        environment: Some(environment(cell, build, flags, None)),
        ..result(cell, status, Some(text))
    };
    match e {
        LayerError::WebDriver(e) => {
            let status = if crashed(&e) {
                Status::Crash
            } else {
                Status::Error
            };
            (result(cell, status, Some(e.to_string())), false)
        }
        LayerError::Unsupported(text) | LayerError::Unavailable(text) => {
            (answered(Status::Unsupported, text), true)
        }
        LayerError::Browser(text) => (answered(Status::Error, text), true),
        e @ LayerError::Malformed(_) => (answered(Status::Error, e.to_string()), true),
    }
}

/// Where a cell's tensors come from.
#[derive(Debug, Clone)]
enum Source {
    /// Drawn from [`WEIGHT_SEED`].
    Synthetic,
    /// A user's safetensors file named as quantgrid names its layers (the spec's `weights:`).
    File(Arc<WeightsFile>),
    /// The model's published checkpoint, run on its fixed sentences.
    Checkpoint(Arc<Installed>),
}

/// The cases a cell runs, in order: one graph, or one per sentence of a checkpoint. CPU
/// seconds for big blocks, so the caller runs this off the async threads.
fn prepare(cell: &Cell, source: &Source) -> Result<Vec<(String, BlockCase)>, String> {
    match source {
        Source::Synthetic | Source::File(_) => {
            let (graph, params) = plan_block(cell, cell.workload)?;
            let n = input_count(&graph);
            let mut cases = Vec::new();
            for i in 0..n {
                let case = block_case_given(
                    graph.clone(),
                    WEIGHT_SEED,
                    &params,
                    |l| match source {
                        Source::File(f) => f.layer(l).map_err(|e| e.to_string()),
                        _ => Ok(reference::weights(WEIGHT_SEED, l)),
                    },
                    |t| Ok(input_values(WEIGHT_SEED, i, t)),
                )?;
                let label = if n > 1 {
                    format!("input {} of {n}: ", i + 1)
                } else {
                    String::new()
                };
                cases.push((label, case));
            }
            Ok(cases)
        }
        Source::Checkpoint(inst) => {
            let mut cases = Vec::new();
            for (i, sentence) in inst.checkpoint.sentences.iter().enumerate() {
                let ids = inst.sentence_tokens(sentence).map_err(|e| e.to_string())?;
                let size = Checkpoint::size(ids.len() as u32);
                let (graph, params) = plan_block(cell, size)?;
                let case = block_case_given(
                    graph,
                    WEIGHT_SEED,
                    &params,
                    |l| inst.layer(l).map_err(|e| e.to_string()),
                    |t| {
                        inst.given(t, &ids, sentence.text)
                            .map(Some)
                            .map_err(|e| e.to_string())
                    },
                )?;
                let label = format!(
                    "sentence {} of {} ({} tokens): ",
                    i + 1,
                    inst.checkpoint.sentences.len(),
                    ids.len()
                );
                cases.push((label, case));
            }
            Ok(cases)
        }
    }
}

/// One case through the page and the checks: its verdict and the page's run, or the cell's
/// result when the page did not run it (with whether the session is still good).
#[allow(clippy::too_many_arguments)]
async fn run_case(
    cell: &Cell,
    build: &Probed,
    session: &Session,
    blobs: &server::Blobs,
    case: BlockCase,
    warmup: u32,
    reps: u32,
    flags: &[String],
) -> Result<(BlockVerdict, block::BlockRun), (CellResult, bool)> {
    let (args, served) = block::block_args(blobs, &case, cell.platform, warmup, reps)
        .map_err(|e| (result(cell, Status::Error, Some(e.to_string())), true))?;
    let ran = block::run_block(session, cell.platform, args).await;
    drop(served);
    let run = ran.map_err(|e| page_failure(cell, build, flags.to_vec(), e))?;
    let answered = |text: String| CellResult {
        environment: Some(environment(cell, build, flags.to_vec(), None)),
        ..result(cell, Status::Error, Some(text))
    };
    let checked = tokio::task::spawn_blocking(move || {
        let v = quantgrid_matrix::block::check(&case, &run.values);
        (v, run)
    })
    .await;
    match checked {
        Ok((Ok(v), run)) => Ok((v, run)),
        Ok((Err(e), _)) => Err((answered(format!("the page returned {e}")), true)),
        Err(_) => Err((answered("checking the block failed".into()), true)),
    }
}

/// A cell: its whole graph in the page on its platform, every tensor checked; a checkpoint
/// model once per sentence, the first one timed. Returns the result and whether the session
/// is still good for the next cell.
async fn block_cell(
    cell: &Cell,
    build: &Probed,
    session: &Session,
    blobs: &server::Blobs,
    source: Source,
    job: &Job,
    flags: Vec<String>,
) -> (CellResult, bool) {
    let (c, s) = (cell.clone(), source.clone());
    let cases = match tokio::task::spawn_blocking(move || prepare(&c, &s)).await {
        Ok(Ok(cases)) => cases,
        Ok(Err(why)) => return (result(cell, Status::Error, Some(why)), true),
        Err(_) => {
            let text = "computing the reference failed".to_string();
            return (result(cell, Status::Error, Some(text)), true);
        }
    };
    let (warmup, reps) = (job.warmup, job.repetitions.max(1));
    let mut verdicts = Vec::with_capacity(cases.len());
    let mut timed: Option<block::BlockRun> = None;
    for (i, (label, case)) in cases.into_iter().enumerate() {
        // the first input is timed; the others are run once, for their accuracy
        let (w, r) = if i == 0 { (warmup, reps) } else { (0, 1) };
        let (mut v, run) = match run_case(cell, build, session, blobs, case, w, r, &flags).await {
            Ok(done) => done,
            Err(failed) => return failed,
        };
        v.failure = v.failure.map(|f| format!("{label}{f}"));
        verdicts.push(v);
        timed.get_or_insert(run);
    }
    let r = conclude(cell, verdicts, timed, warmup, &source, |run| {
        // the device is what the evidence says, never what was asked for
        let webnn = run
            .webnn
            .as_ref()
            .map(|c| webnn_ran_on(&c.requested, c.accelerated, crate::host::devices()));
        environment(cell, build, flags, webnn)
    });
    (r, true)
}

/// A cell's result from its cases' verdicts and its timed run, wherever they ran.
fn conclude(
    cell: &Cell,
    verdicts: Vec<BlockVerdict>,
    timed: Option<block::BlockRun>,
    warmup: u32,
    source: &Source,
    environment: impl FnOnce(&block::BlockRun) -> Environment,
) -> CellResult {
    let (Some(verdict), Some(run)) = (BlockVerdict::over(verdicts), timed) else {
        return result(cell, Status::Error, Some("nothing to run".into()));
    };
    let (status, text, mut measurement) = block_verdict(&verdict, &run, warmup);
    match source {
        Source::Synthetic => {}
        Source::File(f) => measurement.weights_sha256 = Some(f.sha256().to_string()),
        Source::Checkpoint(inst) => {
            measurement.weights_sha256 = Some(inst.sha256().to_string());
            measurement.weights_source = Some(inst.checkpoint.source());
        }
    }
    CellResult {
        cell_id: cell.id.clone(),
        status,
        error_text: text,
        effective_bits: cell.precision.effective,
        measurement: Some(measurement),
        environment: Some(environment(&run)),
        simulated: false,
    }
}

/// What a cell runs, pure: its model's graph at `size`, each layer with the precision it
/// runs at (mixed precision keeps some roles at 8 bits).
fn plan_block(cell: &Cell, size: WorkloadSize) -> Result<(Graph, Vec<QuantParams>), String> {
    let target = cell
        .resolve()
        .map_err(|_| format!("unknown model {}", cell.model))?;
    let g = graph::lower(target.family.key, target.model, size);
    if g.layers.is_empty() {
        return Err(format!("{} has no layers to run", cell.model));
    }
    let policy = PrecisionPolicy::for_mixed(cell.precision.mixed);
    let params = g
        .layers
        .iter()
        .map(|layer| QuantParams {
            bits: policy.bits_for(layer.role, cell.precision.effective),
            scheme: cell.scheme,
            group_size: cell.group_size.max(1),
        })
        .collect();
    Ok((g, params))
}

/// The verdict on a block run, pure: `fail` with the first check that failed, else `pass`;
/// the measurement with the page's clock, the worst matmul against its bound and the
/// model-level accuracy against fp32.
fn block_verdict(
    v: &BlockVerdict,
    run: &block::BlockRun,
    warmup: u32,
) -> (Status, Option<String>, Measurement) {
    let measurement = Measurement {
        build_ms: run.build_ms,
        first_run_ms: run.clock.first_run_ms,
        warmup,
        samples_ms: run.clock.samples_ms.clone(),
        runs_per_sample: run.clock.runs_per_sample.max(1),
        kernel_ms: run.clock.kernel_ms,
        timer: run.clock.timer.clone(),
        gpu_samples_ms: run.gpu_samples_ms.clone(),
        latency_ms: run.clock.latency_ms,
        weights_sha256: None,
        weights_source: None,
        weight_bytes: run.weight_bytes,
        kernel_max_abs_err: v.kernel.max_abs_err,
        kernel_bound_c: v.kernel.bound_c,
        kernel_err_ratio: v.kernel.worst_ratio,
        accuracy_rel_err: v.accuracy.rel_err,
        accuracy_cosine: Some(v.accuracy.cosine),
        accuracy_top1: v.accuracy.top1_agreement,
        accuracy_kl: v.accuracy.kl_divergence,
        ops: v.ops.clone(),
    };
    let status = if v.failure.is_some() {
        Status::Fail
    } else {
        Status::Pass
    };
    (status, v.failure.clone(), measurement)
}

impl Executor for BrowserExecutor {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn run(&self, job: Job, abandon: CancellationToken) -> RunFuture {
        let exec = self.clone();
        Box::pin(async move {
            let cell = job.cell.clone();
            let timeout = job.timeout;
            let state = exec.state.clone();
            let binary = exec
                .build_for(&cell)
                .map(|b| b.found.candidate.binary.clone());
            let reuse = exec.reuse_sessions;
            tokio::select! {
                r = tokio::time::timeout(timeout, run_cell(exec, job)) => match r {
                    Ok(r) => {
                        if !reuse {
                            let dropped: Vec<Live> = state.lock().await.live.drain().map(|(_, l)| l).collect();
                            for live in dropped {
                                let _ = live.session.close().await;
                            }
                        }
                        r
                    }
                    Err(_) => {
                        // a hung page: the next cell gets a fresh browser
                        if let Some(b) = binary {
                            state.lock().await.live.remove(&b);
                        }
                        result(&cell, Status::Timeout, Some(format!("no result within the {} s cell timeout", timeout.as_secs())))
                    }
                },
                _ = abandon.cancelled() => result(&cell, Status::Error, Some("abandoned: the agent was stopped".into())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantgrid_matrix::quant::Bits;
    use quantgrid_matrix::reference::{KERNEL_BOUND_C, KernelCheck};
    use quantgrid_matrix::workload::Role;

    #[test]
    fn a_block_plan_is_the_models_graph_at_each_roles_precision() {
        let spec = quantgrid_matrix::spec::parse(
            "version: 1\nname: p\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\nmixed_precision: [false, true]\nworkload:\n  layers: 1\n  seq_len: 8\n",
            "p.yaml",
        )
        .expect("spec");
        for cell in spec.expand() {
            let (g, params) = plan_block(&cell, cell.workload).expect("plan");
            assert_eq!(g.layers.len(), params.len());
            // the block's ops, not only its matmuls, at 8 positions
            assert!(g.ops.iter().any(|o| o.kind() == "attention"));
            assert!(g.layers.iter().all(|l| l.m == 8));
            let want = if cell.precision.mixed {
                Bits::B8
            } else {
                Bits::B4
            };
            for (l, p) in g.layers.iter().zip(&params) {
                let bits = if l.role == Role::Attention {
                    want
                } else {
                    Bits::B4
                };
                assert_eq!(p.bits, bits, "{}: {}", cell.label(), l.name);
            }
        }
    }

    #[test]
    fn a_block_verdict_fails_with_the_first_failed_check_and_keeps_the_accuracy() {
        let run = block::BlockRun {
            clock: crate::layers::CellClock {
                first_run_ms: 2.0,
                samples_ms: vec![4.0, 6.0],
                runs_per_sample: 1,
                latency_ms: None,
                kernel_ms: 20.0,
                timer: "performance.now".into(),
            },
            webnn: None,
            values: Vec::new(),
            build_ms: 3.0,
            weight_bytes: 64,
            gpu_samples_ms: vec![1.0, 1.0],
        };
        let v = |failure: Option<&str>| BlockVerdict {
            failure: failure.map(str::to_string),
            kernel: KernelCheck {
                max_abs_err: 1e-6,
                bound_c: KERNEL_BOUND_C,
                worst_ratio: 0.01,
            },
            op_ratio: 0.02,
            end_to_end_rel_err: 1e-6,
            accuracy: quantgrid_matrix::block::Accuracy {
                cosine: 0.99,
                rel_err: 0.14,
                top1_agreement: None,
                kl_divergence: None,
            },
            ops: vec![quantgrid_matrix::result::OpFigure {
                tensor: "encoder.0.attn".into(),
                op: "attention".into(),
                max_abs_err: 1e-7,
                bound_ratio: 0.02,
            }],
        };
        let (status, text, m) = block_verdict(&v(None), &run, 1);
        assert_eq!((status, text), (Status::Pass, None));
        assert_eq!(m.ops, v(None).ops, "every op's figure is reported");
        assert_eq!(
            (m.accuracy_rel_err, m.weight_bytes, m.samples_ms.len()),
            (0.14, 64, 2)
        );
        let (status, text, _) =
            block_verdict(&v(Some("op 6 attention encoder.0.attn: ...")), &run, 1);
        assert_eq!(status, Status::Fail);
        assert!(text.is_some_and(|t| t.contains("attention")));
    }
}
