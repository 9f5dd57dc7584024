//! The pure reconcile path: the whole cluster picture in, every decision out.
//!
//! One pass decides, for every session, its resolution, whether its current
//! spec is accepted (quotas, validation), what keeps mirroring (the current
//! spec, or the last accepted one when a change is refused), and the desired
//! state of every node. The caller writes the difference; it never asks why
//! it was woken, so a pass after any event gives the same answer.
//!
//! Both modes run this planner: the operator on the picture its watches fill
//! in, the standalone agent on the picture its files and inventory give.

mod admit;
pub mod cluster;
pub mod nodes;
mod read;
mod recover;
pub mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::api::{MirrorNodeStateSpec, NodeSession};
use crate::model::ObjKey;
use crate::model::SessionKey;
use crate::model::quota::{PodId, QuotaLimits, QuotaRefusal, SessionQuotaFacts, evaluate_quotas};
use crate::model::schedule::{Window, WindowState};

use cluster::{Cluster, PodInfo};
use resolve::{Interner, PodsByIp, Problem, Resolution};

pub use recover::recover;

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

/// The pass's indexes of the live (not terminating) pods.
struct PodIndex<'c> {
    by_uid: HashMap<&'c str, &'c PodInfo>,
    by_ip: PodsByIp<'c>,
}

impl<'c> PodIndex<'c> {
    fn of(cluster: &'c Cluster) -> Self {
        let live = || cluster.pods.values().flat_map(|m| m.values()).filter(|p| !p.deleting);
        PodIndex {
            by_uid: live().map(|p| (p.uid.as_str(), p)).collect(),
            by_ip: live().flat_map(|p| p.ips.iter().map(move |ip| (*ip, p))).collect(),
        }
    }
}

/// One planning pass, in four phases: every live session becomes a
/// candidate (resolved, validated, its quota facts gathered), the quotas are
/// evaluated for all of them at once, each session is then admitted or not
/// and scheduled, and last the node states are built.
///
/// `previous` is the last pass's `accepted`; it is taken by value so its
/// quota facts move into the evaluator instead of being copied (at 20,000
/// sessions they are a large part of a pass's memory).
pub fn plan(cluster: &Cluster, previous: AcceptedSet, limits: &QuotaLimits) -> Plan {
    let pods = PodIndex::of(cluster);
    let mut shared = Interner::default();
    let (candidates, input) = admit::candidates(cluster, &pods, previous, limits, &mut shared);
    let report = evaluate_quotas(&input);
    let mut facts = admit::FactsTable::from(input);

    let mut out = Plan::default();
    for (key, c) in candidates {
        let decided = admit::admit(&key, c, &report, &mut facts, cluster.now);
        if let Some(quota) = decided.refused_quota {
            *out.refusals.entry(quota).or_default() += 1;
        }
        let plan = schedule(cluster, &key, decided, &pods, &mut shared, &mut out);
        out.sessions.insert(key, plan);
    }
    // The node specs are built last and are the largest part of a plan: free
    // the quota evaluation's working data first (its report, the facts table,
    // which keeps the quota input's capacity, and the pod indexes), so the
    // pass's peak holds only what the plan returns.
    let PodIndex { by_uid, by_ip } = pods;
    drop((report, facts, shared, by_ip));
    out.nodes = nodes::node_states(cluster, &out.sessions, &by_uid);
    for s in cluster.sessions.values().filter(|s| !s.deleting) {
        *out.filter_sessions.entry(ObjKey::new(s.key.namespace.clone(), s.filter_ref.clone())).or_default() += 1;
    }
    out
}

/// The last phase for one session: where "now" falls in its schedule, what
/// the nodes get and from which pods; the accepted state goes into `out`.
fn schedule(
    cluster: &Cluster,
    key: &SessionKey,
    decided: admit::Decided,
    pods: &PodIndex<'_>,
    shared: &mut Interner,
    out: &mut Plan,
) -> SessionPlan {
    let admit::Decided { resolution, admission, state, since, .. } = decided;
    let accepted_time = state.as_ref().and_then(|a| a.since).or(since);
    let schedule = cluster.sessions.get(key).and_then(|s| s.schedule.as_ref());
    let window = schedule.map(|sch| Window::of(sch, accepted_time));
    if let Some(next) = window.and_then(|w| w.next_boundary(cluster.now)) {
        out.next_wakeup = Some(out.next_wakeup.map_or(next, |n| n.min(next)));
    }
    let window = window.map(|w| w.at(cluster.now));
    // Nothing is mirrored without a filter (gone or going) or a target
    // address, nor outside the schedule; the quota place is held meanwhile.
    let effective = state
        .as_ref()
        .filter(|_| resolution.filter.is_ok())
        .filter(|a| !a.session.targets.is_empty())
        .filter(|_| window.is_none_or(|w| matches!(w, WindowState::Running { .. })))
        .map(|a| a.session.clone());
    let programmed_pods = match (&effective, &state) {
        (Some(_), Some(a)) => mirrorable_pods(a, &pods.by_uid, shared),
        _ => Vec::new(),
    };
    let accepted_generation = state.as_ref().map(|a| a.session.generation);
    if let Some(a) = state {
        out.accepted.insert(key.clone(), a);
    }
    SessionPlan { resolution, admission, accepted_generation, effective, programmed_pods, accepted_time, window }
}

fn mirrorable_pods(a: &Accepted, pods: &HashMap<&str, &PodInfo>, shared: &mut Interner) -> Vec<(PodId, Arc<str>)> {
    a.facts
        .sources
        .iter()
        .filter_map(|id| pods.get(id.uid()).map(|p| (id, p)))
        .filter(|(_, p)| !p.host_network && (!p.ips.is_empty() || p.interface_known))
        .filter_map(|(id, p)| p.node.as_deref().map(|n| (id.clone(), shared.node(n))))
        .collect()
}
