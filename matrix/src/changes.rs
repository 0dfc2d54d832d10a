//! What changed between two runs of a matrix: per cell, its status change, its time change
//! (only between results of the same build on the same agent, judged from the raw samples by
//! [`crate::compare`]) and its accuracy change, grouped per family, with whether any of it is
//! a regression. A cell measured on another build than before is said to be on a new build:
//! its times are not compared with the old build's.
//!
//! A run's cells are also judged together, per build and agent ([`BuildShift`]): a build that
//! got 3% slower is slower in every cell, and pooling the cells' rank tests finds a step that
//! no single cell's samples resolve.
//!
//! Pure: the store reads both runs' accepted results ([`RunResult`]) and which cells were
//! flaky; [`diff`] decides.

use crate::compare::{self, Comparison, Policy, Pooled, Verdict};
use crate::{Cell, CellId, Status};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Cosine moves smaller than this are float noise of a new build, not a change of accuracy.
pub const COSINE_EPSILON: f64 = 1e-4;

/// The fewest cells of one build on one agent whose times are judged together: with fewer,
/// a build-wide verdict would be one or two cells' verdicts told again.
pub const MIN_POOLED_CELLS: usize = 5;

/// One cell's accepted result in a run, as a diff needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub cell: Cell,
    pub status: Status,
    /// Page-clock samples, as stored.
    pub samples_ms: Vec<f64>,
    pub accuracy_cosine: Option<f64>,
    /// The build the result came from (browser, driver, OS, adapter): its environment id.
    pub environment_id: Option<String>,
    /// That build in words, e.g. `chromium 156.0.8078.114 · SwiftShader`.
    pub build: Option<String>,
    pub agent: Option<String>,
    /// Confirmation runs whose samples were added to `samples_ms` (same build and agent):
    /// the extra repetitions an undecided time verdict asked for.
    pub repeated: u32,
}

/// How a cell's status moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    /// It passed and now fails, errors, times out or finds no agent.
    NewFailure,
    /// It ran and the browser now refuses it.
    NewlyUnsupported,
    /// It ran and the browser or its driver now dies.
    NewlyCrashing,
    /// It did not pass and now does.
    Fixed,
    /// Some other move between non-passing statuses.
    Changed,
}

impl StatusChange {
    fn of(old: Status, new: Status) -> Option<StatusChange> {
        if old == new {
            return None;
        }
        Some(match (old, new) {
            (_, Status::Pass) => StatusChange::Fixed,
            (_, Status::Crash) => StatusChange::NewlyCrashing,
            (Status::Pass, Status::Unsupported) => StatusChange::NewlyUnsupported,
            (Status::Pass, _) => StatusChange::NewFailure,
            _ => StatusChange::Changed,
        })
    }

    pub fn title(self) -> &'static str {
        match self {
            StatusChange::NewFailure => "new failure",
            StatusChange::NewlyUnsupported => "newly unsupported",
            StatusChange::NewlyCrashing => "newly crashing",
            StatusChange::Fixed => "fixed",
            StatusChange::Changed => "status changed",
        }
    }

    fn is_regression(self) -> bool {
        matches!(
            self,
            StatusChange::NewFailure | StatusChange::NewlyUnsupported | StatusChange::NewlyCrashing
        )
    }
}

/// A cell whose model-level accuracy moved by more than [`COSINE_EPSILON`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AccuracyChange {
    pub old_cosine: f64,
    pub new_cosine: f64,
}

/// One cell of the new run against the old.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellChange {
    pub cell_id: CellId,
    pub label: String,
    pub family: String,
    /// `None`: the old run did not have the cell.
    pub old_status: Option<Status>,
    pub new_status: Status,
    pub status_change: Option<StatusChange>,
    /// Both passed on the same build and agent: their samples compared.
    pub time: Option<Comparison>,
    /// Confirmation runs of the new run pooled into its samples.
    pub repeated: u32,
    /// The agent that measured the new result (the one a confirmation must run on).
    pub agent: Option<String>,
    /// The build changed: `(old, new)`; times are not compared across builds.
    pub new_build: Option<(String, String)>,
    pub accuracy: Option<AccuracyChange>,
    /// The cell both passed and failed on one build and agent within the flakiness window.
    pub flaky: bool,
    pub regression: bool,
    pub improvement: bool,
}

impl CellChange {
    /// Worth a line: anything moved, or the samples could not tell.
    fn noteworthy(&self) -> bool {
        self.status_change.is_some()
            || self.new_build.is_some()
            || self.accuracy.is_some()
            || self.flaky
            || self.time.is_some_and(|t| t.verdict != Verdict::Same)
            || self.old_status.is_none()
    }

    /// ▲ slower, ▼ faster: only for a DIFFERENT time verdict.
    pub fn arrow(&self) -> Option<&'static str> {
        let t = self.time?;
        (t.verdict == Verdict::Different).then_some(if t.change > 0.0 { "▲" } else { "▼" })
    }
}

/// Every cell timed on one build and agent in both runs, judged together for one shift they
/// share (van Elteren's stratified rank-sum test, [`compare::compare_pooled`]). Held to α
/// shared among the builds of the diff and among the looks (confirmations pooled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildShift {
    /// The build in words.
    pub build: String,
    pub agent: Option<String>,
    #[serde(flatten)]
    pub pooled: Pooled,
}

impl BuildShift {
    pub fn regression(&self) -> bool {
        self.pooled.verdict == Verdict::Different && self.pooled.change > 0.0
    }

    pub fn improvement(&self) -> bool {
        self.pooled.verdict == Verdict::Different && self.pooled.change < 0.0
    }

    /// The shift in words.
    pub fn describe(&self) -> String {
        let p = &self.pooled;
        let on = self
            .agent
            .as_deref()
            .map(|a| format!(" on {a}"))
            .unwrap_or_default();
        format!(
            "{}{on}: the typical cell {:+.1}% ({:+.1}% to {:+.1}%), {} across its {} cells (van Elteren z = {:+.2}, p = {:.2e}; different ≤ {:.4}, same > {:.3})",
            self.build,
            p.change * 100.0,
            p.change_low * 100.0,
            p.change_high * 100.0,
            p.verdict,
            p.strata,
            p.z,
            p.p_value,
            p.low_threshold,
            p.high_threshold
        )
    }
}

/// The new run against the old.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    pub policy: Policy,
    /// Cells of both runs whose times were compared (same build and agent, both ran).
    pub compared: usize,
    /// Those whose samples could not tell (UNKNOWN): more repetitions would.
    pub unknown: usize,
    /// Builds the new run used that the old did not.
    pub new_builds: Vec<String>,
    /// Cells that moved (every cell of the new run that is noteworthy), per family, in order.
    pub cells: Vec<CellChange>,
    /// Each build and agent with at least [`MIN_POOLED_CELLS`] timed cells, judged as a whole.
    pub builds: Vec<BuildShift>,
}

impl Diff {
    pub fn regressions(&self) -> usize {
        self.cells.iter().filter(|c| c.regression).count()
    }

    pub fn improvements(&self) -> usize {
        self.cells.iter().filter(|c| c.improvement).count()
    }

    /// Builds whose cells together got slower.
    pub fn build_regressions(&self) -> usize {
        self.builds.iter().filter(|b| b.regression()).count()
    }

    /// Whether anything regressed: a cell, or a build as a whole (what `quantgrid diff`'s exit
    /// status says).
    pub fn has_regression(&self) -> bool {
        self.regressions() > 0 || self.build_regressions() > 0
    }

    /// The arrow to show beside a cell of the new run, where its time verdict is DIFFERENT.
    pub fn arrow(&self, id: &CellId) -> Option<&'static str> {
        self.cells.iter().find(|c| &c.cell_id == id)?.arrow()
    }
}

/// Compares the accepted results of `old` and `new` (runs named `old_name`, `new_name`);
/// `flaky` names the cells of `new` that both passed and failed on one build and agent within
/// the window the caller chose.
pub fn diff(
    old_name: &str,
    old: &[RunResult],
    new_name: &str,
    new: &[RunResult],
    flaky: &BTreeSet<CellId>,
    policy: Policy,
) -> Diff {
    let before: BTreeMap<&CellId, &RunResult> = old.iter().map(|r| (&r.cell.id, r)).collect();
    let old_builds: BTreeSet<&str> = old.iter().filter_map(|r| r.build.as_deref()).collect();
    let new_builds: BTreeSet<&str> = new.iter().filter_map(|r| r.build.as_deref()).collect();
    // one run compares many cells: the error is controlled over all of them (Benjamini–
    // Hochberg at α), so an unchanged build does not show a few "different" cells by chance
    // (a cell looked at 1 + repeated times is held to α / looks: its p-value counts as p·looks)
    let p_values: Vec<f64> = new
        .iter()
        .filter_map(|n| {
            let c = timed(before.get(&n.cell.id).copied()?, n, policy)?;
            Some(c.p_value * f64::from(1 + n.repeated))
        })
        .collect();
    let held = Policy {
        alpha: benjamini_hochberg(&p_values, policy.alpha),
        ..policy
    };
    let mut compared = 0;
    let mut unknown = 0;
    let mut cells: Vec<CellChange> = new
        .iter()
        .map(|n| {
            let o = before.get(&n.cell.id).copied();
            let c = cell_change(o, n, flaky.contains(&n.cell.id), held);
            if let Some(t) = c.time {
                compared += 1;
                unknown += usize::from(t.verdict == Verdict::Unknown);
            }
            c
        })
        .filter(CellChange::noteworthy)
        .collect();
    cells.sort_by(|a, b| (&a.family, &a.label).cmp(&(&b.family, &b.label)));
    let builds = build_shifts(&before, new, policy);
    Diff {
        old: old_name.to_string(),
        new: new_name.to_string(),
        policy,
        compared,
        unknown,
        new_builds: new_builds
            .difference(&old_builds)
            .map(|s| s.to_string())
            .collect(),
        cells,
        builds,
    }
}

/// The cells timed on the same build and agent in both runs, grouped per build and agent, each
/// group with enough cells judged as a whole. α is shared (Bonferroni) among the groups and
/// among a group's looks: the most confirmations any of its cells pooled, plus one.
fn build_shifts(
    before: &BTreeMap<&CellId, &RunResult>,
    new: &[RunResult],
    policy: Policy,
) -> Vec<BuildShift> {
    type Key<'a> = (&'a str, Option<&'a str>);
    let mut groups: BTreeMap<Key, Vec<(&RunResult, &RunResult)>> = BTreeMap::new();
    for n in new {
        let Some(o) = before.get(&n.cell.id).copied() else {
            continue;
        };
        if let (Some(env), Some(_)) = (&n.environment_id, timed(o, n, policy)) {
            groups
                .entry((env.as_str(), n.agent.as_deref()))
                .or_default()
                .push((o, n));
        }
    }
    groups.retain(|_, pairs| pairs.len() >= MIN_POOLED_CELLS);
    let judged = groups.len().max(1) as f64;
    groups
        .into_values()
        .map(|pairs| {
            let looks = pairs.iter().map(|(_, n)| n.repeated).max().unwrap_or(0) + 1;
            let held = Policy {
                alpha: policy.alpha / judged / f64::from(looks),
                ..policy
            };
            let strata: Vec<(&[f64], &[f64])> = pairs
                .iter()
                .map(|(o, n)| (o.samples_ms.as_slice(), n.samples_ms.as_slice()))
                .collect();
            let (_, n) = pairs[0];
            BuildShift {
                build: n.build.clone().unwrap_or_else(|| "unnamed build".into()),
                agent: n.agent.clone(),
                pooled: compare::compare_pooled(&strata, held),
            }
        })
        .collect()
}

/// The largest p-value Benjamini–Hochberg rejects at level `q` among `p` (the k-th smallest
/// with p₍ₖ₎ ≤ k·q/m), or 0 when it rejects none: the low threshold every comparison of the
/// run is then held to.
pub fn benjamini_hochberg(p: &[f64], q: f64) -> f64 {
    let mut sorted = p.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .filter(|(k, v)| **v <= (*k as f64 + 1.0) * q / m)
        .map(|(_, v)| *v)
        .next_back()
        .unwrap_or(0.0)
}

/// The two results' samples compared, when both passed on the same build and agent. A
/// comparison that pooled confirmations is the cell's (1 + repeated)-th look at the same
/// question: each look spends an equal share of α, so looking again cannot make an unchanged
/// build look different more often.
fn timed(old: &RunResult, new: &RunResult, policy: Policy) -> Option<Comparison> {
    let same_build = old.environment_id.is_some()
        && old.environment_id == new.environment_id
        && old.agent == new.agent;
    let looks = f64::from(1 + new.repeated);
    let spent = Policy {
        alpha: policy.alpha / looks,
        ..policy
    };
    (same_build && old.status == Status::Pass && new.status == Status::Pass)
        .then(|| compare::compare(&old.samples_ms, &new.samples_ms, spent))
}

fn cell_change(
    old: Option<&RunResult>,
    new: &RunResult,
    flaky: bool,
    policy: Policy,
) -> CellChange {
    let status_change = old.and_then(|o| StatusChange::of(o.status, new.status));
    let new_build = old.and_then(|o| match (&o.build, &new.build) {
        (Some(a), Some(b)) if o.environment_id != new.environment_id => {
            Some((a.clone(), b.clone()))
        }
        _ => None,
    });
    let time = old.and_then(|o| timed(o, new, policy));
    let accuracy = old.and_then(|o| match (o.accuracy_cosine, new.accuracy_cosine) {
        (Some(a), Some(b)) if (a - b).abs() > COSINE_EPSILON => Some(AccuracyChange {
            old_cosine: a,
            new_cosine: b,
        }),
        _ => None,
    });
    let slower = time.is_some_and(|t| t.verdict == Verdict::Different && t.change > 0.0);
    let faster = time.is_some_and(|t| t.verdict == Verdict::Different && t.change < 0.0);
    let less_accurate = accuracy.is_some_and(|a| a.new_cosine < a.old_cosine);
    let more_accurate = accuracy.is_some_and(|a| a.new_cosine > a.old_cosine);
    CellChange {
        cell_id: new.cell.id.clone(),
        repeated: new.repeated,
        agent: new.agent.clone(),
        label: new.cell.label(),
        family: new.cell.family.clone(),
        old_status: old.map(|o| o.status),
        new_status: new.status,
        status_change,
        time,
        new_build,
        accuracy,
        flaky,
        regression: status_change.is_some_and(StatusChange::is_regression)
            || slower
            || less_accurate,
        improvement: status_change == Some(StatusChange::Fixed) || faster || more_accurate,
    }
}

/// Whether one cell's recent results on one build and agent, oldest first, are flaky: they
/// went between passing and not passing (failed, errored, crashed, timed out) at least twice.
/// A single move is a step (a regression or a fix), not flakiness.
pub fn flaky(statuses: &[Status]) -> bool {
    let runs: Vec<bool> = statuses
        .iter()
        .filter_map(|s| match s {
            Status::Pass => Some(true),
            Status::Fail | Status::Error | Status::Crash | Status::Timeout => Some(false),
            _ => None,
        })
        .collect();
    runs.windows(2).filter(|w| w[0] != w[1]).count() >= 2
}

/// One line of a change, in words.
pub fn describe(c: &CellChange) -> String {
    let mut parts = Vec::new();
    match (c.old_status, c.status_change) {
        (None, _) => parts.push(format!("new cell: {}", c.new_status)),
        (Some(old), Some(s)) => parts.push(format!("{} ({old} → {})", s.title(), c.new_status)),
        _ => {}
    }
    if let Some(t) = c.time {
        let more = if c.repeated > 0 {
            format!(", after {} more run(s) of the new build", c.repeated)
        } else {
            String::new()
        };
        parts.push(format!(
            "time {:+.1}% {} (p = {:.4}; different ≤ {:.4}, same > {:.3}{more})",
            t.change * 100.0,
            t.verdict,
            t.p_value,
            t.low_threshold,
            t.high_threshold
        ));
    }
    if let Some((a, b)) = &c.new_build {
        parts.push(format!("new build: {a} → {b} (times not compared)"));
    }
    if let Some(a) = c.accuracy {
        parts.push(format!("cosine {:.4} → {:.4}", a.old_cosine, a.new_cosine));
    }
    if c.flaky {
        parts.push("flaky".into());
    }
    format!("{}: {}", c.label, parts.join("; "))
}

/// The diff as text: a summary line, then per family one line per cell that moved.
pub fn render_text(d: &Diff) -> String {
    let mut out = format!(
        "{} → {}: {} regression(s), {} improvement(s); {} cell(s) timed on the same build and agent, {} of them undecided (more repetitions needed); minimum effect {:.0}%, α = {}\n",
        d.old,
        d.new,
        d.regressions(),
        d.improvements(),
        d.compared,
        d.unknown,
        d.policy.min_effect * 100.0,
        d.policy.alpha
    );
    for b in &d.new_builds {
        let _ = writeln!(out, "new build: {b}");
    }
    for b in &d.builds {
        let tag = if b.regression() {
            "REGRESSION "
        } else if b.improvement() {
            "improvement "
        } else {
            ""
        };
        let _ = writeln!(out, "build as a whole: {tag}{}", b.describe());
    }
    let mut family = "";
    for c in &d.cells {
        if c.family != family {
            family = &c.family;
            let _ = writeln!(out, "\n{family}");
        }
        let tag = if c.regression {
            "REGRESSION "
        } else if c.improvement {
            "improvement "
        } else {
            ""
        };
        let _ = writeln!(out, "  {tag}{}", describe(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cell: &Cell, status: Status, median: f64, env: &str) -> RunResult {
        RunResult {
            cell: cell.clone(),
            status,
            samples_ms: (0..10).map(|i| median + f64::from(i) * 0.01).collect(),
            accuracy_cosine: Some(0.99),
            environment_id: Some(env.into()),
            build: Some(format!("build {env}")),
            agent: Some("lab-1".into()),
            repeated: 0,
        }
    }

    fn cells() -> Vec<Cell> {
        let yaml = "version: 1\nname: t\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\n";
        crate::spec::parse(yaml, "t.yaml").expect("spec").expand()
    }

    #[test]
    fn a_slower_cell_on_the_same_build_is_a_regression() {
        let cs = cells();
        let old = vec![
            run(&cs[0], Status::Pass, 10.0, "e1"),
            run(&cs[1], Status::Pass, 10.0, "e1"),
        ];
        let new = vec![
            run(&cs[0], Status::Pass, 10.5, "e1"),
            run(&cs[1], Status::Pass, 10.0, "e1"),
        ];
        let d = diff("a", &old, "b", &new, &BTreeSet::new(), Policy::default());
        assert_eq!(d.regressions(), 1, "{}", render_text(&d));
        assert_eq!(d.compared, 2);
        assert_eq!(d.cells.len(), 1, "an unchanged cell is not listed");
        assert_eq!(d.arrow(&cs[0].id), Some("▲"));
        assert!(render_text(&d).contains("REGRESSION"));
    }

    #[test]
    fn the_same_run_against_itself_has_no_change() {
        let cs = cells();
        let old: Vec<RunResult> = cs
            .iter()
            .map(|c| run(c, Status::Pass, 10.0, "e1"))
            .collect();
        let d = diff("a", &old, "a", &old, &BTreeSet::new(), Policy::default());
        assert_eq!(d.regressions(), 0);
        assert!(d.cells.is_empty());
    }

    #[test]
    fn a_new_build_is_not_compared_with_the_old_one() {
        let cs = cells();
        let old = vec![run(&cs[0], Status::Pass, 10.0, "e1")];
        let new = vec![run(&cs[0], Status::Pass, 20.0, "e2")];
        let d = diff("a", &old, "b", &new, &BTreeSet::new(), Policy::default());
        assert_eq!(d.regressions(), 0);
        assert_eq!(d.new_builds, ["build e2"]);
        assert!(d.cells[0].time.is_none());
        assert!(d.cells[0].new_build.is_some());
    }

    /// Every cell of bert × bits × mixed precision on one build: enough cells to pool.
    fn many_cells() -> Vec<Cell> {
        let yaml = "version: 1\nname: t\nfamilies: [bert, gpt2, vit]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [2, 3, 4, 8, 16]\n";
        crate::spec::parse(yaml, "t.yaml").expect("spec").expand()
    }

    /// Noisy samples (8%) around `median`, seeded per cell and run.
    fn noisy(cell: &Cell, median: f64, seed: &str) -> RunResult {
        let mut r = crate::reference::rng(3, seed, &cell.id.0);
        let samples_ms = (0..10)
            .map(|_| median * (1.0 + 0.08 * crate::reference::normal(&mut r)))
            .collect();
        RunResult {
            samples_ms,
            ..run(cell, Status::Pass, median, "e1")
        }
    }

    #[test]
    fn a_build_slower_in_every_cell_is_found_when_no_cell_is() {
        let cs = many_cells();
        assert!(cs.len() >= 15, "{}", cs.len());
        let old: Vec<RunResult> = cs.iter().map(|c| noisy(c, 100.0, "old")).collect();
        let slower: Vec<RunResult> = cs.iter().map(|c| noisy(c, 103.0, "new")).collect();
        let d = diff("a", &old, "b", &slower, &BTreeSet::new(), Policy::default());
        assert_eq!(d.builds.len(), 1);
        let b = &d.builds[0];
        assert!(b.regression(), "{}", render_text(&d));
        assert_eq!(b.pooled.strata, cs.len());
        assert!(d.has_regression());
        assert!(render_text(&d).contains("build as a whole: REGRESSION build e1 on lab-1"));
        // the same build unchanged: no build-wide change
        let same: Vec<RunResult> = cs.iter().map(|c| noisy(c, 100.0, "new")).collect();
        let d = diff("a", &old, "b", &same, &BTreeSet::new(), Policy::default());
        assert!(!d.builds[0].regression() && !d.builds[0].improvement());
        assert!(!d.has_regression(), "{}", render_text(&d));
    }

    #[test]
    fn too_few_cells_or_another_agent_are_not_pooled() {
        let cs = many_cells();
        let old: Vec<RunResult> = cs.iter().map(|c| noisy(c, 100.0, "old")).collect();
        let few = &old[..MIN_POOLED_CELLS - 1];
        let d = diff("a", few, "b", few, &BTreeSet::new(), Policy::default());
        assert!(d.builds.is_empty());
        // half the cells moved to another agent: two groups, each judged on its own
        let mut moved = old.clone();
        for r in moved.iter_mut().step_by(2) {
            r.agent = Some("lab-2".into());
        }
        let d = diff("a", &old, "b", &moved, &BTreeSet::new(), Policy::default());
        assert_eq!(d.builds.len(), 1, "only the cells still on lab-1 are timed");
        assert_eq!(d.builds[0].pooled.strata, cs.len() / 2);
    }

    #[test]
    fn status_moves_are_named() {
        assert_eq!(
            StatusChange::of(Status::Pass, Status::Fail),
            Some(StatusChange::NewFailure)
        );
        assert_eq!(
            StatusChange::of(Status::Pass, Status::Unsupported),
            Some(StatusChange::NewlyUnsupported)
        );
        assert_eq!(
            StatusChange::of(Status::Fail, Status::Crash),
            Some(StatusChange::NewlyCrashing)
        );
        assert_eq!(
            StatusChange::of(Status::Fail, Status::Pass),
            Some(StatusChange::Fixed)
        );
        assert_eq!(StatusChange::of(Status::Pass, Status::Pass), None);
        let cs = cells();
        let old = vec![
            run(&cs[0], Status::Pass, 10.0, "e1"),
            run(&cs[1], Status::Fail, 10.0, "e1"),
        ];
        let new = vec![
            run(&cs[0], Status::Crash, 10.0, "e1"),
            run(&cs[1], Status::Pass, 10.0, "e1"),
        ];
        let d = diff("a", &old, "b", &new, &BTreeSet::new(), Policy::default());
        assert_eq!((d.regressions(), d.improvements()), (1, 1));
    }

    #[test]
    fn accuracy_moves_beyond_float_noise_count() {
        let cs = cells();
        let old = vec![run(&cs[0], Status::Pass, 10.0, "e1")];
        let mut new = old.clone();
        new[0].accuracy_cosine = Some(0.99 - COSINE_EPSILON / 2.0);
        let d = diff("a", &old, "b", &new, &BTreeSet::new(), Policy::default());
        assert_eq!(d.regressions(), 0);
        new[0].accuracy_cosine = Some(0.95);
        let d = diff("a", &old, "b", &new, &BTreeSet::new(), Policy::default());
        assert_eq!(d.regressions(), 1);
    }

    #[test]
    fn benjamini_hochberg_holds_a_run_to_its_false_discovery_rate() {
        // m = 4, q = 0.01: thresholds 0.0025, 0.005, 0.0075, 0.01
        assert_eq!(
            benjamini_hochberg(&[0.007, 0.3, 0.0001, 0.004], 0.01),
            0.007
        );
        // 0.009 is above its 0.0075: only the two smallest are rejected
        assert_eq!(
            benjamini_hochberg(&[0.004, 0.3, 0.0001, 0.009], 0.01),
            0.004
        );
        assert_eq!(benjamini_hochberg(&[0.009, 0.3], 0.01), 0.0);
        assert_eq!(benjamini_hochberg(&[], 0.01), 0.0);
        // one cell alone is held to α itself
        assert_eq!(benjamini_hochberg(&[0.008], 0.01), 0.008);
    }

    #[test]
    fn flaky_means_passed_and_failed() {
        assert!(flaky(&[Status::Pass, Status::Crash, Status::Pass]));
        assert!(flaky(&[Status::Fail, Status::Pass, Status::Timeout]));
        assert!(!flaky(&[Status::Pass, Status::Pass]));
        // one step is a regression or a fix, not flakiness
        assert!(!flaky(&[Status::Pass, Status::Pass, Status::Fail]));
        assert!(!flaky(&[Status::Fail, Status::Pass]));
        assert!(!flaky(&[
            Status::Unsupported,
            Status::Pass,
            Status::Unsupported
        ]));
        let cs = cells();
        let old = vec![run(&cs[0], Status::Pass, 10.0, "e1")];
        let flaky: BTreeSet<CellId> = [cs[0].id.clone()].into();
        let d = diff("a", &old, "b", &old, &flaky, Policy::default());
        assert!(d.cells[0].flaky);
        assert_eq!(d.regressions(), 0);
    }
}
