//! The planner's picture of the cluster: plain structs the operator's watches
//! (its `index` module) or the standalone agent's files fill in and the
//! planner reads. Nothing here knows a client.
//!
//! Keeping these apart from the Kubernetes objects means every decision
//! (resolution, quotas, status, per-node state) is testable with literals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::api::SessionSchedule;
pub use crate::model::ObjKey;
use crate::model::quota::PodId;
use crate::model::{Encapsulation, SessionKey};
use ipnet::IpNet;
use k8s_openapi::jiff::Timestamp;

/// The API rule type, carried through untouched into `MirrorNodeState`.
pub type Rule = crate::api::FilterRule;

/// A pod as resolution needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName`; `None` while unscheduled.
    pub node: Option<String>,
    /// `status.podIPs`; empty until the kubelet reports them.
    pub ips: Vec<IpAddr>,
    /// Host-network pods share the node's interfaces: there is no veth to mirror.
    pub host_network: bool,
    /// Its host interface is known without an address (the standalone
    /// inventory's `interface:`), so it is mirrorable before it has an IP.
    /// Always false in a cluster, where the agent finds the veth by address.
    pub interface_known: bool,
    /// Terminating pods are no longer mirrored.
    pub deleting: bool,
    /// Parsed `podmirror.io/allow-mirror-from` on the pod: which other
    /// namespaces may send copies to its address as an `ip` target.
    pub consent: Consent,
}

/// The part of a Service a target resolution needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// Parsed `podmirror.io/allow-mirror-from`.
    pub consent: Consent,
    /// `spec.clusterIPs` (or `spec.clusterIP`), without `None`: an `ip`
    /// target at one of these needs the Service's consent.
    pub cluster_ips: Vec<IpAddr>,
}

/// The tenant-consent annotation on a target Service or pod (docs/concepts.md).
pub const ALLOW_MIRROR_FROM: &str = "podmirror.io/allow-mirror-from";

/// Which namespaces a Service accepts mirrored traffic from (tenant consent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Consent {
    /// No annotation: only sessions of the Service's own namespace.
    #[default]
    OwnNamespace,
    /// `"*"`: any namespace.
    Any,
    /// `"ns1,ns2"`: these namespaces (and its own).
    Namespaces(BTreeSet<String>),
}

impl Consent {
    /// Parses the annotation value; blanks and empty items are ignored.
    pub fn parse(value: Option<&str>) -> Consent {
        let Some(value) = value else { return Consent::OwnNamespace };
        let items: BTreeSet<String> =
            value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if items.contains("*") {
            Consent::Any
        } else if items.is_empty() {
            Consent::OwnNamespace
        } else {
            Consent::Namespaces(items)
        }
    }

    pub fn allows(&self, service_namespace: &str, from: &str) -> bool {
        from == service_namespace
            || match self {
                Consent::OwnNamespace => false,
                Consent::Any => true,
                Consent::Namespaces(set) => set.contains(from),
            }
    }
}

/// One ready endpoint of a Service (from an EndpointSlice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    pub ip: IpAddr,
    /// The pod behind it (`targetRef`), if it is one: a source may not be a target.
    pub pod: Option<PodId>,
}

/// A MirrorFilter: its two rule lists.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterInfo {
    pub namespace: String,
    pub name: String,
    pub inbound: Vec<Rule>,
    pub outbound: Vec<Rule>,
    /// The model's compile error for the rules (field named), if any.
    pub invalid: Option<String>,
    pub deleting: bool,
}

/// One entry of `spec.sources`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRef {
    PodName(String),
    Selector(Selector),
}

/// Label selectors are the model's, shared with the standalone agent:
/// checked with the API server's rules when the session is read, so a
/// selector here is always decidable.
pub use crate::model::selector::{Selector, SelectorExpr};

/// `spec.target`: exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRef {
    Service { namespace: String, name: String },
    Pod { name: String },
    Ip(String),
}

/// A MirrorSession as the planner reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    pub key: SessionKey,
    pub uid: String,
    pub generation: i64,
    /// RFC 3339 creation time: the quota tie-break ("the newer is refused").
    pub created: String,
    pub priority: i64,
    pub vni: i64,
    pub packet_length: Option<i64>,
    pub enabled: bool,
    pub filter_ref: String,
    pub sources: Vec<SourceRef>,
    /// `None` when the object could not be read into one target (the schema
    /// should prevent it; the planner still reports it).
    pub target: Option<TargetRef>,
    pub encapsulation: Encapsulation,
    pub target_port: i64,
    /// `spec.rateLimit` and `spec.flowSampling`, handed to the nodes as given.
    pub rate_limit: Option<crate::api::RateLimit>,
    pub flow_sampling: Option<crate::api::FlowSampling>,
    /// The model's validation error for the spec (field named), if any.
    pub invalid: Option<String>,
    pub deleting: bool,
    /// What agents report in `status.nodes[]`, by node.
    pub node_reports: BTreeMap<String, NodeReport>,
    /// `spec.schedule`: the session is programmed only inside its window.
    pub schedule: Option<SessionSchedule>,
    /// `status.acceptedTime`, as the operator recorded it.
    pub accepted_time: Option<Timestamp>,
}

/// One agent's entry on a session, as far as `Programmed` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The session generation the node has in its datapath
    /// (`status.nodes[].programmedGeneration`); `None` from an agent that
    /// does not report it, which never counts as programmed.
    pub generation: Option<i64>,
    /// How many of the session's source pods have their veth programmed there.
    pub programmed_pods: usize,
    /// A node-side problem (no veth, datapath error), if any.
    pub error: Option<String>,
}

/// Everything the planner decides on.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub sessions: BTreeMap<SessionKey, SessionInfo>,
    pub filters: BTreeMap<ObjKey, FilterInfo>,
    /// Pods by namespace then name: selectors only look in one namespace.
    pub pods: BTreeMap<String, BTreeMap<String, PodInfo>>,
    pub services: BTreeMap<ObjKey, ServiceInfo>,
    /// Services by ClusterIP (kept by [`Cluster::add_service`]): an `ip`
    /// target at a ClusterIP needs that Service's consent.
    pub services_by_ip: BTreeMap<IpAddr, ObjKey>,
    /// Ready endpoints of a Service, by EndpointSlice name.
    pub endpoints: BTreeMap<ObjKey, BTreeMap<String, Vec<EndpointInfo>>>,
    pub nodes: BTreeSet<String>,
    /// The pass's "now" (the controller's clock): schedules are decided on it.
    pub now: Timestamp,
    /// The cluster admin's restriction of `ip` targets.
    pub target_policy: TargetPolicy,
}

/// Where `ip` targets may point (`--allowed-target-cidrs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Empty: any address.
    pub allowed_cidrs: Vec<IpNet>,
}

impl TargetPolicy {
    /// A comma-separated list of CIDRs (`--allowed-target-cidrs`); blank
    /// items are skipped, so an empty text allows any address. Host bits are
    /// dropped (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<TargetPolicy, String> {
        let mut allowed_cidrs = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net: IpNet =
                item.parse().map_err(|_| format!("{item:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8"))?;
            allowed_cidrs.push(net.trunc());
        }
        Ok(TargetPolicy { allowed_cidrs })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|n| n.contains(&ip))
    }
}

impl Cluster {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods.get(namespace).and_then(|m| m.get(name))
    }

    pub fn add_pod(&mut self, pod: PodInfo) {
        self.pods.entry(pod.namespace.clone()).or_default().insert(pod.name.clone(), pod);
    }

    pub fn add_service(&mut self, service: ServiceInfo) {
        let key = ObjKey::new(service.namespace.clone(), service.name.clone());
        for ip in &service.cluster_ips {
            self.services_by_ip.insert(*ip, key.clone());
        }
        self.services.insert(key, service);
    }

    /// Ready endpoints of a Service, deduplicated and sorted by address
    /// (stable output, so an unchanged Service never rewrites node state).
    pub fn service_endpoints(&self, key: &ObjKey) -> Vec<&EndpointInfo> {
        let mut v: Vec<&EndpointInfo> =
            self.endpoints.get(key).into_iter().flat_map(|m| m.values().flatten()).collect();
        v.sort_by_key(|e| e.ip);
        v.dedup_by(|a, b| a.ip == b.ip);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_parses_lists_star_and_blank() {
        assert_eq!(Consent::parse(None), Consent::OwnNamespace);
        assert_eq!(Consent::parse(Some(" ")), Consent::OwnNamespace);
        assert_eq!(Consent::parse(Some("a, *")), Consent::Any);
        let c = Consent::parse(Some("team-a, team-b,"));
        assert!(c.allows("obs", "team-a"));
        assert!(c.allows("obs", "team-b"));
        assert!(!c.allows("obs", "team-c"));
        assert!(c.allows("obs", "obs"), "own namespace always allowed");
        assert!(!Consent::OwnNamespace.allows("obs", "team-a"));
        assert!(Consent::Any.allows("obs", "anyone"));
    }

    #[test]
    fn target_policy_allows_any_address_when_empty_else_only_its_cidrs() {
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        assert!(TargetPolicy::default().allows(ip("203.0.113.7")));
        let p =
            TargetPolicy { allowed_cidrs: vec!["10.0.0.0/8".parse().expect("net"), "fd00::/8".parse().expect("net")] };
        assert!(p.allows(ip("10.200.0.1")) && p.allows(ip("fd00::1")));
        assert!(!p.allows(ip("11.0.0.1")) && !p.allows(ip("2001:db8::1")));
        assert_eq!(TargetPolicy::parse(" 10.1.2.3/8 , fd00::/8,"), Ok(p));
        assert_eq!(TargetPolicy::parse(""), Ok(TargetPolicy::default()));
        let err = TargetPolicy::parse("10.0.0.0/8,10.0.0.0").expect_err("no prefix length");
        assert!(err.contains("\"10.0.0.0\" is not a CIDR"), "{err}");
    }
}
