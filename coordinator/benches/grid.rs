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
    /// `host:port` of `--http`, when the phase serves the dashboard.
    http: Option<String>,
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
    lab_with(dir, name, agents, false)
}

/// [`lab`], with the dashboard and `/metrics` served too when `http`.
fn lab_with(
    dir: &Path,
    name: &str,
    agents: usize,
    http: bool,
) -> (Server, Vec<(String, String)>, String) {
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quantgrid"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--heartbeat-secs",
        "5",
        "--lease-ttl-secs",
        "60",
        "--db-path",
    ])
    .arg(&db);
    if http {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("listening line");
    let url = format!("http://{}", line.trim().trim_start_matches("listening "));
    let http = http.then(|| {
        let mut l = String::new();
        out.read_line(&mut l).expect("http line");
        l.trim().trim_start_matches("http ").to_string()
    });
    (Server { child, url, http }, tokens, admin)
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
        native: None,
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
                // a load test's results are simulated: done, and never counted as passed
                assert_eq!((p.done, p.simulated, p.passed), (r.cells, r.cells, 0));
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

/// One GET with a bearer token over a fresh connection: its status and the time to the last
/// byte (what a server-rendered page costs, end to end on loopback).
fn get(addr: &str, path: &str, token: &str) -> (u16, Duration) {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let code = String::from_utf8_lossy(&raw[..raw.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, t.elapsed())
}

fn p95(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)].as_secs_f64() * 1e3
}

/// The dashboard phase: pages and `/metrics` with `agents` connected agents while a
/// 3,850-cell sweep runs, then the grid's throughput with the dashboard open beside the same
/// run without it.
async fn dashboard(dir: &Path, agents: usize, every: &[Browser]) {
    let all_families = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/all-families.yaml"
    ))
    .expect("all-families.yaml");
    let (server, tokens, ops) = lab_with(dir, "dashboard", agents, true);
    let http = server.http.clone().expect("http");
    let stats = Arc::new(Mutex::new(Stats::default()));
    let _set = connect_agents(
        &server,
        &tokens,
        |_| (caps(every), Duration::from_millis(500)),
        &stats,
    )
    .await;
    let mut a = admin(&server, &ops).await;
    let sweep = a
        .submit_sweep(pb::SubmitSweepRequest {
            spec_yaml: all_families.clone(),
            spec_name: "all-families.yaml".into(),
            simulated: true,
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner();
    let pages = ["/", "/sweeps", "/matrix", "/metrics"];
    let (ops2, http2) = (ops.clone(), http.clone());
    let times = tokio::task::spawn_blocking(move || {
        pages
            .iter()
            .map(|p| {
                let t: Vec<Duration> = (0..40)
                    .map(|_| {
                        let (code, took) = get(&http2, p, &ops2);
                        assert_eq!(code, 200, "{p}");
                        took
                    })
                    .collect();
                let slowest = t.iter().max().copied().unwrap_or_default();
                (*p, p95(t), slowest.as_secs_f64() * 1e3)
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("pages");
    println!(
        "dashboard: {agents} agents connected, a {}-cell load-test sweep running; p95 of 40 GETs each, server-rendered, loopback",
        sweep.cells
    );
    for (p, ms, slowest) in times {
        let goal = if p == "/metrics" { 10.0 } else { 100.0 };
        println!(
            "  {p:<9} p95 {ms:>7.2} ms   goal < {goal:.0} ms: {:.2}x   (slowest {slowest:.2} ms{})",
            ms / goal,
            // the matrix page is rendered again at most every 5 s while results arrive: its
            // slowest GET is the one that rendered it
            if p == "/matrix" {
                ", the one that rendered it"
            } else {
                ""
            }
        );
    }
    drop(_set);
    drop(server);

    // throughput with the dashboard open against without, each on a fresh coordinator, in the
    // order closed, open, open, closed twice over: successive runs here drift (12–15 k
    // cells/s), and this order lets a linear drift cancel instead of reading as the
    // dashboard's cost
    let (mut closed, mut opened) = (Vec::new(), Vec::new());
    let order = [false, true, true, false, false, true, true, false];
    for (run, open) in order.into_iter().enumerate() {
        let name = format!("{}-{run}", if open { "open" } else { "closed" });
        let (server, tokens, ops) = lab_with(dir, &name, agents, true);
        let http = server.http.clone().expect("http");
        let stats = Arc::new(Mutex::new(Stats::default()));
        let _set =
            connect_agents(&server, &tokens, |_| (caps(every), Duration::ZERO), &stats).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut a = admin(&server, &ops).await;
        let first = a
            .submit_sweep(pb::SubmitSweepRequest {
                spec_yaml: BIG.replacen("name: ", "name: first-", 1),
                simulated: true,
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner()
            .sweep_id;
        // the dashboard open: the sweeps page's live stream of the first sweep, and a page
        // every 250 ms (a person clicking through it), not a load generator
        let viewer = open.then(|| {
            let (stop, ops, first) = (stop.clone(), ops.clone(), first.clone());
            std::thread::spawn(move || {
                let events = {
                    let (http, ops) = (http.clone(), ops.clone());
                    std::thread::spawn(move || get(&http, &format!("/sweeps/{first}/events"), &ops))
                };
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    get(&http, ["/", "/sweeps", "/matrix", "/metrics"][n % 4], &ops);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                let _ = events.join();
                n
            })
        });
        // 8 copies: a run of seconds, long enough that the pages read during it are a
        // person's clicking, not one page landing or not in a short run
        let (cells, secs) = run_sweeps(&mut a, BIG, 8).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let pages = viewer.map(|v| v.join().expect("viewer")).unwrap_or(0);
        if open { &mut opened } else { &mut closed }.push(f64::from(cells) / secs);
        println!(
            "  throughput, dashboard {}: {:.0} cells/s ({cells} cells, {pages} pages read meanwhile)",
            if open { "open  " } else { "closed" },
            f64::from(cells) / secs
        );
        drop(_set);
        drop(server);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "  open / closed (means of 4 runs each): {:.3}   goal >= 0.95",
        mean(&opened) / mean(&closed)
    );
}

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
        if phases.contains("dashboard") {
            dashboard(dir.path(), agents, &every).await;
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
