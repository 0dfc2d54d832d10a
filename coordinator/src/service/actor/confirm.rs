//! Undecided time verdicts get more repetitions, as Pinpoint does: when a run (or one of its
//! confirmations) ends, its diff against the previous run is read on the store's thread, and
//! the cells whose verdict is UNKNOWN run again on the agent that measured them, as a
//! confirmation sweep of that run (`sweeps.confirms`, `sweeps.pinned_agent`), at most
//! `report::MAX_CONFIRMATIONS` times. The diff pools their samples with the run's.

use super::{Command, Coordinator, Millis, sweep_input};
use crate::report::{self, Confirmation};
use crate::scheduler::Event as SweepEvent;
use crate::store::Record;
use crate::sweep::{new_sweep_id, sweep_record};
use quantgrid_matrix::Cell;
use quantgrid_matrix::spec;

impl Coordinator {
    /// Reads, off the loop, whether `ended` left undecided cells; the answer comes back as
    /// [`Command::Confirm`].
    pub(super) fn look_for_undecided(&mut self, ended: &str) {
        let writer = self.writer.clone();
        let back = self.commands.clone();
        let id = ended.to_string();
        self.tracker.spawn(async move {
            let found = match writer
                .read(move |s| report::undecided(s, &id).map_err(|e| e.to_string()))
                .await
            {
                Ok(r) => r,
                Err(e) => Err(e.to_string()),
            };
            let _ = back.send(Command::Confirm { found }).await;
        });
    }

    /// Starts one confirmation sweep per agent of `c`.
    pub(super) fn confirm(&mut self, c: Confirmation, now: Millis) {
        let spec = match spec::parse(&c.spec_yaml, &c.spec_file) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(run = %c.run, error = %e, "the run's spec no longer parses: undecided cells are not repeated");
                return;
            }
        };
        let all = spec.expand();
        for (agent, cells) in c.per_agent {
            let chosen: Vec<Cell> = all
                .iter()
                .filter(|x| cells.contains(&x.id.0))
                .cloned()
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let id = new_sweep_id(&format!("{}\n{}\n{agent}", c.run, c.round));
            let mut record = sweep_record(
                &id,
                &spec,
                chosen.clone(),
                &c.spec_file,
                &c.spec_yaml,
                None,
                false,
            );
            if let Record::Sweep(r, _) = &mut record {
                r.confirms = Some(c.run.clone());
                r.pinned_agent = Some(agent.clone());
            }
            tracing::info!(
                run = %c.run,
                sweep = %id,
                agent,
                cells = chosen.len(),
                round = c.round,
                "time verdicts undecided: repeating the cells on the agent that measured them"
            );
            // the sweep row goes first in the batch, before anything the scheduler does with it
            self.outbox.records.push(record);
            self.watch(&id, chosen.len() as u32);
            let mut input = sweep_input(&id, &spec, chosen, false);
            input.agent = Some(agent);
            let actions = self.scheduler.handle(SweepEvent::Submit(input), now);
            self.execute(actions, Vec::new(), now);
        }
    }
}
