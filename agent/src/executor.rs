//! How an agent runs a cell. The real executor drives browsers (next issue); the simulated
//! one exists for drills and load tests, and every result it makes says `simulated`.

use quantgrid_matrix::agent::{BrowserCapability, Capabilities};
use quantgrid_matrix::result::AdapterInfo;
use quantgrid_matrix::{Browser, Cell, CellResult, Status};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A leased cell to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub lease_id: String,
    pub cell: Cell,
    pub warmup: u32,
    pub repetitions: u32,
    pub timeout: Duration,
}

pub type RunFuture = Pin<Box<dyn Future<Output = CellResult> + Send>>;

pub trait Executor: Send + Sync + 'static {
    /// What this machine offers, as registered with the coordinator.
    fn capabilities(&self) -> Capabilities;
    /// Runs `job`; when `abandon` fires it must return promptly with a result saying so.
    fn run(&self, job: Job, abandon: CancellationToken) -> RunFuture;
}

/// Result of a cell the agent gave up on; an infrastructure failure, so it is retried.
pub fn abandoned(cell: &Cell, why: &str) -> CellResult {
    CellResult {
        cell_id: cell.id.clone(),
        status: Status::Error,
        error_text: Some(why.to_string()),
        effective_bits: cell.precision.effective,
        measurement: None,
        environment: None,
        simulated: false,
    }
}

/// Sleeps instead of measuring. Its results are flagged `simulated` and never reach a matrix
/// unless asked for.
#[derive(Debug, Clone)]
pub struct SimulatedExecutor {
    pub cell_time: Duration,
    pub capabilities: Capabilities,
}

impl SimulatedExecutor {
    /// By default it claims every browser with both platforms, so any shipped matrix can be
    /// drilled; a config can declare fewer.
    pub fn every_browser(
        slots: u32,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Capabilities {
        let adapter = AdapterInfo {
            vendor: "quantgrid".into(),
            architecture: "simulated".into(),
            device: String::new(),
            description: "simulated executor: no GPU".into(),
            is_fallback: true,
        };
        Capabilities {
            os: crate::host::os(),
            arch: std::env::consts::ARCH.to_string(),
            browsers: Browser::ALL
                .into_iter()
                .map(|browser| BrowserCapability {
                    browser,
                    channel: "simulated".into(),
                    version: "999.0".into(),
                    webgpu: Some(adapter.clone()),
                    webnn: true,
                    features: Vec::new(),
                    limits: Default::default(),
                    webnn_devices: Vec::new(),
                })
                .collect(),
            gpu_vendors: vec![quantgrid_matrix::spec::GpuVendor::Software],
            labels,
            slots,
            // it measures nothing: it takes only load-test sweeps
            simulated: true,
            native: None,
        }
    }
}

impl Executor for SimulatedExecutor {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn run(&self, job: Job, abandon: CancellationToken) -> RunFuture {
        let cell_time = self.cell_time;
        Box::pin(async move {
            tokio::select! {
                // the simulated work itself, not a stand-in for synchronisation
                _ = tokio::time::sleep(cell_time) => CellResult {
                    cell_id: job.cell.id.clone(),
                    status: Status::Pass,
                    error_text: None,
                    effective_bits: job.cell.precision.effective,
                    measurement: None,
                    environment: None,
                    simulated: true,
                },
                _ = abandon.cancelled() => {
                    let mut r = abandoned(&job.cell, "abandoned: the agent was stopped");
                    r.simulated = true;
                    r
                }
            }
        })
    }
}
