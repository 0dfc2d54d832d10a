//! Agents' pinned keys in memory, and the decision a registration's key gets: the first key an
//! agent registers with is pinned (trust on first use: the agent already proved its token), the
//! same key again passes, another key or none once one is pinned is refused until an admin
//! trusts it.

use quantgrid_proto::signing::key_id;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Pinned public keys by agent: loaded at start, changed once the store has the change, read
/// by every registration and report.
#[derive(Debug, Clone, Default)]
pub struct PinnedKeys {
    by_agent: Arc<RwLock<HashMap<String, Vec<u8>>>>,
}

impl PinnedKeys {
    pub fn new(pinned: Vec<(String, Vec<u8>)>) -> PinnedKeys {
        PinnedKeys {
            by_agent: Arc::new(RwLock::new(pinned.into_iter().collect())),
        }
    }

    pub fn get(&self, agent: &str) -> Option<Vec<u8>> {
        self.by_agent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned()
    }

    pub fn set(&self, agent: &str, public_key: Vec<u8>) {
        self.by_agent
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.to_string(), public_key);
    }

    pub fn remove(&self, agent: &str) {
        self.by_agent
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(agent);
    }
}

/// What a registration's key means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// The agent's first key: pin it.
    Pin,
    /// The pinned key.
    Match,
    /// No key, and none pinned: an unsigned agent (its results are unsigned).
    Unsigned,
    /// Refused, with why; `offered` when the agent presented a key (recorded for `trust`).
    Refuse { why: String, offered: bool },
}

pub fn check(agent: &str, pinned: Option<&[u8]>, offered: &[u8]) -> KeyCheck {
    match (pinned, offered.is_empty()) {
        (None, true) => KeyCheck::Unsigned,
        (None, false) => KeyCheck::Pin,
        (Some(p), false) if p == offered => KeyCheck::Match,
        (Some(p), false) => KeyCheck::Refuse {
            why: format!(
                "agent `{agent}` registered with key {} but key {} is pinned for it: if the machine's key really changed, `quantgrid agents trust {agent}`",
                key_id(offered),
                key_id(p)
            ),
            offered: true,
        },
        (Some(p), true) => KeyCheck::Refuse {
            why: format!(
                "agent `{agent}` registered without a key but key {} is pinned for it: unsigned results are refused from it",
                key_id(p)
            ),
            offered: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_pinned_and_only_it_passes() {
        assert_eq!(check("a", None, &[1; 32]), KeyCheck::Pin);
        assert_eq!(check("a", None, &[]), KeyCheck::Unsigned);
        assert_eq!(check("a", Some(&[1; 32]), &[1; 32]), KeyCheck::Match);
        assert!(matches!(
            check("a", Some(&[1; 32]), &[2; 32]),
            KeyCheck::Refuse { offered: true, .. }
        ));
        let KeyCheck::Refuse { why, offered } = check("a", Some(&[1; 32]), &[]) else {
            panic!("an unsigned agent with a pinned key is refused")
        };
        assert!(!offered && why.contains("without a key"), "{why}");
    }
}
