//! Native cells: the browser cell's whole graph without the browser, run through wgpu on the
//! agent's own adapter (`crate::native::block`), from the same sources and judged by the same
//! checks, so its time divides the browser's into the browser-overhead ratio.

use super::{BrowserExecutor, conclude, prepare, result, source_for};
use crate::block::BlockRun;
use crate::executor::Job;
use crate::native::{self, Gpu};
use quantgrid_matrix::block::{BlockCase, BlockVerdict};
use quantgrid_matrix::result::Environment;
use quantgrid_matrix::{Cell, CellResult, Status};
use std::sync::Arc;

pub(super) async fn native_cell(exec: BrowserExecutor, job: Job) -> CellResult {
    let cell = job.cell.clone();
    let Some(gpu) = exec.native.clone() else {
        return result(
            &cell,
            Status::Error,
            Some("this agent has no native adapter (wgpu found no Vulkan device)".into()),
        );
    };
    let source = {
        let mut state = exec.state.lock().await;
        match source_for(&exec, &mut state, &cell).await {
            Ok(source) => source,
            Err(why) => return result(&cell, Status::Error, Some(why)),
        }
    };
    let (c, s) = (cell.clone(), source.clone());
    let cases = match tokio::task::spawn_blocking(move || prepare(&c, &s)).await {
        Ok(Ok(cases)) => cases,
        Ok(Err(why)) => return result(&cell, Status::Error, Some(why)),
        Err(_) => {
            return result(
                &cell,
                Status::Error,
                Some("computing the reference failed".into()),
            );
        }
    };
    let (warmup, reps) = (job.warmup, job.repetitions.max(1));
    let mut verdicts = Vec::with_capacity(cases.len());
    let mut timed: Option<BlockRun> = None;
    for (i, (label, case)) in cases.into_iter().enumerate() {
        // the first input is timed; the others are run once, for their accuracy
        let (w, r) = if i == 0 { (warmup, reps) } else { (0, 1) };
        let (mut v, run) = match run_case(&cell, gpu.clone(), case, w, r).await {
            Ok(done) => done,
            Err(failed) => return failed,
        };
        v.failure = v.failure.map(|f| format!("{label}{f}"));
        verdicts.push(v);
        timed.get_or_insert(run);
    }
    conclude(&cell, verdicts, timed, warmup, &source, |_| {
        environment(&cell, &gpu)
    })
}

/// One case on the adapter and through the checks, off the async threads (wgpu waits on the
/// device).
async fn run_case(
    cell: &Cell,
    gpu: Arc<Gpu>,
    case: BlockCase,
    warmup: u32,
    reps: u32,
) -> Result<(BlockVerdict, BlockRun), CellResult> {
    let env = environment(cell, &gpu);
    let ran = tokio::task::spawn_blocking(move || {
        let run = native::block::run_block(&gpu, &case, warmup, reps)?;
        let v = quantgrid_matrix::block::check(&case, &run.values);
        Ok::<_, native::NativeError>((v, run))
    })
    .await;
    let failed = |status, text: String| CellResult {
        environment: Some(env.clone()),
        ..result(cell, status, Some(text))
    };
    match ran {
        Ok(Ok((Ok(v), run))) => Ok((v, run)),
        Ok(Ok((Err(e), _))) => Err(failed(
            Status::Error,
            format!("the native run returned {e}"),
        )),
        Ok(Err(e)) => Err(failed(Status::Error, e.to_string())),
        Err(_) => Err(failed(Status::Crash, "the native run panicked".into())),
    }
}

/// What ran a native cell: no browser, wgpu on the adapter, its Vulkan driver and version.
fn environment(cell: &Cell, gpu: &Gpu) -> Environment {
    let (driver, driver_version) = gpu.driver();
    Environment {
        browser: cell.browser,
        browser_channel: "native".into(),
        browser_version: format!("wgpu {}", native::WGPU_MAJOR),
        browser_flags: Vec::new(),
        driver,
        driver_version,
        os: crate::host::os()
            .map(|o| o.as_str().to_string())
            .unwrap_or_default(),
        os_version: crate::host::os_version().to_string(),
        arch: std::env::consts::ARCH.to_string(),
        adapter: Some(gpu.adapter()),
        webnn: None,
        webnn_info: None,
    }
}
