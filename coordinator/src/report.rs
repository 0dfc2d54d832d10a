//! Feeds stored results to the Markdown renderer.

use crate::store::{Store, StoreError};
use quantgrid_matrix::render::{self, Report};

#[derive(Debug, Clone)]
pub struct MatrixOptions<'a> {
    pub sweep: Option<&'a str>,
    pub include_simulated: bool,
    /// `None`: the tolerance the sweep was submitted with (the strictest across sweeps).
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
    let tolerance = opts.accuracy_tolerance.unwrap_or_else(|| {
        chosen
            .iter()
            .map(|s| s.accuracy_tolerance)
            .fold(f64::INFINITY, f64::min)
            .min(1.0)
    });
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
        accuracy_tolerance: tolerance,
        include_simulated: opts.include_simulated,
    }))
}
