//! Agents' public keys: the one pinned per agent (trust on first registration, or an admin's
//! `agents trust`), keys an agent was refused with, keys that came with a merged file.

use super::{Doing, Store, StoreError};
use serde::Serialize;

/// One key of one agent, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    pub agent: String,
    pub key_id: String,
    #[serde(skip)]
    pub public_key: Vec<u8>,
    /// pinned, offered, merged or retired.
    pub state: String,
    pub at: String,
    /// Where a merged key came from.
    pub origin: Option<String>,
}

/// What a key request asked for that cannot be done; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefused {
    #[error(
        "agent `{0}` has no key waiting to be trusted (it offers one by registering with a new key, or one comes with a merged file)"
    )]
    NothingToTrust(String),
    #[error("agent `{0}` has no pinned key")]
    NotPinned(String),
}

impl Store {
    /// `(agent, public key)` of every pinned key.
    pub fn pinned_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT agent, public_key FROM agent_keys WHERE state = 'pinned'")
            .doing("preparing the pinned keys query")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .doing("reading pinned keys")?
            .collect::<Result<_, _>>()
            .doing("reading pinned keys")
    }

    /// Every stored key, by agent.
    pub fn agent_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT agent, key_id, public_key, state, strftime(changed_at, '%Y-%m-%d %H:%M:%S'), origin
                 FROM agent_keys ORDER BY agent, changed_at",
            )
            .doing("preparing the keys query")?;
        stmt.query_map([], |r| {
            Ok(KeyRow {
                agent: r.get(0)?,
                key_id: r.get(1)?,
                public_key: r.get(2)?,
                state: r.get(3)?,
                at: r.get(4)?,
                origin: r.get(5)?,
            })
        })
        .doing("reading keys")?
        .collect::<Result<_, _>>()
        .doing("reading keys")
    }

    /// Pins `public_key` for `agent` (its first registration with a key).
    pub fn pin_key(
        &mut self,
        agent: &str,
        key_id: &str,
        public_key: &[u8],
    ) -> Result<(), StoreError> {
        self.set_key(agent, key_id, public_key, "pinned", None)
    }

    /// Records a key `agent` was refused with, for an admin to trust.
    pub fn offer_key(
        &mut self,
        agent: &str,
        key_id: &str,
        public_key: &[u8],
    ) -> Result<(), StoreError> {
        self.set_key(agent, key_id, public_key, "offered", None)
    }

    /// A key that signed results of a merged file; kept untrusted unless already known.
    pub fn merged_key(
        &mut self,
        agent: &str,
        key_id: &str,
        public_key: &[u8],
        origin: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO agent_keys VALUES (?, ?, ?, 'merged', current_timestamp::TIMESTAMP, ?)
                 ON CONFLICT DO NOTHING",
                duckdb::params![agent, key_id, public_key, origin],
            )
            .doing("storing a merged key")?;
        Ok(())
    }

    fn set_key(
        &mut self,
        agent: &str,
        key_id: &str,
        public_key: &[u8],
        state: &str,
        origin: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO agent_keys VALUES (?, ?, ?, ?, current_timestamp::TIMESTAMP, ?)
                 ON CONFLICT (agent, key_id) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at",
                duckdb::params![agent, key_id, public_key, state, origin],
            )
            .doing("storing a key")?;
        Ok(())
    }

    /// Pins the key `agent` most recently offered (or, failing that, came with a merge) in
    /// place of its pinned one, which is retired. Returns the key now pinned.
    pub fn trust_agent(&mut self, agent: &str) -> Result<Result<KeyRow, KeyRefused>, StoreError> {
        let candidate = self
            .agent_keys()?
            .into_iter()
            .filter(|k| k.agent == agent && (k.state == "offered" || k.state == "merged"))
            .max_by_key(|k| (k.state == "offered", k.at.clone()));
        let Some(key) = candidate else {
            return Ok(Err(KeyRefused::NothingToTrust(agent.into())));
        };
        let tx = self.conn.transaction().doing("starting a trust")?;
        tx.execute(
            "UPDATE agent_keys SET state = 'retired' WHERE agent = ? AND state = 'pinned'",
            [agent],
        )
        .doing("retiring a pinned key")?;
        tx.execute(
            "UPDATE agent_keys SET state = 'pinned', changed_at = current_timestamp::TIMESTAMP WHERE agent = ? AND key_id = ?",
            [agent, key.key_id.as_str()],
        )
        .doing("pinning a key")?;
        tx.commit().doing("committing a trust")?;
        Ok(Ok(key))
    }

    /// Unpins `agent`'s key: its next registration pins whatever key it presents.
    pub fn forget_agent(&mut self, agent: &str) -> Result<Result<(), KeyRefused>, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE agent_keys SET state = 'retired' WHERE agent = ? AND state = 'pinned'",
                [agent],
            )
            .doing("forgetting a key")?;
        Ok(if n > 0 {
            Ok(())
        } else {
            Err(KeyRefused::NotPinned(agent.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_pinned_offered_trusted_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("k.duckdb")).expect("store");
        store.pin_key("lab-1", "k1", &[1; 32]).expect("pin");
        store.offer_key("lab-1", "k2", &[2; 32]).expect("offer");
        assert_eq!(
            store.pinned_keys().expect("read"),
            vec![("lab-1".to_string(), vec![1; 32])]
        );
        let now = store.trust_agent("lab-1").expect("db").expect("offered");
        assert_eq!(now.key_id, "k2");
        assert_eq!(
            store.pinned_keys().expect("read"),
            vec![("lab-1".to_string(), vec![2; 32])]
        );
        assert_eq!(
            store.trust_agent("lab-1").expect("db"),
            Err(KeyRefused::NothingToTrust("lab-1".into()))
        );
        store.forget_agent("lab-1").expect("db").expect("pinned");
        assert!(store.pinned_keys().expect("read").is_empty());
        assert_eq!(
            store.forget_agent("lab-1").expect("db"),
            Err(KeyRefused::NotPinned("lab-1".into()))
        );
        let states: Vec<String> = store
            .agent_keys()
            .expect("read")
            .into_iter()
            .map(|k| k.state)
            .collect();
        assert_eq!(states, ["retired", "retired"]);
    }
}
