//! What the passing of time ends: expired leases, agents gone past their grace period, cells
//! past their timeout, and cells no registered agent could ever run.

use super::*;

impl Scheduler {
    pub(super) fn tick(&mut self, now: Millis, out: &mut Vec<Action>) {
        let grace = self.config.disconnect_grace_ms;
        let lost_agents: HashSet<&String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.disconnected_at.is_some_and(|t| now >= t + grace))
            .map(|(n, _)| n)
            .collect();
        let mut ended: Vec<(String, EndReason)> = Vec::new();
        for (id, l) in &self.leases {
            if now >= l.deadline {
                ended.push((id.clone(), EndReason::TimedOut));
            } else if lost_agents.contains(&l.agent) {
                ended.push((id.clone(), EndReason::AgentLost));
            } else if now >= l.expires_at {
                ended.push((id.clone(), EndReason::LeaseExpired));
            }
        }
        ended.sort_by(|a, b| a.0.cmp(&b.0));
        let any = !ended.is_empty();
        for (id, reason) in ended {
            let Some(lease) = self.end_lease(&id, reason, now, out) else {
                continue;
            };
            let Some(sweep) = self.sweeps.get_mut(&lease.sweep) else {
                continue;
            };
            let cell = sweep.slots[lease.slot].cell.clone();
            let tries = sweep.slots[lease.slot].attempts;
            if reason == EndReason::TimedOut {
                out.push(Action::Revoke {
                    agent: lease.agent.clone(),
                    lease_id: id.clone(),
                });
                // a hang is the browser's answer, not an infrastructure failure
                sweep.reported.insert(id.clone());
                let text = format!(
                    "no result within the {} s cell timeout (agent {})",
                    sweep.run.timeout_secs, lease.agent
                );
                out.push(Action::StoreResult {
                    lease_id: id.clone(),
                    sweep: lease.sweep.clone(),
                    result: Self::synthetic(&cell, Status::Timeout, text),
                    accepted: true,
                });
                self.cell_done(&lease.sweep, lease.slot, Status::Timeout, false, out);
            } else {
                // a late report for this lease is still kept, as an unaccepted attempt
                sweep.ended.insert(id.clone(), lease.agent.clone());
                let text = format!(
                    "the agent running this cell was lost on all {tries} attempts (last: {})",
                    reason.as_str()
                );
                self.retry_or_finish(
                    &id,
                    &lease,
                    Self::synthetic(&cell, Status::Error, text),
                    now,
                    out,
                );
            }
        }
        self.no_capable_agent(now, out);
        if any {
            self.fill_all(now, out);
        }
    }

    /// Cells that no known agent could ever run, once their sweep has waited long enough.
    fn no_capable_agent(&mut self, now: Millis, out: &mut Vec<Action>) {
        let mut hopeless: Vec<(String, usize)> = Vec::new();
        for (id, s) in &self.sweeps {
            if now < s.waiting_since + s.agent_wait_ms {
                continue;
            }
            for (q, cells) in &s.pending {
                if cells.is_empty() {
                    continue;
                }
                // a simulated agent can never run a real sweep's cells, nor a real one a
                // load test's
                let capable = self
                    .agents
                    .values()
                    .any(|a| a.caps.simulated == s.simulated && a.caps.meets(&s.requirements, q.0));
                if !capable {
                    hopeless.extend(cells.iter().map(|i| (id.clone(), *i)));
                }
            }
        }
        for (sweep_id, i) in hopeless {
            let Some(s) = self.sweeps.get_mut(&sweep_id) else {
                continue;
            };
            let cell = s.slots[i].cell.clone();
            for q in s.pending.values_mut() {
                q.retain(|x| *x != i);
            }
            let lease_id = format!("{sweep_id}.{}.none", cell.id);
            s.reported.insert(lease_id.clone());
            let text = format!(
                "no registered agent has {} meeting the sweep's requirements after waiting {} s",
                cell.browser,
                s.agent_wait_ms / 1000
            );
            out.push(Action::StoreResult {
                lease_id,
                sweep: sweep_id.clone(),
                result: Self::synthetic(&cell, Status::NoCapableAgent, text),
                accepted: true,
            });
            self.cell_done(&sweep_id, i, Status::NoCapableAgent, false, out);
        }
    }
}
