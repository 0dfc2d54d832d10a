//! Feeds stored results to the Markdown renderer, and compares stored runs.

use crate::store::{Store, StoreError};
use quantgrid_matrix::changes::{self, Diff};
use quantgrid_matrix::compare::Policy;
use quantgrid_matrix::render::{self, Report};
use quantgrid_matrix::result::Thresholds;
use quantgrid_matrix::spec;

#[derive(Debug, Clone)]
pub struct MatrixOptions<'a> {
    pub sweep: Option<&'a str>,
    pub include_simulated: bool,
    /// Only results signed by a key pinned here (`--trusted-only`).
    pub trusted_only: bool,
    /// Overrides the largest relative error counted as accurate; `None`: the thresholds the
    /// sweeps were submitted with (the strictest across sweeps, metric by metric).
    pub accuracy_tolerance: Option<f64>,
}

/// The compatibility matrix of `store`, as Markdown.
pub fn matrix_markdown(store: &Store, opts: &MatrixOptions<'_>) -> Result<String, StoreError> {
    let entries =
        store.matrix_entries_from(opts.sweep, opts.include_simulated, opts.trusted_only)?;
    let chosen = store.sweep_thresholds(opts.sweep)?;
    let mut accuracy = chosen
        .iter()
        .copied()
        .fold(Thresholds::rel_err(1.0), Thresholds::strictest);
    if let Some(t) = opts.accuracy_tolerance {
        accuracy.max_rel_err = t;
    }
    let file = store.path().file_name().map_or_else(
        || store.path().display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let source = match opts.sweep {
        Some(id) => format!("sweep `{id}` in `{file}`"),
        None => format!("latest results of {} sweep(s) in `{file}`", chosen.len()),
    };
    // the run shown (the chosen sweep, else the newest) against the previous of its series
    let new = match opts.sweep {
        Some(s) => Some(s.to_string()),
        None => store.latest_sweep()?,
    };
    let previous = match &new {
        Some(new) => store.previous_sweep(new)?.map(|old| (old, new)),
        None => None,
    };
    let changes = match previous {
        Some((old, new)) => Some(
            diff_runs(
                store,
                DiffRequest {
                    old: Some(&old),
                    new: Some(new),
                    flaky_window_us: FLAKY_WINDOW_US,
                },
            )
            .map_err(|e| match e {
                DiffError::Store(e) => e,
                other => StoreError::Corrupt(other.to_string()),
            })?,
        ),
        None => None,
    };
    Ok(render::render(&Report {
        source: &source,
        entries: &entries,
        accuracy,
        include_simulated: opts.include_simulated,
        changes: changes.as_ref(),
    }))
}

/// How far back a cell's results count towards its flakiness by default: a week.
pub const FLAKY_WINDOW_US: i64 = 7 * 24 * 3600 * 1_000_000;

/// Which runs `quantgrid diff` compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffRequest<'a> {
    /// `None`: the run of NEW's name created last before it.
    pub old: Option<&'a str>,
    /// `None`: the latest real run.
    pub new: Option<&'a str>,
    /// How far before NEW flakiness is looked for, in microseconds.
    pub flaky_window_us: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("the results database has no run to compare")]
    NoRuns,
    #[error("no sweep `{0}` in the results database; `quantgrid results` lists them")]
    UnknownSweep(String),
    #[error(
        "sweep `{0}` is the first run of its name: give the run to compare it with (`quantgrid diff OLD {0}`)"
    )]
    NoPrevious(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves the request to two stored runs and compares them, with NEW's spec's minimum
/// effect (3% for a spec that predates it).
pub fn diff_runs(store: &Store, req: DiffRequest<'_>) -> Result<Diff, DiffError> {
    let new = match req.new {
        Some(id) if store.has_sweep(id)? => id.to_string(),
        Some(id) => return Err(DiffError::UnknownSweep(id.into())),
        None => store.latest_sweep()?.ok_or(DiffError::NoRuns)?,
    };
    let old = match req.old {
        Some(id) if store.has_sweep(id)? => id.to_string(),
        Some(id) => return Err(DiffError::UnknownSweep(id.into())),
        None => store
            .previous_sweep(&new)?
            .ok_or_else(|| DiffError::NoPrevious(new.clone()))?,
    };
    let min_effect = store
        .sweep_spec(&new)?
        .and_then(|(file, yaml)| spec::parse(&yaml, &file).ok())
        .map_or(Policy::default().min_effect, |s| s.min_effect);
    let policy = Policy {
        min_effect,
        ..Policy::default()
    };
    let flaky = store.flaky_cells(&new, req.flaky_window_us)?;
    Ok(changes::diff(
        &old,
        &store.run_results(&old)?,
        &new,
        &store.run_results(&new)?,
        &flaky,
        policy,
    ))
}

/// How many times a run's undecided cells are repeated before the verdict stays UNKNOWN.
pub const MAX_CONFIRMATIONS: u32 = 2;

/// Cells of a run to repeat on one agent: their time verdict against the previous run is
/// UNKNOWN, and more samples of the same build may decide it.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    /// The run confirmed.
    pub run: String,
    /// Which repetition this is, from 1 to [`MAX_CONFIRMATIONS`].
    pub round: u32,
    pub spec_file: String,
    pub spec_yaml: String,
    /// `(agent, cell ids)`: each agent repeats the cells it measured.
    pub per_agent: Vec<(String, Vec<String>)>,
}

/// After `ended` (a run or one of its confirmations) finished: what to repeat, if anything.
/// Nothing for a run with no previous run, a load test, or one confirmed enough times.
pub fn undecided(store: &Store, ended: &str) -> Result<Option<Confirmation>, DiffError> {
    let (confirms, rounds) = store.confirmation_of(ended)?;
    let run = confirms.unwrap_or_else(|| ended.to_string());
    if rounds >= MAX_CONFIRMATIONS || store.previous_sweep(&run)?.is_none() {
        return Ok(None);
    }
    let Some((spec_file, spec_yaml)) = store.sweep_spec(&run)? else {
        return Ok(None);
    };
    let d = diff_runs(
        store,
        DiffRequest {
            old: None,
            new: Some(&run),
            flaky_window_us: FLAKY_WINDOW_US,
        },
    )?;
    let mut per_agent: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in &d.cells {
        if c.time
            .is_some_and(|t| t.verdict == quantgrid_matrix::compare::Verdict::Unknown)
            && let Some(agent) = &c.agent
        {
            per_agent
                .entry(agent.clone())
                .or_default()
                .push(c.cell_id.0.clone());
        }
    }
    if per_agent.is_empty() {
        return Ok(None);
    }
    Ok(Some(Confirmation {
        run,
        round: rounds + 1,
        spec_file,
        spec_yaml,
        per_agent: per_agent.into_iter().collect(),
    }))
}
