//! `explain -f DIR`: the objects of a directory like the standalone agent's
//! (`podmirror-agent --standalone DIR`).
//!
//! MirrorFilters and MirrorSessions are read with the model crate's YAML
//! reader (`podmirror_crds::api::parse`, the one shared parser of podmirror
//! objects). Pods come from two places: Kubernetes Pod objects in any file
//! (labels, `status.podIPs`) and the agent's inventory `standalone.yaml`
//! (`pods: [{name, namespace, ips, labels}]`). Only the inventory's pods are
//! read here; its other fields (interfaces, Services) are the agent's
//! business and are ignored, so this reader never refuses a file the agent
//! accepts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use podmirror_crds::api::parse::{ApiObject, parse_yaml_documents};
use serde::Deserialize;

use super::{PodInfo, Snapshot};
use crate::error::PluginError;

/// The standalone agent's inventory file name.
pub const INVENTORY_FILE: &str = "standalone.yaml";

#[derive(Deserialize, Default)]
struct Inventory {
    #[serde(default)]
    pods: Vec<InventoryPod>,
}

#[derive(Deserialize)]
struct InventoryPod {
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Just what explain reads of a Kubernetes Pod document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodDoc {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: PodMeta,
    status: Option<PodStatusDoc>,
}

#[derive(Deserialize, Default)]
struct PodMeta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PodStatusDoc {
    #[serde(default, rename = "podIPs")]
    pod_ips: Vec<PodIpDoc>,
}

#[derive(Deserialize)]
struct PodIpDoc {
    ip: String,
}

/// Every object of `dir` (not recursive), files in name order.
pub fn load_dir(dir: &Path) -> Result<Snapshot, PluginError> {
    let mut snapshot = Snapshot::default();
    let mut pods: BTreeMap<(String, String), PodInfo> = BTreeMap::new();
    for path in yaml_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        if path.file_name().and_then(|n| n.to_str()) == Some(INVENTORY_FILE) {
            inventory_pods(&path, &text, &mut pods)?;
            continue;
        }
        let objects =
            parse_yaml_documents(&text).map_err(|e| PluginError::File { path: path.clone(), reason: e.to_string() })?;
        for object in objects {
            match object {
                ApiObject::Filter(f) => snapshot.filters.push(*f),
                ApiObject::Session(s) => snapshot.sessions.push(*s),
                ApiObject::NodeState(_) | ApiObject::Other { .. } => {}
            }
        }
        kubernetes_pods(&text, &mut pods);
    }
    snapshot.pods = pods.into_values().collect();
    Ok(snapshot)
}

fn file_error(path: &Path, e: std::io::Error) -> PluginError {
    PluginError::File { path: path.to_path_buf(), reason: e.to_string() }
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn entry(pods: &mut BTreeMap<(String, String), PodInfo>, namespace: Option<String>, name: String) -> &mut PodInfo {
    let namespace = namespace.unwrap_or_else(|| "default".to_owned());
    pods.entry((namespace.clone(), name.clone())).or_insert_with(|| PodInfo { namespace, name, ..PodInfo::default() })
}

fn inventory_pods(path: &Path, text: &str, pods: &mut BTreeMap<(String, String), PodInfo>) -> Result<(), PluginError> {
    let inventory: Inventory = if text.trim().is_empty() {
        Inventory::default()
    } else {
        serde_yaml::from_str(text)
            .map_err(|e| PluginError::File { path: path.to_path_buf(), reason: format!("inventory: {e}") })?
    };
    for (index, pod) in inventory.pods.into_iter().enumerate() {
        let ips = pod
            .ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                ip.trim().parse::<IpAddr>().map_err(|_| PluginError::File {
                    path: path.to_path_buf(),
                    reason: format!("inventory: pods[{index}].ips[{i}]: {ip:?} is not an IP address"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let info = entry(pods, pod.namespace, pod.name);
        info.ips.extend(ips);
        info.labels.extend(pod.labels);
    }
    Ok(())
}

/// Kubernetes Pods among the documents (e.g. examples/seed-scenario/pods.yaml).
/// Anything that does not read as a Pod is not a Pod and is left alone.
fn kubernetes_pods(text: &str, pods: &mut BTreeMap<(String, String), PodInfo>) {
    for document in serde_yaml::Deserializer::from_str(text) {
        let Ok(doc) = PodDoc::deserialize(document) else {
            continue;
        };
        let Some(name) = doc.metadata.name else {
            continue;
        };
        if doc.api_version != "v1" || doc.kind != "Pod" {
            continue;
        }
        let info = entry(pods, doc.metadata.namespace, name);
        info.labels.extend(doc.metadata.labels);
        let ips = doc.status.map(|s| s.pod_ips).unwrap_or_default();
        info.ips.extend(ips.iter().filter_map(|i| i.ip.parse::<IpAddr>().ok()));
    }
}
