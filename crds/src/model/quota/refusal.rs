//! Why a session was refused, as data: which rule, the counts, who holds the
//! place. The sentence of the `Accepted` condition is rendered from it.

use std::fmt;

use super::facts::TargetId;
use super::limits::{
    FILTERS_PER_SESSION, RULES_PER_DIRECTION, SESSIONS_PER_FILTER, SESSIONS_PER_SOURCE_POD, TARGETS_PER_SESSION,
};
use super::{FilterKey, PodId};
use crate::model::types::{Direction, SessionKey};

/// Which limit (or uniqueness rule) of docs/quotas.md refused a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quota {
    SourcesPerSession,
    SessionsPerSourcePod,
    TargetsPerSession,
    SessionsPerServiceTarget,
    SessionsPerPodOrIpTarget,
    FiltersPerSession,
    SessionsPerFilter,
    RulesPerFilter(Direction),
    SessionsPerCluster,
    /// A pod that is a source of any session may not be a target (seed).
    SourceIsTarget,
    /// Session priority must be unique among the sessions of a source pod.
    PriorityClash,
    /// VNI must be unique per target.
    VniClash,
}

impl Quota {
    /// A stable CamelCase name, fit for a condition reason or a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Quota::SourcesPerSession => "SourcesPerSession",
            Quota::SessionsPerSourcePod => "SessionsPerSourcePod",
            Quota::TargetsPerSession => "TargetsPerSession",
            Quota::SessionsPerServiceTarget => "SessionsPerServiceTarget",
            Quota::SessionsPerPodOrIpTarget => "SessionsPerPodOrIPTarget",
            Quota::FiltersPerSession => "FiltersPerSession",
            Quota::SessionsPerFilter => "SessionsPerFilter",
            Quota::RulesPerFilter(Direction::Inbound) => "InboundRulesPerFilter",
            Quota::RulesPerFilter(Direction::Outbound) => "OutboundRulesPerFilter",
            Quota::SessionsPerCluster => "SessionsPerCluster",
            Quota::SourceIsTarget => "SourceIsTarget",
            Quota::PriorityClash => "PriorityClash",
            Quota::VniClash => "VNIClash",
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// What broke a rule, with the values its sentence names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    FiltersPerSession {
        filters: usize,
    },
    TargetsPerSession {
        targets: usize,
    },
    RulesPerFilter {
        filter: FilterKey,
        direction: Direction,
        rules: usize,
    },
    SourcesPerSession {
        sources: usize,
        limit: usize,
    },
    /// The session's own target receives at one of its own sources.
    OwnSourceIsTarget {
        pod: PodId,
    },
    /// A source already receives the copies of `holder`.
    SourceReceives {
        pod: PodId,
        holder: SessionKey,
    },
    SessionsPerSourcePod {
        pod: PodId,
        would_be: usize,
    },
    PriorityClash {
        pod: PodId,
        priority: u16,
        holder: SessionKey,
    },
    /// A pod behind the target is a source of `holder`.
    TargetIsSource {
        pod: PodId,
        target: TargetId,
        holder: SessionKey,
    },
    SessionsPerTarget {
        target: TargetId,
        would_be: usize,
    },
    VniClash {
        target: TargetId,
        vni: u32,
        holder: SessionKey,
    },
    SessionsPerFilter {
        filter: FilterKey,
        would_be: usize,
    },
    SessionsPerCluster {
        would_be: usize,
        limit: usize,
    },
}

impl Refusal {
    pub fn quota(&self) -> Quota {
        match self {
            Refusal::FiltersPerSession { .. } => Quota::FiltersPerSession,
            Refusal::TargetsPerSession { .. } => Quota::TargetsPerSession,
            Refusal::RulesPerFilter { direction, .. } => Quota::RulesPerFilter(*direction),
            Refusal::SourcesPerSession { .. } => Quota::SourcesPerSession,
            Refusal::OwnSourceIsTarget { .. } | Refusal::SourceReceives { .. } | Refusal::TargetIsSource { .. } => {
                Quota::SourceIsTarget
            }
            Refusal::SessionsPerSourcePod { .. } => Quota::SessionsPerSourcePod,
            Refusal::PriorityClash { .. } => Quota::PriorityClash,
            Refusal::SessionsPerTarget { target, .. } => target.per_target_quota(),
            Refusal::VniClash { .. } => Quota::VniClash,
            Refusal::SessionsPerFilter { .. } => Quota::SessionsPerFilter,
            Refusal::SessionsPerCluster { .. } => Quota::SessionsPerCluster,
        }
    }

    /// `(limit, would_be)`: the limit (1 for the uniqueness rules, 0 for "a
    /// source may not be a target") and the count admitting it would reach.
    pub fn counts(&self) -> (usize, usize) {
        match self {
            Refusal::FiltersPerSession { filters } => (FILTERS_PER_SESSION, *filters),
            Refusal::TargetsPerSession { targets } => (TARGETS_PER_SESSION, *targets),
            Refusal::RulesPerFilter { rules, .. } => (RULES_PER_DIRECTION, *rules),
            Refusal::SourcesPerSession { sources, limit } => (*limit, *sources),
            Refusal::OwnSourceIsTarget { .. } | Refusal::SourceReceives { .. } | Refusal::TargetIsSource { .. } => {
                (0, 1)
            }
            Refusal::SessionsPerSourcePod { would_be, .. } => (SESSIONS_PER_SOURCE_POD, *would_be),
            Refusal::PriorityClash { .. } | Refusal::VniClash { .. } => (1, 2),
            Refusal::SessionsPerTarget { target, would_be } => (target.session_limit(), *would_be),
            Refusal::SessionsPerFilter { would_be, .. } => (SESSIONS_PER_FILTER, *would_be),
            Refusal::SessionsPerCluster { would_be, limit } => (*limit, *would_be),
        }
    }

    /// The session already holding the place, for clashes and for a source
    /// used as a target elsewhere.
    pub fn holder(&self) -> Option<&SessionKey> {
        match self {
            Refusal::SourceReceives { holder, .. }
            | Refusal::PriorityClash { holder, .. }
            | Refusal::TargetIsSource { holder, .. }
            | Refusal::VniClash { holder, .. } => Some(holder),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (limit, would_be) = self.counts();
        match self {
            Refusal::FiltersPerSession { filters } => {
                write!(f, "filters per session: it names {filters} filters, the limit is {limit}")
            }
            Refusal::TargetsPerSession { targets } => {
                write!(f, "targets per session: it names {targets} targets, the limit is {limit}")
            }
            Refusal::RulesPerFilter { filter, direction, rules } => {
                let list = match direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                };
                write!(f, "rules per filter: filter {filter} has {rules} {list} rules, the limit is {limit}")
            }
            Refusal::SourcesPerSession { sources, .. } => {
                write!(f, "sources per session: it resolves to {sources} pods, the limit is {limit}")
            }
            Refusal::OwnSourceIsTarget { pod } => {
                write!(f, "a source may not be a target: {pod} is both a source and the target of this session")
            }
            Refusal::SourceReceives { pod, holder } => {
                write!(f, "a source may not be a target: {pod} already receives the copies of session {holder}")
            }
            Refusal::SessionsPerSourcePod { pod, .. } => write!(
                f,
                "sessions per source pod: {pod} would be mirrored by {would_be} sessions, the limit is {limit}"
            ),
            Refusal::PriorityClash { pod, priority, holder } => write!(
                f,
                "session priority {priority} must be unique among the sessions of a source pod: \
                 session {holder} already mirrors {pod} at that priority"
            ),
            Refusal::TargetIsSource { pod, target, holder } => {
                write!(f, "a source may not be a target: {pod} (behind {target}) is a source of session {holder}")
            }
            Refusal::SessionsPerTarget { target, .. } => {
                write!(f, "sessions per target: {target} would receive from {would_be} sessions, the limit is {limit}")
            }
            Refusal::VniClash { target, vni, holder } => {
                write!(f, "VNI {vni} must be unique per target: session {holder} already sends VNI {vni} to {target}")
            }
            Refusal::SessionsPerFilter { filter, .. } => write!(
                f,
                "sessions per filter: filter {filter} would be used by {would_be} sessions, the limit is {limit}"
            ),
            Refusal::SessionsPerCluster { .. } => {
                write!(f, "sessions per cluster: admitting it would make {would_be} sessions, the limit is {limit}")
            }
        }
    }
}

/// Why one session (or one change of it) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRefusal {
    pub quota: Quota,
    /// The limit (1 for the uniqueness rules).
    pub limit: usize,
    /// The count admitting it would have reached (above `limit`).
    pub would_be: usize,
    /// The session already holding the place, for clashes and for a source
    /// used as a target.
    pub conflicts_with: Option<SessionKey>,
    /// What broke the rule (boxed: every verdict of a pass has the room of
    /// a refusal, and this is its largest part).
    pub why: Box<Refusal>,
    /// A change of an accepted session (which keeps its last accepted state).
    pub change: bool,
    /// One sentence for the `Accepted` condition's message, rendered from
    /// `why` and `change`.
    pub message: String,
}

impl From<Refusal> for QuotaRefusal {
    fn from(why: Refusal) -> Self {
        let (limit, would_be) = why.counts();
        QuotaRefusal {
            quota: why.quota(),
            limit,
            would_be,
            conflicts_with: why.holder().cloned(),
            message: why.to_string(),
            why: Box::new(why),
            change: false,
        }
    }
}

impl QuotaRefusal {
    pub(super) fn into_change(mut self) -> Self {
        self.change = true;
        self.message = format!("change refused, the session keeps mirroring as last accepted: {}", self.why);
        self
    }
}
