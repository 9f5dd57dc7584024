//! Writes this node's entry on a session's status with server-side apply,
//! under the field manager `podmirror-agent/<node>`: the API server merges
//! `status.nodes` by `node`, so each agent owns exactly its own entry and
//! never touches the operator's fields or other nodes' entries.

use ::kube::api::{Api, Patch, PatchParams};
use ::kube::Client;
use podmirror_crds::api::{MirrorSession, NodeMirrorStatus};
use podmirror_crds::model::SessionKey;
use serde_json::{json, Value};

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

pub async fn apply(client: &Client, node: &str, key: &SessionKey, entry: Option<&NodeMirrorStatus>) -> Result<(), AgentError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_only_this_nodes_entry() {
        let e = NodeMirrorStatus {
            node: "node-a".into(),
            programmed_interfaces: Some(vec!["pmv1".into()]),
            mirrored_packets: Some(3),
            mirrored_bytes: None,
            dropped: None,
            truncated: None,
            last_update: None,
            error: None,
        };
        let b = body(Some(&e));
        assert_eq!(b["status"], json!({"nodes": [{"node": "node-a", "programmedInterfaces": ["pmv1"], "mirroredPackets": 3}]}));
        assert!(b["status"].get("phase").is_none() && b["status"].get("conditions").is_none());
        assert_eq!(body(None)["status"], json!({"nodes": []}));
        assert_eq!(field_manager("node-a"), "podmirror-agent/node-a");
    }
}
