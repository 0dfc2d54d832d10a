//! The coordinator's dashboard in a real browser: `quantgrid serve --http` with an agent whose
//! executor answers every cell with a fixed measurement after 300 ms (the test's stand-in for a
//! browser: the page under test is the dashboard, not a cell), opened in headless Chromium
//! through this crate's WebDriver session (the one place that knows fantoccini). A person can
//! look at the screenshots it saves under the target directory (`dashboard-screenshots/`).

use quantgrid_agent::executor::{Executor, Job, RunFuture};
use quantgrid_agent::runtime::{self, AgentConfig, Shutdown};
use quantgrid_agent::webdriver::{Driver, Launch, Session};
use quantgrid_matrix::{Browser, CellResult, Status, fixtures};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A sibling binary of this test's crate, built by `cargo build --workspace`.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace",
        path.display()
    );
    path
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn token(db: &std::path::Path, name: &str, admin: bool) -> String {
    let mut cmd = Command::new(bin("quantgrid"));
    cmd.args(["token", "create", name, "--db-path"]).arg(db);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd
        .env_remove("QUANTGRID_COORDINATOR")
        .env_remove("QUANTGRID_TOKEN")
        .output()
        .expect("token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Answers every cell with the fixtures' Chromium measurement, after `cell_time`.
struct Fixed {
    cell_time: Duration,
}

impl Executor for Fixed {
    fn capabilities(&self) -> quantgrid_matrix::agent::Capabilities {
        fixtures::chromium_capabilities(1)
    }

    fn run(&self, job: Job, _: tokio_util::sync::CancellationToken) -> RunFuture {
        let cell_time = self.cell_time;
        Box::pin(async move {
            // the cell's stand-in work, so progress has steps to show
            tokio::time::sleep(cell_time).await;
            CellResult {
                cell_id: job.cell.id.clone(),
                status: Status::Pass,
                error_text: None,
                effective_bits: job.cell.precision.effective,
                measurement: Some(fixtures::measurement(job.repetitions)),
                environment: Some(fixtures::chromium_environment()),
                simulated: false,
            }
        })
    }
}

/// Waits (polling the page, as a person would look again) until `script` answers true.
async fn until(session: &Session, script: &str) {
    let body = format!(
        "const check = () => {{ try {{ return !!({script}); }} catch (e) {{ return false; }} }};\
         const start = Date.now();\
         const poll = () => check() ? done(true) : (Date.now() - start > 20000 ? done(false) : setTimeout(poll, 100));\
         poll();"
    );
    let ok = session.run_async(&body).await.expect("script");
    assert_eq!(ok, serde_json::Value::Bool(true), "never true: {script}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_agents_progress_the_matrix_and_a_cells_plot_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("grid.duckdb");
    let (lab, ops) = (token(&db, "lab-1", false), token(&db, "ops", true));
    let mut serve = Command::new(bin("quantgrid"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--db-path",
        ])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let grpc = lines
        .next()
        .expect("line")
        .expect("line")
        .replace("listening ", "http://");
    let http = lines
        .next()
        .expect("line")
        .expect("line")
        .replace("http ", "http://");
    let _serve = Proc(serve);
    let stop = Shutdown {
        graceful: Default::default(),
        abandon: Default::default(),
    };
    let agent = tokio::spawn(runtime::run(
        AgentConfig {
            coordinator: grpc.clone(),
            token: lab,
            name: "lab-1".into(),
            tls: Default::default(),
            max_backoff: Duration::from_secs(1),
            key: quantgrid_proto::signing::generate_key().expect("key"),
        },
        Arc::new(Fixed {
            cell_time: Duration::from_millis(300),
        }),
        stop.clone(),
    ));
    let spec = dir.path().join("drill.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: drill\nfamilies: [bert, gpt2]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [2, 3, 4, 8, 16]\n",
    )
    .expect("spec");

    let found = quantgrid_agent::discovery::browsers();
    let build = found
        .iter()
        .filter(|f| f.candidate.browser == Browser::Chromium && f.candidate.driver.is_some())
        .max_by_key(|f| quantgrid_agent::discovery::browser::major(&f.version))
        .expect("Chromium and chromedriver are installed (./x test installs them)");
    let launch = Launch::of(build, true);
    let driver = Driver::start(build.candidate.driver.as_ref().expect("driver"), &launch)
        .await
        .expect("driver");
    let session = Session::open(&driver, &launch).await.expect("session");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let shot = |name: &'static str| {
        let (session, shots) = (&session, shots.clone());
        async move {
            let png = session.screenshot().await.expect("screenshot");
            std::fs::write(shots.join(format!("{name}.png")), png).expect("save");
        }
    };

    // signed out: the sign-in form; signed in with the admin token (the cookie it sets)
    session.goto(&format!("{http}/")).await.expect("goto");
    until(
        &session,
        "document.querySelector('form[action=\"/login\"]')",
    )
    .await;
    let signed = session
        .run_async_with(
            "fetch('/login', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'token=' + arguments[0]}).then(r => done(r.ok), () => done(false));",
            vec![serde_json::Value::String(ops.clone())],
        )
        .await
        .expect("sign in");
    assert_eq!(signed, serde_json::Value::Bool(true));

    // the agent appears, connected, with its key
    session.goto(&format!("{http}/")).await.expect("goto");
    until(&session, "document.body.innerText.includes('lab-1') && document.body.innerText.includes('connected')").await;
    shot("agents").await;

    // a sweep runs: its progress moves on the sweeps page without a reload, to the end
    let submitted = Command::new(bin("quantgrid"))
        .args(["submit", "--coordinator", &grpc, "--token", &ops])
        .arg(&spec)
        .output()
        .expect("submit");
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    session.goto(&format!("{http}/sweeps")).await.expect("goto");
    until(&session, "document.querySelector('[data-sweep] .done')").await;
    let first: serde_json::Value = session
        .run_async("done(Number(document.querySelector('[data-sweep] .done').textContent))")
        .await
        .expect("done");
    shot("sweeps").await;
    until(
        &session,
        "document.querySelector('[data-sweep] .state').textContent === 'finished'",
    )
    .await;
    until(
        &session,
        "Number(document.querySelector('[data-sweep] .done').textContent) === 10",
    )
    .await;
    assert!(
        first.as_f64().is_some_and(|n| n < 10.0),
        "progress was live: {first}"
    );

    // the matrix, and a cell's history plotted
    session.goto(&format!("{http}/matrix")).await.expect("goto");
    until(&session, "document.querySelector('table')").await;
    shot("matrix").await;
    let cell = String::from_utf8_lossy(
        &Command::new(bin("quantgrid"))
            .args(["expand", "--json"])
            .arg(&spec)
            .output()
            .expect("expand")
            .stdout,
    )
    .into_owned();
    let id = serde_json::from_str::<serde_json::Value>(cell.lines().next().unwrap_or("{}"))
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .expect("a cell id");
    session
        .goto(&format!("{http}/cell/{id}"))
        .await
        .expect("goto");
    until(&session, "document.querySelector('svg')").await;
    shot("cell").await;

    // a longer sweep's own page while it runs: its queue and each cell's state and place
    let long = dir.path().join("long.yaml");
    std::fs::write(
        &long,
        "version: 1\nname: long\nfamilies: [bert, gpt2, llama, t5, vit]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [2, 3, 4, 8, 16]\n",
    )
    .expect("spec");
    let submitted = Command::new(bin("quantgrid"))
        .args(["submit", "--coordinator", &grpc, "--token", &ops])
        .arg(&long)
        .output()
        .expect("submit");
    assert!(submitted.status.success());
    let sweep = String::from_utf8_lossy(&submitted.stdout)
        .lines()
        .last()
        .expect("sweep id")
        .trim()
        .to_string();
    session
        .goto(&format!("{http}/sweeps/{sweep}"))
        .await
        .expect("goto");
    until(
        &session,
        "document.body.innerText.includes('Queues') && document.body.innerText.includes('running on lab-1') && document.body.innerText.includes('queued #1')",
    )
    .await;
    shot("sweep").await;
    session.close().await.expect("close");
    stop.graceful.cancel();
    agent.await.expect("agent task").expect("agent");
}
