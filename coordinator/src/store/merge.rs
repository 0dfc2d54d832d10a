//! `quantgrid merge`: a results file made elsewhere (a contributor's `quantgrid run`) brought
//! into this one. Idempotent: a sweep already here is skipped whole, so merging the same file
//! twice adds nothing. Each merged sweep records where it came from in `sweeps.origin`.

use super::{Doing, Store, StoreError};
use std::path::Path;

/// What a merge added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub sweeps: u64,
    pub results: u64,
}

/// Quotes `s` as an SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Store {
    /// Merges `other` (a results file at this schema version) into this store, in one
    /// transaction; `origin` is what `sweeps.origin` says of the merged sweeps.
    pub fn merge(&mut self, other: &Path, origin: &str) -> Result<Merged, StoreError> {
        // the same checks and messages as any read: another version names `quantgrid migrate`
        drop(Store::open_read_only(other)?);
        let file = literal(&other.display().to_string());
        self.conn
            .execute_batch(&format!("ATTACH {file} AS other (READ_ONLY)"))
            .doing("attaching the file to merge")?;
        let merged = self.merge_attached(origin);
        let detached = self
            .conn
            .execute_batch("DETACH other")
            .doing("detaching the merged file");
        let merged = merged?;
        detached?;
        Ok(merged)
    }

    fn merge_attached(&mut self, origin: &str) -> Result<Merged, StoreError> {
        let origin = literal(origin);
        let tx = self.conn.transaction().doing("starting a merge")?;
        tx.execute_batch(
            "CREATE TEMP TABLE merging AS
                SELECT sweep_id FROM other.sweeps EXCEPT SELECT sweep_id FROM main.sweeps",
        )
        .doing("finding the sweeps to merge")?;
        let sweeps: u64 = tx
            .query_row("SELECT count(*) FROM merging", [], |r| r.get(0))
            .doing("counting the sweeps to merge")?;
        let results: u64 = tx
            .query_row(
                "SELECT count(*) FROM other.results WHERE sweep_id IN (SELECT sweep_id FROM merging)",
                [],
                |r| r.get(0),
            )
            .doing("counting the results to merge")?;
        tx.execute_batch(&format!(
            "INSERT INTO main.sweeps SELECT * REPLACE (coalesce(origin, {origin}) AS origin)
                FROM other.sweeps WHERE sweep_id IN (SELECT sweep_id FROM merging);
            INSERT INTO main.cells SELECT * FROM other.cells
                WHERE sweep_id IN (SELECT sweep_id FROM merging);
            INSERT INTO main.agents SELECT * FROM other.agents
                WHERE agent_id NOT IN (SELECT agent_id FROM main.agents);
            INSERT INTO main.environments SELECT * FROM other.environments
                WHERE environment_id NOT IN (SELECT environment_id FROM main.environments);
            INSERT INTO main.attempts SELECT * FROM other.attempts
                WHERE sweep_id IN (SELECT sweep_id FROM merging);
            INSERT INTO main.results SELECT * FROM other.results
                WHERE sweep_id IN (SELECT sweep_id FROM merging);
            INSERT INTO main.result_ops SELECT o.* FROM other.result_ops o
                JOIN other.results r USING (attempt_id)
                WHERE r.sweep_id IN (SELECT sweep_id FROM merging);
            DROP TABLE merging;"
        ))
        .doing("merging")?;
        tx.commit().doing("committing the merge")?;
        // environments this store knew are unchanged; new ones are found by id when written
        Ok(Merged { sweeps, results })
    }
}
