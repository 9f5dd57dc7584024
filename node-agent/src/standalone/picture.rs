//! The standalone directory as the planner's cluster picture: what the
//! operator's watches would show if the files had been applied to a cluster
//! whose only node is this one and whose pods and Services are the
//! inventory's.
//!
//! What the API server would refuse (schema bounds, CEL rules, duplicates)
//! fails the whole load here; everything else is the planner's to decide.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use podmirror_crds::ModelError;
use podmirror_crds::model::compile::{compile_filter, validate_session_spec};
use podmirror_crds::model::plan::cluster::{
    ALLOW_MIRROR_FROM, Cluster, Consent, EndpointInfo, FilterInfo, PodInfo, ServiceInfo, SessionInfo,
};
use podmirror_crds::model::{FilterKey, ObjKey, SessionKey};

use super::files::{Loaded, Sourced};
use super::inventory::{PodEntry, ServiceEntry};
use crate::core::AgentError;

fn namespace_of(meta_ns: &Option<String>) -> String {
    meta_ns.clone().unwrap_or_else(|| "default".to_string())
}

fn object_error<T>(sourced: &Sourced<T>, kind: &str, name: &str, error: ModelError) -> AgentError {
    let ModelError::Invalid { field, reason } = error;
    AgentError::Invalid {
        path: sourced.path.clone(),
        object: if sourced.document == 0 {
            format!("{kind} {name}")
        } else {
            format!("document {}: {kind} {name}", sourced.document + 1)
        },
        field,
        message: reason,
    }
}

/// The picture of `loaded` with `node` as the only node, at `now`.
///
/// Sessions carry no `spec.schedule` here: the standalone loop applies the
/// schedules on every tick (`standalone::schedule`), as the files are only
/// planned again when they change. Sessions are "created" in the order of
/// the files, which is the order newcomers are admitted in.
pub fn cluster(loaded: &Loaded, node: &str, now: Timestamp) -> Result<Cluster, AgentError> {
    let mut c = Cluster { now, ..Cluster::default() };
    c.nodes.insert(node.to_owned());
    for sourced in &loaded.filters {
        let (key, info) = filter(sourced)?;
        if c.filters.insert(key.clone(), info).is_some() {
            let error = ModelError::invalid("metadata.name", format!("{key} is defined twice"));
            return Err(object_error(sourced, "MirrorFilter", &key.name, error));
        }
    }
    let mut seen = BTreeSet::new();
    for (order, sourced) in loaded.sessions.iter().enumerate() {
        let info = session(sourced, order)?;
        if !seen.insert(info.key.clone()) {
            let error = ModelError::invalid("metadata.name", format!("{} is defined twice", info.key));
            return Err(object_error(sourced, "MirrorSession", &info.key.name, error));
        }
        c.sessions.insert(info.key.clone(), info);
    }
    for entry in loaded.inventory.pods.values() {
        c.add_pod(pod(entry, node));
    }
    for entry in loaded.inventory.services.values() {
        service(&mut c, entry);
    }
    Ok(c)
}

fn filter(sourced: &Sourced<podmirror_crds::api::MirrorFilter>) -> Result<(FilterKey, FilterInfo), AgentError> {
    let f = &sourced.object;
    let name = f.metadata.name.clone().unwrap_or_default();
    compile_filter(&f.spec).map_err(|e| object_error(sourced, "MirrorFilter", &name, e))?;
    let key = FilterKey::new(namespace_of(&f.metadata.namespace), name);
    let info = FilterInfo::read(&key, f);
    Ok((key, info))
}

fn session(sourced: &Sourced<podmirror_crds::api::MirrorSession>, order: usize) -> Result<SessionInfo, AgentError> {
    let s = &sourced.object;
    let name = s.metadata.name.clone().unwrap_or_default();
    validate_session_spec(&s.spec).map_err(|e| object_error(sourced, "MirrorSession", &name, e))?;
    let key = SessionKey::new(namespace_of(&s.metadata.namespace), name);
    let mut info = SessionInfo::read(key, s.metadata.uid.clone().unwrap_or_default(), s);
    info.schedule = None;
    let order = i64::try_from(order).unwrap_or(i64::MAX);
    info.created = Timestamp::from_second(order).map(|t| t.to_string()).unwrap_or_default();
    Ok(info)
}

/// An inventory pod, on this node. Its key is its uid (the inventory has no
/// uids); the inventory lists no pod annotations, so an `ip` target at one
/// of its pods needs no consent, as before the planner was shared.
fn pod(entry: &PodEntry, node: &str) -> PodInfo {
    PodInfo {
        namespace: entry.key.namespace.clone(),
        name: entry.key.name.clone(),
        uid: entry.key.to_string(),
        labels: entry.labels.clone(),
        node: Some(node.to_owned()),
        ips: entry.ips.clone(),
        host_network: false,
        interface_known: entry.interface.is_some(),
        deleting: false,
        consent: Consent::Any,
    }
}

/// An inventory Service: its addresses are its ready endpoints.
fn service(c: &mut Cluster, entry: &ServiceEntry) {
    let key = ObjKey::new(entry.namespace.clone(), entry.name.clone());
    let consent = Consent::parse(entry.annotations.get(ALLOW_MIRROR_FROM).map(String::as_str));
    let endpoints = entry.addresses.iter().map(|ip| EndpointInfo { ip: *ip, pod: None }).collect();
    c.endpoints.entry(key.clone()).or_default().insert(super::INVENTORY_FILE.to_owned(), endpoints);
    c.add_service(ServiceInfo { namespace: key.namespace, name: key.name, consent, cluster_ips: Vec::new() });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::super::files::parse_objects;
    use super::super::inventory::parse_inventory;
    use super::super::resolve::resolve;
    use super::*;

    const OBJECTS: &str = "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: f}\nspec: {}\n---\n\
        apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {name: s}\nspec:\n  priority: 1\n  vni: 1\n  \
        filterRef: {name: f}\n  sources: [{podName: src}]\n  target: {ip: 10.0.0.9}\n";

    fn loaded(inventory: &str) -> Loaded {
        let mut loaded = Loaded::default();
        parse_objects(Path::new("objects.yaml"), OBJECTS, &mut loaded).unwrap();
        loaded.inventory = parse_inventory(Path::new("standalone.yaml"), inventory).unwrap();
        loaded
    }

    /// The inventory may name a pod's host interface instead of its IPs: the
    /// planner must count such a pod mirrorable, as the agent finds its
    /// interface by name.
    #[test]
    fn a_pod_listed_by_interface_alone_is_mirrored() {
        let loaded = loaded("pods:\n- {name: src, interface: veth-src}\n");
        let pod = &cluster(&loaded, "n", Timestamp::UNIX_EPOCH).unwrap().pods["default"]["src"];
        assert!(pod.interface_known && pod.ips.is_empty() && pod.node.as_deref() == Some("n"));
        let r = resolve(&loaded, &Default::default(), "n", Default::default()).unwrap();
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        let names: Vec<&str> = r.node_state.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["src"]);
        assert_eq!(r.interfaces.values().collect::<Vec<_>>(), ["veth-src"]);
    }

    /// Without an address or an interface the agent could not find the pod:
    /// it is reported (as `SourceNotReady` would say in a cluster), not programmed.
    #[test]
    fn a_source_without_address_is_reported_not_programmed() {
        let mut loaded = loaded("pods:\n- {name: src, interface: veth-src}\n");
        let entry = loaded.inventory.pods.values_mut().next().unwrap();
        entry.interface = None;
        let r = resolve(&loaded, &Default::default(), "n", Default::default()).unwrap();
        assert!(r.node_state.pods.is_empty(), "{:?}", r.node_state);
        let refusals: Vec<String> = r.refusals.iter().map(ToString::to_string).collect();
        assert!(refusals.iter().any(|m| m.contains("default/s") && m.contains("src is NoAddress")), "{refusals:?}");
    }
}
