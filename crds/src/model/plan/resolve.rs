//! Resolution of one session against the cluster picture: its filter, its
//! source pods and its target addresses. Pure; the planner calls it for every
//! session on every pass, so it never looks at why it was called.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::api::{ConditionReason, SourceState};
use crate::model::quota::{PodId, ResolvedTarget};

use super::cluster::{Cluster, ObjKey, PodInfo, SessionInfo, SourceRef, TargetRef};

/// Pods by address, for "the pod owning a target IP" (a source may not be a target).
pub type PodsByIp<'a> = HashMap<std::net::IpAddr, &'a PodInfo>;

pub fn pod_id(p: &PodInfo) -> PodId {
    PodId::new(p.uid.clone(), p.namespace.clone(), p.name.clone())
}

/// Identities shared for one pass: one [`PodId`] per pod and one name per
/// node, cloned (a reference count) into every session that mentions them
/// instead of copies of their strings. A pod is a source of up to 3
/// sessions, and a node hosts the source pods of hundreds.
#[derive(Default)]
pub struct Interner {
    pods: HashSet<ByUid>,
    nodes: HashSet<Arc<str>>,
}

impl Interner {
    pub fn pod(&mut self, p: &PodInfo) -> PodId {
        if let Some(known) = self.pods.get(p.uid.as_str()) {
            return known.0.clone();
        }
        let id = pod_id(p);
        self.pods.insert(ByUid(id.clone()));
        id
    }

    pub fn node(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.nodes.get(name) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.nodes.insert(name.clone());
        name
    }
}

/// A [`PodId`] hashed and compared by uid alone, so it can be found by a `&str`.
struct ByUid(PodId);

impl PartialEq for ByUid {
    fn eq(&self, other: &Self) -> bool {
        self.0.uid() == other.0.uid()
    }
}

impl Eq for ByUid {}

impl std::hash::Hash for ByUid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.uid().hash(state);
    }
}

impl std::borrow::Borrow<str> for ByUid {
    fn borrow(&self) -> &str {
        self.0.uid()
    }
}

/// A source pod as resolved, with why it cannot be mirrored if it cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSource {
    /// The pod's identity (uid, namespace, name), shared for the pass.
    pub pod: PodId,
    pub node: Option<Arc<str>>,
    pub ips: Vec<IpAddr>,
    pub state: Readiness,
}

/// Why a source pod is or is not mirrorable: the detail behind the status's
/// [`SourceState`] (see [`Readiness::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Scheduled and with IPs: mirrorable.
    Ready,
    /// Not yet on a node.
    Unscheduled,
    /// On a node, no IP reported yet.
    NoAddress,
    /// Host-network pod: no veth of its own.
    HostNetwork,
}

impl Readiness {
    /// The state `status.sources[]` shows for it.
    pub fn state(self) -> SourceState {
        match self {
            Readiness::Ready => SourceState::Resolved,
            Readiness::HostNetwork => SourceState::Excluded,
            Readiness::Unscheduled | Readiness::NoAddress => SourceState::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "Ready",
            Readiness::Unscheduled => "Unscheduled",
            Readiness::NoAddress => "NoAddress",
            Readiness::HostNetwork => "HostNetwork",
        }
    }
}

/// A problem stated for a condition: its reason and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: ConditionReason,
    pub message: String,
}

impl Problem {
    pub fn new(reason: ConditionReason, message: impl Into<String>) -> Self {
        Problem { reason, message: message.into() }
    }
}

/// Everything resolution found for one session.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub filter: Result<ObjKey, Problem>,
    /// Resolved pods, sorted by name; may be empty.
    pub sources: Vec<ResolvedSource>,
    /// Set when a named pod is missing, nothing matched, or some pod is not ready.
    pub sources_problem: Option<Problem>,
    /// Addresses copies go to; empty when `target` is an error.
    pub target: Result<Vec<IpAddr>, Problem>,
}

/// Resolves `session` against `cluster`. Also returns the target as the
/// quotas count it (its identity and the pods behind it; `None` while it does
/// not resolve to an identity: missing, no consent). It is kept apart from the
/// [`Resolution`] because it goes into the quota facts, while a plan keeps
/// every session's resolution (for its status) to the end of the pass.
pub fn resolve(
    cluster: &Cluster,
    by_ip: &PodsByIp<'_>,
    session: &SessionInfo,
    shared: &mut Interner,
) -> (Resolution, Option<ResolvedTarget>) {
    let ns = &session.key.namespace;
    let filter_key = ObjKey::new(ns.clone(), session.filter_ref.clone());
    let filter = match cluster.filters.get(&filter_key) {
        Some(f) if f.deleting => Err(Problem::new(
            ConditionReason::FilterDeleting,
            format!("spec.filterRef: MirrorFilter {filter_key} is being deleted"),
        )),
        Some(_) => Ok(filter_key),
        None => Err(Problem::new(
            ConditionReason::FilterNotFound,
            format!("spec.filterRef.name: MirrorFilter {filter_key} does not exist"),
        )),
    };
    let (sources, sources_problem) = resolve_sources(cluster, ns, &session.sources, shared);
    let (quota_target, target) = resolve_target(cluster, by_ip, ns, session.target.as_ref());
    (Resolution { filter, sources, sources_problem, target }, quota_target)
}

fn resolve_sources(
    cluster: &Cluster,
    ns: &str,
    refs: &[SourceRef],
    shared: &mut Interner,
) -> (Vec<ResolvedSource>, Option<Problem>) {
    // Tenant safety: only pods of the session's own namespace are ever looked at.
    let empty = BTreeMap::new();
    let pods = cluster.pods.get(ns).unwrap_or(&empty);
    let mut found: BTreeMap<&str, &PodInfo> = BTreeMap::new();
    let mut missing = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        match r {
            SourceRef::PodName(name) => match pods.get(name) {
                Some(p) if !p.deleting => {
                    found.insert(p.name.as_str(), p);
                }
                _ => missing.push(format!("spec.sources[{i}].podName: pod {ns}/{name} not found")),
            },
            SourceRef::Selector(sel) => {
                let before = found.len();
                for p in pods.values().filter(|p| !p.deleting && sel.matches(&p.labels)) {
                    found.insert(p.name.as_str(), p);
                }
                if found.len() == before && !pods.values().any(|p| !p.deleting && sel.matches(&p.labels)) {
                    missing.push(format!("spec.sources[{i}].podSelector: no pod in {ns} matches"));
                }
            }
        }
    }
    let sources: Vec<ResolvedSource> = found.values().map(|p| resolve_pod(p, shared)).collect();
    let not_ready: Vec<String> = sources
        .iter()
        .filter(|s| s.state != Readiness::Ready)
        .map(|s| format!("{} is {}", s.pod.name(), s.state.as_str()))
        .collect();
    let problem = if !missing.is_empty() {
        Some(Problem::new(ConditionReason::SourceNotFound, missing.join("; ")))
    } else if sources.is_empty() {
        Some(Problem::new(ConditionReason::NoSources, "spec.sources: resolves to no pod"))
    } else if !not_ready.is_empty() {
        Some(Problem::new(ConditionReason::SourceNotReady, not_ready.join("; ")))
    } else {
        None
    };
    (sources, problem)
}

fn resolve_pod(p: &PodInfo, shared: &mut Interner) -> ResolvedSource {
    let state = if p.host_network {
        Readiness::HostNetwork
    } else if p.node.is_none() {
        Readiness::Unscheduled
    } else if p.ips.is_empty() && !p.interface_known {
        Readiness::NoAddress
    } else {
        Readiness::Ready
    };
    ResolvedSource { pod: shared.pod(p), node: p.node.as_deref().map(|n| shared.node(n)), ips: p.ips.clone(), state }
}

fn resolve_target(
    cluster: &Cluster,
    by_ip: &PodsByIp<'_>,
    ns: &str,
    target: Option<&TargetRef>,
) -> (Option<ResolvedTarget>, Result<Vec<IpAddr>, Problem>) {
    match target {
        None => (
            None,
            Err(Problem::new(ConditionReason::NoTarget, "spec.target: exactly one of service, pod or ip is required")),
        ),
        Some(TargetRef::Ip(text)) => match text.parse::<IpAddr>() {
            Ok(ip) => {
                if let Some(refused) = ip_target_refusal(cluster, by_ip, ns, ip) {
                    return (None, Err(refused));
                }
                let mut t = ResolvedTarget::ip(ip);
                t.pods.extend(by_ip.get(&ip).map(|p| pod_id(p)));
                (Some(t), Ok(vec![ip]))
            }
            Err(_) => (
                None,
                Err(Problem::new(
                    ConditionReason::InvalidTarget,
                    format!("spec.target.ip: {text:?} is not an IP address"),
                )),
            ),
        },
        Some(TargetRef::Pod { name }) => {
            let key = ObjKey::new(ns, name.clone());
            match cluster.pod(ns, name).filter(|p| !p.deleting) {
                Some(p) if !p.ips.is_empty() => (Some(ResolvedTarget::pod(pod_id(p))), Ok(p.ips.clone())),
                Some(p) => (
                    Some(ResolvedTarget::pod(pod_id(p))),
                    Err(Problem::new(
                        ConditionReason::TargetNotReady,
                        format!("spec.target.pod: pod {key} has no IP yet"),
                    )),
                ),
                None => (
                    None,
                    Err(Problem::new(ConditionReason::TargetNotFound, format!("spec.target.pod: pod {key} not found"))),
                ),
            }
        }
        Some(TargetRef::Service { namespace, name }) => service_target(cluster, by_ip, ns, namespace, name),
    }
}

/// A Service target: its consent, then its ready endpoints.
fn service_target(
    cluster: &Cluster,
    by_ip: &PodsByIp<'_>,
    ns: &str,
    namespace: &str,
    name: &str,
) -> (Option<ResolvedTarget>, Result<Vec<IpAddr>, Problem>) {
    let key = ObjKey::new(namespace, name);
    let Some(svc) = cluster.services.get(&key) else {
        return (
            None,
            Err(Problem::new(ConditionReason::TargetNotFound, format!("spec.target.service: service {key} not found"))),
        );
    };
    if !svc.consent.allows(&svc.namespace, ns) {
        return (
            None,
            Err(Problem::new(
                ConditionReason::TargetNotConsented,
                format!(
                    "spec.target.service: service {key} does not allow mirroring from namespace {ns} \
                     (annotation podmirror.io/allow-mirror-from)"
                ),
            )),
        );
    }
    let endpoints = cluster.service_endpoints(&key);
    let quota = ResolvedTarget::service(
        namespace,
        name,
        endpoints.iter().filter_map(|e| e.pod.clone().or_else(|| by_ip.get(&e.ip).map(|p| pod_id(p)))),
    );
    if endpoints.is_empty() {
        let p = Problem::new(
            ConditionReason::NoReadyEndpoints,
            format!("spec.target.service: service {key} has no ready endpoints"),
        );
        (Some(quota), Err(p))
    } else {
        (Some(quota), Ok(endpoints.iter().map(|e| e.ip).collect()))
    }
}

/// Tenant safety of an `ip` target: the cluster admin's CIDRs first, then
/// the consent of the namespace that owns the address, exactly as for a
/// Service target. A pod's address needs `podmirror.io/allow-mirror-from` on
/// that pod, a ClusterIP on that Service. A host-network pod's address is
/// its node's, which no tenant owns: only the CIDRs restrict it.
fn ip_target_refusal(cluster: &Cluster, by_ip: &PodsByIp<'_>, ns: &str, ip: IpAddr) -> Option<Problem> {
    let policy = &cluster.target_policy;
    if !policy.allows(ip) {
        let cidrs: Vec<String> = policy.allowed_cidrs.iter().map(ToString::to_string).collect();
        return Some(Problem::new(
            ConditionReason::TargetIpNotAllowed,
            format!(
                "spec.target.ip: {ip} (session namespace {ns}) is outside the CIDRs the cluster admin allows \
                 for ip targets ({}; operator flag --allowed-target-cidrs)",
                cidrs.join(", ")
            ),
        ));
    }
    if let Some(p) = by_ip.get(&ip).filter(|p| !p.host_network)
        && !p.consent.allows(&p.namespace, ns)
    {
        return Some(Problem::new(
            ConditionReason::TargetNotConsented,
            format!(
                "spec.target.ip: {ip} is the address of pod {}/{}, and namespace {} does not allow mirroring \
                 from namespace {ns} (annotation podmirror.io/allow-mirror-from on the pod)",
                p.namespace, p.name, p.namespace
            ),
        ));
    }
    if let Some(svc) = cluster.services_by_ip.get(&ip).and_then(|k| cluster.services.get(k))
        && !svc.consent.allows(&svc.namespace, ns)
    {
        return Some(Problem::new(
            ConditionReason::TargetNotConsented,
            format!(
                "spec.target.ip: {ip} is the ClusterIP of service {}/{}, and namespace {} does not allow \
                 mirroring from namespace {ns} (annotation podmirror.io/allow-mirror-from on the service)",
                svc.namespace, svc.name, svc.namespace
            ),
        ));
    }
    None
}
