//! What one pass must write, as data: the difference between the plan and the
//! objects as last seen. Pure, so the exact writes of a scenario are tested
//! without an API server, and the executor (`sync::execute`) stays dumb.
//!
//! Order matters and is fixed: finalizers first (nothing is programmed for an
//! object we could lose track of), node states next, then status and Events,
//! and finalizer removal last, only after the node states that drop the
//! deleted session were written.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};
use podmirror_crds::api::{
    ConditionReason, MirrorFilter, MirrorFilterStatus, MirrorNodeState, MirrorNodeStateSpec, MirrorSession,
    MirrorSessionStatus, SessionPhase,
};

use crate::index;
use crate::plan::cluster::ObjKey;
use crate::plan::status::{ACCEPTED, COMPLETED, VALID, filter_status, session_status};
use crate::plan::{Admission, Plan};

/// Set on sessions and filters so deletion first removes them from every node.
pub const FINALIZER: &str = "podmirror.io/cleanup";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MirrorSession,
    MirrorFilter,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Merge patch of `metadata.finalizers`, guarded by `resourceVersion`.
    SetFinalizers {
        kind: Kind,
        namespace: String,
        name: String,
        finalizers: Vec<String>,
        resource_version: Option<String>,
    },
    ApplyNodeState {
        name: String,
        spec: std::sync::Arc<MirrorNodeStateSpec>,
    },
    DeleteNodeState {
        name: String,
    },
    ApplySessionStatus {
        namespace: String,
        name: String,
        status: MirrorSessionStatus,
    },
    ApplyFilterStatus {
        namespace: String,
        name: String,
        status: MirrorFilterStatus,
    },
    /// Removes agents' `status.nodes[]` entries of nodes that no longer
    /// exist (their agents are gone and cannot withdraw them). A JSON patch
    /// of `(index, node)` pairs, each guarded by a `test` of the node name.
    RemoveNodeEntries {
        namespace: String,
        name: String,
        entries: Vec<(usize, String)>,
    },
    Event {
        regarding: ObjectReference,
        warning: bool,
        reason: String,
        note: String,
    },
}

/// The objects as the watches last saw them.
#[derive(Default)]
pub struct Seen<'a> {
    pub sessions: Vec<&'a MirrorSession>,
    pub filters: Vec<&'a MirrorFilter>,
    pub node_states: Vec<&'a MirrorNodeState>,
    /// Names of the cluster's Node objects. Empty means "unknown": then no
    /// node entry is ever treated as stale.
    pub nodes: BTreeSet<&'a str>,
}

pub fn writes(plan: &Plan, seen: &Seen<'_>, now: &Time) -> Vec<Write> {
    let mut pass = Pass::default();
    for s in &seen.sessions {
        pass.session(plan, seen, s, now);
    }
    for f in &seen.filters {
        pass.filter(plan, f, now);
    }
    let node_writes = node_writes(plan, seen);
    pass.add_finalizers.into_iter().chain(node_writes).chain(pass.statuses).chain(pass.remove_finalizers).collect()
}

/// The writes of one pass, kept apart by kind so `writes` puts them in the
/// fixed order.
#[derive(Default)]
struct Pass {
    add_finalizers: Vec<Write>,
    remove_finalizers: Vec<Write>,
    statuses: Vec<Write>,
}

impl Pass {
    /// Adds or removes our finalizer; true when the object is not being
    /// deleted, so its status is written too.
    fn finalizer<K: Resource>(&mut self, kind: Kind, obj: &K, deleting: bool) -> bool {
        let has = obj.finalizers().iter().any(|f| f == FINALIZER);
        if deleting {
            if has {
                self.remove_finalizers.push(set_finalizers(kind, obj, false));
            }
            return false;
        }
        if !has {
            self.add_finalizers.push(set_finalizers(kind, obj, true));
        }
        true
    }

    fn session(&mut self, plan: &Plan, seen: &Seen<'_>, s: &MirrorSession, now: &Time) {
        let Ok(info) = index::session(s) else { return };
        if !self.finalizer(Kind::MirrorSession, s, info.deleting) {
            return;
        }
        let Some(sp) = plan.sessions.get(&info.key) else { return };
        let current = s.status.clone().unwrap_or_default();
        let previous = current.conditions.clone().unwrap_or_default();
        let mut desired = session_status(&info, sp, &previous, now);
        desired.mirrored_packets =
            current.nodes.as_ref().map(|n| n.iter().filter_map(|e| e.mirrored_packets).sum::<i64>());
        let stale = stale_node_entries(&current, seen, plan);
        if !stale.is_empty() {
            self.statuses.push(Write::RemoveNodeEntries {
                namespace: info.key.namespace.clone(),
                name: info.key.name.clone(),
                entries: stale,
            });
        }
        let mut ours = current.clone();
        ours.nodes = None;
        if ours != desired {
            self.statuses.extend(events(s, &current, &desired, sp));
            self.statuses.push(Write::ApplySessionStatus {
                namespace: info.key.namespace.clone(),
                name: info.key.name.clone(),
                status: desired,
            });
        }
    }

    fn filter(&mut self, plan: &Plan, f: &MirrorFilter, now: &Time) {
        let Ok(info) = index::filter(f) else { return };
        if !self.finalizer(Kind::MirrorFilter, f, info.deleting) {
            return;
        }
        let key = ObjKey::new(info.namespace.clone(), info.name.clone());
        let count = plan.filter_sessions.get(&key).copied().unwrap_or(0);
        let current = f.status.clone().unwrap_or_default();
        let previous = current.conditions.clone().unwrap_or_default();
        let desired = filter_status(&info, count, f.metadata.generation, &previous, now);
        if current != desired {
            self.statuses.extend(filter_event(f, &current, &desired));
            self.statuses.push(Write::ApplyFilterStatus {
                namespace: info.namespace,
                name: info.name,
                status: desired,
            });
        }
    }
}

/// Applies each node state the plan changes, deletes each it no longer has.
fn node_writes(plan: &Plan, seen: &Seen<'_>) -> Vec<Write> {
    let seen_nodes: BTreeMap<&str, &MirrorNodeState> =
        seen.node_states.iter().filter_map(|n| n.metadata.name.as_deref().map(|name| (name, *n))).collect();
    let mut node_writes = Vec::new();
    for (name, spec) in &plan.nodes {
        if seen_nodes.get(name.as_str()).is_none_or(|n| n.spec != **spec) {
            node_writes.push(Write::ApplyNodeState { name: name.clone(), spec: spec.clone() });
        }
    }
    for name in seen_nodes.keys() {
        if !plan.nodes.contains_key(*name) {
            node_writes.push(Write::DeleteNodeState { name: (*name).to_owned() });
        }
    }
    node_writes
}

/// `(index, node)` of the entries in `status.nodes` whose node is neither a
/// Node object nor a node the plan writes a state for.
fn stale_node_entries(current: &MirrorSessionStatus, seen: &Seen<'_>, plan: &Plan) -> Vec<(usize, String)> {
    if seen.nodes.is_empty() {
        return Vec::new();
    }
    let Some(entries) = current.nodes.as_ref() else { return Vec::new() };
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !seen.nodes.contains(e.node.as_str()) && !plan.nodes.contains_key(&e.node))
        .map(|(i, e)| (i, e.node.clone()))
        .collect()
}

fn set_finalizers<K: Resource>(kind: Kind, obj: &K, add: bool) -> Write {
    let mut finalizers: Vec<String> = obj.meta().finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != FINALIZER);
    if add {
        finalizers.push(FINALIZER.to_owned());
    }
    Write::SetFinalizers {
        kind,
        namespace: obj.meta().namespace.clone().unwrap_or_default(),
        name: obj.meta().name.clone().unwrap_or_default(),
        finalizers,
        resource_version: obj.meta().resource_version.clone(),
    }
}

/// An Event on each phase transition, and on each new refusal reason.
fn events(
    s: &MirrorSession,
    current: &MirrorSessionStatus,
    desired: &MirrorSessionStatus,
    sp: &crate::plan::SessionPlan,
) -> Vec<Write> {
    let regarding = s.object_ref(&());
    let mut out = Vec::new();
    let accepted = |st: &MirrorSessionStatus| {
        st.conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == ACCEPTED))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    if accepted(current) != accepted(desired)
        && let Admission::Refused { refusal, .. } = &sp.admission
    {
        out.push(Write::Event {
            regarding: regarding.clone(),
            warning: true,
            reason: "QuotaRefused".into(),
            note: truncate(format!("{}: {}", refusal.quota.reason(), refusal.message)),
        });
    }
    if current.phase != desired.phase
        && let Some(phase) = desired.phase
    {
        let warning = matches!(phase, SessionPhase::Invalid | SessionPhase::Degraded);
        let conditions = desired.conditions.as_deref().unwrap_or_default();
        // A schedule's phases say when (the `Completed` condition); others
        // the first failing condition.
        let why = match phase {
            SessionPhase::Scheduled | SessionPhase::Completed => conditions.iter().find(|c| c.type_ == COMPLETED),
            _ => conditions.iter().find(|c| c.status == "False" && (warning || c.type_ != "Programmed")),
        }
        .map(|c| format!(": {} {}", c.type_, c.message))
        .unwrap_or_default();
        let reason = match phase {
            SessionPhase::Completed => "SessionCompleted".to_owned(),
            other => format!("{other:?}"),
        };
        out.push(Write::Event { regarding, warning, reason, note: truncate(format!("phase {phase:?}{why}")) });
    }
    out
}

/// An Event when a filter's `Valid` condition turns (or first is) False,
/// and when it turns True again.
fn filter_event(f: &MirrorFilter, current: &MirrorFilterStatus, desired: &MirrorFilterStatus) -> Option<Write> {
    let valid = |st: &MirrorFilterStatus| {
        st.conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == VALID))
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    let (before, (now, message)) = (valid(current), valid(desired)?);
    if before.as_ref().map(|b| &b.0) == Some(&now) || (before.is_none() && now == "True") {
        return None;
    }
    let warning = now != "True";
    Some(Write::Event {
        regarding: f.object_ref(&()),
        warning,
        reason: if warning { ConditionReason::InvalidRules } else { ConditionReason::RulesValid }.to_string(),
        note: truncate(if warning {
            format!("the filter's rules do not compile: {message}")
        } else {
            "every rule compiles again".into()
        }),
    })
}

/// Event notes are limited to 1 kB by the API.
fn truncate(mut s: String) -> String {
    if s.len() > 1000 {
        let mut cut = 1000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
