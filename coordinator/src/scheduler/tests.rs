use super::*;
use quantgrid_matrix::agent::BrowserCapability;
use quantgrid_matrix::result::{AdapterInfo, Measurement};
use quantgrid_matrix::spec::{self, Os};

const TTL: u64 = 30_000;

fn config() -> SchedulerConfig {
    SchedulerConfig {
        lease_ttl_ms: TTL,
        disconnect_grace_ms: 10_000,
        timeout_margin_ms: 5_000,
    }
}

fn cells(yaml_tail: &str) -> (Vec<Cell>, RunParams) {
    let yaml = format!("version: 1\nname: t\n{yaml_tail}");
    let s = spec::parse(&yaml, "t.yaml").expect("spec");
    (s.expand(), s.run)
}

fn sweep(id: &str, priority: i32, yaml_tail: &str) -> SweepInput {
    let (cells, run) = cells(yaml_tail);
    SweepInput {
        id: id.into(),
        priority,
        cells,
        requirements: Requirements::default(),
        run,
        agent_wait_ms: 60_000,
        simulated: false,
        agent: None,
    }
}

const GPU4: &str = "families: [bert, gpt2]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\nretries: 2\ntimeout_secs: 60\n";

fn browser(b: Browser, version: &str, webgpu: bool, webnn: bool) -> BrowserCapability {
    BrowserCapability {
        browser: b,
        channel: String::new(),
        version: version.into(),
        webgpu: webgpu.then(|| AdapterInfo {
            vendor: "google".into(),
            architecture: "swiftshader".into(),
            device: String::new(),
            description: String::new(),
            is_fallback: true,
        }),
        webnn,
        features: Vec::new(),
        limits: Default::default(),
        webnn_devices: Vec::new(),
    }
}

fn caps(browsers: Vec<BrowserCapability>, slots: u32) -> Capabilities {
    Capabilities {
        os: Some(Os::Linux),
        arch: "x86_64".into(),
        browsers,
        gpu_vendors: vec![],
        labels: Default::default(),
        slots,
        simulated: false,
        native: None,
    }
}

fn chromium(slots: u32) -> Capabilities {
    caps(
        vec![browser(Browser::Chromium, "156.0.1", true, false)],
        slots,
    )
}

fn up(s: &mut Scheduler, agent: &str, c: Capabilities, now: Millis) -> Vec<Action> {
    s.handle(
        Event::AgentUp {
            agent: agent.into(),
            caps: c,
        },
        now,
    )
}

fn offers(actions: &[Action]) -> Vec<(String, Offer)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Offer { agent, offer } => Some((agent.clone(), offer.clone())),
            _ => None,
        })
        .collect()
}

fn stored(actions: &[Action]) -> Vec<(String, Status, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StoreResult {
                lease_id,
                result,
                accepted,
                ..
            } => Some((lease_id.clone(), result.status, *accepted)),
            _ => None,
        })
        .collect()
}

fn measured(repetitions: u32) -> Measurement {
    quantgrid_matrix::fixtures::measurement(repetitions)
}

fn result(offer: &Offer, status: Status) -> CellResult {
    CellResult {
        cell_id: offer.cell.id.clone(),
        status,
        error_text: (status != Status::Pass).then(|| "said no".into()),
        effective_bits: offer.cell.precision.effective,
        measurement: matches!(status, Status::Pass | Status::Fail)
            .then(|| measured(offer.run.repetitions)),
        environment: None,
        simulated: false,
    }
}

fn report(
    s: &mut Scheduler,
    agent: &str,
    offer: &Offer,
    status: Status,
    now: Millis,
) -> Vec<Action> {
    s.handle(
        Event::Report {
            agent: agent.into(),
            lease: offer.lease_id.clone(),
            result: result(offer, status),
        },
        now,
    )
}

fn done(actions: &[Action]) -> Option<SweepEnd> {
    actions.iter().find_map(|a| match a {
        Action::SweepDone { end, .. } => Some(*end),
        _ => None,
    })
}

#[test]
fn one_gpu_cell_at_a_time_per_agent_by_default() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let first = offers(&up(&mut s, "a", chromium(1), 0));
    assert_eq!(first.len(), 1);
    let more = offers(&up(&mut s, "b", chromium(2), 0));
    assert_eq!(more.len(), 2);
    // a report frees the slot and the next cell follows at once
    let next = offers(&report(&mut s, "a", &first[0].1, Status::Pass, 10));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, "a");
}

#[test]
fn runs_every_cell_once_and_finishes() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let mut queue = offers(&up(&mut s, "a", chromium(1), 0));
    let mut seen = HashSet::new();
    let mut end = None;
    let mut t = 0;
    while let Some((agent, o)) = queue.pop() {
        assert!(seen.insert(o.cell.id.clone()), "cell offered twice");
        t += 10;
        let actions = report(&mut s, &agent, &o, Status::Pass, t);
        assert_eq!(
            stored(&actions),
            vec![(o.lease_id.clone(), Status::Pass, true)]
        );
        end = end.or(done(&actions));
        queue.extend(offers(&actions));
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(end, Some(SweepEnd::Finished));
}

#[test]
fn progress_counts_unsupported_answers_apart_from_passes_and_failures() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let mut queue = offers(&up(&mut s, "a", chromium(1), 0));
    let answers = [
        Status::Pass,
        Status::Unsupported,
        Status::Unsupported,
        Status::Fail,
    ];
    let (mut t, mut i, mut last) = (0, 0, None);
    while let Some((agent, o)) = queue.pop() {
        t += 10;
        let actions = report(&mut s, &agent, &o, answers[i], t);
        last = actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Progress { progress, .. } => Some(*progress),
                _ => None,
            })
            .or(last);
        queue.extend(offers(&actions));
        i += 1;
    }
    assert_eq!(i, 4);
    assert_eq!(
        last,
        Some(Progress {
            total: 4,
            done: 4,
            passed: 1,
            unsupported: 2,
            simulated: 0
        })
    );
}

#[test]
fn matching_respects_browser_version_os_and_labels() {
    let mut s = Scheduler::new(config());
    let mut input = sweep(
        "s",
        0,
        "families: [bert]\nbrowsers: [firefox]\nplatforms: webgpu\nbits: [4]\n",
    );
    input
        .requirements
        .min_browser_version
        .insert(Browser::Firefox, 150);
    input
        .requirements
        .labels
        .insert("pool".into(), "lab".into());
    s.handle(Event::Submit(input), 0);
    assert!(offers(&up(&mut s, "chromium", chromium(1), 0)).is_empty());
    let old = caps(vec![browser(Browser::Firefox, "128.0", true, false)], 1);
    let mut old = old;
    old.labels.insert("pool".into(), "lab".into());
    assert!(offers(&up(&mut s, "old-firefox", old, 0)).is_empty());
    let mut new = caps(
        vec![browser(Browser::Firefox, "153.8.0esr", true, false)],
        1,
    );
    assert!(offers(&up(&mut s, "unlabelled", new.clone(), 0)).is_empty());
    new.labels.insert("pool".into(), "lab".into());
    let o = offers(&up(&mut s, "good", new.clone(), 0));
    assert_eq!(o.len(), 1);
    new.os = Some(Os::Windows);
    let mut s2 = Scheduler::new(config());
    let mut input = sweep(
        "s",
        0,
        "families: [bert]\nbrowsers: [firefox]\nplatforms: webgpu\nbits: [4]\n",
    );
    input.requirements.os = vec![Os::Linux];
    s2.handle(Event::Submit(input), 0);
    assert!(offers(&up(&mut s2, "windows", new, 0)).is_empty());
}

#[test]
fn webnn_cells_prefer_agents_whose_browser_has_webnn_but_still_run_without_one() {
    let spec = "families: [bert]\nbrowsers: [chromium]\nplatforms: webnn\nbits: [8]\n";
    // with a WebNN-capable agent connected, the other agent gets nothing
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, spec)), 0);
    up(
        &mut s,
        "webnn",
        caps(vec![browser(Browser::Chromium, "153.0", true, true)], 1),
        0,
    );
    let mut s2 = Scheduler::new(config());
    s2.handle(Event::Submit(sweep("s", 0, spec)), 0);
    let with_both = {
        up(
            &mut s2,
            "webnn",
            caps(vec![browser(Browser::Chromium, "153.0", true, true)], 0),
            0,
        );
        offers(&up(&mut s2, "plain", chromium(1), 0))
    };
    assert!(
        with_both.is_empty(),
        "a WebNN cell went to a browser without WebNN"
    );
    // with none connected, the browser itself answers (unsupported, with its own words)
    let mut s3 = Scheduler::new(config());
    s3.handle(Event::Submit(sweep("s", 0, spec)), 0);
    assert_eq!(offers(&up(&mut s3, "plain", chromium(1), 0)).len(), 1);
}

#[test]
fn heartbeats_renew_leases_and_silence_requeues() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    s.handle(
        Event::Heartbeat {
            agent: "a".into(),
            leases: vec![o.lease_id.clone()],
        },
        TTL - 1,
    );
    assert!(
        s.handle(Event::Tick, TTL + 1).is_empty(),
        "a renewed lease expired"
    );
    let actions = s.handle(Event::Tick, 2 * TTL);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::AttemptEnded {
            reason: EndReason::LeaseExpired,
            ..
        }
    )));
    // the same agent gets the cell again (a new attempt), since its slot is free once more
    let again = offers(&actions);
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].1.cell.id.clone(), again[0].1.attempt_no),
        (o.cell.id.clone(), 2)
    );
}

#[test]
fn a_lost_agent_gives_its_cells_to_another() {
    let mut s = Scheduler::new(config());
    s.handle(
        Event::Submit(sweep(
            "s",
            0,
            "families: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n",
        )),
        0,
    );
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    s.handle(Event::AgentDown { agent: "a".into() }, 100);
    up(&mut s, "b", chromium(1), 200);
    assert!(
        s.handle(Event::Tick, 5_000).is_empty(),
        "reclaimed inside the grace period"
    );
    let actions = s.handle(Event::Tick, 10_100);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::AttemptEnded {
            reason: EndReason::AgentLost,
            ..
        }
    )));
    let moved = offers(&actions);
    assert_eq!(
        (moved[0].0.as_str(), &moved[0].1.cell.id),
        ("b", &o.cell.id)
    );
    // another agent cannot file a result on the ended lease: nothing stored, and the
    // holder's own late report still counts
    let forged = report(&mut s, "b", &o, Status::Fail, 10_150);
    assert!(stored(&forged).is_empty());
    assert!(matches!(
        forged[0],
        Action::Ignored {
            why: "a report on a lease another agent held",
            ..
        }
    ));
    // the lost agent's late result is kept, not accepted; the new one is accepted
    let late = report(&mut s, "a", &o, Status::Pass, 10_200);
    assert_eq!(
        stored(&late),
        vec![(o.lease_id.clone(), Status::Pass, false)]
    );
    let fresh = report(&mut s, "b", &moved[0].1, Status::Pass, 10_300);
    assert_eq!(
        stored(&fresh),
        vec![(moved[0].1.lease_id.clone(), Status::Pass, true)]
    );
    assert_eq!(done(&fresh), Some(SweepEnd::Finished));
}

#[test]
fn infrastructure_failures_are_retried_real_failures_are_not() {
    let one = "families: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\nretries: 2\n";
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, one)), 0);
    let o1 = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    let a1 = report(&mut s, "a", &o1, Status::Crash, 1);
    assert_eq!(
        stored(&a1),
        vec![(o1.lease_id.clone(), Status::Crash, false)]
    );
    let o2 = offers(&a1).remove(0).1;
    let a2 = report(&mut s, "a", &o2, Status::Error, 2);
    let o3 = offers(&a2).remove(0).1;
    assert_eq!(o3.attempt_no, 3);
    // the last allowed attempt's crash is the answer
    let a3 = report(&mut s, "a", &o3, Status::Crash, 3);
    assert_eq!(
        stored(&a3),
        vec![(o3.lease_id.clone(), Status::Crash, true)]
    );
    assert_eq!(done(&a3), Some(SweepEnd::Finished));

    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, one)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    {
        let status = Status::Fail;
        let a = report(&mut s, "a", &o, status, 1);
        assert_eq!(stored(&a), vec![(o.lease_id.clone(), status, true)]);
        assert!(offers(&a).is_empty());
    }
}

#[test]
fn lost_on_every_attempt_ends_as_error_with_the_reason() {
    let one = "families: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\nretries: 1\n";
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, one)), 0);
    up(&mut s, "a", chromium(1), 0);
    let a1 = s.handle(Event::Tick, TTL);
    assert_eq!(offers(&a1).len(), 1);
    let a2 = s.handle(Event::Tick, 2 * TTL);
    let st = stored(&a2);
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].1, st[0].2), (Status::Error, true));
    assert_eq!(done(&a2), Some(SweepEnd::Finished));
}

#[test]
fn higher_priority_first_and_a_small_sweep_is_not_starved() {
    let big = "families: all\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n";
    let small = "families: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\n";
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("big", 0, big)), 0);
    s.handle(Event::Submit(sweep("small", 0, small)), 1);
    s.handle(
        Event::Submit(sweep(
            "urgent",
            5,
            "families: [gpt2]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n",
        )),
        2,
    );
    let o = offers(&up(&mut s, "a", chromium(4), 3));
    let sweeps: Vec<&str> = o.iter().map(|(_, o)| o.sweep.as_str()).collect();
    assert_eq!(sweeps[0], "urgent");
    // the rest alternate between the equal-priority sweeps instead of draining the big one first
    assert!(
        sweeps[1..].contains(&"small") && sweeps[1..].contains(&"big"),
        "{sweeps:?}"
    );
}

#[test]
fn a_hung_cell_times_out_and_is_not_retried() {
    let one = "families: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\ntimeout_secs: 10\nretries: 3\n";
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, one)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    for t in (1_000..15_000).step_by(1_000) {
        s.handle(
            Event::Heartbeat {
                agent: "a".into(),
                leases: vec![o.lease_id.clone()],
            },
            t,
        );
    }
    let a = s.handle(Event::Tick, 15_000);
    assert!(a.iter().any(|x| matches!(x, Action::Revoke { .. })));
    assert_eq!(
        stored(&a),
        vec![(o.lease_id.clone(), Status::Timeout, true)]
    );
    assert!(offers(&a).is_empty());
}

#[test]
fn cancel_revokes_leases_and_drops_pending_cells() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    let a = s.handle(Event::Cancel { sweep: "s".into() }, 5);
    assert!(a.contains(&Action::Revoke {
        agent: "a".into(),
        lease_id: o.lease_id.clone()
    }));
    assert_eq!(done(&a), Some(SweepEnd::Cancelled));
    assert!(offers(&a).is_empty());
    let late = report(&mut s, "a", &o, Status::Pass, 6);
    assert!(stored(&late).is_empty());
    assert!(matches!(late[0], Action::Ignored { .. }));
}

#[test]
fn a_draining_agent_finishes_its_cell_but_gets_no_more() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    s.handle(
        Event::Drain {
            agent: "a".into(),
            draining: true,
        },
        1,
    );
    let a = report(&mut s, "a", &o, Status::Pass, 2);
    assert_eq!(stored(&a).len(), 1);
    assert!(offers(&a).is_empty());
    let a = s.handle(
        Event::Drain {
            agent: "a".into(),
            draining: false,
        },
        3,
    );
    assert_eq!(offers(&a).len(), 1);
}

#[test]
fn no_capable_agent_after_the_wait_window() {
    let mut s = Scheduler::new(config());
    s.handle(
        Event::Submit(sweep(
            "s",
            0,
            "families: [bert]\nbrowsers: [safari, chromium]\nplatforms: webgpu\nbits: [4]\n",
        )),
        0,
    );
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    for t in [20_000, 40_000, 59_000] {
        s.handle(
            Event::Heartbeat {
                agent: "a".into(),
                leases: vec![o.lease_id.clone()],
            },
            t,
        );
    }
    assert!(stored(&s.handle(Event::Tick, 59_999)).is_empty());
    let a = s.handle(Event::Tick, 60_000);
    let st = stored(&a);
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].1, st[0].2), (Status::NoCapableAgent, true));
    let a = report(&mut s, "a", &o, Status::Pass, 60_001);
    assert_eq!(done(&a), Some(SweepEnd::Finished));
}

#[test]
fn a_repeated_report_is_stored_once_and_an_unknown_one_never() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    assert_eq!(stored(&report(&mut s, "a", &o, Status::Pass, 1)).len(), 1);
    let again = report(&mut s, "a", &o, Status::Pass, 2);
    assert!(stored(&again).is_empty());
    assert!(again.contains(&Action::Ignored {
        agent: "a".into(),
        lease_id: o.lease_id.clone(),
        why: "duplicate report"
    }));
    let mut forged = o.clone();
    forged.lease_id = "s.nope.1".into();
    assert!(stored(&report(&mut s, "a", &forged, Status::Pass, 3)).is_empty());
    // another agent cannot report on a lease it does not hold
    let o2 = offers(&up(&mut s, "b", chromium(1), 4)).remove(0).1;
    let stolen = report(&mut s, "a", &o2, Status::Pass, 5);
    assert!(stored(&stolen).is_empty());
}

#[test]
fn restore_resumes_outstanding_leases_and_skips_done_cells() {
    let input = sweep("s", 0, GPU4);
    let ids: Vec<CellId> = input.cells.iter().map(|c| c.id.clone()).collect();
    let reps = input.run.repetitions;
    let restored = RestoredSweep {
        input,
        done: [ids[0].clone()].into(),
        passed: [ids[0].clone()].into(),
        unsupported: HashSet::new(),
        attempts: [(ids[0].clone(), 1), (ids[1].clone(), 1)].into(),
        outstanding: vec![RestoredLease {
            lease_id: format!("s.{}.1", ids[1]),
            cell_id: ids[1].clone(),
            agent: "a".into(),
            attempt_no: 1,
            started_at: 0,
        }],
        reported: [format!("s.{}.1", ids[0])].into(),
        simulated: HashSet::new(),
    };
    let mut s = Scheduler::restore(config(), vec![restored], 1_000);
    assert_eq!(
        s.progress("s"),
        Some(Progress {
            total: 4,
            done: 1,
            passed: 1,
            unsupported: 0,
            simulated: 0
        })
    );
    // the agent comes back holding its lease: its slot is busy, so nothing new is offered
    assert!(offers(&up(&mut s, "a", chromium(1), 1_000)).is_empty());
    let lease = format!("s.{}.1", ids[1]);
    let r = CellResult {
        cell_id: ids[1].clone(),
        status: Status::Pass,
        error_text: None,
        effective_bits: quantgrid_matrix::Bits::B8,
        measurement: Some(measured(reps)),
        environment: None,
        simulated: false,
    };
    let a = s.handle(
        Event::Report {
            agent: "a".into(),
            lease: lease.clone(),
            result: r,
        },
        2_000,
    );
    assert_eq!(stored(&a), vec![(lease, Status::Pass, true)]);
    let next = offers(&a);
    assert_eq!(next.len(), 1);
    assert!(next[0].1.cell.id != ids[0] && next[0].1.cell.id != ids[1]);
    // a resent result of a cell stored before the restart is a duplicate
    let dup = s.handle(
        Event::Report {
            agent: "a".into(),
            lease: format!("s.{}.1", ids[0]),
            result: result(&next[0].1, Status::Pass),
        },
        2_001,
    );
    assert!(stored(&dup).is_empty());
}

#[test]
fn restored_leases_of_an_agent_that_never_returns_are_reclaimed() {
    let input = sweep(
        "s",
        0,
        "families: [bert]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4]\n",
    );
    let id = input.cells[0].id.clone();
    let restored = RestoredSweep {
        input,
        done: HashSet::new(),
        passed: HashSet::new(),
        unsupported: HashSet::new(),
        attempts: [(id.clone(), 1)].into(),
        outstanding: vec![RestoredLease {
            lease_id: format!("s.{id}.1"),
            cell_id: id.clone(),
            agent: "gone".into(),
            attempt_no: 1,
            started_at: 0,
        }],
        reported: HashSet::new(),
        simulated: HashSet::new(),
    };
    let mut s = Scheduler::restore(config(), vec![restored], 1_000);
    assert!(offers(&up(&mut s, "b", chromium(1), 1_000)).is_empty());
    let a = s.handle(Event::Tick, 1_000 + TTL);
    let o = offers(&a);
    assert_eq!((o[0].0.as_str(), o[0].1.attempt_no), ("b", 2));
}

#[test]
fn a_leaving_agent_gets_no_more_cells_until_it_comes_back() {
    let mut s = Scheduler::new(config());
    s.handle(Event::Submit(sweep("s", 0, GPU4)), 0);
    let o = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    s.handle(Event::Leaving { agent: "a".into() }, 1);
    assert!(offers(&report(&mut s, "a", &o, Status::Pass, 2)).is_empty());
    // a restarted agent process opens a new session and takes cells again
    assert_eq!(offers(&up(&mut s, "a", chromium(1), 3)).len(), 1);
}

#[test]
fn an_agent_that_can_run_scarce_cells_takes_those_first() {
    let mut s = Scheduler::new(config());
    s.handle(
        Event::Submit(sweep(
            "s",
            0,
            "families: [bert, gpt2]\nbrowsers: [chromium, firefox]\nplatforms: webgpu\nbits: [4]\n",
        )),
        0,
    );
    up(&mut s, "chromium-only", chromium(0), 0);
    let both = caps(
        vec![
            browser(Browser::Chromium, "156.0", true, false),
            browser(Browser::Firefox, "153.0", true, false),
        ],
        1,
    );
    let o = offers(&up(&mut s, "both", both, 0));
    assert_eq!(o[0].1.cell.browser, Browser::Firefox);
}

#[test]
fn in_the_end_game_a_slow_agent_leaves_the_last_cells_to_a_fast_one() {
    let mut s = Scheduler::new(config());
    s.handle(
        Event::Submit(sweep(
            "s",
            0,
            "families: [bert, gpt2, vit]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\n",
        )),
        0,
    );
    let fast = offers(&up(&mut s, "fast", chromium(1), 0)).remove(0).1;
    let slow = offers(&up(&mut s, "slow", chromium(1), 0)).remove(0).1;
    // both learn their speed: fast takes 10 ms a cell, slow 100 ms
    let f2 = offers(&report(&mut s, "fast", &fast, Status::Pass, 10))
        .remove(0)
        .1;
    let f3 = offers(&report(&mut s, "fast", &f2, Status::Pass, 20))
        .remove(0)
        .1;
    // 2 cells left for 2 agents: the slow agent's report does not win it another cell
    let after_slow = report(&mut s, "slow", &slow, Status::Pass, 100);
    assert!(
        offers(&after_slow).is_empty(),
        "the slow agent took an end-game cell"
    );
    let f4 = offers(&report(&mut s, "fast", &f3, Status::Pass, 110))
        .remove(0)
        .1;
    let f5 = offers(&report(&mut s, "fast", &f4, Status::Pass, 120))
        .remove(0)
        .1;
    let last = report(&mut s, "fast", &f5, Status::Pass, 130);
    assert_eq!(done(&last), Some(SweepEnd::Finished));
}

#[test]
fn short_cells_never_wait_for_a_faster_agent() {
    let mut s = Scheduler::new(config());
    s.handle(
        Event::Submit(sweep(
            "s",
            0,
            "families: [bert, gpt2]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\n",
        )),
        0,
    );
    let a = offers(&up(&mut s, "a", chromium(1), 0)).remove(0).1;
    let b = offers(&up(&mut s, "b", chromium(1), 0)).remove(0).1;
    // a learns it takes 0 ms and starts the third cell; one cell is left for two agents
    assert_eq!(offers(&report(&mut s, "a", &a, Status::Pass, 0)).len(), 1);
    // b takes 3 ms: 50 ms from a is not worth waiting for, so b takes the last cell
    assert_eq!(offers(&report(&mut s, "b", &b, Status::Pass, 3)).len(), 1);
}

/// Whatever time passes and however often the agent drops and comes back, a report on a
/// lease the scheduler offered is stored (accepted, late or as a duplicate's first copy),
/// never ignored as unknown: a full test run once saw the coordinator call an offered
/// lease unknown, and this rules the scheduler out (500 seeded schedules of ticks up to
/// 40 s apart, sessions ending and reopening).
#[test]
fn an_offered_lease_is_never_unknown_to_its_agent() {
    let yaml =
        "families: [bert, gpt2, vit]\nbrowsers: [chromium]\nplatforms: webgpu\nbits: [4, 8]\n";
    let mut seed = 12345u64;
    let mut rnd = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let agent = || quantgrid_matrix::fixtures::chromium_capabilities(8);
    for round in 0..500 {
        let mut s = Scheduler::new(config());
        let mut now: Millis = 1_000;
        let mut acts = s.handle(Event::Submit(sweep("sw", 0, yaml)), now);
        acts.extend(up(&mut s, "a1", agent(), now));
        let got: Vec<Offer> = offers(&acts).into_iter().map(|(_, o)| o).collect();
        assert_eq!(got.len(), 6, "round {round}");
        for o in &got {
            let most = if rnd(10) == 0 { 40_000 } else { 200 };
            now += rnd(most);
            match rnd(4) {
                0 => drop(s.handle(Event::AgentDown { agent: "a1".into() }, now)),
                1 => drop(up(&mut s, "a1", agent(), now)),
                _ => {}
            }
            s.handle(Event::Tick, now);
            let unknown = report(&mut s, "a1", o, Status::Pass, now)
                .into_iter()
                .any(|a| {
                    matches!(
                        a,
                        Action::Ignored {
                            why: "unknown lease",
                            ..
                        }
                    )
                });
            assert!(!unknown, "round {round}: {} called unknown", o.lease_id);
        }
    }
}
