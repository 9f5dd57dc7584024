//! Carries out the writes of one pass against the API server.
//!
//! Status and node state use server-side apply under the field manager
//! `podmirror-operator` (forced: the operator is the only owner of these
//! fields; agents own `status.nodes[]` entries, which it never sends).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource};
use podmirror_crds::api::{MirrorFilter, MirrorNodeState, MirrorNodeStateSpec, MirrorSession};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::writes::{Kind, Write};
use crate::error::Error;

/// The operator's field manager (contracts).
pub const FIELD_MANAGER: &str = "podmirror-operator";

pub struct Executor {
    pub client: Client,
    pub recorder: Recorder,
}

/// A namespaced podmirror kind whose finalizers and status the operator writes.
trait OwnedKind: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug {
    /// The kind, as sent in an applied body and named in errors.
    const KIND: &'static str;
}

impl OwnedKind for MirrorSession {
    const KIND: &'static str = "MirrorSession";
}

impl OwnedKind for MirrorFilter {
    const KIND: &'static str = "MirrorFilter";
}

fn kube_err(action: &'static str, kind: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let object = object.into();
    move |source| Error::Kube { action, kind, object, source }
}

impl Executor {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = kube::runtime::events::Reporter { controller: FIELD_MANAGER.into(), instance };
        Executor { recorder: Recorder::new(client.clone(), reporter), client }
    }

    pub async fn execute(&self, w: &Write) -> Result<(), Error> {
        match w {
            Write::SetFinalizers { kind, namespace, name, finalizers, resource_version } => {
                // The resourceVersion turns the merge patch into a
                // compare-and-swap: a concurrent change makes it 409.
                let patch = Patch::Merge(json!({
                    "metadata": { "finalizers": finalizers, "resourceVersion": resource_version }
                }));
                match kind {
                    Kind::MirrorSession => self.merge_patch::<MirrorSession>(namespace, name, &patch).await,
                    Kind::MirrorFilter => self.merge_patch::<MirrorFilter>(namespace, name, &patch).await,
                }
            }
            Write::ApplyNodeState { name, spec } => self.apply_node_state(name, spec).await,
            Write::DeleteNodeState { name } => self.delete_node_state(name).await,
            Write::ApplySessionStatus { namespace, name, status } => {
                self.apply_status::<MirrorSession>(namespace, name, status).await
            }
            Write::ApplyFilterStatus { namespace, name, status } => {
                self.apply_status::<MirrorFilter>(namespace, name, status).await
            }
            Write::RemoveNodeEntries { namespace, name, entries } => {
                self.remove_node_entries(namespace, name, entries).await
            }
            Write::Event { regarding, warning, reason, note } => {
                self.publish_event(regarding, *warning, reason, note).await
            }
        }
    }

    /// Server-side applies one node's whole state.
    async fn apply_node_state(&self, name: &str, spec: &MirrorNodeStateSpec) -> Result<(), Error> {
        let body = json!({
            "apiVersion": "podmirror.io/v1alpha1",
            "kind": "MirrorNodeState",
            "metadata": { "name": name },
            "spec": spec,
        });
        Api::<MirrorNodeState>::all(self.client.clone())
            .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
            .await
            .map_err(kube_err("applying", "MirrorNodeState", name))?;
        Ok(())
    }

    /// Deletes one node's state; already gone (404) is done.
    async fn delete_node_state(&self, name: &str) -> Result<(), Error> {
        match Api::<MirrorNodeState>::all(self.client.clone()).delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(kube_err("deleting", "MirrorNodeState", name)(e)),
        }
    }

    /// JSON-patches the given `(index, node)` entries out of a session's
    /// `status.nodes`.
    async fn remove_node_entries(&self, namespace: &str, name: &str, entries: &[(usize, String)]) -> Result<(), Error> {
        // Highest index first, so earlier removals do not shift the
        // later ones; each `test` makes the patch fail (422) rather
        // than remove the wrong entry if the list changed meanwhile.
        let mut ops = Vec::new();
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (i, node) in sorted {
            ops.push(json!({"op": "test", "path": format!("/status/nodes/{i}/node"), "value": node}));
            ops.push(json!({"op": "remove", "path": format!("/status/nodes/{i}")}));
        }
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|source| Error::Serialize { what: "a JSON patch", source })?;
        Api::<MirrorSession>::namespaced(self.client.clone(), namespace)
            .patch_status(
                name,
                &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() },
                &Patch::<()>::Json(patch),
            )
            .await
            .map_err(kube_err("removing entries of gone nodes from", "MirrorSession", format!("{namespace}/{name}")))?;
        Ok(())
    }

    /// Publishes one Event about the `regarding` session or filter.
    async fn publish_event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
    ) -> Result<(), Error> {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let kind = if regarding.kind.as_deref() == Some("MirrorFilter") { "MirrorFilter" } else { "MirrorSession" };
        self.recorder.publish(&ev, regarding).await.map_err(kube_err(
            "publishing an event on",
            kind,
            regarding.name.clone().unwrap_or_default(),
        ))
    }

    /// The finalizers' merge patch of one object (its `resourceVersion`
    /// inside makes it a compare-and-swap).
    async fn merge_patch<K: OwnedKind>(
        &self,
        namespace: &str,
        name: &str,
        patch: &Patch<serde_json::Value>,
    ) -> Result<(), Error> {
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
        Api::<K>::namespaced(self.client.clone(), namespace).patch(name, &pp, patch).await.map_err(kube_err(
            "patching finalizers of",
            K::KIND,
            format!("{namespace}/{name}"),
        ))?;
        Ok(())
    }

    /// Server-side applies the operator's part of one object's status.
    async fn apply_status<K: OwnedKind>(
        &self,
        namespace: &str,
        name: &str,
        status: &impl Serialize,
    ) -> Result<(), Error> {
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::KIND,
            "status": status,
        });
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
            .await
            .map_err(kube_err("applying status of", K::KIND, format!("{namespace}/{name}")))?;
        Ok(())
    }
}
