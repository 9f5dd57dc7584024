//! `kubectl podmirror explain`: which session and which rule decide one
//! packet on one pod, and why the other sessions did not.
//!
//! The decision is `model::evaluate` over the pod's sessions compiled with
//! `model::compile`, exactly what the operator hands the agents and the
//! datapath is tested against. Everything else here explains that decision.

pub mod offline;
pub mod render;
pub mod select;
pub mod trace;

use std::collections::BTreeMap;
use std::net::IpAddr;

use podmirror_crds::api::{ConditionReason, MirrorFilter, MirrorSession};
use podmirror_crds::model::compile::compile_session;
use podmirror_crds::model::{
    Action, CompiledSession, Direction, Encapsulation, PacketMeta, SessionKey, Verdict, evaluate,
};

use crate::error::PluginError;
use select::{Admission, admission, excluded, selects};

/// A pod as explain needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
}

/// The objects of one namespace, from the API server or from files.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub pods: Vec<PodInfo>,
    pub sessions: Vec<MirrorSession>,
    pub filters: Vec<MirrorFilter>,
    /// True for live objects: a session without an `Accepted` condition is
    /// not yet mirroring. Files have no operator, so there they count as accepted.
    pub live: bool,
}

/// Why a session of the namespace plays no part for this packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NotSelecting,
    Excluded(String),
    Disabled,
    /// `spec.schedule` has not started yet, or has ended (phase `Scheduled` / `Completed`).
    OutsideSchedule(String),
    Refused {
        reason: ConditionReason,
        message: String,
    },
    NotYetAccepted,
    FilterMissing(String),
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub key: SessionKey,
    pub reason: SkipReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleOutcome {
    Matched,
    Missed(String),
    /// An earlier rule or session decided first.
    NotReached,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    pub priority: u16,
    pub action: Action,
    pub summary: String,
    pub description: Option<String>,
    pub outcome: RuleOutcome,
}

/// One session that was in the running, in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTrace {
    pub key: SessionKey,
    pub priority: u16,
    pub filter: String,
    pub rules: Vec<RuleTrace>,
    /// A note, e.g. that a refused change leaves the last accepted generation running.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    NoMatch,
    Rejected {
        session: SessionKey,
        rule: u16,
    },
    Copied {
        session: SessionKey,
        rule: u16,
        vni: u32,
        encapsulation: Encapsulation,
        packet_length: Option<u16>,
        targets: Vec<IpAddr>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub pod: PodInfo,
    pub direction: Direction,
    pub packet: PacketMeta,
    pub decision: Decision,
    pub sessions: Vec<SessionTrace>,
    pub skipped: Vec<Skipped>,
}

/// A session that takes part, compiled, with what the trace shows of it.
struct Candidate<'a> {
    compiled: CompiledSession,
    filter: &'a MirrorFilter,
    note: Option<String>,
}

/// Explain `packet` seen on pod `namespace/name` in `direction`.
pub fn explain(
    snapshot: &Snapshot,
    namespace: &str,
    pod_name: &str,
    direction: Direction,
    packet: PacketMeta,
) -> Result<Explanation, PluginError> {
    let pod = snapshot
        .pods
        .iter()
        .find(|p| p.namespace == namespace && p.name == pod_name)
        .ok_or_else(|| PluginError::PodNotFound { namespace: namespace.to_owned(), name: pod_name.to_owned() })?;
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for session in &snapshot.sessions {
        if namespace_of(session) != namespace {
            continue;
        }
        match candidate(snapshot, session, pod) {
            Ok(c) => candidates.push(c),
            Err(reason) => skipped.push(Skipped { key: key_of(session), reason }),
        }
    }
    let compiled: Vec<CompiledSession> = candidates.iter().map(|c| c.compiled.clone()).collect();
    let decision = decide(evaluate(&compiled, &packet, direction));
    candidates.sort_by(|a, b| (a.compiled.priority, &a.compiled.key).cmp(&(b.compiled.priority, &b.compiled.key)));
    let sessions = traces(&candidates, &decision, &packet, direction);
    skipped.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Explanation { pod: pod.clone(), direction, packet, decision, sessions, skipped })
}

fn decide(verdict: Verdict<'_>) -> Decision {
    match verdict {
        Verdict::NoMatch => Decision::NoMatch,
        Verdict::Rejected { session, rule_priority } => {
            Decision::Rejected { session: session.key.clone(), rule: rule_priority }
        }
        Verdict::Copy { session, rule_priority } => Decision::Copied {
            session: session.key.clone(),
            rule: rule_priority,
            vni: session.vni,
            encapsulation: session.encapsulation,
            packet_length: session.packet_length,
            targets: session.targets.clone(),
        },
    }
}

/// The phase of a session the operator keeps off the nodes because of its
/// `spec.schedule` (live objects; offline the window is not evaluated).
fn outside_schedule(session: &MirrorSession) -> Option<String> {
    use podmirror_crds::api::SessionPhase;
    let phase = session.status.as_ref()?.phase.as_ref()?;
    match phase {
        SessionPhase::Scheduled => Some("Scheduled: its spec.schedule has not started yet".to_owned()),
        SessionPhase::Completed => Some("Completed: its spec.schedule has ended".to_owned()),
        _ => None,
    }
}

/// Is `session` one of the pod's mirroring sessions? If not, why not.
fn candidate<'a>(snapshot: &'a Snapshot, session: &MirrorSession, pod: &PodInfo) -> Result<Candidate<'a>, SkipReason> {
    if !selects(session, pod)? {
        return Err(SkipReason::NotSelecting);
    }
    if let Some(message) = excluded(session, &pod.name) {
        return Err(SkipReason::Excluded(message));
    }
    if !session.spec.enabled {
        return Err(SkipReason::Disabled);
    }
    if let Some(phase) = outside_schedule(session) {
        return Err(SkipReason::OutsideSchedule(phase));
    }
    let note = match admission(session, snapshot.live) {
        Admission::Accepted => None,
        Admission::Pending => return Err(SkipReason::NotYetAccepted),
        Admission::Refused { reason, message } => {
            return Err(SkipReason::Refused { reason, message });
        }
        Admission::RefusedChange { kept, message } => Some(format!(
            "its latest change was refused ({message}); the datapath still runs generation {kept}, \
             and this explanation uses the current spec"
        )),
    };
    let filter_name = &session.spec.filter_ref.name;
    let filter = snapshot
        .filters
        .iter()
        .find(|f| f.metadata.name.as_ref() == Some(filter_name) && filter_namespace(f) == pod.namespace)
        .ok_or_else(|| SkipReason::FilterMissing(filter_name.clone()))?;
    let targets = target_addresses(session);
    let compiled = compile_session(session, filter, &targets).map_err(|e| SkipReason::Invalid(e.to_string()))?;
    Ok(Candidate { compiled, filter, note })
}

/// The trace of every candidate: rules up to the deciding one are matched
/// or missed, everything after it is not reached.
fn traces(
    candidates: &[Candidate<'_>],
    decision: &Decision,
    packet: &PacketMeta,
    direction: Direction,
) -> Vec<SessionTrace> {
    let decided = match decision {
        Decision::NoMatch => None,
        Decision::Rejected { session, rule } | Decision::Copied { session, rule, .. } => Some((session, *rule)),
    };
    let mut reached = true;
    candidates
        .iter()
        .map(|c| {
            let descriptions = descriptions(c.filter, direction);
            let rules = c
                .compiled
                .rules(direction)
                .iter()
                .map(|rule| {
                    let outcome = if !reached {
                        RuleOutcome::NotReached
                    } else if decided == Some((&c.compiled.key, rule.priority)) {
                        reached = false;
                        RuleOutcome::Matched
                    } else {
                        trace::mismatch(rule, packet).map(RuleOutcome::Missed).unwrap_or(RuleOutcome::Matched)
                    };
                    RuleTrace {
                        priority: rule.priority,
                        action: rule.action,
                        summary: trace::summary(rule),
                        description: descriptions.get(&rule.priority).cloned(),
                        outcome,
                    }
                })
                .collect();
            SessionTrace {
                key: c.compiled.key.clone(),
                priority: c.compiled.priority,
                filter: c.filter.metadata.name.clone().unwrap_or_default(),
                rules,
                note: c.note.clone(),
            }
        })
        .collect()
}

fn descriptions(filter: &MirrorFilter, direction: Direction) -> BTreeMap<u16, String> {
    let rules = match direction {
        Direction::Inbound => &filter.spec.inbound_rules,
        Direction::Outbound => &filter.spec.outbound_rules,
    };
    rules.iter().filter_map(|r| Some((u16::try_from(r.priority).ok()?, r.description.clone()?))).collect()
}

/// The addresses the operator resolved (status), else an IP target's own
/// address (files have no status); for the report only.
fn target_addresses(session: &MirrorSession) -> Vec<IpAddr> {
    let resolved = session.status.as_ref().and_then(|s| s.target.as_ref()).and_then(|t| t.addresses.as_ref());
    match resolved {
        Some(list) => list.iter().filter_map(|a| a.parse().ok()).collect(),
        None => session.spec.target.ip.as_deref().and_then(|ip| ip.parse().ok()).into_iter().collect(),
    }
}

/// A session without a namespace (a file) is in `default`, as kubectl would put it.
pub fn namespace_of(session: &MirrorSession) -> String {
    session.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned())
}

fn filter_namespace(filter: &MirrorFilter) -> String {
    filter.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned())
}

pub fn key_of(session: &MirrorSession) -> SessionKey {
    SessionKey::new(namespace_of(session), session.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod schedule_tests {
    use super::outside_schedule;
    use podmirror_crds::api::{MirrorSession, MirrorSessionStatus, SessionPhase};

    fn with_phase(yaml: &str, phase: Option<SessionPhase>) -> MirrorSession {
        let mut s: MirrorSession = serde_yaml::from_str(yaml).expect("a session");
        s.status = Some(MirrorSessionStatus { phase, ..MirrorSessionStatus::default() });
        s
    }

    #[test]
    fn sessions_outside_their_schedule_are_skipped_with_the_phase() {
        let yaml = "apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {name: s, namespace: d}\n\
                    spec: {priority: 1, vni: 1, filterRef: {name: f}, sources: [{podName: p}], target: {ip: 10.0.0.1}}\n";
        let done = outside_schedule(&with_phase(yaml, Some(SessionPhase::Completed)));
        assert!(done.is_some_and(|w| w.starts_with("Completed")));
        let later = outside_schedule(&with_phase(yaml, Some(SessionPhase::Scheduled)));
        assert!(later.is_some_and(|w| w.starts_with("Scheduled")));
        assert_eq!(outside_schedule(&with_phase(yaml, Some(SessionPhase::Active))), None);
        assert_eq!(outside_schedule(&with_phase(yaml, None)), None);
    }
}
