//! An agent's report on a lease: checked before it counts, stored, and the cell done or retried.

use super::*;
use quantgrid_matrix::checkpoint::check_weights;
use quantgrid_matrix::result::check_report;

impl Scheduler {
    pub(super) fn report(
        &mut self,
        agent: String,
        lease_id: String,
        result: CellResult,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let owned = self.leases.get(&lease_id).is_some_and(|l| l.agent == agent);
        if !owned {
            // a late or repeated report: keep a late one as an attempt, drop a repeat; a lease
            // is only ever reported on by the agent that held it, so no other agent can file a
            // result on it (and have the holder's real late report dropped as a duplicate)
            let sweep = self
                .sweeps
                .iter_mut()
                .find(|(_, s)| s.ended.contains_key(&lease_id) || s.reported.contains(&lease_id));
            match sweep {
                Some((_, s))
                    if s.ended
                        .get(&lease_id)
                        .is_some_and(|holder| *holder != agent) =>
                {
                    out.push(Action::Ignored {
                        agent,
                        lease_id,
                        why: "a report on a lease another agent held",
                    })
                }
                Some((id, s)) if !s.reported.contains(&lease_id) => {
                    s.ended.remove(&lease_id);
                    s.reported.insert(lease_id.clone());
                    out.push(Action::StoreResult {
                        lease_id,
                        sweep: id.clone(),
                        result,
                        accepted: false,
                    });
                }
                Some(_) => out.push(Action::Ignored {
                    agent,
                    lease_id,
                    why: "duplicate report",
                }),
                None => out.push(Action::Ignored {
                    agent,
                    lease_id,
                    why: "unknown lease",
                }),
            }
            return;
        }
        let (result, invalid) = self.checked(&agent, &lease_id, result);
        if let Some(why) = &invalid {
            out.push(Action::Rejected {
                agent: agent.clone(),
                lease_id: lease_id.clone(),
                why: why.clone(),
            });
        }
        let status = result.status;
        let Some(lease) = self.end_lease(&lease_id, EndReason::Reported(status), now, out) else {
            return;
        };
        if let Some(a) = self.agents.get_mut(&agent) {
            let took = now.saturating_sub(lease.started_at) as f64;
            a.cell_ms = Some(a.cell_ms.map_or(took, |m| 0.7 * m + 0.3 * took));
        }
        let cell_ok = self
            .sweeps
            .get(&lease.sweep)
            .is_some_and(|s| s.slots[lease.slot].cell.id == result.cell_id);
        let Some(sweep) = self.sweeps.get_mut(&lease.sweep) else {
            return;
        };
        sweep.reported.insert(lease_id.clone());
        if invalid.is_some() {
            // the retry goes to another agent when one can take it
            let slot = &mut sweep.slots[lease.slot];
            if !slot.avoid.contains(&agent) {
                slot.avoid.push(agent.clone());
            }
        }
        if !cell_ok {
            let cell = sweep.slots[lease.slot].cell.clone();
            let msg = format!(
                "agent {agent} reported a result for cell {} on this cell's lease",
                result.cell_id
            );
            out.push(Action::StoreResult {
                lease_id: lease_id.clone(),
                sweep: lease.sweep.clone(),
                result: Self::synthetic(&cell, Status::Error, msg.clone()),
                accepted: false,
            });
            let give_up = Self::synthetic(&cell, Status::Error, msg);
            self.retry_or_finish(&lease_id, &lease, give_up, now, out);
        } else if retryable(status) && sweep.slots[lease.slot].attempts < sweep.max_attempts() {
            out.push(Action::StoreResult {
                lease_id: lease_id.clone(),
                sweep: lease.sweep.clone(),
                result,
                accepted: false,
            });
            let slot = &mut sweep.slots[lease.slot];
            slot.queued_at = now;
            let q = (slot.cell.browser, slot.cell.platform);
            sweep.pending.entry(q).or_default().push_front(lease.slot);
        } else {
            let simulated = result.simulated;
            out.push(Action::StoreResult {
                lease_id,
                sweep: lease.sweep.clone(),
                result,
                accepted: true,
            });
            self.cell_done(&lease.sweep, lease.slot, status, simulated, out);
        }
        self.fill(&agent, now, out);
        if retryable(status) {
            self.fill_all(now, out);
        }
    }

    /// The report as it counts: one that fails [`check_report`] or [`check_weights`] (non-finite or negative times,
    /// too few samples, a pass beyond the kernel bound, a simulated result for a real sweep)
    /// becomes an `error` with the reason, keeping what the agent sent for the record.
    fn checked(
        &self,
        agent: &str,
        lease_id: &str,
        mut result: CellResult,
    ) -> (CellResult, Option<String>) {
        let Some((sweep, lease)) = self
            .leases
            .get(lease_id)
            .and_then(|l| Some((self.sweeps.get(&l.sweep)?, l)))
        else {
            return (result, None);
        };
        let cell = &sweep.slots[lease.slot].cell;
        let problem = if result.simulated && !sweep.simulated {
            Some("a simulated result for a sweep that is not a load test".to_string())
        } else {
            check_report(&result, sweep.run.repetitions.max(1))
                .and_then(|()| match &result.measurement {
                    Some(m) if !result.simulated => check_weights(cell, m),
                    _ => Ok(()),
                })
                .err()
        };
        let Some(why) = problem else {
            return (result, None);
        };
        result.error_text = Some(format!(
            "invalid report from agent {agent} (it said {}): {why}",
            result.status
        ));
        result.status = Status::Error;
        (result, Some(why))
    }
}
