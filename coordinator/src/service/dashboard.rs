//! The dashboard's pages, rendered on the server from the same data the CLI prints: the agents
//! as `quantgrid agents` lists them, the matrix as `quantgrid matrix` writes it (its Markdown,
//! turned into HTML: one implementation of the matrix rules), and a cell's history as
//! `quantgrid history` reads it, plotted as SVG. Pure functions of their data.

use crate::store::HistoryRow;
use quantgrid_proto::pb;
use std::fmt::Write;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;max-width:80em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}\
th{background:#f4f4f4}.bad{color:#a00;font-weight:bold}.muted{color:#777}nav a{margin-right:1em}";

/// HTML-escaped text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t} · quantgrid</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/\">agents</a><a href=\"/sweeps\">sweeps</a><a href=\"/matrix\">matrix</a></nav>\
         <h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}

/// The sign-in form: the token goes into a cookie only this site reads.
pub fn login(problem: Option<&str>) -> String {
    let said = problem
        .map(|p| format!("<p class=bad>{}</p>", esc(p)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "{said}<form method=post action=\"/login\"><label>Admin or viewer token <input name=token type=password size=70></label> <button>Sign in</button></form>"
        ),
    )
}

/// How many of each agent's last results make its record.
pub const RECORD_RESULTS: usize = 20;

/// The agents, as the coordinator knows them right now, with when it last heard from each and
/// its recent record: a sick one stands out (disconnected, draining, unsigned, silent, or
/// failing).
pub fn agents(
    list: &[pb::AgentInfo],
    records: &[crate::store::AgentHealth],
    now_ms: u64,
) -> String {
    let mut rows = String::new();
    for a in list {
        let heard = now_ms.saturating_sub(a.last_heard_unix_ms) as f64 / 1000.0;
        let heard = if a.last_heard_unix_ms == 0 {
            "never".to_string()
        } else if heard > 60.0 {
            format!("<span class=bad>{heard:.0} s ago</span>")
        } else {
            format!("{heard:.0} s ago")
        };
        let record = match records.iter().find(|r| r.agent == a.name) {
            None => "<span class=muted>no results yet</span>".to_string(),
            Some(r) => {
                let share = format!("{}/{} passed or answered", r.answered, r.results);
                let share = if r.answered < r.results {
                    format!("<span class=bad>{share}</span>")
                } else {
                    share
                };
                let failures: Vec<String> = r.failures.iter().map(|f| esc(f)).collect();
                if failures.is_empty() {
                    share
                } else {
                    format!("{share}<br><small>{}</small>", failures.join("<br>"))
                }
            }
        };
        let state = match (a.connected, a.draining) {
            (false, _) => "<span class=bad>disconnected</span>",
            (true, true) => "<span class=bad>draining</span>",
            (true, false) => "connected",
        };
        let key = if a.key_id.is_empty() {
            "<span class=bad>unsigned</span>".to_string()
        } else {
            format!("<code>{}</code>", esc(&a.key_id))
        };
        let browsers: Vec<String> = a
            .browsers
            .iter()
            .filter_map(|b| quantgrid_matrix::agent::BrowserCapability::try_from(b).ok())
            .map(|b| {
                let webgpu = b.webgpu.as_ref().map_or("no WebGPU".to_string(), |ad| {
                    format!("WebGPU {}", ad.label())
                });
                let webnn = if b.webnn_devices.is_empty() {
                    "no WebNN".to_string()
                } else {
                    format!("WebNN contexts accepted for {}", b.webnn_devices.join("/"))
                };
                esc(&format!("{} {}: {webgpu}; {webnn}", b.browser, b.version))
            })
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{state}</td><td>{heard}</td><td>{}/{}</td><td>{}</td><td>{key}</td><td>{record}</td><td>{}</td></tr>",
            esc(&a.name),
            a.busy_slots,
            a.slots,
            esc(&a.os),
            browsers.join("<br>")
        );
    }
    page(
        "Agents",
        &format!(
            "<p>{} agent(s), {} connected. Record: of each agent's last {RECORD_RESULTS} results of the past week.</p><table><tr><th>agent</th><th>state</th><th>last heard</th><th>busy</th><th>os</th><th>key</th><th>record</th><th>browsers (as probed from inside)</th></tr>{rows}</table>",
            list.len(),
            list.iter().filter(|a| a.connected).count()
        ),
    )
}

/// Live progress: each running sweep's row follows the coordinator's progress stream (server-
/// sent events) without a reload; then the next runs of the schedules.
pub fn sweeps(list: &[crate::store::SweepSummary], schedules: &[pb::ScheduleInfo]) -> String {
    let rows: String = list.iter().map(|s| sweep_row(s, true)).collect();
    let mut next = String::new();
    for s in schedules {
        let name = s.spec.as_ref().map_or("", |p| p.name.as_str());
        let _ = write!(
            next,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            if s.paused { "paused" } else { "active" },
            esc(&s.next_due),
            esc(&s.running_sweep)
        );
    }
    page(
        "Sweeps",
        &format!(
            "<table>{SWEEP_HEAD}{rows}</table>\
             <h2>Schedules</h2><table><tr><th>schedule</th><th></th><th>next run</th><th>running</th></tr>{next}</table>\
             <script>{LIVE}</script>"
        ),
    )
}

/// One sweep: its progress (live while it runs), each queue (browser × platform) with its
/// waiting and running cells and the agents that can take them, and every cell's state: running
/// on which agent since when, its place in its queue, or its stored result.
pub fn sweep(
    summary: &crate::store::SweepSummary,
    view: Option<&crate::scheduler::SweepView>,
    results: &[crate::store::ResultRow],
    now: u64,
) -> String {
    use crate::scheduler::CellState;
    use quantgrid_matrix::Status;
    let ago = |t: u64| format!("{:.0} s", now.saturating_sub(t) as f64 / 1000.0);
    let head = format!("<table>{SWEEP_HEAD}{}</table>", sweep_row(summary, false));
    // the accepted result of each cell
    let stored: std::collections::HashMap<&str, &crate::store::ResultRow> = results
        .iter()
        .filter(|r| r.accepted)
        .map(|r| (r.cell_id.as_str(), r))
        .collect();
    let result_cells = |r: &crate::store::ResultRow| {
        let p50 = r.p50_ms.map_or("–".to_string(), |v| format!("{v:.2} ms"));
        let answered = matches!(r.status, Status::Pass | Status::Unsupported);
        let class = if answered && !r.simulated {
            ""
        } else {
            " class=bad"
        };
        let simulated = if r.simulated { " 🧪 simulated" } else { "" };
        format!(
            "<td{class}>{}{simulated}</td><td>{p50}</td>",
            r.status.as_str()
        )
    };
    let mut queues = String::new();
    let mut cells = String::new();
    match view {
        Some(v) => {
            for q in &v.queues {
                let starved = if q.agents == 0 && q.waiting > 0 {
                    " class=bad"
                } else {
                    ""
                };
                let _ = write!(
                    queues,
                    "<tr><td>{} {}</td><td>{}</td><td>{}</td><td{starved}>{}</td></tr>",
                    q.browser, q.platform, q.waiting, q.running, q.agents
                );
            }
            // running first, then the queues front to back, then what is done
            let order = |s: &CellState| match s {
                CellState::Running { since, .. } => (0, *since as i64),
                CellState::Queued { position, .. } => (1, i64::from(*position)),
                CellState::Between => (2, 0),
                CellState::Done => (3, 0),
            };
            let mut sorted: Vec<_> = v.cells.iter().collect();
            sorted.sort_by_key(|(_, s)| order(s));
            for (cell, state) in sorted {
                let (what, tail) = match state {
                    CellState::Running {
                        agent,
                        attempt,
                        since,
                    } => (
                        format!(
                            "running on {} (attempt {attempt}, for {})",
                            esc(agent),
                            ago(*since)
                        ),
                        "<td></td><td></td>".to_string(),
                    ),
                    CellState::Queued { position, since } => (
                        format!(
                            "queued #{position} in {} {} (waiting {})",
                            cell.browser,
                            cell.platform,
                            ago(*since)
                        ),
                        "<td></td><td></td>".to_string(),
                    ),
                    CellState::Between => (
                        "between attempts".to_string(),
                        "<td></td><td></td>".to_string(),
                    ),
                    CellState::Done => (
                        "done".to_string(),
                        stored
                            .get(cell.id.0.as_str())
                            .map_or("<td></td><td></td>".to_string(), |r| result_cells(r)),
                    ),
                };
                let _ = write!(
                    cells,
                    "<tr><td><a href=\"/cell/{id}\">{label}</a></td><td>{what}</td>{tail}</tr>",
                    id = esc(&cell.id.0),
                    label = esc(&cell.label()),
                );
            }
        }
        None => {
            for r in results.iter().filter(|r| r.accepted) {
                let _ = write!(
                    cells,
                    "<tr><td><a href=\"/cell/{id}\">{label}</a></td><td>done</td>{tail}</tr>",
                    id = esc(&r.cell_id),
                    label = esc(&r.label),
                    tail = result_cells(r),
                );
            }
        }
    }
    let queues = if queues.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Queues</h2><table><tr><th>kind of cell</th><th>waiting</th><th>running</th><th>agents that can run it</th></tr>{queues}</table>"
        )
    };
    page(
        &format!("Sweep {}", summary.sweep_id),
        &format!(
            "{head}{queues}<h2>Cells</h2><table><tr><th>cell</th><th>state</th><th>status</th><th>p50</th></tr>{cells}</table><script>{LIVE}</script>"
        ),
    )
}

/// The header of a table of sweeps.
const SWEEP_HEAD: &str = "<tr><th>sweep</th><th>name</th><th>state</th><th>done</th><th>cells</th><th>passed</th><th>unsupported</th><th>simulated</th></tr>";

/// A sweep's row, which `LIVE` keeps up to date while it runs; `link`: its id leads to its page.
fn sweep_row(s: &crate::store::SweepSummary, link: bool) -> String {
    let id = esc(&s.sweep_id);
    let shown = if link {
        format!("<a href=\"/sweeps/{id}\">{id}</a>")
    } else {
        id.clone()
    };
    format!(
        "<tr data-sweep=\"{id}\" data-state=\"{state}\"><td>{shown}</td><td>{name}</td><td class=state>{state}</td><td class=done>{}</td><td class=total>{}</td><td class=passed>{}</td><td class=unsupported>{}</td><td class=simulated>{}</td></tr>",
        s.done,
        s.cells,
        s.passed,
        s.unsupported,
        s.simulated,
        name = esc(&s.name),
        state = esc(&s.state),
    )
}

/// Follows every running sweep's events and writes them into its row.
const LIVE: &str = "for (const row of document.querySelectorAll('tr[data-state=running]')) {\
  const events = new EventSource('/sweeps/' + encodeURIComponent(row.dataset.sweep) + '/events');\
  events.onmessage = (m) => {\
    const p = JSON.parse(m.data);\
    for (const k of ['state', 'done', 'total', 'passed', 'unsupported', 'simulated']) {\
      const cell = row.querySelector('.' + k); if (cell) cell.textContent = p[k];\
    }\
    if (p.finished) events.close();\
  };\
}";

/// The matrix: the Markdown `quantgrid matrix` writes, as HTML.
pub fn matrix(markdown: &str, rendered_at: &str) -> String {
    use pulldown_cmark::Event;
    // raw HTML in the Markdown (a browser's error text, say) is shown as text, never run
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES)
        .map(|e| match e {
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            other => other,
        });
    let mut html = format!(
        "<p class=muted>Rendered at {} (while results arrive, at most every 5 s).</p>",
        esc(rendered_at)
    );
    pulldown_cmark::html::push_html(&mut html, parser);
    page("Matrix", &html)
}

/// Rows of a cell's table (the newest), and results that get a point of their own in its plot.
const TABLE_ROWS: usize = 100;
const POINTS: usize = 400;

/// A cell's history: its time per result with the p10–p90 band, status marks and new builds,
/// drawn as SVG, then the table `quantgrid history` prints.
pub fn cell(id: &str, rows: &[HistoryRow]) -> String {
    let Some(first) = rows.first() else {
        return page(
            "Cell",
            &format!("<p>No stored result of cell <code>{}</code>.</p>", esc(id)),
        );
    };
    let mut table = String::new();
    // a year of nightly results is thousands of rows: the plot shows them all, the table the
    // newest (all of them are in the CSV and `quantgrid history`)
    let shown = rows.len().min(TABLE_ROWS);
    for r in rows[rows.len() - shown..].iter().rev() {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.recorded_at),
            esc(&r.sweep_id),
            esc(r.status.as_str()),
            ms(r.p10_ms),
            ms(r.p50_ms),
            ms(r.p90_ms),
            r.accuracy_cosine
                .map_or("–".to_string(), |c| format!("{c:.4}")),
            esc(r.browser.as_deref().unwrap_or("–")),
            if r.new_build { "new build" } else { "" }
        );
    }
    let of = if shown < rows.len() {
        format!(
            "<p class=muted>The newest {shown} of {} results; every one is in the CSV.</p>",
            rows.len()
        )
    } else {
        String::new()
    };
    page(
        &first.label,
        &format!(
            "<p><code>{}</code> · <a href=\"/cell/{}/samples.csv\">raw samples (CSV)</a></p>{}{of}\
             <table><tr><th>recorded</th><th>run</th><th>status</th><th>p10 ms</th><th>p50 ms</th><th>p90 ms</th><th>cosine</th><th>build</th><th></th></tr>{table}</table>",
            esc(id),
            esc(id),
            plot(rows)
        ),
    )
}

/// The p50 of every result as a line, its p10–p90 as a band, a red mark for every result that
/// did not pass and a dashed line where a new build starts. The page clock's milliseconds.
pub fn plot(rows: &[HistoryRow]) -> String {
    let (w, h, pad) = (800.0, 240.0, 40.0);
    let timed: Vec<(usize, f64, f64, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.p10_ms?, r.p50_ms?, r.p90_ms?)))
        .collect();
    let top = timed.iter().map(|t| t.3).fold(0.0, f64::max).max(1e-9) * 1.1;
    let n = rows.len().max(2) as f64 - 1.0;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / top;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=img>\
         <text x=\"4\" y=\"14\" font-size=\"11\">ms (page clock), max {top:.1}</text>\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>",
        b = h - pad,
        r = w - pad
    );
    if !timed.is_empty() {
        let upper: Vec<String> = timed
            .iter()
            .map(|t| format!("{:.1},{:.1}", x(t.0), y(t.3)))
            .collect();
        let lower: Vec<String> = timed
            .iter()
            .rev()
            .map(|t| format!("{:.1},{:.1}", x(t.0), y(t.1)))
            .collect();
        let _ = write!(
            svg,
            "<polygon class=\"band\" points=\"{} {}\" fill=\"#9cf\" fill-opacity=\"0.4\"/>",
            upper.join(" "),
            lower.join(" ")
        );
        let line: Vec<String> = timed
            .iter()
            .map(|t| format!("{:.1},{:.1}", x(t.0), y(t.2)))
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"p50\" points=\"{}\" fill=\"none\" stroke=\"#036\" stroke-width=\"1.5\"/>",
            line.join(" ")
        );
        // each result a point too, so a single one shows, with its figures on hover (up to a
        // few hundred: beyond, the line is readable and the points only weigh the page down)
        for t in timed.iter().filter(|_| timed.len() <= POINTS) {
            let r = &rows[t.0];
            let _ = write!(
                svg,
                "<circle class=\"result\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#036\"><title>{}: p10 {:.2} · p50 {:.2} · p90 {:.2} ms</title></circle>",
                x(t.0),
                y(t.2),
                esc(&r.recorded_at),
                t.1,
                t.2,
                t.3
            );
        }
    }
    for (i, r) in rows.iter().enumerate() {
        if r.new_build {
            let _ = write!(
                svg,
                "<line class=\"new-build\" x1=\"{0:.1}\" y1=\"{pad}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#a60\" stroke-dasharray=\"4 3\"><title>new build: {2}</title></line>",
                x(i),
                h - pad,
                esc(r.browser.as_deref().unwrap_or("?"))
            );
        }
        if r.status != quantgrid_matrix::Status::Pass {
            let _ = write!(
                svg,
                "<circle class=\"not-pass\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#c00\"><title>{}</title></circle>",
                x(i),
                h - pad,
                esc(r.status.as_str())
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Every raw sample of a cell's history, one per line: the run, the result, the sample's index
/// and its milliseconds (the page clock).
pub fn samples_csv(rows: &[HistoryRow]) -> String {
    let mut out = String::from("sweep_id,attempt_id,recorded_at,status,sample,ms\n");
    for r in rows {
        for (i, v) in r.samples_ms.iter().enumerate() {
            let _ = writeln!(
                out,
                "{},{},{},{},{i},{v}",
                r.sweep_id,
                r.attempt_id,
                r.recorded_at,
                r.status.as_str()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize, p50: f64, status: quantgrid_matrix::Status, new_build: bool) -> HistoryRow {
        HistoryRow {
            cell_id: "c".into(),
            label: "bert chromium webgpu 4-bit".into(),
            sweep_id: format!("s{i}"),
            sweep_name: "nightly".into(),
            attempt_id: format!("s{i}.c.1"),
            recorded_at: format!("2026-12-0{} 02:00:00", i + 1),
            status,
            samples_ms: vec![p50 - 1.0, p50, p50 + 1.0],
            p10_ms: Some(p50 - 1.0),
            p50_ms: Some(p50),
            p90_ms: Some(p50 + 1.0),
            accuracy_cosine: Some(0.99),
            accuracy_rel_err: None,
            accuracy_top1: None,
            browser: Some("chromium <156>".into()),
            driver: None,
            os: None,
            adapter: None,
            agent: None,
            environment_id: None,
            new_build,
            origin: None,
        }
    }

    #[test]
    fn the_plot_draws_the_band_the_line_and_the_marks() {
        use quantgrid_matrix::Status;
        let rows = vec![
            row(0, 10.0, Status::Pass, false),
            row(1, 12.0, Status::Pass, true),
            row(2, 11.0, Status::Fail, false),
        ];
        let svg = plot(&rows);
        assert_eq!(svg.matches("class=\"band\"").count(), 1);
        assert_eq!(svg.matches("class=\"p50\"").count(), 1);
        assert_eq!(svg.matches("class=\"new-build\"").count(), 1);
        assert_eq!(svg.matches("class=\"not-pass\"").count(), 1);
        assert!(svg.contains("chromium &lt;156&gt;"), "escaped: {svg}");
        let csv = samples_csv(&rows);
        assert_eq!(csv.lines().count(), 1 + 3 * 3);
        assert!(
            csv.lines().nth(1).is_some_and(|l| l.ends_with(",0,9")),
            "{csv}"
        );
    }

    #[test]
    fn a_sick_agent_stands_out() {
        let info = |name: &str, connected: bool, heard: u64| pb::AgentInfo {
            agent_id: name.into(),
            name: name.into(),
            connected,
            slots: 1,
            key_id: "k".into(),
            last_heard_unix_ms: heard,
            ..Default::default()
        };
        let list = vec![info("well", true, 99_000), info("sick", true, 10_000)];
        let records = vec![crate::store::AgentHealth {
            agent: "sick".into(),
            results: 20,
            answered: 17,
            failures: vec!["crash: <the GPU process died>".into()],
        }];
        let html = agents(&list, &records, 100_000);
        assert!(html.contains("<td>1 s ago</td>"), "{html}");
        assert!(html.contains("<span class=bad>90 s ago</span>"), "{html}");
        assert!(
            html.contains("<span class=bad>17/20 passed or answered</span>"),
            "{html}"
        );
        assert!(
            html.contains("crash: &lt;the GPU process died&gt;"),
            "{html}"
        );
        assert!(html.contains("no results yet"), "{html}");
    }

    #[test]
    fn the_matrix_page_is_the_markdown_as_html() {
        let html = matrix(
            "## Changes\n\n| a | b |\n|---|---|\n| ✅ | <script>x</script> |\n",
            "12:00:00 UTC",
        );
        assert!(
            html.contains("<table>") && html.contains("<h2>Changes</h2>"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "raw HTML is text: {html}");
    }
}
