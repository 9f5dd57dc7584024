//! `standalone.yaml`: the pods and Services the standalone agent cannot ask an API
//! server about (format in `standalone/mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use podmirror_crds::model::ObjKey;
use serde::Deserialize;

use crate::core::{AgentError, PodKey};

/// The inventory's file name inside the standalone directory.
pub const INVENTORY_FILE: &str = "standalone.yaml";

fn default_namespace() -> String {
    "default".to_string()
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default)]
    pub pods: Vec<InventoryPod>,
    #[serde(default)]
    pub services: Vec<InventoryService>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryPod {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryService {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A pod of the inventory with its addresses parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    pub key: PodKey,
    pub ips: Vec<IpAddr>,
    pub interface: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A Service of the inventory with its addresses parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub endpoints: Vec<String>,
    pub annotations: BTreeMap<String, String>,
}

/// The checked inventory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckedInventory {
    pub pods: BTreeMap<PodKey, PodEntry>,
    pub services: BTreeMap<ObjKey, ServiceEntry>,
}

fn invalid(path: &Path, field: String, message: impl Into<String>) -> AgentError {
    AgentError::Invalid { path: path.to_path_buf(), object: "inventory".into(), field, message: message.into() }
}

fn parse_ips(path: &Path, field: &str, ips: &[String]) -> Result<Vec<IpAddr>, AgentError> {
    ips.iter()
        .enumerate()
        .map(|(i, ip)| {
            ip.trim()
                .parse()
                .map_err(|_| invalid(path, format!("{field}[{i}]"), format!("{ip:?} is not an IP address")))
        })
        .collect()
}

/// Parses and checks `standalone.yaml`; `path` is only used in messages.
pub fn parse_inventory(path: &Path, text: &str) -> Result<CheckedInventory, AgentError> {
    let raw = read_raw(path, text)?;
    let pods = check_pods(path, &raw.pods)?;
    check_unique_ips(path, &pods)?;
    let services = check_services(path, &raw.services)?;
    Ok(CheckedInventory { pods, services })
}

/// The YAML as written; an empty file is an empty inventory.
fn read_raw(path: &Path, text: &str) -> Result<Inventory, AgentError> {
    if text.trim().is_empty() {
        return Ok(Inventory::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let message = e.to_string();
        // serde_yaml prefixes the path of the offending field ("pods[0].ips: ...").
        let field = message.split_once(": ").map(|(f, _)| f).filter(|f| !f.contains(' ')).unwrap_or("(document)");
        invalid(path, field.to_string(), message.clone())
    })
}

fn check_pods(path: &Path, raw: &[InventoryPod]) -> Result<BTreeMap<PodKey, PodEntry>, AgentError> {
    let mut pods = BTreeMap::new();
    for (index, pod) in raw.iter().enumerate() {
        let field = format!("pods[{index}]");
        if pod.name.trim().is_empty() {
            return Err(invalid(path, format!("{field}.name"), "must not be empty"));
        }
        let ips = parse_ips(path, &format!("{field}.ips"), &pod.ips)?;
        if ips.is_empty() && pod.interface.is_none() {
            return Err(invalid(path, field, "needs ips or interface"));
        }
        let key = PodKey::new(pod.namespace.clone(), pod.name.clone());
        let entry = PodEntry { key: key.clone(), ips, interface: pod.interface.clone(), labels: pod.labels.clone() };
        if pods.insert(key.clone(), entry).is_some() {
            return Err(invalid(path, format!("{field}.name"), format!("pod {key} is listed twice")));
        }
    }
    Ok(pods)
}

/// Two pods with one IP would make the pod of a packet ambiguous.
fn check_unique_ips(path: &Path, pods: &BTreeMap<PodKey, PodEntry>) -> Result<(), AgentError> {
    let mut seen_ips: BTreeMap<IpAddr, PodKey> = BTreeMap::new();
    for pod in pods.values() {
        for ip in &pod.ips {
            if let Some(other) = seen_ips.insert(*ip, pod.key.clone()) {
                return Err(invalid(
                    path,
                    "pods".into(),
                    format!("IP {ip} is claimed by both {other} and {}", pod.key),
                ));
            }
        }
    }
    Ok(())
}

fn check_services(path: &Path, raw: &[InventoryService]) -> Result<BTreeMap<ObjKey, ServiceEntry>, AgentError> {
    let mut services = BTreeMap::new();
    for (index, service) in raw.iter().enumerate() {
        let field = format!("services[{index}]");
        if service.name.trim().is_empty() {
            return Err(invalid(path, format!("{field}.name"), "must not be empty"));
        }
        let addresses = parse_ips(path, &format!("{field}.addresses"), &service.addresses)?;
        let unique: BTreeSet<&IpAddr> = addresses.iter().collect();
        if unique.len() != addresses.len() {
            return Err(invalid(path, format!("{field}.addresses"), "lists an address twice"));
        }
        let key = ObjKey::new(service.namespace.clone(), service.name.clone());
        let entry = ServiceEntry {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            addresses,
            endpoints: service.endpoints.clone(),
            annotations: service.annotations.clone(),
        };
        if services.insert(key, entry).is_some() {
            return Err(invalid(
                path,
                format!("{field}.name"),
                format!("service {}/{} is listed twice", service.namespace, service.name),
            ));
        }
    }
    Ok(services)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/podmirror/standalone.yaml")
    }

    #[test]
    fn parses_pods_and_services_with_defaults() {
        let inv = parse_inventory(
            p(),
            "pods:\n- {name: a, ips: [10.0.0.1], labels: {app: x}}\n- {name: b, namespace: other, interface: veth9}\n\
             services:\n- {name: c, addresses: [10.0.0.9], annotations: {podmirror.io/allow-mirror-from: '*'}}\n",
        )
        .unwrap();
        let a = &inv.pods[&PodKey::new("default", "a")];
        assert_eq!(a.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(a.labels.get("app").map(String::as_str), Some("x"));
        assert_eq!(inv.pods[&PodKey::new("other", "b")].interface.as_deref(), Some("veth9"));
        assert_eq!(inv.services[&ObjKey::new("default", "c")].addresses.len(), 1);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            ("pods:\n- {name: a, ips: [10.0.0.300]}\n", "pods[0].ips[0]"),
            ("pods:\n- {name: a}\n", "pods[0]: needs ips or interface"),
            ("pods:\n- {name: a, ips: [10.0.0.1]}\n- {name: a, ips: [10.0.0.2]}\n", "pods[1].name"),
            ("pods:\n- {name: a, ips: [10.0.0.1]}\n- {name: b, ips: [10.0.0.1]}\n", "claimed by both"),
            ("pods:\n- {name: a, ip: [10.0.0.1]}\n", "unknown field `ip`"),
            ("services:\n- {name: s, addresses: [x]}\n", "services[0].addresses[0]"),
        ];
        for (text, expected) in cases {
            let msg = parse_inventory(p(), text).unwrap_err().to_string();
            assert!(msg.starts_with("/etc/podmirror/standalone.yaml: inventory: "), "{msg}");
            assert!(msg.contains(expected), "{text:?}: {msg}");
        }
    }
}
