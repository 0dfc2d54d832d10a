//! `/metrics` end to end: `quantgrid serve --http`, a simulated agent running a load-test
//! sweep over real gRPC, and the scrape read back by a Prometheus exposition-format parser.

mod support;

use quantgrid_proto::pb;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use support::*;

/// `quantgrid serve` with `--http`: the process, its gRPC URL and its HTTP address.
fn serve_http(db: &std::path::Path) -> (Proc, String, String) {
    let mut child = Command::new(bin("quantgrid"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args([
            "--lease-ttl-secs",
            "2",
            "--heartbeat-secs",
            "0.3",
            "--db-path",
        ])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = |prefix: &str| {
        let mut l = String::new();
        out.read_line(&mut l).expect("line");
        l.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected `{prefix}…`, got {l}"))
            .to_string()
    };
    let grpc = format!("http://{}", line("listening "));
    let http = line("http ");
    (Proc(child), grpc, http)
}

/// A plain HTTP/1.1 GET: status code and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

#[test]
fn metrics_count_a_load_test_and_parse_as_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (lab, ops) = (token(&db, "lab-1", false), token(&db, "ops", true));
    let (_server, url, http) = serve_http(&db);
    let _agent = agent(&url, &lab, 5, &[]);
    let cells = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let sweep = a
            .submit_sweep(pb::SubmitSweepRequest {
                spec_yaml: "version: 1\nname: drill\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [2, 3, 4, 8, 16]\n".into(),
                simulated: true,
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner();
        let last = watch_until(&mut a, &sweep.sweep_id, |p| p.finished).await;
        assert_eq!(last.done, sweep.cells);
        sweep.cells
    });
    assert_eq!(get(&http, "/metrics", None).0, 401);
    assert_eq!(
        get(&http, "/metrics", Some(&lab)).0,
        401,
        "agent tokens are refused"
    );
    let (code, body) = get(&http, "/metrics", Some(&ops));
    assert_eq!(code, 200, "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition format");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
            .sum()
    };
    assert_eq!(
        value("quantgrid_reports_total", Some(("reason", "pass"))),
        f64::from(cells),
        "{body}"
    );
    assert_eq!(
        value("quantgrid_agents", Some(("state", "connected"))),
        1.0,
        "{body}"
    );
    assert_eq!(
        value("quantgrid_cells", Some(("state", "waiting_or_running"))),
        0.0,
        "the sweep is over: {body}"
    );
    assert_eq!(
        value("quantgrid_cell_duration_seconds_count", None),
        f64::from(cells),
        "{body}"
    );
    assert!(
        value("quantgrid_store_commit_seconds_count", None) >= 1.0,
        "{body}"
    );
    assert!(
        value("quantgrid_store_batch_records_sum", None) >= f64::from(cells),
        "{body}"
    );
}
