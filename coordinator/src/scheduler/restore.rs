//! Rebuilding the scheduler from the store after a coordinator restart.

use super::*;

impl Scheduler {
    /// Rebuilds state after a restart. Leases that were out get a fresh expiry from `now`: an
    /// agent that is still running them can reconnect and report.
    pub fn restore(config: SchedulerConfig, sweeps: Vec<RestoredSweep>, now: Millis) -> Scheduler {
        let mut s = Scheduler::new(config);
        for r in sweeps {
            let id = r.input.id.clone();
            s.add_sweep(r.input, now);
            let sweep = s.sweeps.get_mut(&id).expect("just added");
            sweep.reported = r.reported;
            for (cell, n) in &r.attempts {
                if let Some(&i) = sweep.index.get(cell) {
                    sweep.slots[i].attempts = *n;
                }
            }
            let mut out: HashSet<usize> = HashSet::new();
            for l in &r.outstanding {
                let Some(&i) = sweep.index.get(&l.cell_id) else {
                    continue;
                };
                out.insert(i);
                sweep.outstanding += 1;
                s.orphans
                    .entry(l.agent.clone())
                    .or_default()
                    .push(l.lease_id.clone());
                let deadline =
                    now + u64::from(sweep.run.timeout_secs) * 1000 + config.timeout_margin_ms;
                s.leases.insert(
                    l.lease_id.clone(),
                    Lease {
                        sweep: id.clone(),
                        slot: i,
                        agent: l.agent.clone(),
                        attempt_no: l.attempt_no,
                        started_at: l.started_at,
                        expires_at: now + config.lease_ttl_ms,
                        deadline,
                    },
                );
            }
            let sweep = s.sweeps.get_mut(&id).expect("just added");
            for slot in &mut sweep.slots {
                if r.done.contains(&slot.cell.id) {
                    slot.done = true;
                    sweep.done += 1;
                    let simulated = r.simulated.contains(&slot.cell.id);
                    sweep.passed += u32::from(r.passed.contains(&slot.cell.id) && !simulated);
                    sweep.unsupported += u32::from(r.unsupported.contains(&slot.cell.id));
                    sweep.simulated_done += u32::from(simulated);
                }
            }
            // rebuild the queues without done or outstanding cells
            for q in sweep.pending.values_mut() {
                q.retain(|i| !sweep.slots[*i].done && !out.contains(i));
            }
        }
        s
    }
}
