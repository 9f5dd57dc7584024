//! The operator's pure picture of the cluster: plain structs the watches fill
//! in (see `crate::index`) and the planner reads. Nothing here knows a client.
//!
//! Keeping these apart from the Kubernetes objects means every decision
//! (resolution, quotas, status, per-node state) is testable with literals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use podmirror_crds::model::quota::PodId;
use podmirror_crds::model::{Encapsulation, SessionKey};

/// The API rule type, carried through untouched into `MirrorNodeState`.
pub type Rule = podmirror_crds::api::FilterRule;

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjKey { namespace: namespace.into(), name: name.into() }
    }
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

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
    /// Terminating pods are no longer mirrored.
    pub deleting: bool,
}

/// The part of a Service a target resolution needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// Parsed `podmirror.io/allow-mirror-from`.
    pub consent: Consent,
}

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

/// A label selector reduced to what podmirror evaluates. Unknown operators are
/// rejected when the object is read, so a selector here is always decidable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<SelectorExpr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorExpr {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| match e {
                SelectorExpr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                SelectorExpr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                SelectorExpr::Exists(k) => labels.contains_key(k),
                SelectorExpr::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

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
    pub rate_limit: Option<podmirror_crds::api::RateLimit>,
    pub flow_sampling: Option<podmirror_crds::api::FlowSampling>,
    /// The model's validation error for the spec (field named), if any.
    pub invalid: Option<String>,
    pub deleting: bool,
    /// What agents report in `status.nodes[]`, by node.
    pub node_reports: BTreeMap<String, NodeReport>,
}

/// One agent's entry on a session, as far as `Programmed` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The session generation the node has in its datapath.
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
    /// Ready endpoints of a Service, by EndpointSlice name.
    pub endpoints: BTreeMap<ObjKey, BTreeMap<String, Vec<EndpointInfo>>>,
    pub nodes: BTreeSet<String>,
}

impl Cluster {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods.get(namespace).and_then(|m| m.get(name))
    }

    pub fn add_pod(&mut self, pod: PodInfo) {
        self.pods.entry(pod.namespace.clone()).or_default().insert(pod.name.clone(), pod);
    }

    /// Ready endpoints of a Service, deduplicated and sorted by address
    /// (stable output, so an unchanged Service never rewrites node state).
    pub fn service_endpoints(&self, key: &ObjKey) -> Vec<&EndpointInfo> {
        let mut v: Vec<&EndpointInfo> = self.endpoints.get(key).into_iter().flat_map(|m| m.values().flatten()).collect();
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
    fn selector_evaluates_labels_and_expressions() {
        let labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "front".into())].into();
        let mut s = Selector::default();
        s.match_labels.insert("app".into(), "web".into());
        assert!(s.matches(&labels));
        s.expressions.push(SelectorExpr::NotIn("tier".into(), ["back".into()].into()));
        assert!(s.matches(&labels));
        s.expressions.push(SelectorExpr::DoesNotExist("tier".into()));
        assert!(!s.matches(&labels));
        let only_in = Selector {
            match_labels: BTreeMap::new(),
            expressions: vec![SelectorExpr::In("app".into(), ["db".into()].into())],
        };
        assert!(!only_in.matches(&labels));
    }
}
