//! Talking to the cluster: the client from kubectl's flags, and the reads of
//! `explain` and `status`. Every API error goes through [`Call::error`] so the
//! user reads what to do, not an HTTP status.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use podmirror_crds::api::{MirrorFilter, MirrorSession};

use crate::error::{Call, PluginError};
use crate::explain::{PodInfo, Snapshot};
use crate::status::StatusRow;

pub const SESSIONS: &str = "mirrorsessions.podmirror.io";
pub const FILTERS: &str = "mirrorfilters.podmirror.io";

/// A client as kubectl would build it from `--kubeconfig` and `--context`
/// (else `$KUBECONFIG`, `~/.kube/config`, or the in-cluster account), and
/// the namespace to use when `-n` is not given.
pub async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    let config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &options).await.map_err(|e| e.to_string())
        }
        None if context.is_some() => Config::from_kubeconfig(&options).await.map_err(|e| e.to_string()),
        None => Config::infer().await.map_err(|e| e.to_string()),
    }
    .map_err(PluginError::Config)?;
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(PluginError::Kube)?;
    Ok((client, namespace))
}

/// A pod's name, labels and IPs.
pub async fn pod_info(client: &Client, namespace: &str, name: &str) -> Result<PodInfo, PluginError> {
    let call = Call { verb: "get", resource: "pods", namespace, name: Some(name) };
    let pod = Api::<Pod>::namespaced(client.clone(), namespace).get(name).await.map_err(|e| call.error(e))?;
    Ok(pod_info_of(&pod, namespace))
}

pub fn pod_info_of(pod: &Pod, namespace: &str) -> PodInfo {
    let ips = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().filter_map(|i| i.ip.parse().ok()).collect())
        .unwrap_or_default();
    PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_else(|| namespace.to_owned()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips,
    }
}

/// The pod, and the sessions and filters of its namespace, for `explain`.
pub async fn snapshot(client: &Client, namespace: &str, pod: &str) -> Result<Snapshot, PluginError> {
    let pod = pod_info(client, namespace, pod).await?;
    let sessions = list::<MirrorSession>(client, namespace, SESSIONS).await?;
    let filters = list::<MirrorFilter>(client, namespace, FILTERS).await?;
    Ok(Snapshot { pods: vec![pod], sessions, filters, live: true })
}

async fn list<K>(client: &Client, namespace: &str, resource: &str) -> Result<Vec<K>, PluginError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let call = Call { verb: "list", resource, namespace, name: None };
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| call.error(e))
}

/// Sessions for `status`, read untyped so that fields newer than this
/// plugin (a `skipped` counter) are still shown. `namespace = None` is `-A`.
pub async fn status_rows(
    client: &Client,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<StatusRow>, PluginError> {
    let resource = ApiResource::erase::<MirrorSession>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let call = Call {
        verb: if name.is_some() { "get" } else { "list" },
        resource: SESSIONS,
        namespace: namespace.unwrap_or("(all namespaces)"),
        name,
    };
    let objects = match name {
        Some(name) => vec![api.get(name).await.map_err(|e| call.error(e))?],
        None => api.list(&ListParams::default()).await.map_err(|e| call.error(e))?.items,
    };
    objects
        .into_iter()
        .map(|o| {
            let value = serde_json::to_value(&o).map_err(|e| PluginError::bad("MirrorSession", e.to_string()))?;
            StatusRow::from_value(value)
        })
        .collect()
}
