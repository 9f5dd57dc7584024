//! Does a session concern a pod, and is it mirroring: its sources, its
//! per-pod exclusions and its `Accepted` condition.

use kube::core::{Selector, SelectorExt};
use podmirror_crds::api::{ConditionReason, MirrorSession, SourceState};

use super::{PodInfo, SkipReason};

/// Does one of `spec.sources` name or select `pod`? A selector the API
/// server would refuse makes the session invalid, named by field.
pub fn selects(session: &MirrorSession, pod: &PodInfo) -> Result<bool, SkipReason> {
    for (index, source) in session.spec.sources.iter().enumerate() {
        if source.pod_name.as_deref() == Some(pod.name.as_str()) {
            return Ok(true);
        }
        if let Some(selector) = &source.pod_selector {
            let selector = Selector::try_from(selector.clone())
                .map_err(|e| SkipReason::Invalid(format!("spec.sources[{index}].podSelector: {e}")))?;
            if selector.matches(&pod.labels) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The operator's message when it left this pod out (a quota, or the pod
/// is also a target).
pub fn excluded(session: &MirrorSession, pod: &str) -> Option<String> {
    let sources = session.status.as_ref()?.sources.as_ref()?;
    sources
        .iter()
        .find(|s| s.pod == pod && s.state == SourceState::Excluded)
        .map(|s| s.message.clone().unwrap_or_else(|| "excluded".to_owned()))
}

/// Where a session stands with the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    /// No `Accepted` condition yet (live objects only).
    Pending,
    /// Never accepted: it mirrors nothing.
    Refused {
        reason: ConditionReason,
        message: String,
    },
    /// Accepted before; its change was refused, the old generation runs.
    RefusedChange {
        kept: i64,
        message: String,
    },
}

pub const ACCEPTED: &str = "Accepted";

/// Read from `status.conditions[type=Accepted]` and `acceptedGeneration`.
pub fn admission(session: &MirrorSession, live: bool) -> Admission {
    let status = session.status.as_ref();
    let condition = status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == ACCEPTED));
    match condition {
        None if live => Admission::Pending,
        None => Admission::Accepted,
        Some(c) if c.status == "True" => Admission::Accepted,
        Some(c) => match status.and_then(|s| s.accepted_generation) {
            Some(kept) => Admission::RefusedChange { kept, message: c.message.clone() },
            None => Admission::Refused { reason: ConditionReason::parse(&c.reason), message: c.message.clone() },
        },
    }
}
