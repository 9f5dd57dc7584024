//! The session and filter status the operator owns, computed from a plan.
//!
//! Condition transition times are kept from the previous status when a
//! condition's status did not change (Kubernetes convention), so rewriting
//! an unchanged status is a no-op for server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use podmirror_crds::api::{
    ConditionReason, MirrorFilterStatus, MirrorSessionStatus, SessionPhase, SourceState, SourceStatus, TargetKind,
    TargetStatus,
};

use podmirror_crds::model::schedule::WindowState;

use super::cluster::{FilterInfo, SessionInfo, TargetRef};
use super::resolve::{Problem, Readiness};
use super::{Admission, SessionPlan};

pub const ACCEPTED: &str = "Accepted";
pub const FILTER_RESOLVED: &str = "FilterResolved";
pub const TARGET_RESOLVED: &str = "TargetResolved";
pub const SOURCES_RESOLVED: &str = "SourcesResolved";
pub const PROGRAMMED: &str = "Programmed";
/// Only on sessions with `spec.schedule`: True once the schedule has ended.
pub const COMPLETED: &str = "Completed";

struct Cond {
    type_: &'static str,
    ok: bool,
    reason: ConditionReason,
    message: String,
}

fn cond_from(type_: &'static str, r: Result<ConditionReason, &Problem>, ok_message: String) -> Cond {
    match r {
        Ok(reason) => Cond { type_, ok: true, reason, message: ok_message },
        Err(p) => Cond { type_, ok: false, reason: p.reason.clone(), message: p.message.clone() },
    }
}

/// Whether every node hosting a mirrorable source reports it programmed, at
/// the accepted generation: an entry of an older generation (the node has not
/// caught up with a change yet) does not count, nor does its error, which is
/// about a state the node is leaving.
pub fn programmed(info: &SessionInfo, plan: &SessionPlan) -> Result<(), Problem> {
    if let Some(p) = outside_window(plan.window) {
        return Err(p);
    }
    let Some(effective) = plan.effective.as_ref() else {
        return Err(not_programmable(&plan.admission));
    };
    let generation = effective.generation;
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, node) in &plan.programmed_pods {
        *per_node.entry(node).or_default() += 1;
    }
    if per_node.is_empty() {
        return Err(Problem::new(ConditionReason::NoSourceOnAnyNode, "no source pod is running on a node yet"));
    }
    let waiting = waiting_nodes(info, &per_node, generation)?;
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(Problem::new(
            ConditionReason::WaitingForNodes,
            format!("generation {generation} not yet programmed on {}", waiting.join(", ")),
        ))
    }
}

/// Why nothing is programmed when the schedule's window is not open.
fn outside_window(window: Option<WindowState>) -> Option<Problem> {
    match window {
        Some(WindowState::NotStarted { starts }) => {
            Some(Problem::new(ConditionReason::NotStarted, format!("spec.schedule: mirroring starts at {starts}")))
        }
        Some(WindowState::Ended { stopped }) => {
            Some(Problem::new(ConditionReason::Completed, format!("spec.schedule: mirroring ended at {stopped}")))
        }
        _ => None,
    }
}

/// Why nothing is programmed when there is no effective session: a refused or
/// invalid session never gets that far, whatever its filter and target.
fn not_programmable(admission: &Admission) -> Problem {
    match admission {
        Admission::Refused { .. } => Problem::new(
            ConditionReason::NotAccepted,
            "nothing is programmed: a quota refused the session (see Accepted)",
        ),
        Admission::Invalid { .. } => {
            Problem::new(ConditionReason::NotAccepted, "nothing is programmed: the session is invalid (see Accepted)")
        }
        Admission::Accepted | Admission::Ended { .. } => {
            Problem::new(ConditionReason::NotProgrammable, "nothing to program until the filter and the target resolve")
        }
    }
}

/// The nodes not yet programmed at `generation` (each with why), or the first
/// node error at that generation.
fn waiting_nodes(
    info: &SessionInfo,
    per_node: &BTreeMap<&str, usize>,
    generation: i64,
) -> Result<Vec<String>, Problem> {
    let mut waiting = Vec::new();
    for (node, want) in per_node {
        match info.node_reports.get(*node) {
            None => waiting.push(format!("{node} (no report)")),
            Some(r) if r.generation != Some(generation) => waiting.push(match r.generation {
                Some(g) => format!("{node} (generation {g}, not {generation})"),
                None => format!("{node} (no generation reported, not {generation})"),
            }),
            Some(r) if r.error.is_some() => {
                return Err(Problem::new(
                    ConditionReason::NodeError,
                    format!("node {node}: {}", r.error.as_deref().unwrap_or_default()),
                ));
            }
            Some(r) if r.programmed_pods >= *want => {}
            Some(r) => waiting.push(format!("{node} ({}/{want} pods)", r.programmed_pods)),
        }
    }
    Ok(waiting)
}

/// The operator's part of a session status.
pub fn session_status(
    info: &SessionInfo,
    plan: &SessionPlan,
    previous: &[Condition],
    now: &Time,
) -> MirrorSessionStatus {
    let r = &plan.resolution;
    let accepted = accepted_condition(info, &plan.admission);
    let filter = cond_from(
        FILTER_RESOLVED,
        r.filter.as_ref().map(|_| ConditionReason::FilterFound),
        format!("MirrorFilter {} found", info.filter_ref),
    );
    let target = cond_from(
        TARGET_RESOLVED,
        r.target.as_ref().map(|_| ConditionReason::TargetResolved),
        format!("{} address(es)", r.target.as_ref().map(Vec::len).unwrap_or(0)),
    );
    let sources = match &r.sources_problem {
        None => Cond {
            type_: SOURCES_RESOLVED,
            ok: true,
            reason: ConditionReason::SourcesResolved,
            message: format!("{} pod(s)", r.sources.len()),
        },
        Some(p) => Cond { type_: SOURCES_RESOLVED, ok: false, reason: p.reason.clone(), message: p.message.clone() },
    };
    let prog = programmed(info, plan);
    let programmed = cond_from(
        PROGRAMMED,
        prog.as_ref().map(|_| ConditionReason::Programmed),
        "programmed on every source node".into(),
    );
    let degraded = !accepted.ok
        || !filter.ok
        || !target.ok
        || (!sources.ok && !r.sources.is_empty())
        || matches!(&prog, Err(p) if p.reason == ConditionReason::NodeError);
    let phase = session_phase(info, plan, degraded, prog.is_ok());

    let completed = info.schedule.as_ref().map(|sch| completed_condition(sch, plan.window));
    let conditions = [accepted, filter, target, sources, programmed]
        .into_iter()
        .chain(completed)
        .map(|c| to_condition(c, info.generation, previous, now))
        .collect();
    MirrorSessionStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        observed_generation: Some(info.generation),
        accepted_generation: plan.accepted_generation,
        accepted_time: plan.accepted_time.map(Time),
        sources: Some(r.sources.iter().map(source_status).collect()),
        source_count: Some(i32::try_from(r.sources.len()).unwrap_or(i32::MAX)),
        target: info.target.as_ref().map(|t| target_status(t, plan)),
        mirrored_packets: None,
        nodes: None,
    }
}

/// `Accepted`: whether validation and quotas let this generation in.
fn accepted_condition(info: &SessionInfo, admission: &Admission) -> Cond {
    let (ok, reason, message) = match admission {
        Admission::Accepted => {
            (true, ConditionReason::Accepted, format!("generation {} passed validation and quotas", info.generation))
        }
        Admission::Refused { refusal, kept } => (
            false,
            refusal.quota.into(),
            format!(
                "quota {} exceeded ({} > {}): {}{}",
                refusal.quota.reason(),
                refusal.would_be,
                refusal.limit,
                refusal.message,
                kept_note(*kept)
            ),
        ),
        Admission::Invalid { problem, kept } => {
            (false, problem.reason.clone(), format!("{}{}", problem.message, kept_note(*kept)))
        }
        Admission::Ended { stopped } => (
            true,
            ConditionReason::ScheduleEnded,
            format!("the schedule ended at {stopped}; the session holds no quota place any more"),
        ),
    };
    Cond { type_: ACCEPTED, ok, reason, message }
}

/// The phase, first match wins: refusal, schedule window, disabled, then
/// `degraded` (some condition failed), programmed, else pending.
fn session_phase(info: &SessionInfo, plan: &SessionPlan, degraded: bool, programmed: bool) -> SessionPhase {
    let refused_outright = matches!(plan.admission, Admission::Refused { .. } | Admission::Invalid { .. })
        && plan.admission.kept().is_none();
    if refused_outright {
        SessionPhase::Invalid
    } else if matches!(plan.window, Some(WindowState::Ended { .. })) {
        SessionPhase::Completed
    } else if matches!(plan.window, Some(WindowState::NotStarted { .. })) {
        SessionPhase::Scheduled
    } else if !info.enabled && matches!(plan.admission, Admission::Accepted) {
        SessionPhase::Disabled
    } else if degraded {
        SessionPhase::Degraded
    } else if programmed {
        SessionPhase::Active
    } else {
        SessionPhase::Pending
    }
}

/// `Completed`: False before and during the window (saying when it starts or
/// stops), True after it, with the reason it ended.
fn completed_condition(schedule: &podmirror_crds::api::SessionSchedule, window: Option<WindowState>) -> Cond {
    let (ok, reason, message) = match window {
        Some(WindowState::NotStarted { starts }) => {
            (false, ConditionReason::NotStarted, format!("mirroring starts at {starts}"))
        }
        Some(WindowState::Running { stops: Some(stops) }) => {
            (false, ConditionReason::Running, format!("mirroring runs until {stops}"))
        }
        Some(WindowState::Running { stops: None }) if schedule.duration.is_some() => {
            (false, ConditionReason::NotAccepted, "the duration counts from the session's first acceptance".to_owned())
        }
        Some(WindowState::Running { stops: None }) | None => {
            (false, ConditionReason::Running, "mirroring runs with no stop".to_owned())
        }
        Some(WindowState::Ended { stopped }) => {
            let reason = if schedule.stop_time.is_some() {
                ConditionReason::StopTimeReached
            } else {
                ConditionReason::DurationElapsed
            };
            (true, reason, format!("mirroring ended at {stopped}"))
        }
    };
    Cond { type_: COMPLETED, ok, reason, message }
}

fn kept_note(kept: Option<i64>) -> String {
    match kept {
        Some(g) => format!("; generation {g} keeps mirroring as last accepted"),
        None => String::new(),
    }
}

fn source_status(s: &super::resolve::ResolvedSource) -> SourceStatus {
    let message = match s.state {
        Readiness::Ready => None,
        Readiness::HostNetwork => Some("host-network pod: no veth of its own to mirror".to_owned()),
        other => Some(other.as_str().to_owned()),
    };
    let state: SourceState = s.state.state();
    SourceStatus {
        pod: s.pod.name().to_owned(),
        node: s.node.as_deref().map(str::to_owned),
        pod_ips: (!s.ips.is_empty()).then(|| s.ips.iter().map(ToString::to_string).collect()),
        state,
        message,
    }
}

fn target_status(t: &TargetRef, plan: &SessionPlan) -> TargetStatus {
    let (kind, name) = match t {
        TargetRef::Service { namespace, name } => (TargetKind::Service, format!("{namespace}/{name}")),
        TargetRef::Pod { name } => (TargetKind::Pod, name.clone()),
        TargetRef::Ip(ip) => (TargetKind::IP, ip.clone()),
    };
    let addresses = plan.resolution.target.as_ref().ok().map(|v| v.iter().map(ToString::to_string).collect());
    TargetStatus { kind, name, addresses }
}

fn to_condition(c: Cond, generation: i64, previous: &[Condition], now: &Time) -> Condition {
    let status = if c.ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|p| p.type_ == c.type_ && p.status == status)
        .map(|p| p.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: c.type_.to_owned(),
        status: status.to_owned(),
        reason: c.reason.as_str().to_owned(),
        message: c.message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The filter condition: `Valid`, False with the model's field-naming error.
pub const VALID: &str = "Valid";

/// The operator's part of a filter status.
pub fn filter_status(
    filter: &FilterInfo,
    sessions: usize,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> MirrorFilterStatus {
    let valid = match &filter.invalid {
        None => {
            Cond { type_: VALID, ok: true, reason: ConditionReason::RulesValid, message: "every rule compiles".into() }
        }
        Some(e) => Cond { type_: VALID, ok: false, reason: ConditionReason::InvalidRules, message: e.clone() },
    };
    MirrorFilterStatus {
        sessions: Some(i32::try_from(sessions).unwrap_or(i32::MAX)),
        inbound_rule_count: Some(i32::try_from(filter.inbound.len()).unwrap_or(i32::MAX)),
        outbound_rule_count: Some(i32::try_from(filter.outbound.len()).unwrap_or(i32::MAX)),
        conditions: Some(vec![to_condition(valid, generation.unwrap_or(0), previous, now)]),
        observed_generation: generation,
    }
}
