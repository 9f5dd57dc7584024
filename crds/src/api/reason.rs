//! The `reason` of every status condition podmirror writes
//! (docs/operations.md, "Conditions"): one enum, so that code producing a
//! reason and code reading one back agree by type rather than by spelling.
//! The API string of each reason is [`ConditionReason::as_str`]; readers of
//! objects written by another version parse with [`ConditionReason::parse`],
//! which keeps a reason it does not know as [`ConditionReason::Unknown`].

use std::fmt;

use crate::model::quota::Quota;
use crate::model::types::Direction;

/// Declares [`ConditionReason`] with its plain (data-less) reasons listed
/// once, each with its API string: the enum, [`PLAIN`] and `as_str` all
/// come from the one list, so a new reason cannot miss one of them.
macro_rules! condition_reasons {
    ($($variant:ident => $text:literal,)*) => {
        /// Why a condition has its status (grouped below by the condition
        /// that uses it).
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum ConditionReason {
            /// A quota refused the session (the reason is the quota's name).
            Quota(Quota),
            $($variant,)*
            /// A reason this version does not know (read from an object
            /// another version wrote); kept verbatim.
            Unknown(String),
        }

        /// Every known reason but the quotas (which come from [`QUOTAS`]).
        const PLAIN: &[ConditionReason] = &[$(ConditionReason::$variant,)*];

        impl ConditionReason {
            /// The string written to (and read from) `status.conditions[].reason`.
            pub fn as_str(&self) -> &str {
                match self {
                    ConditionReason::Quota(q) => q.reason(),
                    $(ConditionReason::$variant => $text,)*
                    ConditionReason::Unknown(text) => text,
                }
            }
        }
    };
}

condition_reasons! {
    // `Accepted` (besides the quotas)
    Accepted => "Accepted",
    InvalidSpec => "InvalidSpec",
    InvalidFilter => "InvalidFilter",
    NotEvaluated => "NotEvaluated",
    // `FilterResolved`
    FilterFound => "FilterFound",
    FilterNotFound => "FilterNotFound",
    FilterDeleting => "FilterDeleting",
    // `TargetResolved`
    TargetResolved => "TargetResolved",
    TargetNotFound => "TargetNotFound",
    TargetNotReady => "TargetNotReady",
    NoReadyEndpoints => "NoReadyEndpoints",
    TargetNotConsented => "TargetNotConsented",
    TargetIpNotAllowed => "TargetIPNotAllowed",
    InvalidTarget => "InvalidTarget",
    NoTarget => "NoTarget",
    // `SourcesResolved`
    SourcesResolved => "SourcesResolved",
    SourceNotFound => "SourceNotFound",
    NoSources => "NoSources",
    SourceNotReady => "SourceNotReady",
    // `Programmed`
    Programmed => "Programmed",
    WaitingForNodes => "WaitingForNodes",
    NodeError => "NodeError",
    NoSourceOnAnyNode => "NoSourceOnAnyNode",
    NotProgrammable => "NotProgrammable",
    NotAccepted => "NotAccepted",
    NotStarted => "NotStarted",
    Completed => "Completed",
    Uninstalled => "Uninstalled",
    // `Completed` (spec.schedule)
    Running => "Running",
    StopTimeReached => "StopTimeReached",
    DurationElapsed => "DurationElapsed",
    ScheduleEnded => "ScheduleEnded",
    // MirrorFilter `Valid`
    RulesValid => "RulesValid",
    InvalidRules => "InvalidRules",
}

/// Every quota, in the order of [`Quota`]'s declaration.
const QUOTAS: [Quota; 13] = [
    Quota::SourcesPerSession,
    Quota::SessionsPerSourcePod,
    Quota::TargetsPerSession,
    Quota::SessionsPerServiceTarget,
    Quota::SessionsPerPodOrIpTarget,
    Quota::FiltersPerSession,
    Quota::SessionsPerFilter,
    Quota::RulesPerFilter(Direction::Inbound),
    Quota::RulesPerFilter(Direction::Outbound),
    Quota::SessionsPerCluster,
    Quota::SourceIsTarget,
    Quota::PriorityClash,
    Quota::VniClash,
];

impl ConditionReason {
    /// Reads a reason back from an object; what this version does not know
    /// is [`ConditionReason::Unknown`].
    pub fn parse(text: &str) -> ConditionReason {
        let quota = QUOTAS.iter().find(|q| q.reason() == text).map(|q| ConditionReason::Quota(*q));
        let plain = || PLAIN.iter().find(|r| r.as_str() == text).cloned();
        quota.or_else(plain).unwrap_or_else(|| ConditionReason::Unknown(text.to_owned()))
    }

    /// Every reason this version writes.
    pub fn all() -> impl Iterator<Item = ConditionReason> {
        let quotas = QUOTAS.iter().map(|q| ConditionReason::Quota(*q));
        quotas.chain(PLAIN.iter().cloned())
    }
}

impl fmt::Display for ConditionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Quota> for ConditionReason {
    fn from(q: Quota) -> Self {
        ConditionReason::Quota(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a quota is added: then add it to [`QUOTAS`].
    fn listed(q: Quota) -> bool {
        match q {
            Quota::SourcesPerSession
            | Quota::SessionsPerSourcePod
            | Quota::TargetsPerSession
            | Quota::SessionsPerServiceTarget
            | Quota::SessionsPerPodOrIpTarget
            | Quota::FiltersPerSession
            | Quota::SessionsPerFilter
            | Quota::RulesPerFilter(_)
            | Quota::SessionsPerCluster
            | Quota::SourceIsTarget
            | Quota::PriorityClash
            | Quota::VniClash => QUOTAS.contains(&q),
        }
    }

    #[test]
    fn every_reason_reads_back_as_itself() {
        let all: Vec<ConditionReason> = ConditionReason::all().collect();
        assert_eq!(all.len(), QUOTAS.len() + PLAIN.len());
        for r in &all {
            assert_eq!(&ConditionReason::parse(r.as_str()), r, "{r}");
            assert_eq!(r.to_string(), r.as_str());
        }
        let mut names: Vec<&str> = all.iter().map(ConditionReason::as_str).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two reasons share an API string");
        assert!(QUOTAS.iter().all(|q| listed(*q)));
    }

    #[test]
    fn api_strings_are_the_documented_ones() {
        assert_eq!(ConditionReason::Quota(Quota::VniClash).as_str(), "VNIClash");
        assert_eq!(ConditionReason::Quota(Quota::SessionsPerPodOrIpTarget).as_str(), "SessionsPerPodOrIPTarget");
        assert_eq!(ConditionReason::TargetIpNotAllowed.as_str(), "TargetIPNotAllowed");
        assert_eq!(ConditionReason::parse("PriorityClash"), ConditionReason::Quota(Quota::PriorityClash));
    }

    #[test]
    fn an_unknown_reason_is_kept_verbatim() {
        let r = ConditionReason::parse("SomethingNew");
        assert_eq!(r, ConditionReason::Unknown("SomethingNew".into()));
        assert_eq!(r.to_string(), "SomethingNew");
        assert_eq!(ConditionReason::parse(""), ConditionReason::Unknown(String::new()));
    }

    /// docs/operations.md (and docs/quotas.md for the quotas) name every
    /// reason, as `Reason` in backticks.
    #[test]
    fn the_documentation_lists_every_reason() {
        let docs = concat!(include_str!("../../../docs/operations.md"), include_str!("../../../docs/quotas.md"));
        let missing: Vec<String> =
            ConditionReason::all().map(|r| format!("`{r}`")).filter(|r| !docs.contains(r.as_str())).collect();
        assert!(missing.is_empty(), "not in docs/operations.md or docs/quotas.md: {missing:?}");
    }
}
