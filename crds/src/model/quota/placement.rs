//! The admitted sessions, indexed by everything a quota counts on.

use std::collections::{BTreeMap, BTreeSet};

use super::FilterKey;
use super::facts::{SessionQuotaFacts, TargetId};
use crate::model::types::SessionKey;

/// The admitted sessions, indexed by everything a quota counts on. Holders
/// are sets so that removing one session (to try its change) is exact even
/// if, against expectations, two incumbents share a unique slot.
#[derive(Default)]
pub(super) struct Placement<'a> {
    pub(super) total: usize,
    /// Source pod uid -> sessions that mirror it.
    pub(super) by_source: BTreeMap<&'a str, BTreeSet<&'a SessionKey>>,
    /// (source pod uid, session priority) -> holders.
    pub(super) by_source_priority: BTreeMap<(&'a str, u16), BTreeSet<&'a SessionKey>>,
    /// Pod uid receiving copies -> sessions sending to it.
    pub(super) by_target_pod: BTreeMap<&'a str, BTreeSet<&'a SessionKey>>,
    /// Target identity -> number of sessions sending to it.
    pub(super) by_target: BTreeMap<&'a TargetId, usize>,
    /// (target, VNI) -> holders.
    pub(super) by_target_vni: BTreeMap<(&'a TargetId, u32), BTreeSet<&'a SessionKey>>,
    /// Filter -> number of sessions using it.
    pub(super) by_filter: BTreeMap<FilterKey, usize>,
}

impl<'a> Placement<'a> {
    pub(super) fn insert(&mut self, key: &'a SessionKey, facts: &'a SessionQuotaFacts) {
        self.total += 1;
        for pod in &facts.sources {
            self.by_source.entry(pod.uid()).or_default().insert(key);
            self.by_source_priority.entry((pod.uid(), facts.priority)).or_default().insert(key);
        }
        for target in &facts.targets {
            *self.by_target.entry(&target.id).or_default() += 1;
            self.by_target_vni.entry((&target.id, facts.vni)).or_default().insert(key);
            for pod in &target.pods {
                self.by_target_pod.entry(pod.uid()).or_default().insert(key);
            }
        }
        for filter in distinct_filters(key, facts) {
            *self.by_filter.entry(filter).or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, key: &'a SessionKey, facts: &'a SessionQuotaFacts) {
        self.total = self.total.saturating_sub(1);
        for pod in &facts.sources {
            remove_holder(&mut self.by_source, &pod.uid(), key);
            remove_holder(&mut self.by_source_priority, &(pod.uid(), facts.priority), key);
        }
        for target in &facts.targets {
            decrement(&mut self.by_target, &&target.id);
            remove_holder(&mut self.by_target_vni, &(&target.id, facts.vni), key);
            for pod in &target.pods {
                remove_holder(&mut self.by_target_pod, &pod.uid(), key);
            }
        }
        for filter in distinct_filters(key, facts) {
            decrement(&mut self.by_filter, &filter);
        }
    }

    pub(super) fn source_sessions(&self, uid: &str) -> usize {
        self.by_source.get(uid).map_or(0, BTreeSet::len)
    }

    pub(super) fn first_holder<K: Ord>(map: &BTreeMap<K, BTreeSet<&'a SessionKey>>, slot: &K) -> Option<SessionKey> {
        map.get(slot).and_then(|holders| holders.first()).map(|k| (*k).clone())
    }
}

/// A session's filters as cluster-wide keys, each once (a filter named twice
/// is still one use of it).
pub(super) fn distinct_filters(key: &SessionKey, facts: &SessionQuotaFacts) -> BTreeSet<FilterKey> {
    facts.filters.iter().map(|f| FilterKey::new(key.namespace.clone(), f.clone())).collect()
}

fn remove_holder<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, slot: &K, holder: V) {
    if let Some(holders) = map.get_mut(slot) {
        holders.remove(&holder);
        if holders.is_empty() {
            map.remove(slot);
        }
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, slot: &K) {
    if let Some(count) = map.get_mut(slot) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(slot);
        }
    }
}
