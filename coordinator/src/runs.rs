//! The commands that look across runs: `history`, `diff` and `export`.

use crate::cli::{ExportFormat, Narrow};
use anyhow::{Context, Result, bail};
use quantgrid_coordinator::report::{DiffRequest, diff_runs};
use quantgrid_coordinator::store::{HistoryRow, Store};
use quantgrid_matrix::changes;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `quantgrid history`: a cell's results across runs, or those of the cells the flags pick.
pub fn history(store: &Store, cell: Option<&str>, narrow: &Narrow, json: bool) -> Result<ExitCode> {
    let filter = narrow.filter()?;
    let rows = store.history(cell, &|c| filter.matches(c), json)?;
    if rows.is_empty() {
        match cell {
            Some(id) => bail!("no stored result for cell `{id}`; `quantgrid results` lists cells"),
            None => bail!("no stored result matches those flags"),
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        for r in &rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut current = "";
    for r in &rows {
        if r.cell_id != current {
            current = &r.cell_id;
            writeln!(out, "\n{}  {}", r.cell_id, r.label)?;
            writeln!(
                out,
                "  {:<19} {:<10} {:<12} {:>9} {:>9} {:>9} {:>7} {:>7}  build · driver · adapter · agent",
                "recorded", "sweep", "status", "p10 ms", "p50 ms", "p90 ms", "cos", "err"
            )?;
        }
        writeln!(out, "{}", history_line(r))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn history_line(r: &HistoryRow) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.3}"));
    let fig =
        |v: Option<f64>, digits: usize| v.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"));
    let build: Vec<&str> = [&r.browser, &r.driver, &r.adapter, &r.agent]
        .into_iter()
        .filter_map(|s| s.as_deref())
        .collect();
    format!(
        "  {:<19} {:<10} {:<12} {:>9} {:>9} {:>9} {:>7} {:>7}  {}{}",
        r.recorded_at,
        r.sweep_id,
        r.status.as_str(),
        ms(r.p10_ms),
        ms(r.p50_ms),
        ms(r.p90_ms),
        fig(r.accuracy_cosine, 4),
        fig(r.accuracy_rel_err, 4),
        build.join(" · "),
        if r.new_build { "  [new build]" } else { "" }
    ) + &r
        .origin
        .as_ref()
        .map(|o| format!("  [{o}]"))
        .unwrap_or_default()
}

/// `quantgrid diff`: exit 1 when anything regressed, so CI can gate on it.
pub fn diff(store: &Store, sweeps: &[String], json: bool, flaky_days: f64) -> Result<ExitCode> {
    if !(flaky_days.is_finite() && flaky_days >= 0.0) {
        bail!("--flaky-days must be a non-negative number, not {flaky_days}");
    }
    let (old, new) = match sweeps {
        [] => (None, None),
        [new] => (None, Some(new.as_str())),
        [old, new] => (Some(old.as_str()), Some(new.as_str())),
        _ => bail!("give at most two sweeps: OLD NEW"),
    };
    let d = diff_runs(
        store,
        DiffRequest {
            old,
            new,
            flaky_window_us: (flaky_days * 86_400e6) as i64,
        },
    )?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&d)?)?;
    } else {
        write!(out, "{}", changes::render_text(&d))?;
    }
    Ok(if d.has_regression() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `quantgrid export`: every table into `dir`, which must be new or empty.
pub fn export(store: &Store, format: ExportFormat, dir: &Path) -> Result<ExitCode> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: export into a new directory",
            dir.display()
        );
    }
    match format {
        ExportFormat::Parquet => store.export_parquet(dir)?,
    }
    eprintln!("exported every table to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `quantgrid merge`: `other`'s runs into the database at `path` (created if missing).
pub fn merge(path: &Path, other: &Path) -> Result<ExitCode> {
    if !other.exists() {
        bail!("results file {} does not exist", other.display());
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(path, other) {
        bail!("{} is --db-path itself", other.display());
    }
    let mut store = Store::open(path)?;
    let origin = format!(
        "merged from {} on {}",
        other.display(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let m = store
        .merge(other, &origin)
        .with_context(|| format!("cannot merge {}", other.display()))?;
    eprintln!(
        "merged {} run(s) with {} result(s) from {}; runs already in {} were skipped",
        m.sweeps,
        m.results,
        other.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
