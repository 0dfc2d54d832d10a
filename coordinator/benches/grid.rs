//! Grid load benchmark: the real `quantgrid serve` process against many agents speaking real
//! gRPC over loopback. The agents are lightweight in-process clients of the agent protocol
//! (thousands of agent processes would measure the OS, not the coordinator). Simulated cells,
//! so every stored result is flagged simulated.
//!
//! `cargo bench -p quantgrid-coordinator --bench grid` (figures in docs/BENCHMARKS.md).

use hdrhistogram::Histogram;
use quantgrid_coordinator::service::auth::{generate_token, hash_token};
use quantgrid_coordinator::store::Store;
use quantgrid_matrix::agent::{BrowserCapability, Capabilities};
use quantgrid_matrix::{Browser, CellResult, Status};
use quantgrid_proto::client::{self, Bearer, Tls};
use quantgrid_proto::pb::{
    self, admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        kib / 1024.0
    }
}

/// A fresh database with `agents` agent tokens and one admin token, and a server on it.
fn lab(dir: &Path, name: &str, agents: usize) -> (Server, Vec<(String, String)>, String) {
    let db = dir.join(format!("{name}.duckdb"));
    let mut store = Store::open(&db).expect("open");
    let mut rows = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..agents {
        let t = generate_token().expect("random");
        rows.push((format!("agent-{i:05}"), hash_token(&t), false));
        tokens.push((format!("agent-{i:05}"), t));
    }
    let admin = generate_token().expect("random");
    rows.push(("ops".into(), hash_token(&admin), true));
    store.put_tokens(&rows).expect("tokens");
    drop(store);
    let mut child = Command::new(env!("CARGO_BIN_EXE_quantgrid"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-secs",
            "5",
            "--lease-ttl-secs",
            "60",
            "--db-path",
        ])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = format!("http://{}", line.trim().trim_start_matches("listening "));
    (Server { child, url }, tokens, admin)
}

fn caps(browsers: &[Browser]) -> Capabilities {
    Capabilities {
        os: Some(quantgrid_matrix::spec::Os::Linux),
        arch: "x86_64".into(),
        browsers: browsers
            .iter()
            .map(|b| BrowserCapability {
                browser: *b,
                channel: "bench".into(),
                version: "999.0".into(),
                webgpu: None,
                webnn: false,
                features: Vec::new(),
                limits: Default::default(),
                webnn_devices: Vec::new(),
            })
            .collect(),
        gpu_vendors: vec![],
        labels: Default::default(),
        slots: 1,
        // load-test agents: they take only load-test sweeps
        simulated: true,
    }
}

#[derive(Default)]
struct Stats {
    /// Agent freed a slot (sent a report) → next offer arrived, in µs.
    dispatch: Option<Histogram<u64>>,
    /// Connection attempts that had to be retried.
    retries: u64,
}

/// One agent: registers, opens its session, and answers every offer after `cell`.
async fn agent(
    url: String,
    name: String,
    token: String,
    caps: Capabilities,
    cell: Duration,
    stats: Arc<Mutex<Stats>>,
    ready: mpsc::Sender<()>,
) {
    // like the real agent: a refused or reset connection is retried with backoff
    let mut backoff = Duration::from_millis(50);
    let (up, mut down) = loop {
        let attempt = async {
            let ch = client::connect(&url, &Tls::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut c =
                AgentServiceClient::with_interceptor(ch, Bearer::new(&token).expect("token"));
            c.register(quantgrid_proto::convert::register_request(
                &name, "bench", &caps,
            ))
            .await
            .map_err(|e| e.to_string())?;
            let (up, rx) = mpsc::channel(64);
            let down = c
                .session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            Ok::<_, String>((up, down))
        };
        match attempt.await {
            Ok(pair) => break pair,
            Err(_) => {
                stats.lock().expect("stats").retries += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    let _ = ready.send(()).await;
    let mut freed: Option<Instant> = None;
    while let Ok(Some(m)) = down.message().await {
        let Some(pb::coordinator_message::Kind::Offer(o)) = m.kind else {
            continue;
        };
        if let Some(t) = freed.take()
            && let Some(h) = stats.lock().expect("stats").dispatch.as_mut()
        {
            let _ = h.record(t.elapsed().as_micros() as u64);
        }
        let cell_pb = o.cell.expect("cell");
        if !cell.is_zero() {
            // the simulated cell's work
            tokio::time::sleep(cell).await;
        }
        let result = CellResult {
            cell_id: quantgrid_matrix::CellId(cell_pb.id.clone()),
            status: Status::Pass,
            error_text: None,
            effective_bits: quantgrid_matrix::Bits::from_u32(cell_pb.requested_bits)
                .unwrap_or(quantgrid_matrix::Bits::B8),
            measurement: None,
            environment: None,
            simulated: true,
        };
        let report = pb::Report {
            lease_id: o.lease_id,
            result: Some((&result).into()),
            signature: Vec::new(),
        };
        freed = Some(Instant::now());
        if up
            .send(pb::AgentMessage {
                agent_id: name.clone(),
                kind: Some(pb::agent_message::Kind::Report(report)),
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

async fn connect_agents(
    server: &Server,
    tokens: &[(String, String)],
    mk: impl Fn(usize) -> (Capabilities, Duration),
    stats: &Arc<Mutex<Stats>>,
) -> tokio::task::JoinSet<()> {
    let (ready, mut ready_rx) = mpsc::channel(tokens.len().max(1));
    let mut set = tokio::task::JoinSet::new();
    for (i, (name, token)) in tokens.iter().enumerate() {
        let (c, cell) = mk(i);
        set.spawn(agent(
            server.url.clone(),
            name.clone(),
            token.clone(),
            c,
            cell,
            stats.clone(),
            ready.clone(),
        ));
    }
    for _ in 0..tokens.len() {
        ready_rx.recv().await.expect("agent ready");
    }
    set
}

type Admin = AdminServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

async fn admin(server: &Server, token: &str) -> Admin {
    let ch = client::connect(&server.url, &Tls::default())
        .await
        .expect("connect");
    AdminServiceClient::with_interceptor(ch, Bearer::new(token).expect("token"))
}

/// Submits `copies` sweeps of `yaml` at once and returns (cells, seconds until every one is
/// finished and durable).
async fn run_sweeps(a: &mut Admin, yaml: &str, copies: usize) -> (u32, f64) {
    let t = Instant::now();
    let mut sweeps = Vec::new();
    for i in 0..copies {
        let r = a
            .submit_sweep(pb::SubmitSweepRequest {
                client_request_id: String::new(),
                spec_yaml: yaml.replacen("name: ", &format!("name: copy{i}-"), 1),
                spec_name: "bench.yaml".into(),
                simulated: true,
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner();
        sweeps.push(r);
    }
    let mut cells = 0;
    for r in sweeps {
        let mut w = a
            .watch_sweep(pb::SweepRef {
                sweep_id: r.sweep_id,
            })
            .await
            .expect("watch")
            .into_inner();
        while let Some(p) = w.message().await.expect("progress") {
            if p.finished {
                assert_eq!(p.passed, r.cells);
                break;
            }
        }
        cells += r.cells;
    }
    (cells, t.elapsed().as_secs_f64())
}

async fn run_sweep(a: &mut Admin, yaml: &str) -> (u32, f64) {
    run_sweeps(a, yaml, 1).await
}

const BIG: &str = "version: 1
name: load
families: all
browsers: [chrome, chromium, edge, firefox, safari]
platforms: both
bits: [2, 3, 4, 8, 16]
mixed_precision: [false, true]
experimental_precision: [false, true]
scheme: [symmetric, asymmetric]
max_cells: 20000
";

fn main() {
    let agents: usize = std::env::var("QG_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let idle: usize = std::env::var("QG_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let phases =
        std::env::var("QG_BENCH_PHASES").unwrap_or_else(|_| "throughput,latency,lab,idle".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let every = Browser::ALL;
        let mut rate = 12_000.0;
        if phases.contains("throughput") {
            // 1. throughput: cells take no time, so the coordinator is the bottleneck
            let (server, tokens, ops) = lab(dir.path(), "throughput", agents);
            let stats = Arc::new(Mutex::new(Stats::default()));
            let _set = connect_agents(&server, &tokens, |_| (caps(&every), Duration::ZERO), &stats).await;
            let mut a = admin(&server, &ops).await;
            let (cells, secs) = run_sweeps(&mut a, BIG, 4).await;
            rate = f64::from(cells) / secs;
            let retries = stats.lock().expect("stats").retries;
            println!("throughput: {agents} agents ({retries} connection attempts retried), {cells} cells, dispatch to durable result");
            println!("  {rate:>10.0} cells/s   ({secs:.2} s)   goal 10,000/s: {:.2}x", rate / 10_000.0);
            println!("  coordinator RSS after the sweep: {:.0} MiB", server.rss_mib());
            drop(_set);
            drop(server);

        }
        if phases.contains("latency") {
            // 2. dispatch latency at half that throughput
            let (server, tokens, ops) = lab(dir.path(), "latency", agents);
            let stats = Arc::new(Mutex::new(Stats { dispatch: Some(Histogram::new(3).expect("histogram")), retries: 0 }));
            let cell = Duration::from_secs_f64(agents as f64 / (rate / 2.0));
            let _set = connect_agents(&server, &tokens, |_| (caps(&every), cell), &stats).await;
            let mut a = admin(&server, &ops).await;
            let (cells, secs) = run_sweeps(&mut a, BIG, 2).await;
            let h = stats.lock().expect("stats").dispatch.clone().expect("histogram");
            println!("dispatch latency at half load: {agents} agents, {:.1} ms cells, {:.0} cells/s ({} cells)", cell.as_secs_f64() * 1e3, f64::from(cells) / secs, cells);
            println!(
                "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   (report sent -> next offer received, {} samples)   goal p99 < 5 ms: {:.2}x",
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3,
                h.max() as f64 / 1e3,
                h.len(),
                h.value_at_quantile(0.99) as f64 / 1e3 / 5.0
            );
            drop(_set);
            drop(server);

        }
        if phases.contains("lab") {
            // 3. heterogeneous lab: three speeds, two capability sets
            let n = 60;
            let (server, tokens, ops) = lab(dir.path(), "makespan", n);
            // cells long enough that timer slack on a busy 2-core machine stays a rounding error
            let speeds = [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(400)];
            let stats = Arc::new(Mutex::new(Stats::default()));
            let _set = connect_agents(
                &server,
                &tokens,
                |i| {
                    let browsers: &[Browser] = if i % 2 == 0 { &[Browser::Chromium] } else { &[Browser::Chromium, Browser::Firefox] };
                    (caps(browsers), speeds[i % 3])
                },
                &stats,
            )
            .await;
            let mut a = admin(&server, &ops).await;
            let spec = "version: 1\nname: lab\nfamilies: all\nbrowsers: [chromium, firefox]\nplatforms: both\nbits: [2, 3, 4, 8, 16]\nmixed_precision: [false, true]\nscheme: [symmetric, asymmetric]\nmax_cells: 20000\n";
            let (cells, secs) = run_sweep(&mut a, spec).await;
            let capacity: f64 = (0..n).map(|i| 1.0 / speeds[i % 3].as_secs_f64()).sum();
            let longest = speeds[2].as_secs_f64();
            let bound = longest.max(f64::from(cells) / capacity);
            println!("heterogeneous lab: {n} agents at 100/200/400 ms per cell, half chromium-only, half chromium+firefox, {cells} cells");
            println!("  makespan {secs:.3} s   lower bound {bound:.3} s   ratio {:.3}   goal <= 1.05", secs / bound);
            drop(_set);
            drop(server);

        }
        if phases.contains("idle") {
            // 4. memory with many idle agents connected
            let (server, tokens, _ops) = lab(dir.path(), "idle", idle);
            let before = server.rss_mib();
            let stats = Arc::new(Mutex::new(Stats::default()));
            let t = Instant::now();
            let _set = connect_agents(&server, &tokens, |_| (caps(&every), Duration::ZERO), &stats).await;
            let retries = stats.lock().expect("stats").retries;
            println!("idle agents: {idle} connected in {:.1} s ({retries} connection attempts retried)", t.elapsed().as_secs_f64());
            println!(
                "  coordinator RSS {:.0} MiB (empty: {before:.0} MiB)   goal < 1 GiB: {:.2}x",
                server.rss_mib(),
                server.rss_mib() / 1024.0
            );
            drop(_set);
            drop(server);
        }
    });
}
