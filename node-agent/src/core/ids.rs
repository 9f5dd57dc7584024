//! Stable numeric ids for sessions: the datapath keys its counters and its
//! per-interface slots by a u32, and a session must keep its id across
//! reconciles so its counters keep adding up.

use std::collections::{BTreeMap, BTreeSet};

use podmirror_crds::model::SessionKey;

/// Allocates the smallest free id (from 1: 0 is left as "no session" for the
/// datapath) and keeps it while the session is in use.
#[derive(Debug, Default, Clone)]
pub struct SessionIds {
    by_key: BTreeMap<SessionKey, u32>,
}

impl SessionIds {
    /// The id of `key`, allocating one if it has none.
    pub fn id(&mut self, key: &SessionKey) -> u32 {
        if let Some(id) = self.by_key.get(key) {
            return *id;
        }
        let used: BTreeSet<u32> = self.by_key.values().copied().collect();
        let id = (1..).find(|candidate| !used.contains(candidate)).unwrap_or(u32::MAX);
        self.by_key.insert(key.clone(), id);
        id
    }

    /// Forget every session not in `live`, so its id can be reused; returns
    /// the ids released.
    pub fn retain(&mut self, live: &BTreeSet<SessionKey>) -> Vec<u32> {
        let mut released = Vec::new();
        self.by_key.retain(|key, id| {
            let keep = live.contains(key);
            if !keep {
                released.push(*id);
            }
            keep
        });
        released
    }

    /// The session that holds `id`, for labelling counters.
    pub fn key_of(&self, id: u32) -> Option<&SessionKey> {
        self.by_key.iter().find(|(_, v)| **v == id).map(|(k, _)| k)
    }

    pub fn snapshot(&self) -> BTreeMap<u32, SessionKey> {
        self.by_key.iter().map(|(k, v)| (*v, k.clone())).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_reused_after_release() {
        let mut ids = SessionIds::default();
        let a = SessionKey::new("ns", "a");
        let b = SessionKey::new("ns", "b");
        let c = SessionKey::new("ns", "c");
        assert_eq!(ids.id(&a), 1);
        assert_eq!(ids.id(&b), 2);
        assert_eq!(ids.id(&a), 1, "a keeps its id");
        assert_eq!(ids.retain(&[b.clone()].into_iter().collect()), vec![1]);
        assert_eq!(ids.id(&b), 2, "b keeps its id after a is released");
        assert_eq!(ids.id(&c), 1, "c reuses a's id");
        assert_eq!(ids.key_of(2), Some(&b));
        assert_eq!(ids.key_of(7), None);
    }
}
