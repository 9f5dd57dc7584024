//! The pure reconcile path: the whole cluster picture in, every decision out.
//!
//! One pass decides, for every session, its resolution, whether its current
//! spec is accepted (quotas, validation), what keeps mirroring (the current
//! spec, or the last accepted one when a change is refused), and the desired
//! state of every node. The I/O layer writes the difference; it never asks why
//! it was woken, so a pass after any event gives the same answer.

pub mod cluster;
pub mod nodes;
pub mod resolve;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use podmirror_crds::api::{MirrorNodeStateSpec, NodeSession};
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::compile::compile_node_session;
use podmirror_crds::model::quota::{
    FilterKey, PodId, QuotaInput, QuotaLimits, QuotaRefusal, QuotaVerdict, ResolvedTarget, RuleCounts,
    SessionQuotaFacts, SessionQuotaInput, evaluate_quotas,
};
use podmirror_crds::model::schedule::{Window, WindowState};

use cluster::{Cluster, ObjKey, PodInfo, SessionInfo};
use resolve::{Interner, PodsByIp, Problem, Resolution, resolve};

/// A session as last accepted: what it programs and what it occupies.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// Shared with the plan's `effective` and the node states being built:
    /// at 20,000 sessions, copies of the rule lists are most of the memory.
    pub session: Arc<NodeSession>,
    pub facts: SessionQuotaFacts,
    /// When the session was first accepted, carried between passes so a
    /// status write the watch has not shown yet does not move it.
    pub since: Option<Timestamp>,
}

/// Every accepted session, carried from one pass to the next (and recovered
/// from the `MirrorNodeState` objects at start, see [`recover`]).
pub type AcceptedSet = BTreeMap<SessionKey, Accepted>;

/// Whether the current spec passed validation and the quotas.
///
/// The reasons are boxed: they are rare, and every session's plan holds an
/// `Admission`, so inline they would make all 20,000 of them 80 bytes larger.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    Accepted,
    /// A quota refused the current spec; `kept` is the generation that keeps
    /// mirroring instead (a refused change of an accepted session).
    Refused {
        refusal: Box<QuotaRefusal>,
        kept: Option<i64>,
    },
    /// The spec or its filter does not validate.
    Invalid {
        problem: Box<Problem>,
        kept: Option<i64>,
    },
    /// `spec.schedule` has ended: the session is out of the quota evaluation
    /// (it holds no place) and is never programmed again.
    Ended {
        stopped: Timestamp,
    },
}

impl Admission {
    pub fn kept(&self) -> Option<i64> {
        match self {
            Admission::Accepted | Admission::Ended { .. } => None,
            Admission::Refused { kept, .. } | Admission::Invalid { kept, .. } => *kept,
        }
    }
}

/// The decisions for one session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionPlan {
    pub resolution: Resolution,
    pub admission: Admission,
    /// The generation whose state is on the nodes, if any.
    pub accepted_generation: Option<i64>,
    /// What the nodes get; `None` when nothing can be mirrored (no filter, no target).
    pub effective: Option<Arc<NodeSession>>,
    /// Source pods of `effective` that are mirrorable now, with their node.
    /// Both are shared for the pass (the pod's quota identity, one name per
    /// node), not copied into each of the ~30,000 entries.
    pub programmed_pods: Vec<(PodId, Arc<str>)>,
    /// When the session was first accepted (`status.acceptedTime`).
    pub accepted_time: Option<Timestamp>,
    /// Where the pass's "now" falls in `spec.schedule`; `None` without one.
    pub window: Option<WindowState>,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub sessions: BTreeMap<SessionKey, SessionPlan>,
    /// Carry this into the next pass.
    pub accepted: AcceptedSet,
    /// Desired state of every known node and of every node hosting a source.
    pub nodes: BTreeMap<String, Arc<MirrorNodeStateSpec>>,
    /// Sessions referencing each filter (the MirrorFilter status count).
    pub filter_sessions: BTreeMap<ObjKey, usize>,
    /// Quota refusals of this pass, by quota (a metric).
    pub refusals: BTreeMap<&'static str, usize>,
    /// The next schedule boundary after the pass's "now": the controller
    /// runs a pass then even if no object changes.
    pub next_wakeup: Option<Timestamp>,
}

/// One planning pass. `previous` is the last pass's `accepted`; it is taken
/// by value so its quota facts move into the evaluator instead of being
/// copied (at 20,000 sessions they are a large part of a pass's memory).
pub fn plan(cluster: &Cluster, previous: AcceptedSet, limits: &QuotaLimits) -> Plan {
    let mut previous = previous;
    let live_pods = || cluster.pods.values().flat_map(|m| m.values()).filter(|p| !p.deleting);
    let pods_by_uid: HashMap<&str, &PodInfo> = live_pods().map(|p| (p.uid.as_str(), p)).collect();
    let mut shared = Interner::default();
    let by_ip: PodsByIp<'_> = live_pods().flat_map(|p| p.ips.iter().map(move |ip| (*ip, p))).collect();
    let live: Vec<&SessionInfo> = cluster.sessions.values().filter(|s| !s.deleting).collect();

    struct Candidate {
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
    let mut candidates: BTreeMap<SessionKey, Candidate> = BTreeMap::new();
    let mut input = QuotaInput { limits: *limits, ..QuotaInput::default() };
    for (k, f) in &cluster.filters {
        input.filter_rules.insert(
            FilterKey::new(k.namespace.clone(), k.name.clone()),
            RuleCounts { inbound: f.inbound.len(), outbound: f.outbound.len() },
        );
    }
    for s in &live {
        let (resolution, quota_target) = resolve(cluster, &by_ip, s, &mut shared);
        let session = node_session(cluster, s, &resolution);
        let valid = validate(cluster, s, &resolution, &session);
        let last = previous.remove(&s.key).filter(|a| a.session.uid == s.uid).map(|a| refresh(a, &pods_by_uid));
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
        candidates
            .insert(s.key.clone(), Candidate { resolution, session, facts_at, valid, last_session, since, ended });
    }
    let report = evaluate_quotas(&input);
    let mut facts_of: Vec<Option<(SessionQuotaFacts, Option<SessionQuotaFacts>)>> =
        input.sessions.into_iter().map(|i| Some((i.current, i.last_accepted))).collect();

    let mut out = Plan::default();
    for (key, c) in candidates {
        let kept = c.last_session.as_ref().map(|s| s.generation);
        let (current, last_facts) = match c.facts_at.and_then(|i| facts_of.get_mut(i)).and_then(Option::take) {
            Some((current, last)) => (Some(current), last),
            None => (None, None),
        };
        let since = c.since;
        let last = c.last_session.zip(last_facts).map(|(session, facts)| Accepted { session, facts, since });
        let (admission, state) = match (&c.valid, report.verdict(&key), current) {
            (Err(problem), _, _) => (Admission::Invalid { problem: Box::new(problem.clone()), kept }, last),
            (Ok(()), _, _) if c.ended.is_some() => (Admission::Ended { stopped: c.ended.unwrap_or(cluster.now) }, None),
            (Ok(()), Some(QuotaVerdict::Accepted), Some(facts)) => {
                let since = since.or(Some(cluster.now));
                (Admission::Accepted, Some(Accepted { session: c.session, facts, since }))
            }
            (Ok(()), Some(QuotaVerdict::Refused(r) | QuotaVerdict::RefusedChange(r)), _) => {
                *out.refusals.entry(r.quota.reason()).or_default() += 1;
                (Admission::Refused { refusal: Box::new(r.clone()), kept }, last)
            }
            (Ok(()), _, _) => (
                Admission::Invalid {
                    problem: Box::new(Problem::new("NotEvaluated", "the quota evaluator gave no verdict")),
                    kept,
                },
                last,
            ),
        };
        let accepted_time = state.as_ref().and_then(|a| a.since).or(since);
        let schedule = cluster.sessions.get(&key).and_then(|s| s.schedule.as_ref());
        let window = schedule.map(|sch| Window::of(sch, accepted_time));
        if let Some(next) = window.and_then(|w| w.next_boundary(cluster.now)) {
            out.next_wakeup = Some(out.next_wakeup.map_or(next, |n| n.min(next)));
        }
        let window = window.map(|w| w.at(cluster.now));
        // Nothing is mirrored without a filter (gone or going) or a target
        // address, nor outside the schedule; the quota place is held meanwhile.
        let effective = state
            .as_ref()
            .filter(|_| c.resolution.filter.is_ok())
            .filter(|a| !a.session.targets.is_empty())
            .filter(|_| window.is_none_or(|w| matches!(w, WindowState::Running { .. })))
            .map(|a| a.session.clone());
        let programmed_pods = match (&effective, &state) {
            (Some(_), Some(a)) => mirrorable_pods(a, &pods_by_uid, &mut shared),
            _ => Vec::new(),
        };
        let accepted_generation = state.as_ref().map(|a| a.session.generation);
        if let Some(a) = state {
            out.accepted.insert(key.clone(), a);
        }
        out.sessions.insert(
            key,
            SessionPlan {
                resolution: c.resolution,
                admission,
                accepted_generation,
                effective,
                programmed_pods,
                accepted_time,
                window,
            },
        );
    }
    // The node specs are built last and are the largest part of a plan: free
    // the quota evaluation's working data first (its report, the facts table,
    // which keeps the quota input's capacity, and the pod indexes), so the
    // pass's peak holds only what the plan returns.
    drop((report, facts_of, shared, by_ip));
    out.nodes = nodes::node_states(cluster, &out.sessions, &pods_by_uid);
    for s in &live {
        *out.filter_sessions.entry(ObjKey::new(s.key.namespace.clone(), s.filter_ref.clone())).or_default() += 1;
    }
    out
}

/// The spec (checked when read), the filter's rules, and the whole NodeSession
/// through the same compiler the agent uses, so both agree on what is valid.
fn validate(cluster: &Cluster, s: &SessionInfo, r: &Resolution, ns: &NodeSession) -> Result<(), Problem> {
    if let Some(e) = &s.invalid {
        return Err(Problem::new("InvalidSpec", e.clone()));
    }
    if let Some(f) = r.filter.as_ref().ok().and_then(|k| cluster.filters.get(k))
        && let Some(e) = &f.invalid
    {
        return Err(Problem::new("InvalidFilter", format!("MirrorFilter {}/{}: {e}", f.namespace, f.name)));
    }
    compile_node_session(ns).map(|_| ()).map_err(|e| Problem::new("InvalidSpec", e.to_string()))
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
    rfc3339.parse::<k8s_openapi::jiff::Timestamp>().map(|t| t.as_second()).unwrap_or(0)
}

/// The NodeSession the current spec would give every node.
fn node_session(cluster: &Cluster, s: &SessionInfo, r: &Resolution) -> NodeSession {
    let filter = r.filter.as_ref().ok().and_then(|k| cluster.filters.get(k));
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

fn mirrorable_pods(a: &Accepted, pods: &HashMap<&str, &PodInfo>, shared: &mut Interner) -> Vec<(PodId, Arc<str>)> {
    a.facts
        .sources
        .iter()
        .filter_map(|id| pods.get(id.uid()).map(|p| (id, p)))
        .filter(|(_, p)| !p.host_network && !p.ips.is_empty())
        .filter_map(|(id, p)| p.node.as_deref().map(|n| (id.clone(), shared.node(n))))
        .collect()
}

/// Rebuilds the accepted set from the `MirrorNodeState` specs the operator
/// wrote before a restart (or before losing the lease), so a restart does not
/// turn a kept state into a refused newcomer. Only what reached a node can be
/// recovered: a session accepted with no mirrorable pod starts over as new.
pub fn recover<'a>(cluster: &Cluster, states: impl IntoIterator<Item = &'a MirrorNodeStateSpec>) -> AcceptedSet {
    let live_pods = || cluster.pods.values().flat_map(|m| m.values()).filter(|p| !p.deleting);
    let by_ip: PodsByIp<'_> = live_pods().flat_map(|p| p.ips.iter().map(move |ip| (*ip, p))).collect();
    let mut shared = Interner::default();
    let mut out = AcceptedSet::new();
    for state in states {
        for ns in &state.sessions {
            let key = SessionKey::new(ns.namespace.clone(), ns.name.clone());
            let Some(info) = cluster.sessions.get(&key).filter(|s| s.uid == ns.uid) else { continue };
            let entry = out.entry(key.clone()).or_insert_with(|| {
                let (_, quota_target) = resolve(cluster, &by_ip, info, &mut shared);
                Accepted {
                    since: info.accepted_time,
                    session: Arc::new(ns.clone()),
                    facts: SessionQuotaFacts {
                        filters: vec![info.filter_ref.clone()],
                        priority: u16::try_from(ns.priority).unwrap_or(u16::MAX),
                        vni: u32::try_from(ns.vni).unwrap_or(u32::MAX),
                        sources: Default::default(),
                        targets: quota_target.into_iter().collect(),
                    },
                }
            });
            let label = key.to_string();
            for pod in state.pods.iter().filter(|p| p.sessions.contains(&label)) {
                entry.facts.sources.insert(PodId::new(pod.uid.clone(), pod.namespace.clone(), pod.name.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ip_target;
#[cfg(test)]
mod tests_programmed;
#[cfg(test)]
mod tests_schedule;
