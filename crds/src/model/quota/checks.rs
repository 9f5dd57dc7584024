//! The rules of docs/quotas.md, one function per group, each answering with
//! the first rule a session's facts would break beside what is placed.

use super::facts::{QuotaInput, SessionQuotaFacts};
use super::limits::{
    FILTERS_PER_SESSION, RULES_PER_DIRECTION, SESSIONS_PER_FILTER, SESSIONS_PER_SOURCE_POD, TARGETS_PER_SESSION,
};
use super::placement::{Placement, distinct_filters};
use super::refusal::{QuotaRefusal, Refusal};
use crate::model::types::{Direction, SessionKey};

/// Would `facts` fit beside everything `placed`? The first broken rule wins,
/// checked from the session's own shape outwards to what it shares.
/// `counts_new_slot` is false for an incumbent's change: it already holds one
/// of the cluster's session slots.
pub(super) fn check(
    key: &SessionKey,
    facts: &SessionQuotaFacts,
    placed: &Placement<'_>,
    input: &QuotaInput,
    counts_new_slot: bool,
) -> Result<(), QuotaRefusal> {
    let checked = check_own_shape(key, facts, input)
        .and_then(|()| check_sources(facts, placed))
        .and_then(|()| check_targets(facts, placed))
        .and_then(|()| check_filters(key, facts, placed));
    let checked = checked.and_then(|()| {
        let limit = input.limits.sessions_per_cluster;
        if counts_new_slot && placed.total >= limit {
            return Err(Refusal::SessionsPerCluster { would_be: placed.total + 1, limit });
        }
        Ok(())
    });
    checked.map_err(QuotaRefusal::from)
}

/// Limits on the session alone: filters, targets, rules, sources, and a
/// session that would mirror into one of its own sources.
fn check_own_shape(key: &SessionKey, facts: &SessionQuotaFacts, input: &QuotaInput) -> Result<(), Refusal> {
    if facts.filters.len() > FILTERS_PER_SESSION {
        return Err(Refusal::FiltersPerSession { filters: facts.filters.len() });
    }
    if facts.targets.len() > TARGETS_PER_SESSION {
        return Err(Refusal::TargetsPerSession { targets: facts.targets.len() });
    }
    for filter in distinct_filters(key, facts) {
        let counts = input.filter_rules.get(&filter).copied().unwrap_or_default();
        for direction in Direction::ALL {
            let rules = counts.get(direction);
            if rules > RULES_PER_DIRECTION {
                return Err(Refusal::RulesPerFilter { filter, direction, rules });
            }
        }
    }
    let limit = input.limits.sources_per_session;
    if facts.sources.len() > limit {
        return Err(Refusal::SourcesPerSession { sources: facts.sources.len(), limit });
    }
    let own_target = facts.targets.iter().flat_map(|t| &t.pods).find(|pod| facts.sources.contains(pod));
    if let Some(pod) = own_target {
        return Err(Refusal::OwnSourceIsTarget { pod: pod.clone() });
    }
    Ok(())
}

/// Per source pod: not a target elsewhere, at most 3 sessions, priority unique.
fn check_sources(facts: &SessionQuotaFacts, placed: &Placement<'_>) -> Result<(), Refusal> {
    for pod in &facts.sources {
        if let Some(holder) = Placement::first_holder(&placed.by_target_pod, &pod.uid()) {
            return Err(Refusal::SourceReceives { pod: pod.clone(), holder });
        }
        let would_be = placed.source_sessions(pod.uid()) + 1;
        if would_be > SESSIONS_PER_SOURCE_POD {
            return Err(Refusal::SessionsPerSourcePod { pod: pod.clone(), would_be });
        }
        if let Some(holder) = Placement::first_holder(&placed.by_source_priority, &(pod.uid(), facts.priority)) {
            return Err(Refusal::PriorityClash { pod: pod.clone(), priority: facts.priority, holder });
        }
    }
    Ok(())
}

/// Per target: its pods are no one's source, its session limit, VNI unique.
fn check_targets(facts: &SessionQuotaFacts, placed: &Placement<'_>) -> Result<(), Refusal> {
    for target in &facts.targets {
        for pod in &target.pods {
            if let Some(holder) = Placement::first_holder(&placed.by_source, &pod.uid()) {
                return Err(Refusal::TargetIsSource { pod: pod.clone(), target: target.id.clone(), holder });
            }
        }
        let would_be = placed.by_target.get(&target.id).copied().unwrap_or(0) + 1;
        if would_be > target.id.session_limit() {
            return Err(Refusal::SessionsPerTarget { target: target.id.clone(), would_be });
        }
        if let Some(holder) = Placement::first_holder(&placed.by_target_vni, &(&target.id, facts.vni)) {
            return Err(Refusal::VniClash { target: target.id.clone(), vni: facts.vni, holder });
        }
    }
    Ok(())
}

/// Per filter: at most 1000 sessions use it.
fn check_filters(key: &SessionKey, facts: &SessionQuotaFacts, placed: &Placement<'_>) -> Result<(), Refusal> {
    for filter in distinct_filters(key, facts) {
        let would_be = placed.by_filter.get(&filter).copied().unwrap_or(0) + 1;
        if would_be > SESSIONS_PER_FILTER {
            return Err(Refusal::SessionsPerFilter { filter, would_be });
        }
    }
    Ok(())
}
