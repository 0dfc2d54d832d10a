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

/// A plain HTTP/1.1 GET, with an admin or agent token: status code and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("\r\nAuthorization: Bearer {t}"))
        .unwrap_or_default();
    let (code, _, body) = request(addr, &format!("GET {path} HTTP/1.1{auth}"), "");
    (code, body)
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
    // a viewer token reads /metrics, and nothing of the gRPC services
    let created = Command::new(bin("quantgrid"))
        .args([
            "token",
            "create",
            "wall",
            "--viewer",
            "--coordinator",
            &url,
            "--token",
            &ops,
        ])
        .output()
        .expect("token create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let viewer = String::from_utf8_lossy(&created.stdout).trim().to_string();
    assert_eq!(get(&http, "/metrics", Some(&viewer)).0, 200);
    rt().block_on(async {
        let e = admin(&url, &viewer)
            .await
            .list_agents(pb::ListAgentsRequest {})
            .await
            .expect_err("viewer on the admin service");
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("viewer token"), "{e:?}");
    });
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
    // every cell waited in its queue once before it was offered
    assert!(
        value("quantgrid_dispatch_seconds_count", None) >= f64::from(cells),
        "{body}"
    );
}

/// A plain HTTP/1.1 request with extra headers and a body: status, headers and body.
fn request(addr: &str, head: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (headers, body) = raw.split_once("\r\n\r\n").expect("a response");
    let code = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, headers.to_string(), body.to_string())
}

#[test]
fn the_dashboard_shows_agents_the_matrix_and_a_cells_history_to_a_signed_in_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (lab, ops) = (token(&db, "lab-1", false), token(&db, "ops", true));
    let (_server, url, http) = serve_http(&db);
    let (cell, sweep, running) = rt().block_on(async {
        let (up, mut down) = fake_agent(&url, &lab, "lab-1", 1).await;
        let mut a = admin(&url, &ops).await;
        let sweep = a
            .submit_sweep(pb::SubmitSweepRequest {
                spec_yaml: "version: 1\nname: page\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8, 16]\n".into(),
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner();
        let mut running = None;
        let mut cell = None;
        for _ in 0..3 {
            let offer = next_offers(&mut down, 1).await.remove(0);
            // the sweep's page while the agent holds its first cell
            let (code, _, page) = request(
                &http,
                &format!("GET /sweeps/{} HTTP/1.1\r\nAuthorization: Bearer {ops}", sweep.sweep_id),
                "",
            );
            assert_eq!(code, 200, "{page}");
            running.get_or_insert(page);
            up.send(pb::AgentMessage {
                agent_id: String::new(),
                kind: Some(pb::agent_message::Kind::Report(pb::Report {
                    lease_id: offer.lease_id.clone(),
                    result: Some(measured_pass(&offer)),
                    signature: Vec::new(),
                })),
            })
            .await
            .expect("report");
            cell = offer.cell.map(|c| c.id);
        }
        watch_until(&mut a, &sweep.sweep_id, |p| p.finished).await;
        (cell.expect("cell"), sweep.sweep_id, running.expect("page"))
    });
    // while it ran: its queue, the cell on the agent, and the others' places in the queue
    assert!(running.contains("<h2>Queues</h2>"), "{running}");
    assert!(
        running.contains("<tr><td>chromium webgpu</td><td>2</td><td>1</td><td>1</td></tr>"),
        "{running}"
    );
    assert!(running.contains("running on lab-1 (attempt 1"), "{running}");
    assert!(
        running.contains("queued #1 in chromium webgpu")
            && running.contains("queued #2 in chromium webgpu"),
        "{running}"
    );
    // not signed in: the sign-in form, and a wrong token is refused there too
    let (code, _, body) = request(&http, "GET / HTTP/1.1", "");
    assert_eq!(code, 401);
    assert!(
        body.contains("<form method=post action=\"/login\">"),
        "{body}"
    );
    let (code, _, _) = request(
        &http,
        "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        &format!("token={lab}"),
    );
    assert_eq!(code, 401, "an agent token cannot sign in");
    let (code, headers, _) = request(
        &http,
        "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        &format!("token={ops}"),
    );
    assert_eq!(code, 303, "{headers}");
    let cookie = headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a cookie")
        .to_string();
    let page = |path: &str| {
        request(
            &http,
            &format!("GET {path} HTTP/1.1\r\nCookie: {cookie}"),
            "",
        )
    };
    let (code, _, agents) = page("/");
    assert_eq!(code, 200);
    assert!(
        agents.contains("<td>lab-1</td>") && agents.contains("unsigned"),
        "{agents}"
    );
    // when it was last heard from, and its record: the three results it reported passed
    assert!(agents.contains(" s ago"), "{agents}");
    assert!(agents.contains("3/3 passed or answered"), "{agents}");
    // once done, every cell's stored result
    let (code, _, done) = page(&format!("/sweeps/{sweep}"));
    assert_eq!(code, 200);
    assert_eq!(
        done.matches("<td>done</td><td>pass</td>").count(),
        3,
        "{done}"
    );
    assert!(!done.contains("<h2>Queues</h2>"), "{done}");
    let (code, _, list) = page("/sweeps");
    assert_eq!(code, 200);
    assert!(
        list.contains(&format!("<a href=\"/sweeps/{sweep}\">")),
        "{list}"
    );
    let (code, _, matrix) = page("/matrix");
    assert_eq!(code, 200);
    assert!(
        matrix.contains("<table>") && matrix.contains("✅"),
        "{matrix}"
    );
    let (code, _, history) = page(&format!("/cell/{cell}"));
    assert_eq!(code, 200);
    assert!(
        history.contains("<svg") && history.contains("class=\"p50\""),
        "{history}"
    );
    let (code, headers, csv) = page(&format!("/cell/{cell}/samples.csv"));
    assert_eq!(code, 200);
    assert!(headers.contains("text/csv"), "{headers}");
    assert!(
        csv.starts_with("sweep_id,attempt_id,recorded_at,status,sample,ms\n"),
        "{csv}"
    );
    assert!(csv.lines().count() > 1, "{csv}");
}

/// An HTTP/1.1 request over TLS, trusting `dir/ca.pem` and, with `client`, presenting
/// `dir/client.pem`: status, headers and body, or the TLS error.
fn https_request(
    addr: &str,
    dir: &std::path::Path,
    client: bool,
    head: &str,
    body: &str,
) -> Result<(u16, String, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = if client {
        let chain = CertificateDer::pem_file_iter(dir.join("client.pem"))
            .expect("client.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("client chain");
        let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).expect("client.key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    // the server closes without close_notify after the response: what was read counts
    if let Err(e) = tls.read_to_string(&mut raw)
        && raw.is_empty()
    {
        return Err(e.to_string());
    }
    let (headers, body) = raw.split_once("\r\n\r\n").ok_or("no response")?;
    let code = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    Ok((code, headers.to_string(), body.to_string()))
}

#[test]
fn the_dashboard_is_served_over_mutual_tls_with_the_grpc_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    pki(d);
    let db = d.join("grid.duckdb");
    let ops = token(&db, "ops", true);
    let p = |n: &str| d.join(n).display().to_string();
    let mut child = Command::new(bin("quantgrid"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--db-path", &p("grid.duckdb")])
        .args([
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
        ])
        .args(["--tls-client-ca", &p("ca.pem")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let _server = Proc(child);
    let mut lines = [String::new(), String::new()];
    for l in &mut lines {
        out.read_line(l).expect("line");
    }
    let http = lines[1].trim().strip_prefix("http ").expect("http line");

    let (code, _, body) = https_request(
        http,
        d,
        true,
        &format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {ops}"),
        "",
    )
    .expect("a scrape over mutual tls");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("quantgrid_"), "{body}");
    // signing in over TLS sets a cookie the browser sends back over TLS only
    let (code, headers, _) = https_request(
        http,
        d,
        true,
        "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        &format!("token={ops}"),
    )
    .expect("sign in");
    assert_eq!(code, 303, "{headers}");
    assert!(
        headers.contains("HttpOnly") && headers.contains("Secure"),
        "{headers}"
    );
    // without a client certificate the handshake is refused before any token is read
    let refused = https_request(
        http,
        d,
        false,
        &format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {ops}"),
        "",
    );
    assert!(refused.is_err(), "{refused:?}");
    // and plaintext gets no page
    let mut s = std::net::TcpStream::connect(http).expect("connect");
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {ops}\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        !String::from_utf8_lossy(&raw).contains("quantgrid_"),
        "plaintext was answered"
    );
}

#[test]
fn a_local_run_serves_its_dashboard_until_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("results.duckdb");
    let mut child = Command::new(bin("quantgrid"))
        .args([
            "run",
            "--model",
            "bert-base-uncased",
            "--platform",
            "webgpu",
        ])
        .args([
            "--browser",
            "chromium",
            "--bits",
            "8",
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--db-path")
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut run = Proc(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut seen = Vec::new();
    let mut until = |want: &str| loop {
        let l = lines
            .recv_timeout(std::time::Duration::from_secs(300))
            .unwrap_or_else(|_| panic!("no `{want}` line in:\n{}", seen.join("\n")));
        seen.push(l.clone());
        if l.contains(want) {
            return l;
        }
    };
    // `dashboard on http://ADDR/ (sign in with the viewer token TOKEN)`
    let line = until("dashboard on http://");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("address")
        .to_string();
    let viewer = line
        .rsplit("viewer token ")
        .next()
        .map(|t| t.trim_end_matches(')').to_string())
        .expect("token");
    // served while the sweep runs (or as soon as it is done)
    let (code, body) = get(&addr, "/sweeps", Some(&viewer));
    assert_eq!(code, 200, "{body}");
    until("the sweep is done");
    let (code, md) = get(&addr, "/matrix", Some(&viewer));
    assert_eq!(code, 200, "{md}");
    assert!(md.contains("8-bit") && md.contains("(1/1 pass)"), "{md}");
    let (code, _) = get(&addr, "/matrix", None);
    assert_eq!(code, 401);
    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(run.wait_exit().success());
    let mut id = String::new();
    BufReader::new(stdout)
        .read_to_string(&mut id)
        .expect("stdout");
    assert!(id.trim().starts_with("sw-"), "{id}");
    // its one-off tokens end with it
    let store = quantgrid_coordinator::store::Store::open(&db).expect("open");
    let tokens = store.tokens().expect("tokens");
    assert!(
        tokens.iter().any(|t| t.name.starts_with("local-viewer-"))
            && tokens.iter().all(|t| t.revoked),
        "{tokens:?}"
    );
}
