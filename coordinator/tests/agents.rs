//! Agents on contributor machines, end to end with real processes: `quantgrid-agent install`
//! writes a private token and a unit that `systemd-analyze` accepts, the agent started the way
//! the unit starts it reaches the coordinator, and `uninstall --purge` takes it all away.

mod support;

use quantgrid_proto::pb;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

/// The unit's `ExecStart=` split into words as systemd splits it (double quotes, `\"`, `%%`).
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart line");
    let (mut words, mut word, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => word.extend(chars.next()),
            '%' if chars.peek() == Some(&'%') => {
                chars.next();
                word.push('%');
            }
            ' ' if !quoted => words.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    words.push(word);
    words.retain(|w| !w.is_empty());
    words
}

fn agent_cli(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("quantgrid-agent"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("USER", "contributor")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("QUANTGRID_TOKEN")
        .output()
        .expect("quantgrid-agent")
}

#[test]
fn install_writes_a_private_token_and_a_unit_that_starts_the_agent_and_uninstall_removes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let db = dir.path().join("grid.duckdb");
    let agent_token = token(&db, "laptop-1", false);
    let ops = token(&db, "ops", true);
    let given = dir.path().join("given-token");
    std::fs::write(&given, format!("{agent_token}\n")).expect("token file");
    let (_server, url) = serve(&db, "127.0.0.1:0");

    let out = agent_cli(
        &home,
        &[
            "install",
            "--coordinator",
            &url,
            "--token-file",
            given.to_str().expect("utf-8"),
            "--",
            "--executor",
            "simulated",
            "--labels",
            "desk=3 west",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit_path = home.join(".config/systemd/user/quantgrid-agent.service");
    let token_path = home.join(".config/quantgrid/token");
    let unit = std::fs::read_to_string(&unit_path).expect("the unit is written");
    assert!(
        !unit.contains(&agent_token),
        "the token is never in the unit"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&token_path).expect("the token is kept");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(&token_path).expect("token").trim(),
        agent_token
    );
    // where systemd-analyze is installed, install ran it on the unit and said so
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok()
    {
        assert!(said.contains("systemd-analyze verify: ok"), "{said}");
    }
    if !Path::new("/run/systemd/system").is_dir() {
        assert!(said.contains("systemd is not running"), "{said}");
    }

    // started the way the unit starts it: its ExecStart, word for word, no token argument
    let words = exec_start(&unit);
    assert!(!words.iter().any(|w| w == "--token"), "{words:?}");
    assert!(words.contains(&"desk=3 west".to_string()), "{words:?}");
    let started = Proc(
        Command::new(&words[0])
            .args(&words[1..])
            .env_remove("QUANTGRID_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the unit's command"),
    );
    // the agent reaches the coordinator: it runs a load-test cell to the end
    rt().block_on(async {
        let sweep = submit(&url, &ops, ONE_CELL, true).await;
        let mut a = admin(&url, &ops).await;
        let last = watch_until(&mut a, &sweep, |p| p.finished).await;
        assert_eq!((last.done, last.simulated), (1, 1), "{last:?}");
        let agents = a
            .list_agents(pb::ListAgentsRequest {})
            .await
            .expect("agents")
            .into_inner()
            .agents;
        assert!(
            agents
                .iter()
                .any(|x| x.name == "laptop-1" && !x.key_id.is_empty()),
            "{agents:?}"
        );
    });
    drop(started);

    let out = agent_cli(&home, &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("(present)"), "{status}");
    assert!(status.contains("mode 600"), "{status}");

    let out = agent_cli(&home, &["uninstall", "--purge"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!unit_path.exists() && !token_path.exists());
    let out = agent_cli(&home, &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("(absent)"), "{status}");
    // uninstalling twice is fine
    assert!(agent_cli(&home, &["uninstall"]).status.success());
}

#[test]
fn install_refuses_a_file_that_holds_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let given = dir.path().join("notes.txt");
    std::fs::write(&given, "remember to buy milk\n").expect("file");
    let out = agent_cli(
        dir.path(),
        &[
            "install",
            "--coordinator",
            "http://127.0.0.1:1",
            "--token-file",
            given.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.txt holds no agent token"), "{err}");
    assert!(
        !dir.path().join(".config/systemd").exists(),
        "nothing written"
    );
}

fn quantgrid(args: &[&str]) -> std::process::Output {
    Command::new(bin("quantgrid"))
        .args(args)
        .env_remove("QUANTGRID_TOKEN")
        .env_remove("QUANTGRID_COORDINATOR")
        .output()
        .expect("quantgrid")
}

#[test]
fn a_token_name_is_created_once_and_a_revoked_one_stays_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let db = db.to_str().expect("utf-8");
    token(Path::new(db), "lab-1", false);
    let again = quantgrid(&["token", "create", "lab-1", "--admin", "--db-path", db]);
    assert!(!again.status.success(), "an agent token never turns admin");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("a token named `lab-1` exists"), "{err}");
    assert!(
        quantgrid(&["token", "revoke", "lab-1", "--db-path", db])
            .status
            .success()
    );
    let revived = quantgrid(&["token", "create", "lab-1", "--db-path", db]);
    assert!(
        !revived.status.success(),
        "a revoked token does not come back"
    );
    let rotated = quantgrid(&["token", "create", "lab-1", "--rotate", "--db-path", db]);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let list = String::from_utf8_lossy(&quantgrid(&["token", "list", "--db-path", db]).stdout)
        .into_owned();
    assert!(
        list.lines()
            .any(|l| l.starts_with("lab-1") && l.contains("agent") && l.ends_with("live")),
        "{list}"
    );
}

#[test]
fn a_token_revoked_on_a_running_coordinator_closes_its_session_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let ops = token(&db, "ops", true);
    let (_server, url) = serve(&db, "127.0.0.1:0");
    // created through the running coordinator: its database is locked, the RPC is the way
    let locked = quantgrid(&[
        "token",
        "create",
        "lab-1",
        "--db-path",
        db.to_str().expect("utf-8"),
    ]);
    assert!(!locked.status.success());
    assert!(String::from_utf8_lossy(&locked.stderr).contains("take --coordinator"));
    let created = quantgrid(&[
        "token",
        "create",
        "lab-1",
        "--coordinator",
        &url,
        "--token",
        &ops,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let agent_token = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let twice = quantgrid(&[
        "token",
        "create",
        "lab-1",
        "--coordinator",
        &url,
        "--token",
        &ops,
    ]);
    assert!(!twice.status.success(), "ALREADY_EXISTS over the RPC too");
    rt().block_on(async {
        let (_up, mut down) = fake_agent(&url, &agent_token, "lab-1", 1).await;
        let revoke = quantgrid(&[
            "token",
            "revoke",
            "lab-1",
            "--coordinator",
            &url,
            "--token",
            &ops,
        ]);
        assert!(
            revoke.status.success(),
            "{}",
            String::from_utf8_lossy(&revoke.stderr)
        );
        assert!(String::from_utf8_lossy(&revoke.stderr).contains("1 live session(s) closed"));
        let revoked_at = std::time::Instant::now();
        let ended = session_end(&mut down).await;
        assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
        assert!(ended.message().contains("revoked"), "{ended:?}");
        assert!(revoked_at.elapsed() < std::time::Duration::from_secs(1));
        // its next call is refused
        let mut again = connect_agent(&url, &agent_token).await;
        let e = again
            .register(pb::RegisterRequest {
                slots: 1,
                ..Default::default()
            })
            .await
            .expect_err("revoked");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    });
}

#[test]
fn a_second_session_of_one_agent_replaces_the_first_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let agent_token = token(&db, "lab-1", false);
    let (_server, url) = serve(&db, "127.0.0.1:0");
    rt().block_on(async {
        let (_up1, mut first) = fake_agent(&url, &agent_token, "lab-1", 1).await;
        let (_up2, _second) = fake_agent(&url, &agent_token, "lab-1", 1).await;
        let ended = session_end(&mut first).await;
        assert_eq!(ended.code(), tonic::Code::Aborted, "{ended:?}");
        assert!(ended.message().contains("a newer session"), "{ended:?}");
    });
}

#[test]
fn a_client_over_its_limits_is_refused_and_the_others_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (noisy, quiet, ops) = (
        token(&db, "noisy", false),
        token(&db, "quiet", false),
        token(&db, "ops", true),
    );
    let (_server, url) = serve(&db, "127.0.0.1:0");
    rt().block_on(async {
        let mut c = connect_agent(&url, &noisy)
            .await
            .max_encoding_message_size(64 << 20);
        // a registration far past the message limit, and one with too many labels
        let huge = pb::RegisterRequest {
            slots: 1,
            version: "x".repeat(2 << 20),
            ..Default::default()
        };
        let e = c.register(huge).await.expect_err("too large");
        assert!(
            matches!(
                e.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{e:?}"
        );
        let labelled = pb::RegisterRequest {
            slots: 1,
            labels: (0..100).map(|i| (format!("k{i}"), "v".into())).collect(),
            ..Default::default()
        };
        let e = c.register(labelled).await.expect_err("too many labels");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        // registering in a loop: refused after the burst
        let mut refused = 0;
        for _ in 0..20 {
            let caps = quantgrid_matrix::fixtures::chromium_capabilities(1);
            let r = quantgrid_proto::convert::register_request("noisy", "test", &caps);
            if let Err(e) = c.register(r).await {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                refused += 1;
            }
        }
        assert!(refused >= 10, "{refused}");
        // the quiet agent registers and is offered work meanwhile
        let (_quiet_up, mut quiet_down) = fake_agent(&url, &quiet, "quiet", 1).await;
        submit(&url, &ops, ONE_CELL, false).await;
        let offers = next_offers(&mut quiet_down, 1).await;
        assert_eq!(offers.len(), 1);
    });
    // a session flooding heartbeats is closed; the quiet agent's session is not
    rt().block_on(async {
        let (_quiet_up, mut quiet_down) = fake_agent(&url, &quiet, "quiet", 1).await;
        let mut c = connect_agent(&url, &ops).await;
        // the admin token cannot flood the agent service at all
        assert_eq!(
            c.register(pb::RegisterRequest::default())
                .await
                .expect_err("admin")
                .code(),
            tonic::Code::PermissionDenied
        );
        // a report over the message limit ends that session, nothing else
        let (big_tx, big_rx) = tokio::sync::mpsc::channel(1);
        let mut big = connect_agent(&url, &noisy)
            .await
            .max_encoding_message_size(64 << 20);
        let mut big_down = big
            .session(tokio_stream::wrappers::ReceiverStream::new(big_rx))
            .await
            .expect("session")
            .into_inner();
        big_tx
            .send(pb::AgentMessage {
                agent_id: String::new(),
                kind: Some(pb::agent_message::Kind::Report(pb::Report {
                    lease_id: "l".into(),
                    result: Some(pb::CellResult {
                        cell_id: "c".into(),
                        error_text: Some("x".repeat(2 << 20)),
                        ..Default::default()
                    }),
                    signature: Vec::new(),
                })),
            })
            .await
            .expect("send");
        // the session ends (an error, or a clean end once the coordinator drops it)
        while let Ok(Some(_)) = big_down.message().await {}
        let flood = tokio_stream::iter((0..20_000).map(|_| pb::AgentMessage {
            agent_id: String::new(),
            kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                lease_ids: vec![],
            })),
        }));
        let mut n = connect_agent(&url, &noisy).await;
        let mut down = n.session(flood).await.expect("session").into_inner();
        let ended = session_end(&mut down).await;
        assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
        // the quiet agent's session still answers: a drain reaches it
        let mut a = admin(&url, &ops).await;
        a.drain_agent(pb::DrainRequest {
            agent: "quiet".into(),
            undrain: false,
        })
        .await
        .expect("drain");
        loop {
            let m = quiet_down
                .message()
                .await
                .expect("quiet session")
                .expect("open");
            if matches!(m.kind, Some(pb::coordinator_message::Kind::Drain(_))) {
                break;
            }
        }
    });
}

/// An agent-service client speaking with `token`.
async fn connect_agent(
    url: &str,
    token: &str,
) -> pb::agent_service_client::AgentServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        quantgrid_proto::client::Bearer,
    >,
> {
    let ch = quantgrid_proto::client::connect(url, &quantgrid_proto::client::Tls::default())
        .await
        .expect("connect");
    pb::agent_service_client::AgentServiceClient::with_interceptor(
        ch,
        quantgrid_proto::client::Bearer::new(token).expect("token"),
    )
}

#[test]
fn plaintext_beyond_loopback_needs_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let db = db.to_str().expect("utf-8");
    let out = quantgrid(&["serve", "--listen", "0.0.0.0:0", "--db-path", db]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--insecure") && err.contains("--tls-cert"),
        "{err}"
    );
    let mut child = Command::new(bin("quantgrid"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure",
            "--db-path",
            db,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("listening line");
    drop(Proc(child));
    assert!(line.starts_with("listening 0.0.0.0:"), "{line}");
}

/// A hand-written agent that registers with `key` (None: without one). `Err`: the refusal.
async fn keyed_agent(
    url: &str,
    token: &str,
    name: &str,
    key: Option<&quantgrid_proto::signing::SigningKey>,
) -> Result<
    (
        tokio::sync::mpsc::Sender<pb::AgentMessage>,
        tonic::Streaming<pb::CoordinatorMessage>,
    ),
    tonic::Status,
> {
    let mut c = connect_agent(url, token).await;
    let caps = quantgrid_matrix::fixtures::chromium_capabilities(1);
    let mut reg = quantgrid_proto::convert::register_request(name, "test", &caps);
    reg.public_key = key
        .map(|k| k.verifying_key().to_bytes().to_vec())
        .unwrap_or_default();
    c.register(reg).await?;
    let (up, rx) = tokio::sync::mpsc::channel(16);
    let down = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((up, down))
}

async fn send_report(up: &tokio::sync::mpsc::Sender<pb::AgentMessage>, report: pb::Report) {
    up.send(pb::AgentMessage {
        agent_id: String::new(),
        kind: Some(pb::agent_message::Kind::Report(report)),
    })
    .await
    .expect("send");
}

async fn session_end(down: &mut tonic::Streaming<pb::CoordinatorMessage>) -> tonic::Status {
    loop {
        match down.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended without a status"),
            Err(status) => break status,
        }
    }
}

async fn acked(down: &mut tonic::Streaming<pb::CoordinatorMessage>, lease: &str) {
    loop {
        let m = down.message().await.expect("message").expect("open");
        if matches!(&m.kind, Some(pb::coordinator_message::Kind::Ack(a)) if a.lease_id == lease) {
            return;
        }
    }
}

/// Submits `yaml` through the admin API; returns the sweep id.
async fn submit(url: &str, ops: &str, yaml: &str, simulated: bool) -> String {
    admin(url, ops)
        .await
        .submit_sweep(pb::SubmitSweepRequest {
            spec_yaml: yaml.into(),
            simulated,
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner()
        .sweep_id
}

const ONE_CELL: &str = "version: 1\nname: signed\nfamilies: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\nretries: 3\n";

fn matrix(db: &Path, trusted_only: bool) -> String {
    let mut args = vec!["matrix", "--db-path", db.to_str().expect("utf-8")];
    if trusted_only {
        args.push("--trusted-only");
    }
    let out = quantgrid(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn reports_must_be_signed_by_the_pinned_key_and_an_admin_can_trust_a_new_one() {
    use quantgrid_proto::signing::{self, SigningKey};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (lab, ops) = (token(&db, "lab-1", false), token(&db, "ops", true));
    let (first, second) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );
    let (server, url) = serve(&db, "127.0.0.1:0");
    rt().block_on(async {
        // the first key is pinned; the agents list shows it
        let (up, mut down) = keyed_agent(&url, &lab, "lab-1", Some(&first))
            .await
            .expect("pinned");
        let listed = quantgrid(&["agents", "--coordinator", &url, "--token", &ops]);
        let first_id = signing::key_id(&first.verifying_key().to_bytes());
        assert!(String::from_utf8_lossy(&listed.stdout).contains(&first_id));
        submit(&url, &ops, ONE_CELL, false).await;
        // signed by another key: refused, the session closed
        let offer = next_offers(&mut down, 1).await.remove(0);
        send_report(
            &up,
            signing::report(&second, &offer.lease_id, measured_pass(&offer)),
        )
        .await;
        let refused = session_end(&mut down).await;
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("does not match"), "{refused:?}");
        // unsigned from an agent with a pinned key: refused too
        let (up, mut down) = keyed_agent(&url, &lab, "lab-1", Some(&first))
            .await
            .expect("again");
        let offer = next_offers(&mut down, 1).await.remove(0);
        let mut unsigned = signing::report(&first, &offer.lease_id, measured_pass(&offer));
        unsigned.signature.clear();
        send_report(&up, unsigned).await;
        assert_eq!(
            session_end(&mut down).await.code(),
            tonic::Code::PermissionDenied
        );
        // registering without a key, or with another, is refused
        let e = keyed_agent(&url, &lab, "lab-1", None)
            .await
            .expect_err("no key");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = keyed_agent(&url, &lab, "lab-1", Some(&second))
            .await
            .expect_err("other key");
        assert!(e.message().contains("agents trust lab-1"), "{e:?}");
    });
    // an admin trusts the new key; its signed report is accepted and stored with it
    let trusted = quantgrid(&[
        "agents",
        "trust",
        "lab-1",
        "--coordinator",
        &url,
        "--token",
        &ops,
    ]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    rt().block_on(async {
        let (up, mut down) = keyed_agent(&url, &lab, "lab-1", Some(&second))
            .await
            .expect("trusted");
        let offer = next_offers(&mut down, 1).await.remove(0);
        send_report(
            &up,
            signing::report(&second, &offer.lease_id, measured_pass(&offer)),
        )
        .await;
        acked(&mut down, &offer.lease_id).await;
    });
    drop(server);
    assert!(matrix(&db, false).contains("✅"));
    assert!(matrix(&db, true).contains("✅"), "signed by the pinned key");
    // forgotten: the same results are no longer from a pinned key
    let (server, url) = serve(&db, "127.0.0.1:0");
    let forgot = quantgrid(&[
        "agents",
        "forget",
        "lab-1",
        "--coordinator",
        &url,
        "--token",
        &ops,
    ]);
    assert!(
        forgot.status.success(),
        "{}",
        String::from_utf8_lossy(&forgot.stderr)
    );
    drop(server);
    assert!(!matrix(&db, true).contains("✅"));
}

#[test]
fn a_merged_file_is_verified_and_its_keys_are_not_trusted_here() {
    use quantgrid_proto::signing::{self, SigningKey};
    let dir = tempfile::tempdir().expect("tempdir");
    let theirs = dir.path().join("laptop.duckdb");
    let key = SigningKey::from_bytes(&[9; 32]);
    let (lab, ops) = (token(&theirs, "laptop", false), token(&theirs, "ops", true));
    {
        let (_server, url) = serve(&theirs, "127.0.0.1:0");
        rt().block_on(async {
            let (up, mut down) = keyed_agent(&url, &lab, "laptop", Some(&key))
                .await
                .expect("agent");
            submit(&url, &ops, ONE_CELL, false).await;
            let offer = next_offers(&mut down, 1).await.remove(0);
            send_report(
                &up,
                signing::report(&key, &offer.lease_id, measured_pass(&offer)),
            )
            .await;
            acked(&mut down, &offer.lease_id).await;
        });
    }
    let ours = dir.path().join("lab.duckdb");
    token(&ours, "ops", true);
    let merge = |from: &Path, into: &Path| {
        quantgrid(&[
            "merge",
            from.to_str().expect("utf-8"),
            "--db-path",
            into.to_str().expect("utf-8"),
        ])
    };
    let merged = merge(&theirs, &ours);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert!(matrix(&ours, false).contains("✅"));
    assert!(
        !matrix(&ours, true).contains("✅"),
        "a key that came with a merge is not trusted here"
    );

    // a result changed after it was signed: the merge is refused and nothing is merged
    let tampered = dir.path().join("tampered.duckdb");
    std::fs::copy(&theirs, &tampered).expect("copy");
    // the coordinator was killed: what it wrote may still be in its write-ahead log
    let wal = |p: &Path| p.with_extension("duckdb.wal");
    if wal(&theirs).exists() {
        std::fs::copy(wal(&theirs), wal(&tampered)).expect("copy the log");
    }
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); c.execute('UPDATE results SET samples_ms = [1.0, 1.0, 1.0]'); c.close()",
        ])
        .arg(&tampered)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = dir.path().join("fresh.duckdb");
    token(&fresh, "ops", true);
    let refused = merge(&tampered, &fresh);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not the result its agent signed"), "{err}");
    assert!(!matrix(&fresh, false).contains("bert"), "nothing merged");
    // the untouched file still merges
    assert!(merge(&theirs, &fresh).status.success());
}

#[test]
fn a_late_report_counts_only_from_the_agent_that_held_the_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (a, b, ops) = (
        token(&db, "lab-a", false),
        token(&db, "lab-b", false),
        token(&db, "ops", true),
    );
    let (server, url) = serve(&db, "127.0.0.1:0");
    let held = rt().block_on(async {
        let (up, mut down) = fake_agent(&url, &a, "lab-a", 1).await;
        submit(&url, &ops, ONE_CELL, false).await;
        let held = next_offers(&mut down, 1).await.remove(0);
        // lab-a goes away; past the grace period its cell goes to lab-b
        drop((up, down));
        let (b_up, mut b_down) = fake_agent(&url, &b, "lab-b", 1).await;
        let moved = next_offers(&mut b_down, 1).await.remove(0);
        assert_ne!(moved.lease_id, held.lease_id);
        // lab-b files a result on lab-a's ended lease: not stored
        let mut forged = measured_pass(&held);
        forged.status = pb::Status::Fail as i32;
        send_report(
            &b_up,
            pb::Report {
                lease_id: held.lease_id.clone(),
                result: Some(forged),
                signature: Vec::new(),
            },
        )
        .await;
        // lab-a comes back with its real late report: kept
        let (a_up, mut a_down) = fake_agent(&url, &a, "lab-a", 1).await;
        send_report(
            &a_up,
            pb::Report {
                lease_id: held.lease_id.clone(),
                result: Some(measured_pass(&held)),
                signature: Vec::new(),
            },
        )
        .await;
        acked(&mut a_down, &held.lease_id).await;
        send_report(
            &b_up,
            pb::Report {
                lease_id: moved.lease_id.clone(),
                result: Some(measured_pass(&moved)),
                signature: Vec::new(),
            },
        )
        .await;
        acked(&mut b_down, &moved.lease_id).await;
        held.lease_id
    });
    drop(server);
    let store = quantgrid_coordinator::store::Store::open_read_only(&db).expect("open");
    let rows = store.results(None, 100).expect("results");
    let late: Vec<_> = rows.iter().filter(|r| r.attempt_id == held).collect();
    assert_eq!(late.len(), 1, "{rows:#?}");
    assert_eq!(
        (late[0].status, late[0].accepted),
        (quantgrid_matrix::Status::Pass, false),
        "lab-a's own late report, kept as an attempt: {rows:#?}"
    );
}
