//! Feeds stored results to the Markdown renderer.

use crate::store::{Store, StoreError};
use quantgrid_matrix::render::{self, Report};
use quantgrid_matrix::result::Thresholds;

#[derive(Debug, Clone)]
pub struct MatrixOptions<'a> {
    pub sweep: Option<&'a str>,
    pub include_simulated: bool,
    /// Overrides the largest relative error counted as accurate; `None`: the thresholds the
    /// sweeps were submitted with (the strictest across sweeps, metric by metric).
    pub accuracy_tolerance: Option<f64>,
}

/// The compatibility matrix of `store`, as Markdown.
pub fn matrix_markdown(store: &Store, opts: &MatrixOptions<'_>) -> Result<String, StoreError> {
    let entries = store.matrix_entries(opts.sweep, opts.include_simulated)?;
    let sweeps = store.sweeps()?;
    let chosen: Vec<_> = sweeps
        .iter()
        .filter(|s| opts.sweep.is_none_or(|id| id == s.sweep_id))
        .collect();
    let mut accuracy = chosen
        .iter()
        .map(|s| s.accuracy)
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
    Ok(render::render(&Report {
        source: &source,
        entries: &entries,
        accuracy,
        include_simulated: opts.include_simulated,
    }))
}
