//! The accepted set after a restart, from the node states written before.

use std::sync::Arc;

use crate::api::MirrorNodeStateSpec;
use crate::model::SessionKey;
use crate::model::quota::{PodId, SessionQuotaFacts};

use super::cluster::Cluster;
use super::resolve::{Interner, resolve};
use super::{Accepted, AcceptedSet, PodIndex};

/// Rebuilds the accepted set from the `MirrorNodeState` specs the operator
/// wrote before a restart (or before losing the lease), so a restart does not
/// turn a kept state into a refused newcomer. Only what reached a node can be
/// recovered: a session accepted with no mirrorable pod starts over as new.
pub fn recover<'a>(cluster: &Cluster, states: impl IntoIterator<Item = &'a MirrorNodeStateSpec>) -> AcceptedSet {
    let by_ip = PodIndex::of(cluster).by_ip;
    let mut shared = Interner::default();
    let mut out = AcceptedSet::new();
    for state in states {
        for ns in &state.sessions {
            let key = SessionKey::new(ns.namespace.clone(), ns.name.clone());
            let Some(info) = cluster.sessions.get(&key).filter(|s| s.uid == ns.uid) else { continue };
            let entry = out.entry(key.clone()).or_insert_with(|| {
                let (_, quota_target) = resolve(cluster, &by_ip, info, &mut shared);
                Accepted {
                    since: info.accepted_time,
                    session: Arc::new(ns.clone()),
                    facts: SessionQuotaFacts {
                        filters: vec![info.filter_ref.clone()],
                        priority: u16::try_from(ns.priority).unwrap_or(u16::MAX),
                        vni: u32::try_from(ns.vni).unwrap_or(u32::MAX),
                        sources: Default::default(),
                        targets: quota_target.into_iter().collect(),
                    },
                }
            });
            let label = key.to_string();
            for pod in state.pods.iter().filter(|p| p.sessions.contains(&label)) {
                entry.facts.sources.insert(PodId::new(pod.uid.clone(), pod.namespace.clone(), pod.name.clone()));
            }
        }
    }
    out
}
