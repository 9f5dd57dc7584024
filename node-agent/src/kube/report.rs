//! Writes this node's entry on a session's status with server-side apply,
//! under the field manager `podmirror-agent/<node>`: the API server merges
//! `status.nodes` by `node`, so each agent owns exactly its own entry and
//! never touches the operator's fields or other nodes' entries.

use ::kube::Client;
use ::kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeSet;

use podmirror_crds::api::{MirrorNodeState, MirrorSession, NodeMirrorStatus};
use podmirror_crds::model::SessionKey;
use serde_json::{Value, json};

use crate::core::AgentError;

/// `podmirror-agent/<node>` (contracts).
pub fn field_manager(node: &str) -> String {
    format!("podmirror-agent/{node}")
}

/// The apply body: only our entry, or an empty list to withdraw it (SSA
/// removes list-map items a manager owned and no longer sends).
pub fn body(entry: Option<&NodeMirrorStatus>) -> Value {
    let nodes: Vec<&NodeMirrorStatus> = entry.into_iter().collect();
    json!({
        "apiVersion": "podmirror.io/v1alpha1",
        "kind": "MirrorSession",
        "status": { "nodes": nodes },
    })
}

pub async fn apply(
    client: &Client,
    node: &str,
    key: &SessionKey,
    entry: Option<&NodeMirrorStatus>,
) -> Result<(), AgentError> {
    let api = Api::<MirrorSession>::namespaced(client.clone(), &key.namespace);
    let pp = PatchParams::apply(&field_manager(node)).force();
    match api.patch_status(&key.name, &pp, &Patch::Apply(body(entry))).await {
        Ok(_) => Ok(()),
        // Withdrawing from a session that is gone is done.
        Err(::kube::Error::Api(s)) if s.code == 404 && entry.is_none() => Ok(()),
        Err(e) => Err(AgentError::DatapathGlobal {
            op: "status report",
            message: format!("applying the node entry on MirrorSession {key}: {e}"),
        }),
    }
}

/// The apply body of this node's record on its MirrorNodeState status.
pub fn record_body(sessions: &BTreeSet<SessionKey>) -> Value {
    let list: Vec<String> = sessions.iter().map(ToString::to_string).collect();
    json!({
        "apiVersion": "podmirror.io/v1alpha1",
        "kind": "MirrorNodeState",
        "status": { "reportedSessions": list },
    })
}

/// Records on this node's MirrorNodeState which sessions hold an entry of
/// ours (`status.reportedSessions`), so a restarted agent can withdraw the
/// ones that left meanwhile. Without the object (the operator has not written
/// it, or the Node is gone) an empty record is trivially true.
pub async fn record(client: &Client, node: &str, sessions: &BTreeSet<SessionKey>) -> Result<(), AgentError> {
    let api = Api::<MirrorNodeState>::all(client.clone());
    let pp = PatchParams::apply(&field_manager(node)).force();
    match api.patch_status(node, &pp, &Patch::Apply(record_body(sessions))).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.code == 404 && sessions.is_empty() => Ok(()),
        Err(e) => Err(AgentError::DatapathGlobal {
            op: "status report",
            message: format!("recording the reported sessions on MirrorNodeState {node}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_only_this_nodes_entry() {
        let e = NodeMirrorStatus {
            node: "node-a".into(),
            programmed_generation: Some(4),
            programmed_interfaces: Some(vec!["pmv1".into()]),
            mirrored_packets: Some(3),
            mirrored_bytes: None,
            dropped: None,
            truncated: None,
            skipped: None,
            last_update: None,
            error: None,
        };
        let b = body(Some(&e));
        assert_eq!(
            b["status"],
            json!({"nodes": [{"node": "node-a", "programmedGeneration": 4, "programmedInterfaces": ["pmv1"], "mirroredPackets": 3}]})
        );
        assert!(b["status"].get("phase").is_none() && b["status"].get("conditions").is_none());
        assert_eq!(body(None)["status"], json!({"nodes": []}));
        assert_eq!(field_manager("node-a"), "podmirror-agent/node-a");
    }

    #[test]
    fn record_body_lists_sessions_as_namespace_slash_name() {
        let s: BTreeSet<SessionKey> = [SessionKey::new("b", "y"), SessionKey::new("a", "x")].into();
        let b = record_body(&s);
        assert_eq!(b["kind"], "MirrorNodeState");
        assert_eq!(b["status"], json!({"reportedSessions": ["a/x", "b/y"]}));
        assert_eq!(record_body(&BTreeSet::new())["status"], json!({"reportedSessions": []}));
    }
}
