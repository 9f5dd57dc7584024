//! The per-node desired state: for each node, the sessions with a mirrorable
//! source pod there and those pods. Each agent watches its own object only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::api::{MirrorNodeStateSpec, NodePod, NodeSession};
use crate::model::SessionKey;

use super::SessionPlan;
use super::cluster::{Cluster, PodInfo};

/// Builds every node's spec. Nodes the cluster knows get an object even when
/// empty, so an agent can tell "nothing to do" from "not written yet".
pub fn node_states(
    cluster: &Cluster,
    sessions: &BTreeMap<SessionKey, SessionPlan>,
    pods: &HashMap<&str, &PodInfo>,
) -> BTreeMap<String, Arc<MirrorNodeStateSpec>> {
    #[derive(Default)]
    struct Acc<'a> {
        sessions: BTreeMap<&'a SessionKey, &'a Arc<NodeSession>>,
        pods: BTreeMap<(&'a str, &'a str), (&'a PodInfo, BTreeSet<String>)>,
    }
    let mut by_node: BTreeMap<&str, Acc<'_>> = cluster.nodes.iter().map(|n| (n.as_str(), Acc::default())).collect();
    for (key, plan) in sessions {
        let Some(effective) = &plan.effective else { continue };
        for (id, node) in &plan.programmed_pods {
            let Some(pod) = pods.get(id.uid()) else { continue };
            let acc = by_node.entry(node).or_default();
            acc.sessions.insert(key, effective);
            acc.pods
                .entry((pod.namespace.as_str(), pod.name.as_str()))
                .or_insert_with(|| (pod, BTreeSet::new()))
                .1
                .insert(key.to_string());
        }
    }
    by_node
        .into_iter()
        .map(|(node, acc)| {
            let spec = MirrorNodeStateSpec {
                node: node.to_owned(),
                sessions: acc.sessions.into_values().map(|s| NodeSession::clone(s)).collect(),
                pods: acc
                    .pods
                    .into_values()
                    .map(|(p, sessions)| NodePod {
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                        uid: p.uid.clone(),
                        ips: p.ips.iter().map(ToString::to_string).collect(),
                        sessions: sessions.into_iter().collect(),
                    })
                    .collect(),
            };
            (node.to_owned(), Arc::new(spec))
        })
        .collect()
}
