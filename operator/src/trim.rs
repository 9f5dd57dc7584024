//! What the watch caches keep of each object: the reflector stores hold every
//! object of a kind for the operator's lifetime, so fields nothing reads are
//! dropped in the watch stream (`WatchStreamExt::modify`), before the store.
//!
//! `metadata.managedFields` (server-side apply bookkeeping) goes everywhere:
//! nothing here reads it, and on a busy object it is often larger than the
//! rest of the metadata. Pods and Nodes are the bulk of a cluster and the
//! planner reads little of them (see `crate::index`), so they keep only that.
//! The tests check that `crate::index` reads the same from a trimmed object.

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use kube::Resource;

/// Every kind: drops `metadata.managedFields`.
pub fn managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Keeps what `index::pod` reads: identity, labels, deletion, `nodeName`,
/// `hostNetwork`, phase, addresses and the consent annotation. Containers,
/// volumes, container statuses and the other annotations (e.g.
/// `kubectl.kubernetes.io/last-applied-configuration`) are most of a pod and
/// are never read.
pub fn pod(p: &mut Pod) {
    let meta = &mut p.metadata;
    meta.managed_fields = None;
    meta.annotations = meta.annotations.take().and_then(|mut a| {
        let consent = a.remove(crate::index::ALLOW_MIRROR_FROM)?;
        Some([(crate::index::ALLOW_MIRROR_FROM.to_owned(), consent)].into())
    });
    meta.owner_references = None;
    p.spec =
        p.spec.take().map(|s| PodSpec { node_name: s.node_name, host_network: s.host_network, ..PodSpec::default() });
    p.status = p.status.take().map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        ..PodStatus::default()
    });
}

/// Only a Node's name is read (nodes that exist get a MirrorNodeState);
/// its status (images, conditions, addresses) is tens of kB per node.
pub fn node(n: &mut Node) {
    let meta = &mut n.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    n.spec = None;
    n.status = None;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::index;

    fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        match serde_json::from_value(v) {
            Ok(o) => o,
            Err(e) => panic!("test object does not deserialize: {e}"),
        }
    }

    fn managed() -> serde_json::Value {
        serde_json::json!([{"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "subresource": "status",
            "fieldsV1": {"f:status": {"f:conditions": {}, "f:podIP": {}, "f:podIPs": {}}}}])
    }

    /// A pod with something in every part `index::pod` could read, and more.
    fn full_pod(deleting: bool, host_network: bool) -> Pod {
        let mut meta = serde_json::json!({"name": "web-0", "namespace": "team", "uid": "u-1", "resourceVersion": "7",
            "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs"}],
            "managedFields": managed()});
        if deleting {
            meta["deletionTimestamp"] = "2026-01-02T00:00:00Z".into();
        }
        from_json(serde_json::json!({
            "metadata": meta,
            "spec": {"nodeName": "node-a", "hostNetwork": host_network, "serviceAccountName": "default",
                "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                "hostIP": "192.168.0.1", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "x", "ready": true,
                    "restartCount": 0}]}
        }))
    }

    #[test]
    fn a_trimmed_pod_reads_the_same() {
        for (deleting, host_network) in [(false, false), (true, false), (false, true)] {
            let full = full_pod(deleting, host_network);
            let mut trimmed = full.clone();
            pod(&mut trimmed);
            assert_eq!(index::pod(&trimmed).ok(), index::pod(&full).ok());
            assert!(index::pod(&full).is_ok());
            assert!(trimmed.metadata.managed_fields.is_none() && trimmed.metadata.annotations.is_none());
            assert!(trimmed.spec.as_ref().is_some_and(|s| s.containers.is_empty() && s.volumes.is_none()));
        }
        // Only `podIP` reported (older kubelets): still the same address.
        let mut full = full_pod(false, false);
        if let Some(s) = full.status.as_mut() {
            s.pod_ips = None;
        }
        let mut trimmed = full.clone();
        pod(&mut trimmed);
        assert_eq!(index::pod(&trimmed).ok(), index::pod(&full).ok());
        // A finished pod stays finished.
        let mut done = full_pod(false, false);
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        let mut trimmed = done.clone();
        pod(&mut trimmed);
        assert!(index::pod(&trimmed).is_ok_and(|p| p.deleting));
        // The consent annotation is the one annotation kept.
        let mut consenting = full_pod(false, false);
        consenting
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(index::ALLOW_MIRROR_FROM.into(), "team-a".into());
        let mut trimmed = consenting.clone();
        pod(&mut trimmed);
        assert_eq!(index::pod(&trimmed).ok(), index::pod(&consenting).ok());
        assert!(index::pod(&trimmed).is_ok_and(|p| p.consent.allows("team", "team-a")));
        assert_eq!(trimmed.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
    }

    #[test]
    fn a_trimmed_node_keeps_its_name() {
        let full: Node = from_json(serde_json::json!({
            "metadata": {"name": "node-a", "uid": "n-1", "labels": {"kubernetes.io/os": "linux"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"}, "managedFields": managed()},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"images": [{"names": ["nginx"], "sizeBytes": 1}], "addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}
        }));
        let mut trimmed = full.clone();
        node(&mut trimmed);
        let picture = |n: Node| {
            let objects = index::Objects {
                sessions: &[],
                filters: &[],
                pods: &[],
                services: &[],
                slices: &[],
                nodes: &[Arc::new(n)],
            };
            index::cluster(&objects).0.nodes
        };
        assert_eq!(picture(trimmed.clone()), picture(full));
        assert_eq!(trimmed.metadata.name.as_deref(), Some("node-a"));
        assert!(trimmed.status.is_none() && trimmed.metadata.managed_fields.is_none());
    }

    #[test]
    fn managed_fields_go_and_the_rest_stays() {
        let mut svc: k8s_openapi::api::core::v1::Service = from_json(serde_json::json!({
            "metadata": {"name": "collector", "namespace": "obs", "managedFields": managed(),
                "annotations": {(index::ALLOW_MIRROR_FROM): "*"}}
        }));
        let before = index::service(&svc).ok();
        managed_fields(&mut svc);
        assert!(svc.metadata.managed_fields.is_none());
        assert_eq!(index::service(&svc).ok(), before, "the consent annotation is kept");
    }
}
