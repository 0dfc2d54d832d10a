//! The coordinator over real gRPC on 127.0.0.1:0 with a real DuckDB file whose writes fail
//! part-way (an injected failing writer): afterwards every result is stored exactly once, and
//! nothing was acknowledged before it was durable.

use super::*;
use crate::store::{Faults, Record};
use quantgrid_matrix::agent::Capabilities;
use quantgrid_proto::client::{self, Bearer, Tls};
use quantgrid_proto::pb::{self, agent_service_client::AgentServiceClient};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::pb::health_check_response::ServingStatus;

/// Which writes fail: every one while `all`, and any holding a record of a lease in `lease`
/// as many times as its count says.
#[derive(Default)]
struct Plan {
    all: bool,
    lease: HashMap<String, u32>,
    failed: u32,
}

fn faults(plan: Arc<Mutex<Plan>>) -> Faults {
    Box::new(move |records: &[Record]| {
        let mut p = plan.lock().expect("plan");
        if p.all {
            p.failed += 1;
            return Some("IO Error: No space left on device (injected)".into());
        }
        let hit = records.iter().find_map(|r| match r {
            Record::Result(r) => p
                .lease
                .get(&r.attempt_id)
                .filter(|n| **n > 0)
                .map(|_| r.attempt_id.clone()),
            Record::Attempt(a) => p
                .lease
                .get(&a.attempt_id)
                .filter(|n| **n > 0)
                .map(|_| a.attempt_id.clone()),
            _ => None,
        })?;
        *p.lease.get_mut(&hit).expect("hit") -= 1;
        p.failed += 1;
        Some(format!("Constraint Error: injected failure of {hit}"))
    })
}

const REPETITIONS: u32 = 3;

fn caps() -> Capabilities {
    quantgrid_matrix::fixtures::chromium_capabilities(8)
}

fn pass(cell: &pb::Cell) -> pb::CellResult {
    pb::CellResult {
        cell_id: cell.id.clone(),
        status: pb::Status::Pass as i32,
        error_text: None,
        effective_bits: cell.requested_bits,
        measurement: Some((&quantgrid_matrix::fixtures::measurement(REPETITIONS)).into()),
        environment: None,
        simulated: false,
    }
}

/// A hand-written agent session: what it sends up, and what comes down.
struct Session {
    up: mpsc::Sender<pb::AgentMessage>,
    down: tonic::Streaming<pb::CoordinatorMessage>,
}

async fn session(url: &str, token: &str) -> Session {
    let ch = client::connect(url, &Tls::default())
        .await
        .expect("connect");
    let mut c = AgentServiceClient::with_interceptor(ch, Bearer::new(token).expect("token"));
    c.register(quantgrid_proto::convert::register_request(
        "a1",
        "test",
        &caps(),
    ))
    .await
    .expect("register");
    let (up, rx) = mpsc::channel(64);
    let down = c
        .session(ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    Session { up, down }
}

impl Session {
    async fn report(&self, lease: &str, cell: &pb::Cell) {
        let report = pb::Report {
            lease_id: lease.to_string(),
            result: Some(pass(cell)),
            signature: Vec::new(),
        };
        self.up
            .send(pb::AgentMessage {
                agent_id: "a1".into(),
                kind: Some(pb::agent_message::Kind::Report(report)),
            })
            .await
            .expect("send");
    }

    /// The next message; `None` once the coordinator ended the session.
    async fn next(&mut self) -> Option<pb::coordinator_message::Kind> {
        match self.down.message().await {
            Ok(Some(m)) => m.kind,
            Ok(None) | Err(_) => None,
        }
    }

    /// Reads until every lease of `want` was acknowledged.
    async fn acks(&mut self, want: &BTreeSet<String>) -> BTreeSet<String> {
        let mut got = BTreeSet::new();
        while !want.is_subset(&got) {
            match self.next().await {
                Some(pb::coordinator_message::Kind::Ack(a)) => {
                    got.insert(a.lease_id);
                }
                Some(_) => {}
                None => panic!("the session ended with {got:?} of {want:?} acknowledged"),
            }
        }
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_loses_nothing_and_acknowledges_only_what_is_durable() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (agent_token, admin_token) = ("qgt_agent_a1".to_string(), "qgt_admin_ops".to_string());
    {
        let mut store = Store::open(&db).expect("open");
        store
            .put_tokens(&[
                ("a1".into(), auth::hash_token(&agent_token), false),
                ("ops".into(), auth::hash_token(&admin_token), true),
            ])
            .expect("tokens");
    }
    let plan = Arc::new(Mutex::new(Plan::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let mut config = ServeConfig::new(db.clone());
    config.tick = Duration::from_millis(50);
    let server = tokio::spawn(serve(
        config,
        listener,
        shutdown.clone(),
        Some(faults(plan.clone())),
    ));

    let ch = client::connect(&url, &Tls::default())
        .await
        .expect("connect");
    let mut admin = pb::admin_service_client::AdminServiceClient::with_interceptor(
        ch.clone(),
        Bearer::new(&admin_token).expect("token"),
    );
    let spec = format!(
        "version: 1\nname: durable\nfamilies: [bert, gpt2, vit]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\nrepetitions: {REPETITIONS}\n"
    );
    let sweep = admin
        .submit_sweep(pb::SubmitSweepRequest {
            spec_yaml: spec,
            spec_name: "durable.yaml".into(),
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(sweep.cells, 6);

    let mut s = session(&url, &agent_token).await;
    let mut offers: BTreeMap<String, pb::Cell> = BTreeMap::new();
    while offers.len() < 6 {
        if let Some(pb::coordinator_message::Kind::Offer(o)) = s.next().await {
            offers.insert(o.lease_id, o.cell.expect("cell"));
        }
    }
    let leases: Vec<String> = offers.keys().cloned().collect();
    // the log then names each lease by its place here
    tracing::info!(?leases, "offered");

    // 1. part-way: the first lease's records fail four times (the batch, its retry, its
    // submission, its record alone), the others must not go down with it
    plan.lock()
        .expect("plan")
        .lease
        .insert(leases[0].clone(), 4);
    for l in &leases[..4] {
        s.report(l, &offers[l]).await;
    }
    // reports that arrive after the failure are refused until the store recovers; the agent
    // then reconnects and resends them, as quantgrid-agent does
    let first: BTreeSet<String> = leases[..4].iter().cloned().collect();
    let mut got = BTreeSet::new();
    while !first.is_subset(&got) {
        match s.next().await {
            Some(pb::coordinator_message::Kind::Ack(a)) => {
                got.insert(a.lease_id);
            }
            Some(_) => {}
            None => {
                drop(s);
                s = session(&url, &agent_token).await;
                for l in first.difference(&got) {
                    s.report(l, &offers[l]).await;
                }
            }
        }
    }
    assert!(plan.lock().expect("plan").failed >= 4);

    // 2. a store that keeps failing: the coordinator says so (health NOT_SERVING), refuses
    // reports, and acknowledges none of them
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health watch")
        .into_inner();
    plan.lock().expect("plan").all = true;
    s.report(&leases[4], &offers[&leases[4]]).await;
    // a bound, not a wait: a report that is never written would otherwise hang here (once,
    // in a full test run, the coordinator called this lease unknown)
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = watch.message().await.expect("health").expect("open").status;
            if status == ServingStatus::NotServing as i32 {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the report on {} was not written in 30 s", leases[4]));
    s.report(&leases[5], &offers[&leases[5]]).await;
    // the resent one is refused too while the store fails
    s.report(&leases[4], &offers[&leases[4]]).await;
    plan.lock().expect("plan").all = false;
    loop {
        let status = watch.message().await.expect("health").expect("open").status;
        if status == ServingStatus::Serving as i32 {
            break;
        }
    }
    // once the store takes writes again the coordinator ends the session of an agent whose
    // reports it refused; what it acknowledged before were only durable reports
    let mut acked = BTreeSet::new();
    while let Some(kind) = s.next().await {
        if let pb::coordinator_message::Kind::Ack(a) = kind {
            acked.insert(a.lease_id);
        }
    }
    assert!(
        !acked.contains(&leases[5]),
        "a refused report was acknowledged: {acked:?}"
    );
    // the agent reconnects and resends what was not acknowledged, as quantgrid-agent does
    drop(s);
    let mut s = session(&url, &agent_token).await;
    let unacked: BTreeSet<String> = leases[4..]
        .iter()
        .filter(|l| !acked.contains(*l))
        .cloned()
        .collect();
    for l in &unacked {
        s.report(l, &offers[l]).await;
    }
    s.acks(&unacked).await;

    let mut progress = admin
        .watch_sweep(pb::SweepRef {
            sweep_id: sweep.sweep_id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let last = loop {
        let p = progress.message().await.expect("progress").expect("open");
        if p.finished {
            break p;
        }
    };

    assert_eq!((last.passed, last.total), (6, 6), "{last:?}");
    // a graceful stop waits for open streams: end them all
    drop((s, watch, health, progress, admin));
    shutdown.cancel();
    server.await.expect("join").expect("serve");

    // every result stored exactly once, and accepted
    let store = Store::open(&db).expect("reopen");
    let rows = store.results(Some(&sweep.sweep_id), 100).expect("results");
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.attempt_id.as_str()).collect();
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert_eq!(ids.len(), 6, "a result was stored twice: {rows:#?}");
    assert!(
        rows.iter()
            .all(|r| r.accepted && r.status == quantgrid_matrix::Status::Pass)
    );
}
