//! Multi-process tests of the grid: the real `quantgrid serve` and `quantgrid-agent` binaries
//! over TCP on 127.0.0.1, killed and restarted for real. Waits are on observable events (a
//! line on a pipe, a progress message), never on sleeps.

use quantgrid_coordinator::store::Store;
use quantgrid_matrix::Status;
use quantgrid_proto::client::{self, Bearer, Tls};
use quantgrid_proto::pb::{self, agent_service_client::AgentServiceClient};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;
use support::*;

const SPEC: &str = "version: 1
name: drill
families: [bert, gpt2, vit, whisper, clip]
browsers: [chromium, firefox]
platforms: both
bits: [4, 8]
retries: 3
";

async fn submit(a: &mut Admin, spec: &str) -> (String, u32) {
    let r = a
        .submit_sweep(pb::SubmitSweepRequest {
            client_request_id: String::new(),
            spec_yaml: spec.into(),
            spec_name: "drill.yaml".into(),
            // drills run on simulated agents, which take only load-test sweeps
            simulated: true,
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner();
    (r.sweep_id, r.cells)
}

/// Every cell of the sweep has exactly one accepted result.
fn accepted_once(db: &Path, sweep: &str, cells: u32) {
    let store = Store::open(db).expect("open db");
    let rows = store.results(Some(sweep), 1_000_000).expect("results");
    let mut per_cell = std::collections::HashMap::<String, u32>::new();
    for r in rows.iter().filter(|r| r.accepted) {
        *per_cell.entry(r.cell_id.clone()).or_default() += 1;
    }
    assert_eq!(
        per_cell.len() as u32,
        cells,
        "cells with an accepted result"
    );
    assert!(
        per_cell.values().all(|n| *n == 1),
        "a cell was accepted twice: {per_cell:?}"
    );
    assert!(
        rows.iter().all(|r| r.simulated),
        "simulated drill results must say so"
    );
}

#[test]
fn an_agent_killed_mid_sweep_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, t2, ops) = (
        token(&db, "a1", false),
        token(&db, "a2", false),
        token(&db, "ops", true),
    );
    let (_server, url) = serve(&db, "127.0.0.1:0");
    let mut victim = agent(&url, &t1, 40, &[]);
    let _survivor = agent(&url, &t2, 40, &[]);
    rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let (sweep, cells) = submit(&mut a, SPEC).await;
        watch_until(&mut a, &sweep, |p| p.done >= 5).await;
        victim.signal(nix::sys::signal::Signal::SIGKILL);
        victim.wait_exit();
        let last = watch_until(&mut a, &sweep, |p| p.finished).await;
        assert_eq!(
            (last.state.as_str(), last.done, last.simulated, last.passed),
            // a drill's results are simulated: done, never passed
            ("finished", cells, cells, 0)
        );
        drop(_server);
        accepted_once(&db, &sweep, cells);
    });
}

#[test]
fn a_coordinator_killed_mid_sweep_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, t2, ops) = (
        token(&db, "a1", false),
        token(&db, "a2", false),
        token(&db, "ops", true),
    );
    let (mut server, url) = serve(&db, "127.0.0.1:0");
    let listen = url.trim_start_matches("http://").to_string();
    let _a1 = agent(&url, &t1, 30, &[]);
    let _a2 = agent(&url, &t2, 30, &[]);
    let (sweep, cells) = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let (sweep, cells) = submit(&mut a, SPEC).await;
        watch_until(&mut a, &sweep, |p| p.done >= 10).await;
        (sweep, cells)
    });
    server.signal(nix::sys::signal::Signal::SIGKILL);
    server.wait_exit();
    // the agents keep running and reconnect to the restarted coordinator on the same port
    let (server2, url2) = serve(&db, &listen);
    assert_eq!(url2, url);
    rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let last = watch_until(&mut a, &sweep, |p| p.finished).await;
        assert_eq!(
            (last.state.as_str(), last.done, last.simulated, last.passed),
            // a drill's results are simulated: done, never passed
            ("finished", cells, cells, 0)
        );
    });
    drop(server2);
    accepted_once(&db, &sweep, cells);
}

#[test]
fn wrong_tokens_are_refused_with_clear_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (agent_token, ops) = (token(&db, "a1", false), token(&db, "ops", true));
    let (_server, url) = serve(&db, "127.0.0.1:0");
    rt().block_on(async {
        let mut bogus = admin(&url, "qgt_not-a-real-token").await;
        let e = bogus
            .list_agents(pb::ListAgentsRequest {})
            .await
            .expect_err("bogus token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let mut wrong_kind = admin(&url, &agent_token).await;
        let e = wrong_kind
            .list_agents(pb::ListAgentsRequest {})
            .await
            .expect_err("agent token");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let ch = client::connect(&url, &Tls::default())
            .await
            .expect("connect");
        let mut as_agent =
            AgentServiceClient::with_interceptor(ch, Bearer::new(&ops).expect("token"));
        let e = as_agent
            .register(pb::RegisterRequest {
                slots: 1,
                ..Default::default()
            })
            .await
            .expect_err("admin as agent");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    });
    // an agent with a bad token exits with the reason instead of retrying forever
    let out = Command::new(bin("quantgrid-agent"))
        .args([
            "run",
            "--coordinator",
            &url,
            "--token",
            "qgt_wrong",
            "--executor",
            "simulated",
        ])
        .output()
        .expect("agent");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown or revoked token"));
}

#[test]
fn a_repeated_report_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (agent_token, ops) = (token(&db, "fake", false), token(&db, "ops", true));
    let (server, url) = serve(&db, "127.0.0.1:0");
    let sweep = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let (sweep, _) = submit(&mut a, "version: 1\nname: one\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n").await;
        // a hand-written agent that reports the same result twice
        let ch = client::connect(&url, &Tls::default()).await.expect("connect");
        let mut c = AgentServiceClient::with_interceptor(ch, Bearer::new(&agent_token).expect("token"));
        let caps = quantgrid_matrix::agent::Capabilities {
            // it reports simulated results: it takes only load-test sweeps
            simulated: true,
            ..quantgrid_matrix::fixtures::chromium_capabilities(1)
        };
        c.register(quantgrid_proto::convert::register_request("fake", "test", &caps)).await.expect("register");
        let (up, rx) = tokio::sync::mpsc::channel(8);
        let mut down = c.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("session").into_inner();
        let offer = loop {
            match down.message().await.expect("message").expect("open").kind {
                Some(pb::coordinator_message::Kind::Offer(o)) => break o,
                _ => continue,
            }
        };
        let cell = offer.cell.expect("cell");
        let result = pb::CellResult {
            cell_id: cell.id.clone(),
            status: pb::Status::Pass as i32,
            error_text: None,
            effective_bits: 4,
            measurement: None,
            environment: None,
            simulated: true,
        };
        for _ in 0..2 {
            let report = pb::Report { lease_id: offer.lease_id.clone(), result: Some(result.clone()), signature: Vec::new() };
            up.send(pb::AgentMessage { agent_id: "fake".into(), kind: Some(pb::agent_message::Kind::Report(report)) })
                .await
                .expect("send");
        }
        // both reports are acknowledged: the second as a duplicate
        let mut acks = 0;
        while acks < 2 {
            if let Some(pb::coordinator_message::Kind::Ack(a)) = down.message().await.expect("message").expect("open").kind {
                assert_eq!(a.lease_id, offer.lease_id);
                acks += 1;
            }
        }
        let last = watch_until(&mut a, &sweep, |p| p.finished).await;
        assert_eq!((last.simulated, last.passed), (1, 0));
        sweep
    });
    drop(server);
    let store = Store::open(&db).expect("open");
    assert_eq!(store.results(Some(&sweep), 10).expect("results").len(), 1);
}

#[test]
fn cancel_stops_a_sweep_and_drain_stops_offers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, ops) = (token(&db, "a1", false), token(&db, "ops", true));
    let (_server, url) = serve(&db, "127.0.0.1:0");
    let _a1 = agent(&url, &t1, 30, &[]);
    rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        // wait until the agent is connected
        loop {
            let agents = a
                .list_agents(pb::ListAgentsRequest {})
                .await
                .expect("agents")
                .into_inner()
                .agents;
            if agents.iter().any(|x| x.name == "a1" && x.connected) {
                break;
            }
            tokio::task::yield_now().await;
        }
        a.drain_agent(pb::DrainRequest {
            agent: "a1".into(),
            undrain: false,
        })
        .await
        .expect("drain");
        let agents = a
            .list_agents(pb::ListAgentsRequest {})
            .await
            .expect("agents")
            .into_inner()
            .agents;
        assert!(agents[0].draining);
        let (sweep, cells) = submit(&mut a, SPEC).await;
        let p = a
            .watch_sweep(pb::SweepRef {
                sweep_id: sweep.clone(),
            })
            .await
            .expect("watch")
            .into_inner()
            .message()
            .await
            .expect("p")
            .expect("first");
        assert_eq!(p.done, 0);
        let agents = a
            .list_agents(pb::ListAgentsRequest {})
            .await
            .expect("agents")
            .into_inner()
            .agents;
        assert_eq!(agents[0].busy_slots, 0, "a draining agent got a cell");
        a.drain_agent(pb::DrainRequest {
            agent: "a1".into(),
            undrain: true,
        })
        .await
        .expect("undrain");
        watch_until(&mut a, &sweep, |p| p.done >= 3).await;
        a.cancel_sweep(pb::SweepRef {
            sweep_id: sweep.clone(),
        })
        .await
        .expect("cancel");
        let last = watch_until(&mut a, &sweep, |p| p.finished).await;
        assert_eq!(last.state, "cancelled");
        assert!(last.done < cells);
        let e = a
            .cancel_sweep(pb::SweepRef {
                sweep_id: sweep.clone(),
            })
            .await
            .expect_err("twice");
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = a
            .drain_agent(pb::DrainRequest {
                agent: "nobody".into(),
                undrain: false,
            })
            .await
            .expect_err("unknown agent");
        assert_eq!(e.code(), tonic::Code::NotFound);
    });
}

/// A simulated agent never makes a real sweep pass: it takes none of its cells (they end
/// `no_capable_agent` once the wait is over, and `submit --wait` exits 1), and the load test it
/// does take ends with simulated results that are never passes.
#[test]
fn a_simulated_agent_never_makes_a_real_sweep_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, ops) = (token(&db, "a1", false), token(&db, "ops", true));
    let (server, url) = serve(&db, "127.0.0.1:0");
    let _a1 = agent(&url, &t1, 5, &[]);
    let smoke = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/smoke.yaml"),
    )
    .expect("smoke");
    let spec = dir.path().join("smoke.yaml");
    std::fs::write(&spec, format!("{smoke}agent_wait_secs: 2\n")).expect("spec");
    let n = quantgrid_matrix::spec::parse(&smoke, "smoke.yaml")
        .expect("smoke")
        .expand()
        .len();
    let submit = |extra: &[&str]| {
        Command::new(bin("quantgrid"))
            .args(["submit", "--wait", "--coordinator", &url, "--token", &ops])
            .args(extra)
            .arg(&spec)
            .output()
            .expect("submit")
    };
    let real = submit(&[]);
    let stderr = String::from_utf8_lossy(&real.stderr);
    assert_eq!(real.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("0/{n} cells passed")), "{stderr}");
    let real_id = String::from_utf8_lossy(&real.stdout)
        .lines()
        .last()
        .expect("id")
        .to_string();
    // the load test: the simulated agent runs it, and nothing of it counts as passed
    let load = submit(&["--simulated", "--request-id", "nightly-1"]);
    let stderr = String::from_utf8_lossy(&load.stderr);
    assert_eq!(load.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("0/{n} cells passed"))
            && stderr.contains(&format!("{n} simulated")),
        "{stderr}"
    );
    let id = String::from_utf8_lossy(&load.stdout)
        .lines()
        .last()
        .expect("id")
        .to_string();
    assert!(id.starts_with("sw-"));
    // the same request id returns the same sweep instead of a second one
    let again = Command::new(bin("quantgrid"))
        .args([
            "submit",
            "--simulated",
            "--request-id",
            "nightly-1",
            "--coordinator",
            &url,
            "--token",
            &ops,
        ])
        .arg(&spec)
        .output()
        .expect("submit");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().last(),
        Some(id.as_str())
    );
    drop(server);
    let store = Store::open(&db).expect("open");
    let real_rows = store.results(Some(&real_id), 100).expect("results");
    assert_eq!(real_rows.len(), n);
    assert!(
        real_rows
            .iter()
            .all(|r| !r.simulated && r.status == Status::NoCapableAgent),
        "{real_rows:#?}"
    );
    let md = quantgrid_coordinator::report::matrix_markdown(
        &store,
        &quantgrid_coordinator::report::MatrixOptions {
            sweep: Some(&id),
            include_simulated: false,
            trusted_only: false,
            accuracy_tolerance: None,
        },
    )
    .expect("matrix");
    assert!(
        !md.contains('✅'),
        "simulated results reached a matrix:\n{md}"
    );
}

#[test]
fn run_with_a_coordinator_sends_the_narrowed_matrix_to_the_lab() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, ops) = (token(&db, "a1", false), token(&db, "ops", true));
    let (server, url) = serve(&db, "127.0.0.1:0");
    // a real agent: a simulated one takes only load tests
    let _a1 = Proc(
        Command::new(bin("quantgrid-agent"))
            .args(["run", "--coordinator", &url, "--token", &t1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    // the flags of the tool quantgrid replaces, run by the lab's agents
    let out = Command::new(bin("quantgrid"))
        .args([
            "run",
            "--test-family",
            "bert",
            "--browser",
            "chromium",
            "--platform",
            "webgpu",
            "--bits",
            "4,8",
            "--coordinator",
            &url,
            "--token",
            &ops,
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("id")
        .to_string();
    // a local matrix makes no sense for a lab run: refused before anything is submitted
    let refused = Command::new(bin("quantgrid"))
        .args(["run", "--test-family", "bert", "--generate-matrix"])
        .args(["--coordinator", &url, "--token", &ops])
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--coordinator"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    drop(server);
    let store = Store::open(&db).expect("open");
    let rows = store.results(Some(&id), 100).expect("results");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.label.starts_with("bert chromium webgpu"))
    );
}

#[test]
fn mutual_tls_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    pki(d);
    let db = d.join("grid.duckdb");
    let (t1, ops) = (token(&db, "a1", false), token(&db, "ops", true));
    let p = |n: &str| d.join(n).display().to_string();
    let mut child = Command::new(bin("quantgrid"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db-path",
            &p("grid.duckdb"),
        ])
        .args([
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--tls-client-ca",
            &p("ca.pem"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let _server = Proc(child);
    let url = format!("https://{}", line.trim().trim_start_matches("listening "));
    let tls = [
        "--tls-ca",
        &p("ca.pem"),
        "--tls-cert",
        &p("client.pem"),
        "--tls-key",
        &p("client.key"),
    ];
    let _agent = agent(&url, &t1, 5, &tls);
    let spec = d.join("one.yaml");
    std::fs::write(&spec, "version: 1\nname: tls\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: both\nbits: [4]\n").expect("spec");
    let submit = |extra: &[&str]| {
        Command::new(bin("quantgrid"))
            .args(["submit", "--wait", "--coordinator", &url, "--token", &ops])
            .args(extra)
            .arg(&spec)
            .output()
            .expect("submit")
    };
    // a load test on the simulated agent: through mutual TLS it runs to the end (and, being
    // simulated, passes nothing: exit 1)
    let ok = submit(&[&tls[..], &["--simulated"]].concat());
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("finished") && stderr.contains("2 simulated"),
        "{stderr}"
    );
    // without a client certificate the handshake fails, before any token is looked at
    let no_cert = submit(&["--tls-ca", &p("ca.pem")]);
    assert_eq!(no_cert.status.code(), Some(2));
    // plaintext to a TLS port fails too
    let plain = Command::new(bin("quantgrid"))
        .args([
            "agents",
            "--coordinator",
            &url.replace("https", "http"),
            "--token",
            &ops,
        ])
        .output()
        .expect("agents");
    assert_eq!(plain.status.code(), Some(2));
}

#[test]
fn sigterm_finishes_the_running_cell_and_a_second_signal_abandons_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, t2, ops) = (
        token(&db, "a1", false),
        token(&db, "a2", false),
        token(&db, "ops", true),
    );
    let (server, url) = serve(&db, "127.0.0.1:0");
    // a cell takes 1.5 s, so the signal lands while one is running
    let (mut graceful, mut graceful_log) = logged_agent(&url, &t1, 1_500);
    let one = "version: 1\nname: one\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n";
    let sweep = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let (sweep, _) = submit(&mut a, one).await;
        // the coordinator's lease is not enough: the offer may still be on its way
        wait_for_line(&mut graceful_log, "running cell");
        graceful.signal(nix::sys::signal::Signal::SIGTERM);
        let status = graceful.wait_exit();
        assert!(status.success(), "{status:?}");
        let last = watch_until(&mut a, &sweep, |p| p.finished).await;
        assert_eq!(
            last.simulated, 1,
            "the running cell was finished and reported before exiting"
        );
        sweep
    });
    // a cell that would take a minute: only abandoning it lets the agent exit in time
    let (mut abandoning, mut agent_stderr) = logged_agent(&url, &t2, 60_000);
    let sweep2 = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let (sweep2, _) = submit(&mut a, &one.replace("bits: [4]", "bits: [8]")).await;
        sweep2
    });
    wait_for_line(&mut agent_stderr, "running cell");
    // a second signal once the agent has taken the first (the OS merges two pending ones)
    abandoning.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for_line(&mut agent_stderr, "signal again to abandon");
    abandoning.signal(nix::sys::signal::Signal::SIGTERM);
    let status = abandoning.wait_exit();
    let agent_log: Vec<String> = agent_stderr.map_while(Result::ok).collect();
    assert!(status.success(), "{status:?}");
    rt().block_on(async {
        // the abandoned attempt was reported; the cell went back in the queue, so cancel it
        let mut a = admin(&url, &ops).await;
        a.cancel_sweep(pb::SweepRef {
            sweep_id: sweep2.clone(),
        })
        .await
        .expect("cancel");
    });
    drop(server);
    let store = Store::open(&db).expect("open");
    let rows = store.results(None, 100).expect("results");
    assert!(
        rows.iter()
            .any(|r| r.sweep_id == sweep && r.accepted && r.status == Status::Pass)
    );
    assert!(
        rows.iter().any(|r| r
            .error_text
            .as_deref()
            .is_some_and(|e| e.contains("abandoned"))
            && !r.accepted),
        "{rows:?}\nagent log:\n{}",
        agent_log.join("\n")
    );
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// An agent whose log (`-v`) the test reads, to wait on what it actually did.
fn logged_agent(url: &str, token: &str, cell_ms: u64) -> (Proc, Lines) {
    let mut child = Command::new(bin("quantgrid-agent"))
        .args([
            "run",
            "-v",
            "--coordinator",
            url,
            "--token",
            token,
            "--executor",
            "simulated",
        ])
        .arg("--simulated-cell-ms")
        .arg(cell_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    (Proc(child), lines)
}

fn wait_for_line(lines: &mut Lines, needle: &str) {
    lines
        .by_ref()
        .map(|l| l.expect("agent log"))
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("the agent exited without logging `{needle}`"));
}

/// Runs `spec` on a real coordinator and a real browser agent, waits for it (`submit --wait`
/// must exit 0), stops both, and gives back the database and what `quantgrid agents` said.
fn real_sweep(spec: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (t1, ops) = (token(&db, "lab-linux", false), token(&db, "ops", true));
    let (server, url) = serve(&db, "127.0.0.1:0");
    let mut agent = Proc(
        Command::new(bin("quantgrid-agent"))
            .args(["run", "--coordinator", &url, "--token", &t1])
            .args(["--executor", "browser"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    let file = dir.path().join("spec.yaml");
    std::fs::write(&file, spec).expect("spec");
    let out = Command::new(bin("quantgrid"))
        .args(["submit", "--wait", "--coordinator", &url, "--token", &ops])
        .arg(&file)
        .output()
        .expect("submit");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agents = Command::new(bin("quantgrid"))
        .args(["agents", "--coordinator", &url, "--token", &ops])
        .output()
        .expect("agents");
    // a graceful stop closes the agent's browsers; a kill would orphan them
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(agent.wait_exit().success());
    drop(server);
    (
        dir,
        db,
        String::from_utf8_lossy(&agents.stdout).into_owned(),
    )
}

#[test]
fn real_chromium_cells_pass_and_reach_the_matrix() {
    let (_dir, db, _) = real_sweep(
        "version: 1\nname: real\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [2, 3, 4, 8, 16]\nscheme: [symmetric, asymmetric]\nwarmup: 1\nrepetitions: 3\ntimeout_secs: 120\n",
    );
    let out = Command::new(bin("quantgrid"))
        .args(["matrix", "--db-path"])
        .arg(&db)
        .output()
        .expect("matrix");
    let md = String::from_utf8_lossy(&out.stdout);
    // every cell passed the kernel check; which widths are accurate enough is for the data
    assert!(
        md.contains("| BERT | `bert-base-uncased` | — not in matrix | ✅ ")
            && md.contains("(9/9 pass)"),
        "{md}"
    );
    assert!(
        md.contains("google swiftshader") && md.contains("(software, fallback)"),
        "{md}"
    );
    assert!(md.contains("chromedriver"), "{md}");
    let store = Store::open(&db).expect("open");
    let rows = store.results(None, 100).expect("results");
    assert_eq!(rows.len(), 9);
    assert!(
        rows.iter()
            .all(|r| !r.simulated && r.samples == 3 && r.weight_bytes.is_some_and(|b| b > 0)),
        "{rows:?}"
    );
}

/// The whole grid on every browser build this machine has (`./x test` installs Chromium 156,
/// Chromium 153 and Firefox ESR): each cell ends with the answer its browser gives.
#[test]
fn every_installed_browser_answers_through_the_grid() {
    // every cell passes or is answered unsupported by its browser: `submit --wait` exits 0
    let (_dir, db, agents) = real_sweep(
        "version: 1\nname: all\nfamilies: [electra]\nbrowsers: [chromium, firefox]\nplatforms: both\nbits: [2, 3, 4, 8, 16]\nexperimental_precision: [false, true]\nwarmup: 0\nrepetitions: 2\ntimeout_secs: 120\n",
    );
    let store = Store::open(&db).expect("open");
    let rows = store.results(None, 100).expect("results");
    // DuckDB lets one process hold the file
    drop(store);
    // per browser: 5 WebGPU widths; WebNN 2/3/4 standard and experimental, 8 and 16
    assert_eq!(rows.len(), 26, "{rows:#?}");
    for r in &rows {
        let l = &r.label;
        let version = r.browser_version.clone().unwrap_or_default();
        let text = r.error_text.clone().unwrap_or_default();
        assert!(r.accepted && !r.simulated, "{r:?}");
        // every answer names the build that gave it, refusals included
        assert!(r.environment_id.is_some(), "no environment: {r:?}");
        if l.contains(" webgpu ") {
            assert_eq!(r.gpu_samples, 2, "both clocks: {r:?}");
            assert_eq!(r.status, Status::Pass, "{r:?}");
            assert_eq!(r.samples, 2, "{r:?}");
            assert!(
                r.adapter
                    .as_deref()
                    .is_some_and(|a| a.contains("(software)")),
                "{r:?}"
            );
            if l.starts_with("electra chromium") {
                assert!(
                    version.starts_with("156."),
                    "the newest build runs WebGPU: {r:?}"
                );
            }
        } else if l.starts_with("electra firefox") {
            assert_eq!(r.status, Status::Unsupported, "{r:?}");
            assert!(text.contains("navigator.ml is undefined"), "{r:?}");
        } else if l.contains("experimental") && (l.contains(" 2-bit") || l.contains(" 3-bit")) {
            assert_eq!(r.status, Status::Unsupported, "{r:?}");
            assert!(text.contains("opSupportLimits"), "{r:?}");
        } else {
            assert_eq!(r.status, Status::Pass, "{r:?}");
            // only Chromium 153 has WebNN here: the major matters, the patch does not
            assert!(
                version.starts_with("153."),
                "only Chromium 153 has WebNN: {r:?}"
            );
            // asked for a GPU context, ran on the CPU: this machine has no GPU
            let webnn = r.webnn.as_deref().unwrap_or_default();
            assert!(
                webnn.starts_with("requested deviceType=gpu · ran on cpu (the host has no GPU"),
                "{r:?}"
            );
            if l.contains("→8") {
                assert_eq!(
                    r.effective_bits, 8,
                    "a standard request is stored upgraded: {r:?}"
                );
            }
        }
    }
    let out = Command::new(bin("quantgrid"))
        .args(["matrix", "--db-path"])
        .arg(&db)
        .output()
        .expect("matrix");
    let md = String::from_utf8_lossy(&out.stdout);
    // the lab sees each build as the agent probed it from inside, at the versions the
    // installed binaries report today (apt moves Chromium between patch releases)
    let builds = installed_builds();
    let version_of = |browser: &str, major: &str| {
        builds
            .iter()
            .find(|(b, v)| b == browser && v.starts_with(&format!("{major}.")))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {browser} {major} among the installed builds {builds:?}"))
    };
    let (c153, c156, ff) = (
        version_of("chromium", "153"),
        version_of("chromium", "156"),
        builds
            .iter()
            .find(|(b, _)| b == "firefox")
            .map(|(_, v)| v.clone())
            .expect("firefox is installed"),
    );
    for line in [
        // with --enable-webgpu-developer-features Chromium names its device too
        (
            format!("  chromium {c153}: WebGPU google swiftshader"),
            "(software, fallback); WebNN contexts accepted for cpu/gpu/npu",
        ),
        (
            format!("  chromium {c156}: WebGPU google swiftshader"),
            "(software, fallback); no WebNN",
        ),
        (
            format!("  firefox {ff}: WebGPU unnamed adapter"),
            "(software, fallback); no WebNN",
        ),
    ] {
        assert!(
            agents
                .lines()
                .any(|l| l.starts_with(&line.0) && l.ends_with(line.1)),
            "{line:?} missing from\n{agents}"
        );
    }
    for needle in [
        format!("chromium {c153}"),
        format!("chromium {c156}"),
        format!("firefox {ff}"),
        "geckodriver".into(),
        "unnamed adapter (software, fallback)".into(),
        "google swiftshader".into(),
        // the WebNN device only with its evidence, and comparisons on one clock
        "requested deviceType=gpu · ran on cpu (the host has no GPU".into(),
        "the only clock times are compared on".into(),
        "--enable-webgpu-developer-features".into(),
    ] {
        assert!(md.contains(&needle), "{needle} missing from\n{md}");
    }
    assert!(!md.contains("| gpu |"), "a bare WebNN device in\n{md}");
}

/// (browser, version) of every build discovery finds here, read from the binaries the way the
/// agent reads them.
fn installed_builds() -> Vec<(String, String)> {
    let out = Command::new(bin("quantgrid-agent"))
        .arg("discover")
        .output()
        .expect("quantgrid-agent discover");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let machine: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("discover prints JSON");
    machine["browsers"]
        .as_array()
        .expect("browsers")
        .iter()
        .map(|b| {
            (
                b["candidate"]["browser"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                b["version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Reports that do not check out (NaN, infinite and negative times, too few samples, a pass
/// beyond the kernel's error bound) are stored as rejected `error`s with the reason and
/// retried on another agent; only real figures count.
#[test]
fn invalid_reports_are_stored_as_rejected_errors_and_retried_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (liar, honest, ops) = (
        token(&db, "liar", false),
        token(&db, "honest", false),
        token(&db, "ops", true),
    );
    let (server, url) = serve(&db, "127.0.0.1:0");
    let sweep = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let r = a
            .submit_sweep(pb::SubmitSweepRequest {
                spec_yaml: "version: 1\nname: lies\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [2, 3, 4, 8]\nrepetitions: 3\nretries: 1\n".into(),
                spec_name: "lies.yaml".into(),
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner();
        let (up, mut down) = fake_agent(&url, &liar, "liar", 4).await;
        let offers = next_offers(&mut down, 4).await;
        // the honest agent connects once the liar holds every cell
        let (honest_up, mut honest_down) = fake_agent(&url, &honest, "honest", 4).await;
        let lies: [fn(&mut pb::Measurement); 4] = [
            |m| m.samples_ms = vec![f64::NAN, -1.0, f64::INFINITY],
            |m| m.build_ms = -5.0,
            |m| m.samples_ms.truncate(1),
            |m| m.kernel_err_ratio = 3.0,
        ];
        for (offer, lie) in offers.iter().zip(lies) {
            let mut result = measured_pass(offer);
            lie(result.measurement.as_mut().expect("measured"));
            let report = pb::Report { lease_id: offer.lease_id.clone(), result: Some(result), signature: Vec::new() };
            up.send(pb::AgentMessage { agent_id: "liar".into(), kind: Some(pb::agent_message::Kind::Report(report)) })
                .await
                .expect("send");
        }
        // every cell is retried, on the other agent
        for offer in next_offers(&mut honest_down, 4).await {
            assert!(offer.lease_id.ends_with(".2"), "a second attempt: {}", offer.lease_id);
            let report = pb::Report { lease_id: offer.lease_id.clone(), result: Some(measured_pass(&offer)), signature: Vec::new() };
            honest_up
                .send(pb::AgentMessage { agent_id: "honest".into(), kind: Some(pb::agent_message::Kind::Report(report)) })
                .await
                .expect("send");
        }
        let last = watch_until(&mut a, &r.sweep_id, |p| p.finished).await;
        assert_eq!((last.passed, last.total), (4, 4), "{last:?}");
        r.sweep_id
    });
    drop(server);
    let store = Store::open(&db).expect("open");
    let rows = store.results(Some(&sweep), 100).expect("results");
    assert_eq!(rows.len(), 8, "{rows:#?}");
    let rejected: Vec<_> = rows.iter().filter(|r| !r.accepted).collect();
    assert_eq!(rejected.len(), 4, "{rows:#?}");
    for r in &rejected {
        let text = r.error_text.as_deref().unwrap_or_default();
        assert_eq!(r.status, Status::Error, "{r:?}");
        assert!(
            text.starts_with("invalid report from agent liar (it said pass): "),
            "{text}"
        );
    }
    let reasons: Vec<&str> = rejected
        .iter()
        .filter_map(|r| r.error_text.as_deref())
        .collect();
    for why in [
        "sample 0 is NaN",
        "build_ms is -5",
        "1 samples for the offer's 3",
        "3.000× its bound",
    ] {
        assert!(
            reasons.iter().any(|t| t.contains(why)),
            "{why} missing from {reasons:#?}"
        );
    }
    assert!(
        rows.iter()
            .filter(|r| r.accepted)
            .all(|r| r.status == Status::Pass && r.attempt_id.ends_with(".2")),
        "{rows:#?}"
    );
}

/// Read commands open the file read-only: while a coordinator holds it they say so (and
/// change nothing), and afterwards they read it without migrating or writing.
#[test]
fn read_commands_say_when_a_coordinator_holds_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let _ops = token(&db, "ops", true);
    let (server, _url) = serve(&db, "127.0.0.1:0");
    for args in [&["results"][..], &["matrix"][..]] {
        let out = Command::new(bin("quantgrid"))
            .args(args)
            .arg("--db-path")
            .arg(&db)
            .output()
            .expect("read command");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("is in use by another process")
                && stderr.contains(&db.display().to_string()),
            "{args:?}: {stderr}"
        );
    }
    drop(server);
    let before = std::fs::read(&db).expect("db");
    let out = Command::new(bin("quantgrid"))
        .args(["results", "--db-path"])
        .arg(&db)
        .output()
        .expect("results");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&db).expect("db"),
        before,
        "a read command changed the file"
    );
}
