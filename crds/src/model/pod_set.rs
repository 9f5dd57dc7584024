//! Pod identities as the quotas count them, built to be held by the
//! thousands: [`PodId`] is one shared allocation (cloning it is a reference
//! count), [`PodSet`] a sorted vector.
//!
//! Why not `String` fields and a `BTreeSet`: at the scale the operator must
//! carry (20,000 sessions, 10,000 pods, each pod in up to 3 sessions and
//! every session's target naming its endpoint pods) a B-tree leaf per
//! one-or-two-pod set and three owned strings per mention were most of the
//! planner's memory. Order, equality and hashing are by content, exactly as
//! with the owned fields and the B-tree set they replace.

use std::fmt;
use std::sync::Arc;

/// A pod, identified by uid (names are reused, uids are not); namespace and
/// name only make the messages readable. Cheap to clone: every clone shares
/// one allocation, so a caller that builds one `PodId` per pod and clones it
/// into every session that mentions the pod stores each pod's strings once.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodId(Arc<Parts>);

/// Field order is the order of [`PodId`]: uid first.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    uid: Box<str>,
    namespace: Box<str>,
    name: Box<str>,
}

impl PodId {
    pub fn new(uid: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodId(Arc::new(Parts {
            uid: uid.into().into_boxed_str(),
            namespace: namespace.into().into_boxed_str(),
            name: name.into().into_boxed_str(),
        }))
    }

    pub fn uid(&self) -> &str {
        &self.0.uid
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl fmt::Debug for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodId")
            .field("uid", &self.uid())
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .finish()
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pod {}/{}", self.namespace(), self.name())
    }
}

/// A set of pods: sorted, without duplicates. Sessions resolve to a handful
/// of pods (the default limit is 10), where a sorted vector is both the
/// smallest and the fastest set; lookups are binary searches. Ordered,
/// compared and hashed element by element in ascending order, like a
/// `BTreeSet`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodSet(Vec<PodId>);

impl PodSet {
    pub fn new() -> Self {
        PodSet(Vec::new())
    }

    /// Adds `pod`; `false` if it was already there.
    pub fn insert(&mut self, pod: PodId) -> bool {
        match self.0.binary_search(&pod) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, pod);
                true
            }
        }
    }

    /// Removes `pod`; `false` if it was not there.
    pub fn remove(&mut self, pod: &PodId) -> bool {
        match self.0.binary_search(pod) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains(&self, pod: &PodId) -> bool {
        self.0.binary_search(pod).is_ok()
    }

    /// Keeps the pods for which `keep` is true (order is kept, so the set
    /// stays sorted).
    pub fn retain(&mut self, keep: impl FnMut(&PodId) -> bool) {
        self.0.retain(keep);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, PodId> {
        self.0.iter()
    }

    pub fn first(&self) -> Option<&PodId> {
        self.0.first()
    }

    /// Sorts, removes duplicates and gives back spare capacity: sets are
    /// built once and then held for a whole pass or longer.
    fn normalize(&mut self) {
        self.0.sort_unstable();
        self.0.dedup();
        self.0.shrink_to_fit();
    }
}

impl fmt::Debug for PodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(&self.0).finish()
    }
}

impl FromIterator<PodId> for PodSet {
    fn from_iter<I: IntoIterator<Item = PodId>>(iter: I) -> Self {
        let mut set = PodSet(iter.into_iter().collect());
        set.normalize();
        set
    }
}

impl Extend<PodId> for PodSet {
    fn extend<I: IntoIterator<Item = PodId>>(&mut self, iter: I) {
        self.0.extend(iter);
        self.normalize();
    }
}

impl<const N: usize> From<[PodId; N]> for PodSet {
    fn from(pods: [PodId; N]) -> Self {
        pods.into_iter().collect()
    }
}

impl IntoIterator for PodSet {
    type Item = PodId;
    type IntoIter = std::vec::IntoIter<PodId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a PodSet {
    type Item = &'a PodId;
    type IntoIter = std::slice::Iter<'a, PodId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn pod(uid: &str, name: &str) -> PodId {
        PodId::new(uid, "ns", name)
    }

    #[test]
    fn pod_id_orders_and_compares_by_content_uid_first() {
        let a = pod("a", "z");
        let b = pod("b", "a");
        assert!(a < b, "uid decides before the name");
        assert_eq!(pod("a", "z"), a, "separately built ids of one pod are equal");
        assert_ne!(pod("a", "y"), a);
        assert_eq!(a.uid(), "a");
        assert_eq!(a.namespace(), "ns");
        assert_eq!(a.name(), "z");
        assert_eq!(a.to_string(), "pod ns/z");
    }

    #[test]
    fn pod_set_behaves_like_a_btree_set() {
        let pods: Vec<PodId> = ["d", "b", "a", "c", "b", "a"].iter().map(|u| pod(u, u)).collect();
        let set: PodSet = pods.iter().cloned().collect();
        let reference: BTreeSet<PodId> = pods.iter().cloned().collect();
        assert_eq!(set.len(), reference.len());
        assert!(set.iter().eq(reference.iter()), "ascending, duplicates removed");

        let mut grown = PodSet::new();
        assert!(grown.is_empty());
        for p in pods.iter().rev() {
            grown.insert(p.clone());
        }
        assert_eq!(grown, set, "insertion order does not matter");
        assert!(!grown.insert(pod("c", "c")), "a second insert is refused");
        assert!(grown.contains(&pod("c", "c")));
        assert!(!grown.contains(&pod("e", "e")));
        assert!(grown.remove(&pod("c", "c")));
        assert!(!grown.remove(&pod("c", "c")));
        grown.retain(|p| p.uid() != "a");
        assert!(grown.iter().map(PodId::uid).eq(["b", "d"]));
        assert_eq!(grown.first().map(PodId::uid), Some("b"));

        let mut extended = PodSet::from([pod("z", "z"), pod("a", "a")]);
        extended.extend([pod("m", "m"), pod("a", "a")]);
        assert!(extended.iter().map(PodId::uid).eq(["a", "m", "z"]));
    }

    #[test]
    fn pod_set_order_is_the_btree_set_order() {
        let sets = [vec!["a"], vec!["a", "b"], vec!["b"], vec![], vec!["a", "c"]];
        for x in &sets {
            for y in &sets {
                let px: PodSet = x.iter().map(|u| pod(u, u)).collect();
                let py: PodSet = y.iter().map(|u| pod(u, u)).collect();
                let bx: BTreeSet<PodId> = x.iter().map(|u| pod(u, u)).collect();
                let by: BTreeSet<PodId> = y.iter().map(|u| pod(u, u)).collect();
                assert_eq!(px.cmp(&py), bx.cmp(&by), "{x:?} vs {y:?}");
                assert_eq!(px == py, bx == by, "{x:?} vs {y:?}");
            }
        }
    }
}
