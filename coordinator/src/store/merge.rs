//! `quantgrid merge`: a results file made elsewhere (a contributor's `quantgrid run`) brought
//! into this one. Idempotent: a sweep already here is skipped whole, so merging the same file
//! twice adds nothing. Each merged sweep records where it came from in `sweeps.origin`.
//!
//! Signed results are verified before anything is merged: each signature must hold for its
//! attempt id and stored payload under the key the file names, and the payload must be the
//! row's result (cell, status and samples). One that does not refuses the whole merge. The
//! keys come along as `merged` (not trusted here until `quantgrid agents trust`).

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

/// Checks every signed result of the sweeps being merged (see the module's doc).
fn verify_signed(tx: &duckdb::Transaction<'_>) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare(
            "SELECT r.attempt_id, r.key_id, r.signature, r.signed_payload, r.cell_id, r.status,
                    r.samples_ms,
                    (SELECT any_value(k.public_key) FROM other.agent_keys k WHERE k.key_id = r.key_id)
             FROM other.results r
             WHERE r.sweep_id IN (SELECT sweep_id FROM merging) AND r.key_id IS NOT NULL",
        )
        .doing("preparing the signature check")?;
    type Row = (
        String,
        String,
        Vec<u8>,
        Vec<u8>,
        String,
        String,
        Vec<f64>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                super::history::samples(r.get(6)?),
                r.get(7)?,
            ))
        })
        .doing("reading signed results")?
        .collect::<Result<_, _>>()
        .doing("reading signed results")?;
    for (attempt, key_id, signature, payload, cell_id, status, samples, public) in rows {
        let refuse = |why: String| StoreError::MergeRefused(format!("result {attempt}: {why}"));
        let public =
            public.ok_or_else(|| refuse(format!("its key {key_id} is not in the file")))?;
        quantgrid_proto::signing::verify(&public, &attempt, &payload, &signature)
            .map_err(|e| refuse(e.to_string()))?;
        let signed = quantgrid_proto::signing::decode_payload(&payload)
            .map_err(|e| refuse(format!("its signed payload does not decode: {e}")))?;
        let signed_samples = signed
            .measurement
            .as_ref()
            .map(|m| m.samples_ms.clone())
            .unwrap_or_default();
        if signed.cell_id.0 != cell_id
            || signed.status.as_str() != status
            || signed_samples != samples
        {
            return Err(refuse(
                "the stored row is not the result its agent signed (cell, status or samples changed)"
                    .into(),
            ));
        }
    }
    Ok(())
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
        verify_signed(&tx)?;
        tx.execute_batch(&format!(
            "INSERT INTO main.agent_keys
                SELECT DISTINCT ON (agent, key_id) agent, key_id, public_key, 'merged',
                    current_timestamp::TIMESTAMP, coalesce(origin, {origin})
                FROM other.agent_keys WHERE key_id IN (
                    SELECT key_id FROM other.results WHERE sweep_id IN (SELECT sweep_id FROM merging))
                ON CONFLICT DO NOTHING;
            INSERT INTO main.sweeps SELECT * REPLACE (coalesce(origin, {origin}) AS origin)
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
