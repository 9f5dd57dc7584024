//! The Kubernetes calls of a capture, each mapped to an actionable error.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use podmirror_crds::api::{ConditionReason, MirrorFilter, MirrorSession};
use podmirror_crds::model::plan::cluster::Consent;
use serde_json::Value;

use super::objects::Pods;
use crate::error::{Call, PluginError};
use crate::explain::PodInfo;
use crate::live::{FILTERS, SESSIONS, pod_info_of};

/// The label the chart puts on the collector's Service.
pub const COLLECTOR_LABEL: &str = "app.kubernetes.io/component=collector";
/// The name of the collector Service's HTTP port (live stream, files).
pub const COLLECTOR_HTTP_PORT: &str = "http";

/// The collector Service a capture targets and streams from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    pub namespace: String,
    pub service: String,
    /// The Service's `http` port's target port on the collector pods.
    pub http_port: u16,
    /// The Service's pod selector: where to port-forward to.
    pub selector: BTreeMap<String, String>,
    /// Its `podmirror.io/allow-mirror-from` annotation: which other
    /// namespaces' sessions may target it.
    pub allow_mirror_from: Option<String>,
}

/// The Service's consent annotation: the operator's constant and parser.
pub use podmirror_crds::model::plan::cluster::ALLOW_MIRROR_FROM;

impl Collector {
    /// May a session of `namespace` target this collector? Its own
    /// namespace always; others when listed (comma-separated) or `*`.
    pub fn allows(&self, namespace: &str) -> bool {
        Consent::parse(self.allow_mirror_from.as_deref()).allows(&self.namespace, namespace)
    }
}

pub async fn find_collector(client: &Client, namespace: &str) -> Result<Collector, PluginError> {
    let call = Call { verb: "list", resource: "services", namespace, name: None };
    let services = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(COLLECTOR_LABEL))
        .await
        .map_err(|e| call.error(e))?;
    let service = services.items.into_iter().next().ok_or_else(|| PluginError::NoCollector {
        namespace: namespace.to_owned(),
        label: COLLECTOR_LABEL.to_owned(),
    })?;
    let name = service.metadata.name.clone().unwrap_or_default();
    let unusable = |reason: &str| PluginError::CollectorUnusable {
        namespace: namespace.to_owned(),
        name: name.clone(),
        reason: reason.to_owned(),
    };
    let spec = service.spec.as_ref().ok_or_else(|| unusable("it has no spec"))?;
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(COLLECTOR_HTTP_PORT))
        .ok_or_else(|| unusable("it has no port named \"http\""))?;
    // A named target port would need the pod's container ports; the chart
    // uses numbers, and the Service port is the usual fallback.
    let target = match &port.target_port {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => *n,
        _ => port.port,
    };
    let http_port = u16::try_from(target).map_err(|_| unusable("its http port is out of range"))?;
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        return Err(unusable("it has no pod selector to port-forward to"));
    }
    let allow_mirror_from = service.metadata.annotations.as_ref().and_then(|a| a.get(ALLOW_MIRROR_FROM)).cloned();
    Ok(Collector { namespace: namespace.to_owned(), service: name, http_port, selector, allow_mirror_from })
}

/// The pods to capture: the named one must exist, a selector must match one.
pub async fn capture_pods(client: &Client, namespace: &str, pods: &Pods) -> Result<Vec<PodInfo>, PluginError> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    match pods {
        Pods::Named(name) => {
            let call = Call { verb: "get", resource: "pods", namespace, name: Some(name) };
            let pod = api.get(name).await.map_err(|e| call.error(e))?;
            Ok(vec![pod_info_of(&pod, namespace)])
        }
        Pods::Selected(labels) => {
            let selector = selector_text(labels);
            let call = Call { verb: "list", resource: "pods", namespace, name: None };
            let list = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| call.error(e))?;
            if list.items.is_empty() {
                return Err(PluginError::NoPodSelected { namespace: namespace.to_owned(), selector });
            }
            Ok(list.items.iter().map(|p| pod_info_of(p, namespace)).collect())
        }
    }
}

pub fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The sessions whose VNIs and priorities a new one must not repeat:
/// cluster-wide when allowed (VNIs are unique per target, and the collector
/// is shared), else those of the namespace.
pub async fn existing_sessions(client: &Client, namespace: &str) -> Result<Vec<MirrorSession>, PluginError> {
    let all = Api::<MirrorSession>::all(client.clone()).list(&ListParams::default()).await;
    match all {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let call = Call { verb: "list", resource: SESSIONS, namespace, name: None };
            Api::<MirrorSession>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .map_err(|e| call.error(e))
        }
        Err(e) => Err(Call { verb: "list", resource: SESSIONS, namespace: "(all namespaces)", name: None }.error(e)),
    }
}

fn dynamic_api<K: kube::Resource<DynamicType = ()>>(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

fn resource_of(kind: &str) -> &'static str {
    if kind == "MirrorFilter" { FILTERS } else { SESSIONS }
}

/// Create one object built by `objects.rs`.
pub async fn create(client: &Client, namespace: &str, object: &Value) -> Result<(), PluginError> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let call = Call { verb: "create", resource: resource_of(kind), namespace, name: None };
    let typed: DynamicObject =
        serde_json::from_value(object.clone()).map_err(|e| PluginError::bad(kind, e.to_string()))?;
    let api = if kind == "MirrorFilter" {
        dynamic_api::<MirrorFilter>(client, namespace)
    } else {
        dynamic_api::<MirrorSession>(client, namespace)
    };
    api.create(&PostParams::default(), &typed).await.map(|_| ()).map_err(|e| call.error(e))
}

/// Delete what a capture created; an object already gone is fine.
pub async fn delete(client: &Client, namespace: &str, kind: &str, name: &str) -> Result<(), PluginError> {
    let api = if kind == "MirrorFilter" {
        dynamic_api::<MirrorFilter>(client, namespace)
    } else {
        dynamic_api::<MirrorSession>(client, namespace)
    };
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Call { verb: "delete", resource: resource_of(kind), namespace, name: Some(name) }.error(e)),
    }
}

/// The session's `Accepted` condition, once the operator has written one:
/// `Ok(true)` accepted, `Err(Refused)` refused (holders filled in by the caller).
pub async fn wait_accepted(
    client: &Client,
    namespace: &str,
    name: &str,
    poll: Duration,
    timeout: Duration,
) -> Result<(), PluginError> {
    let api = dynamic_api::<MirrorSession>(client, namespace);
    let call = Call { verb: "get", resource: SESSIONS, namespace, name: Some(name) };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let object = api.get(name).await.map_err(|e| call.error(e))?;
        let accepted = object
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Accepted")));
        if let Some(c) = accepted {
            let text = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            if text("status") == "True" {
                return Ok(());
            }
            return Err(PluginError::Refused {
                session: format!("{namespace}/{name}"),
                reason: ConditionReason::parse(&text("reason")),
                message: text("message"),
                holders: Vec::new(),
            });
        }
        if tokio::time::Instant::now() + poll > deadline {
            return Err(PluginError::NotAccepted {
                session: format!("{namespace}/{name}"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}
