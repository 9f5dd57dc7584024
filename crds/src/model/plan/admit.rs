//! The planner's first and third phases: every live session as a quota
//! candidate, then each one admitted (or not) on the quota report.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::api::{ConditionReason, NodeSession};
use crate::model::compile::compile_node_session;
use crate::model::quota::{
    QuotaInput, QuotaLimits, QuotaReport, QuotaVerdict, ResolvedTarget, RuleCounts, SessionQuotaFacts,
    SessionQuotaInput,
};
use crate::model::schedule::{Window, WindowState};
use crate::model::{ObjKey, SessionKey};

use super::cluster::{Cluster, PodInfo, SessionInfo};
use super::resolve::{Interner, Problem, Resolution, resolve};
use super::{Accepted, AcceptedSet, Admission, PodIndex};

/// One live session between the phases.
pub(super) struct Candidate {
    resolution: Resolution,
    /// The current spec's NodeSession; the last accepted one itself when
    /// equal, so an unchanged session never holds two copies during a pass.
    session: Arc<NodeSession>,
    /// Index of its facts (current and last accepted) in `input.sessions`.
    facts_at: Option<usize>,
    valid: Result<(), Problem>,
    /// The last accepted NodeSession; its facts are in `input.sessions`.
    last_session: Option<Arc<NodeSession>>,
    /// First acceptance, from the status or the previous pass.
    since: Option<Timestamp>,
    /// When the schedule ended, if it has: out of the quotas.
    ended: Option<Timestamp>,
}

/// Phase one: the candidates and the quota input they fill in.
pub(super) fn candidates(
    cluster: &Cluster,
    pods: &PodIndex<'_>,
    mut previous: AcceptedSet,
    limits: &QuotaLimits,
    shared: &mut Interner,
) -> (BTreeMap<SessionKey, Candidate>, QuotaInput) {
    let mut input = QuotaInput { limits: *limits, ..QuotaInput::default() };
    for (k, f) in &cluster.filters {
        input.filter_rules.insert(k.clone(), RuleCounts { inbound: f.inbound.len(), outbound: f.outbound.len() });
    }
    let mut out = BTreeMap::new();
    for s in cluster.sessions.values().filter(|s| !s.deleting) {
        let last = previous.remove(&s.key).filter(|a| a.session.uid == s.uid).map(|a| refresh(a, &pods.by_uid));
        out.insert(s.key.clone(), candidate(cluster, pods, s, last, &mut input, shared));
    }
    (out, input)
}

fn candidate(
    cluster: &Cluster,
    pods: &PodIndex<'_>,
    s: &SessionInfo,
    last: Option<Accepted>,
    input: &mut QuotaInput,
    shared: &mut Interner,
) -> Candidate {
    let (resolution, quota_target) = resolve(cluster, &pods.by_ip, s, shared);
    let session = node_session(cluster, s, &resolution);
    let valid = validate(cluster, s, &resolution, &session);
    let since = s.accepted_time.or(last.as_ref().and_then(|a| a.since));
    let ended = ended_at(s, since, cluster.now).filter(|_| valid.is_ok());
    // An ended session lets go of its quota places and its kept state.
    let last = last.filter(|_| ended.is_none());
    // An invalid spec is not a candidate: it only holds its last place.
    let current = if ended.is_some() {
        None
    } else if valid.is_ok() {
        Some(facts(s, &resolution, quota_target))
    } else {
        last.as_ref().map(|a| a.facts.clone())
    };
    let (last_session, last_facts) = match last {
        Some(a) => (Some(a.session), Some(a.facts)),
        None => (None, None),
    };
    let mut facts_at = None;
    if let Some(current) = current {
        facts_at = Some(input.sessions.len());
        input.sessions.push(SessionQuotaInput {
            key: s.key.clone(),
            created: created_seconds(&s.created),
            current,
            last_accepted: last_facts,
        });
    }
    // Unchanged: share the previous pass's NodeSession and drop the fresh
    // copy now, before the next session builds its own.
    let session = match &last_session {
        Some(l) if **l == session => l.clone(),
        _ => Arc::new(session),
    };
    Candidate { resolution, session, facts_at, valid, last_session, since, ended }
}

/// The quota facts of every candidate (current, last accepted), by their
/// index in the quota input, each taken once by [`admit`].
pub(super) struct FactsTable(Vec<Option<(SessionQuotaFacts, Option<SessionQuotaFacts>)>>);

impl From<QuotaInput> for FactsTable {
    fn from(input: QuotaInput) -> Self {
        FactsTable(input.sessions.into_iter().map(|i| Some((i.current, i.last_accepted))).collect())
    }
}

/// One session after admission.
pub(super) struct Decided {
    pub resolution: Resolution,
    pub admission: Admission,
    /// What keeps mirroring: the current spec, the last accepted, or nothing.
    pub state: Option<Accepted>,
    pub since: Option<Timestamp>,
    /// The quota that refused it, for the pass's refusal counts.
    pub refused_quota: Option<&'static str>,
}

/// Phase three: the verdict for one candidate, and what keeps mirroring.
pub(super) fn admit(
    key: &SessionKey,
    c: Candidate,
    report: &QuotaReport,
    facts: &mut FactsTable,
    now: Timestamp,
) -> Decided {
    let kept = c.last_session.as_ref().map(|s| s.generation);
    let (current, last_facts) = match c.facts_at.and_then(|i| facts.0.get_mut(i)).and_then(Option::take) {
        Some((current, last)) => (Some(current), last),
        None => (None, None),
    };
    let since = c.since;
    let last = c.last_session.zip(last_facts).map(|(session, facts)| Accepted { session, facts, since });
    let mut refused_quota = None;
    let (admission, state) = match (&c.valid, report.verdict(key), current) {
        (Err(problem), _, _) => (Admission::Invalid { problem: Box::new(problem.clone()), kept }, last),
        (Ok(()), _, _) if c.ended.is_some() => (Admission::Ended { stopped: c.ended.unwrap_or(now) }, None),
        (Ok(()), Some(QuotaVerdict::Accepted), Some(facts)) => {
            let since = since.or(Some(now));
            (Admission::Accepted, Some(Accepted { session: c.session, facts, since }))
        }
        (Ok(()), Some(QuotaVerdict::Refused(r) | QuotaVerdict::RefusedChange(r)), _) => {
            refused_quota = Some(r.quota.reason());
            (Admission::Refused { refusal: Box::new(r.clone()), kept }, last)
        }
        (Ok(()), _, _) => (
            Admission::Invalid {
                problem: Box::new(Problem::new(ConditionReason::NotEvaluated, "the quota evaluator gave no verdict")),
                kept,
            },
            last,
        ),
    };
    Decided { resolution: c.resolution, admission, state, since, refused_quota }
}

/// The spec (checked when read), the filter's rules, and the whole NodeSession
/// through the same compiler the agent uses, so both agree on what is valid.
fn validate(cluster: &Cluster, s: &SessionInfo, r: &Resolution, ns: &NodeSession) -> Result<(), Problem> {
    if let Some(e) = &s.invalid {
        return Err(Problem::new(ConditionReason::InvalidSpec, e.clone()));
    }
    if let Some(f) = r.filter.as_ref().ok().and_then(|k| cluster.filters.get(k))
        && let Some(e) = &f.invalid
    {
        return Err(Problem::new(
            ConditionReason::InvalidFilter,
            format!("MirrorFilter {}/{}: {e}", f.namespace, f.name),
        ));
    }
    compile_node_session(ns).map(|_| ()).map_err(|e| Problem::new(ConditionReason::InvalidSpec, e.to_string()))
}

/// When the session's schedule ended, if it has by `now`.
fn ended_at(s: &SessionInfo, since: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
    let window = Window::of(s.schedule.as_ref()?, since);
    match window.at(now) {
        WindowState::Ended { stopped } => Some(stopped),
        _ => None,
    }
}

/// RFC 3339 to Unix seconds; an unreadable time sorts first (0), which only
/// matters among newcomers and is still deterministic (then by name).
fn created_seconds(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or(0)
}

/// The NodeSession the current spec would give every node.
fn node_session(cluster: &Cluster, s: &SessionInfo, r: &Resolution) -> NodeSession {
    let filter = r.filter.as_ref().ok().and_then(|k: &ObjKey| cluster.filters.get(k));
    NodeSession {
        namespace: s.key.namespace.clone(),
        name: s.key.name.clone(),
        uid: s.uid.clone(),
        generation: s.generation,
        priority: clamp_i32(s.priority),
        enabled: s.enabled,
        vni: clamp_i32(s.vni),
        packet_length: s.packet_length.map(clamp_i32),
        encapsulation: s.encapsulation,
        target_port: clamp_i32(s.target_port),
        rate_limit: s.rate_limit,
        flow_sampling: s.flow_sampling,
        targets: r.target.as_ref().map(|v| v.iter().map(ToString::to_string).collect()).unwrap_or_default(),
        inbound_rules: filter.map(|f| f.inbound.clone()).unwrap_or_default(),
        outbound_rules: filter.map(|f| f.outbound.clone()).unwrap_or_default(),
    }
}

/// Values come from i32 API fields; saturating keeps an impossible value
/// impossible (validation then names it) instead of wrapping it into range.
fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

fn facts(s: &SessionInfo, r: &Resolution, target: Option<ResolvedTarget>) -> SessionQuotaFacts {
    SessionQuotaFacts {
        filters: vec![s.filter_ref.clone()],
        // Out-of-range values never get here: validation refuses them first.
        priority: u16::try_from(s.priority).unwrap_or(u16::MAX),
        vni: u32::try_from(s.vni).unwrap_or(u32::MAX),
        sources: r.sources.iter().map(|p| p.pod.clone()).collect(),
        targets: target.into_iter().collect(),
    }
}

/// A kept state without the pods that no longer exist.
fn refresh(mut prev: Accepted, pods: &HashMap<&str, &PodInfo>) -> Accepted {
    prev.facts.sources.retain(|p| pods.contains_key(p.uid()));
    prev
}
