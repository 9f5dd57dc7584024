//! What the evaluator decides on: each session's quota facts (who it
//! mirrors, where to, with which filter, priority and VNI) and the filters'
//! rule counts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::limits::{QuotaLimits, SESSIONS_PER_POD_OR_IP_TARGET, SESSIONS_PER_SERVICE_TARGET};
use super::refusal::Quota;
use super::{FilterKey, PodId, PodSet};
use crate::model::types::{Direction, SessionKey};

/// Where a session sends its copies, as far as quotas care: the identity the
/// per-target limits and the VNI uniqueness are counted on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetId {
    /// A Service (limit [`SESSIONS_PER_SERVICE_TARGET`]).
    Service { namespace: String, name: String },
    /// A single pod (limit [`SESSIONS_PER_POD_OR_IP_TARGET`]).
    Pod(PodId),
    /// A collector outside the cluster (limit [`SESSIONS_PER_POD_OR_IP_TARGET`]).
    Ip(IpAddr),
}

impl TargetId {
    /// The per-target session limit of this kind of target.
    pub fn session_limit(&self) -> usize {
        match self {
            TargetId::Service { .. } => SESSIONS_PER_SERVICE_TARGET,
            TargetId::Pod(_) | TargetId::Ip(_) => SESSIONS_PER_POD_OR_IP_TARGET,
        }
    }

    pub(super) fn per_target_quota(&self) -> Quota {
        match self {
            TargetId::Service { .. } => Quota::SessionsPerServiceTarget,
            TargetId::Pod(_) | TargetId::Ip(_) => Quota::SessionsPerPodOrIpTarget,
        }
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetId::Service { namespace, name } => write!(f, "service {namespace}/{name}"),
            TargetId::Pod(pod) => pod.fmt(f),
            TargetId::Ip(ip) => write!(f, "IP {ip}"),
        }
    }
}

/// One resolved target: its identity and the pods that would receive the
/// copies (the pod itself, a Service's endpoint pods, the pod owning an IP if
/// any). The pods are what "a source may not be a target" is checked on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedTarget {
    pub id: TargetId,
    pub pods: PodSet,
}

impl ResolvedTarget {
    pub fn service(
        namespace: impl Into<String>,
        name: impl Into<String>,
        endpoint_pods: impl IntoIterator<Item = PodId>,
    ) -> Self {
        ResolvedTarget {
            id: TargetId::Service { namespace: namespace.into(), name: name.into() },
            pods: endpoint_pods.into_iter().collect(),
        }
    }

    pub fn pod(pod: PodId) -> Self {
        ResolvedTarget { id: TargetId::Pod(pod.clone()), pods: PodSet::from([pod]) }
    }

    pub fn ip(ip: IpAddr) -> Self {
        ResolvedTarget { id: TargetId::Ip(ip), pods: PodSet::new() }
    }
}

/// The quota-relevant facts of one session, as resolved now or as last
/// accepted. Two snapshots are equal exactly when the quotas would see no
/// difference between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionQuotaFacts {
    /// Names of the MirrorFilters (in the session's namespace) it uses; the
    /// API allows one, a longer list is refused by [`Quota::FiltersPerSession`].
    pub filters: Vec<String>,
    pub priority: u16,
    pub vni: u32,
    /// Resolved source pods.
    pub sources: PodSet,
    /// Resolved targets; the API allows one, more is [`Quota::TargetsPerSession`].
    /// Empty while the target does not resolve (not a quota matter).
    pub targets: Vec<ResolvedTarget>,
}

/// One session as the operator sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionQuotaInput {
    pub key: SessionKey,
    /// `metadata.creationTimestamp` as Unix seconds: newcomers are admitted
    /// oldest first, ties broken by namespace/name.
    pub created: i64,
    /// The facts of the current spec and the current cluster.
    pub current: SessionQuotaFacts,
    /// The facts it was last accepted with (kept by the operator), or `None`
    /// for a session never accepted.
    pub last_accepted: Option<SessionQuotaFacts>,
}

/// Rule counts of one filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleCounts {
    pub inbound: usize,
    pub outbound: usize,
}

impl RuleCounts {
    pub fn get(&self, direction: Direction) -> usize {
        match direction {
            Direction::Inbound => self.inbound,
            Direction::Outbound => self.outbound,
        }
    }
}

/// Everything [`evaluate_quotas`](super::evaluate_quotas) decides on.
#[derive(Clone, Debug, Default)]
pub struct QuotaInput {
    pub sessions: Vec<SessionQuotaInput>,
    /// Rule counts of the filters that exist; a filter missing here counts 0
    /// rules (its absence is `FilterResolved=False`, not a quota).
    pub filter_rules: BTreeMap<FilterKey, RuleCounts>,
    pub limits: QuotaLimits,
}
