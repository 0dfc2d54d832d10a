//! A schedule owned by the coordinator, end to end: the real `quantgrid serve` and CLI, a
//! hand-written gRPC agent, a cron that fires every two seconds. The schedule fires, the
//! coordinator is killed with SIGKILL between runs and restarted, the schedule and its runs are
//! still there, it fires again, and the second run's diff and matrix report the slowdown the
//! agent planted in it. Waits are on progress messages, never on sleeps.

use quantgrid_coordinator::store::Store;
use quantgrid_proto::pb;
use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::*;

const SPEC: &str = "version: 1
name: nightly-bert
families: [bert]
browsers: [chromium]
platforms: webgpu
bits: [4]
repetitions: 20
";

fn quantgrid(args: &[&str]) -> Output {
    Command::new(bin("quantgrid"))
        .args(args)
        .output()
        .expect("run quantgrid")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Connects as agent `lab`, answers the first offer with a pass whose samples lie around
/// `median` ms (±2%), and waits until that offer's sweep has finished; returns the sweep id.
async fn answer_one_run(url: &str, lab: &str, ops: &str, median: f64) -> String {
    let (up, mut down) = fake_agent(url, lab, "lab", 1).await;
    let offer = next_offers(&mut down, 1).await.remove(0);
    let samples: Vec<f64> = (0..offer.repetitions)
        .map(|i| median * (1.0 + 0.02 * (f64::from(i) * 2.399).sin()))
        .collect();
    answer(&up, &mut admin(url, ops).await, &offer, &samples).await
}

fn schedule_cli(url: &str, ops: &str, args: &[&str]) -> Output {
    let mut all = vec!["schedule"];
    all.extend(args);
    all.extend(["--coordinator", url, "--token", ops]);
    quantgrid(&all)
}

#[test]
fn a_schedule_survives_a_kill_and_its_second_run_reports_the_planted_regression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("lab.duckdb");
    let spec = dir.path().join("nightly.yaml");
    std::fs::write(&spec, SPEC).expect("spec");
    let (ops, lab) = (token(&db, "ops", true), token(&db, "lab", false));
    let (server, url) = serve(&db, "127.0.0.1:0");

    // a bad zone is refused, naming it; a good schedule is added
    let out = schedule_cli(
        &url,
        &ops,
        &[
            "add",
            "bad",
            spec.to_str().expect("utf-8"),
            "--cron",
            "* * * * *",
            "--tz",
            "Mars/Olympus",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`Mars/Olympus` is not an IANA time zone"),
        "{}",
        text(&out.stderr)
    );
    let out = schedule_cli(
        &url,
        &ops,
        &[
            "add",
            "nightly",
            spec.to_str().expect("utf-8"),
            "--cron",
            "*/2 * * * * *",
            "--tz",
            "Europe/Berlin",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = schedule_cli(
        &url,
        &ops,
        &[
            "add",
            "nightly",
            spec.to_str().expect("utf-8"),
            "--cron",
            "* * * * *",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "a name is unique");

    let first = rt().block_on(answer_one_run(&url, &lab, &ops, 10.0));

    // SIGKILL between runs: nothing is flushed on the way out
    server.signal(nix::sys::signal::Signal::SIGKILL);
    drop(server);
    let (server, url) = serve(&db, "127.0.0.1:0");
    let out = schedule_cli(&url, &ops, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nightly") && text(&out.stdout).contains("*/2 * * * * *"),
        "{}",
        text(&out.stdout)
    );

    // the next run is 20% slower
    let second = rt().block_on(answer_one_run(&url, &lab, &ops, 12.0));
    assert_ne!(first, second);
    let out = schedule_cli(&url, &ops, &["pause", "nightly"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(server);

    let db_arg = db.to_str().expect("utf-8");
    let out = quantgrid(&["diff", &first, &second, "--db-path", db_arg]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("REGRESSION bert chromium webgpu 4-bit") && stdout.contains("time +20."),
        "{stdout}"
    );
    let out = quantgrid(&["matrix", "--sweep", &second, "--db-path", db_arg]);
    let md = text(&out.stdout);
    assert!(md.contains(&format!("## Changes since `{first}`")), "{md}");
    assert!(md.contains(" ▲ |"), "{md}");
    runs_are_all_there(&db, &[first, second]);
}

/// Every run the schedule started is a sweep of the schedule, and both answered runs are.
fn runs_are_all_there(db: &Path, answered: &[String]) {
    let store = Store::open(db).expect("open");
    let schedules = store.schedules().expect("schedules");
    assert_eq!(schedules.len(), 1);
    assert!(schedules[0].record.paused);
    let rows = store.history(None, &|_| true, false).expect("history");
    for sweep in answered {
        assert!(
            rows.iter().any(|r| &r.sweep_id == sweep),
            "{sweep} lost: {rows:#?}"
        );
    }
    // every run the schedule started is a stored sweep; overruns and missed times are recorded
    let runs = store.schedule_runs("nightly").expect("runs");
    let sweeps: Vec<String> = store
        .sweeps()
        .expect("sweeps")
        .into_iter()
        .map(|s| s.sweep_id)
        .collect();
    let started: Vec<&String> = runs.iter().filter_map(|(_, _, s)| s.as_ref()).collect();
    assert!(started.len() >= 2, "{runs:?}");
    for s in &started {
        assert!(sweeps.contains(s), "run {s} has no sweep: {runs:?}");
    }
    for a in answered {
        assert!(
            started.contains(&a),
            "{a} not recorded as the schedule's: {runs:?}"
        );
    }
}

/// Reports a pass with `samples` for `offer` and waits until its sweep has finished.
async fn answer(
    up: &tokio::sync::mpsc::Sender<pb::AgentMessage>,
    a: &mut Admin,
    offer: &pb::Offer,
    samples: &[f64],
) -> String {
    let mut result = measured_pass(offer);
    if let Some(m) = result.measurement.as_mut() {
        m.samples_ms = samples.to_vec();
    }
    up.send(pb::AgentMessage {
        agent_id: "lab".into(),
        kind: Some(pb::agent_message::Kind::Report(pb::Report {
            lease_id: offer.lease_id.clone(),
            result: Some(result),
            signature: Vec::new(),
        })),
    })
    .await
    .expect("report");
    let sweep = offer
        .lease_id
        .split('.')
        .next()
        .expect("lease ids start with the sweep id")
        .to_string();
    let last = watch_until(a, &sweep, |p| p.finished).await;
    assert_eq!(last.passed, last.total, "{last:?}");
    sweep
}

/// Three samples a side can never decide a 5% step (the exact rank test's smallest p is
/// 0.057 for 4 against 3): the coordinator repeats the cell on the agent that measured it, as
/// a confirmation of the run, and the diff pools the samples; one confirmation decides it
/// here (4 against 6, held to α/2 as a second look).
#[test]
fn an_undecided_time_verdict_is_repeated_on_the_same_agent_until_it_is_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("lab.duckdb");
    let (ops, lab) = (token(&db, "ops", true), token(&db, "lab", false));
    let (server, url) = serve(&db, "127.0.0.1:0");
    let (old, new, confirmation) = rt().block_on(async {
        let mut a = admin(&url, &ops).await;
        let (up, mut down) = fake_agent(&url, &lab, "lab", 1).await;
        let submit = async |a: &mut Admin, repetitions: &str| {
            a.submit_sweep(pb::SubmitSweepRequest {
                spec_yaml: SPEC.replace("repetitions: 20", repetitions),
                spec_name: "nightly.yaml".into(),
                ..Default::default()
            })
            .await
            .expect("submit")
        };
        submit(&mut a, "repetitions: 4").await;
        let offer = next_offers(&mut down, 1).await.remove(0);
        let old = answer(&up, &mut a, &offer, &[10.0, 10.05, 9.95, 10.02]).await;
        submit(&mut a, "repetitions: 3").await;
        let offer = next_offers(&mut down, 1).await.remove(0);
        let slower = [10.5, 10.55, 10.45];
        let new = answer(&up, &mut a, &offer, &slower).await;
        let offer = next_offers(&mut down, 1).await.remove(0);
        let confirmation = answer(&up, &mut a, &offer, &slower).await;
        (old, new, confirmation)
    });
    drop(server);
    assert_ne!(confirmation, new);
    let db_arg = db.to_str().expect("utf-8");
    // the bare diff compares the run with its previous, never with a confirmation
    let out = quantgrid(&["diff", "--db-path", db_arg]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{old} → {new}: 1 regression(s)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("different") && stdout.contains("after 1 more run(s) of the new build"),
        "{stdout}"
    );
}
