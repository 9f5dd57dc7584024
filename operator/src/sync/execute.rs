//! Carries out the writes of one pass against the API server.
//!
//! Status and node state use server-side apply under the field manager
//! `podmirror-operator` (forced: the operator is the only owner of these
//! fields; agents own `status.nodes[]` entries, which it never sends).

use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use podmirror_crds::api::{MirrorFilter, MirrorNodeState, MirrorSession};
use serde_json::json;

use super::writes::{Kind, Write};
use crate::error::Error;

/// The operator's field manager (contracts).
pub const FIELD_MANAGER: &str = "podmirror-operator";

pub struct Executor {
    pub client: Client,
    pub recorder: Recorder,
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
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        match w {
            Write::SetFinalizers { kind, namespace, name, finalizers, resource_version } => {
                // The resourceVersion turns the merge patch into a
                // compare-and-swap: a concurrent change makes it 409.
                let patch = Patch::Merge(json!({
                    "metadata": { "finalizers": finalizers, "resourceVersion": resource_version }
                }));
                let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
                let object = format!("{namespace}/{name}");
                match kind {
                    Kind::MirrorSession => {
                        Api::<MirrorSession>::namespaced(self.client.clone(), namespace)
                            .patch(name, &pp, &patch)
                            .await
                            .map_err(kube_err("patching finalizers of", "MirrorSession", object))?;
                    }
                    Kind::MirrorFilter => {
                        Api::<MirrorFilter>::namespaced(self.client.clone(), namespace)
                            .patch(name, &pp, &patch)
                            .await
                            .map_err(kube_err("patching finalizers of", "MirrorFilter", object))?;
                    }
                }
            }
            Write::ApplyNodeState { name, spec } => {
                let body = json!({
                    "apiVersion": "podmirror.io/v1alpha1",
                    "kind": "MirrorNodeState",
                    "metadata": { "name": name },
                    "spec": &**spec,
                });
                Api::<MirrorNodeState>::all(self.client.clone())
                    .patch(name, &apply, &Patch::Apply(body))
                    .await
                    .map_err(kube_err("applying", "MirrorNodeState", name.clone()))?;
            }
            Write::DeleteNodeState { name } => {
                match Api::<MirrorNodeState>::all(self.client.clone()).delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(kube_err("deleting", "MirrorNodeState", name.clone())(e)),
                }
            }
            Write::ApplySessionStatus { namespace, name, status } => {
                let body = json!({
                    "apiVersion": "podmirror.io/v1alpha1",
                    "kind": "MirrorSession",
                    "status": status,
                });
                Api::<MirrorSession>::namespaced(self.client.clone(), namespace)
                    .patch_status(name, &apply, &Patch::Apply(body))
                    .await
                    .map_err(kube_err("applying status of", "MirrorSession", format!("{namespace}/{name}")))?;
            }
            Write::ApplyFilterStatus { namespace, name, status } => {
                let body = json!({
                    "apiVersion": "podmirror.io/v1alpha1",
                    "kind": "MirrorFilter",
                    "status": status,
                });
                Api::<MirrorFilter>::namespaced(self.client.clone(), namespace)
                    .patch_status(name, &apply, &Patch::Apply(body))
                    .await
                    .map_err(kube_err("applying status of", "MirrorFilter", format!("{namespace}/{name}")))?;
            }
            Write::RemoveNodeEntries { namespace, name, entries } => {
                // Highest index first, so earlier removals do not shift the
                // later ones; each `test` makes the patch fail (422) rather
                // than remove the wrong entry if the list changed meanwhile.
                let mut ops = Vec::new();
                let mut sorted = entries.clone();
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
                    .map_err(kube_err(
                        "removing entries of gone nodes from",
                        "MirrorSession",
                        format!("{namespace}/{name}"),
                    ))?;
            }
            Write::Event { regarding, warning, reason, note } => {
                let ev = Event {
                    type_: if *warning { EventType::Warning } else { EventType::Normal },
                    reason: reason.clone(),
                    note: Some(note.clone()),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                let kind =
                    if regarding.kind.as_deref() == Some("MirrorFilter") { "MirrorFilter" } else { "MirrorSession" };
                self.recorder.publish(&ev, regarding).await.map_err(kube_err(
                    "publishing an event on",
                    kind,
                    regarding.name.clone().unwrap_or_default(),
                ))?;
            }
        }
        Ok(())
    }
}
