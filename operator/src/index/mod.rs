//! From Kubernetes objects to the planner's plain structs (`plan::cluster`).
//!
//! Each function reads one object and never fails the whole pass: an object
//! missing what the planner needs (no name, no uid) is skipped with a reason,
//! and a spec the model refuses is carried as `invalid` so the session's
//! `Accepted` condition can name the field.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use podmirror_crds::api::{MirrorFilter, MirrorSession};
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::quota::PodId;

use crate::error::Error;
pub use crate::plan::cluster::ALLOW_MIRROR_FROM;
use crate::plan::cluster::{Consent, EndpointInfo, FilterInfo, ObjKey, PodInfo, ServiceInfo, SessionInfo};
/// The label EndpointSlices carry to name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn ns_name<K: kube::Resource>(obj: &K, kind: &'static str) -> Result<(String, String), Error> {
    let name =
        obj.meta().name.clone().ok_or(Error::MissingField { kind, object: "?".into(), field: "metadata.name" })?;
    let ns = obj.meta().namespace.clone().ok_or_else(|| Error::MissingField {
        kind,
        object: name.clone(),
        field: "metadata.namespace",
    })?;
    Ok((ns, name))
}

pub fn pod(p: &Pod) -> Result<PodInfo, Error> {
    let (namespace, name) = ns_name(p, "Pod")?;
    let uid = p.uid().ok_or_else(|| Error::MissingField {
        kind: "Pod",
        object: format!("{namespace}/{name}"),
        field: "metadata.uid",
    })?;
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|v| v.iter().filter_map(|i| i.ip.parse().ok()).collect())
        .unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = status.and_then(|s| s.pod_ip.as_ref()).and_then(|i| i.parse().ok())
    {
        ips.push(ip);
    }
    let finished = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    Ok(PodInfo {
        labels: p.labels().clone(),
        node: spec.and_then(|s| s.node_name.clone()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        deleting: p.metadata.deletion_timestamp.is_some() || finished,
        consent: Consent::parse(p.annotations().get(ALLOW_MIRROR_FROM).map(String::as_str)),
        interface_known: false,
        namespace,
        name,
        uid,
        ips,
    })
}

pub fn service(s: &Service) -> Result<ServiceInfo, Error> {
    let (namespace, name) = ns_name(s, "Service")?;
    let consent = Consent::parse(s.annotations().get(ALLOW_MIRROR_FROM).map(String::as_str));
    let spec = s.spec.as_ref();
    let mut cluster_ips: Vec<IpAddr> = spec
        .and_then(|s| s.cluster_ips.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.and_then(|s| s.cluster_ip.as_ref()))
        .filter_map(|ip| ip.parse().ok()) // "None" (headless) is no address
        .collect();
    cluster_ips.sort();
    cluster_ips.dedup();
    Ok(ServiceInfo { namespace, name, consent, cluster_ips })
}

/// `(service, slice name, ready endpoints)`; `None` for a slice of no Service.
pub fn endpoint_slice(e: &EndpointSlice) -> Result<Option<(ObjKey, String, Vec<EndpointInfo>)>, Error> {
    let (namespace, name) = ns_name(e, "EndpointSlice")?;
    let Some(service) = e.labels().get(SERVICE_NAME_LABEL) else { return Ok(None) };
    let mut out = Vec::new();
    for ep in &e.endpoints {
        // Unset `ready` means ready (EndpointSlice API convention).
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        let pod = ep.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(|r| {
            Some(PodId::new(r.uid.clone()?, r.namespace.clone().unwrap_or_else(|| namespace.clone()), r.name.clone()?))
        });
        for a in &ep.addresses {
            if let Ok(ip) = a.parse() {
                out.push(EndpointInfo { ip, pod: pod.clone() });
            }
        }
    }
    Ok(Some((ObjKey::new(namespace, service.clone()), name, out)))
}

pub fn filter(f: &MirrorFilter) -> Result<FilterInfo, Error> {
    let (namespace, name) = ns_name(f, "MirrorFilter")?;
    Ok(FilterInfo::read(&ObjKey::new(namespace, name), f))
}

pub fn session(s: &MirrorSession) -> Result<SessionInfo, Error> {
    let (namespace, name) = ns_name(s, "MirrorSession")?;
    let uid = s.uid().ok_or_else(|| Error::MissingField {
        kind: "MirrorSession",
        object: format!("{namespace}/{name}"),
        field: "metadata.uid",
    })?;
    Ok(SessionInfo::read(SessionKey::new(namespace, name), uid, s))
}

#[cfg(test)]
mod tests;

/// The planner's picture from lists of objects (what the watch caches hold).
/// Objects that cannot be read are skipped; their errors are returned for
/// logging and metrics.
pub struct Objects<'a> {
    pub sessions: &'a [std::sync::Arc<MirrorSession>],
    pub filters: &'a [std::sync::Arc<MirrorFilter>],
    pub pods: &'a [std::sync::Arc<Pod>],
    pub services: &'a [std::sync::Arc<Service>],
    pub slices: &'a [std::sync::Arc<EndpointSlice>],
    pub nodes: &'a [std::sync::Arc<k8s_openapi::api::core::v1::Node>],
}

pub fn cluster(o: &Objects<'_>) -> (crate::plan::cluster::Cluster, Vec<Error>) {
    let mut c = crate::plan::cluster::Cluster::default();
    let mut errors = Vec::new();
    for s in o.sessions {
        match session(s) {
            Ok(info) => {
                c.sessions.insert(info.key.clone(), info);
            }
            Err(e) => errors.push(e),
        }
    }
    for f in o.filters {
        match filter(f) {
            Ok(info) => {
                c.filters.insert(ObjKey::new(info.namespace.clone(), info.name.clone()), info);
            }
            Err(e) => errors.push(e),
        }
    }
    for p in o.pods {
        match pod(p) {
            Ok(info) => c.add_pod(info),
            Err(e) => errors.push(e),
        }
    }
    for s in o.services {
        match service(s) {
            Ok(info) => c.add_service(info),
            Err(e) => errors.push(e),
        }
    }
    for e in o.slices {
        match endpoint_slice(e) {
            Ok(Some((svc, slice, eps))) => {
                c.endpoints.entry(svc).or_default().insert(slice, eps);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    c.nodes.extend(o.nodes.iter().filter_map(|n| n.metadata.name.clone()));
    (c, errors)
}
