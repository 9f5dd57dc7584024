//! From the objects of the standalone directory to this node's desired
//! state, by the operator's own planner (`podmirror_crds::model::plan`) run
//! on the directory's cluster picture (`picture`).
//!
//! Two kinds of trouble, two answers, as in the cluster:
//! - what the API server would refuse (syntax, schema bounds, CEL rules,
//!   duplicates) makes the whole load fail: the caller keeps the
//!   configuration in force;
//! - what the operator would refuse or could not resolve for one session (a
//!   missing filter, pod or Service, no consent, a quota) is reported for
//!   that session only; a refused change keeps the last accepted state.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use podmirror_crds::api::{MirrorNodeStateSpec, SessionSchedule};
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::plan::resolve::Problem;
use podmirror_crds::model::plan::{AcceptedSet, Admission, SessionPlan, plan};
use podmirror_crds::model::quota::QuotaLimits;

use super::files::Loaded;
use super::picture;
use crate::core::{AgentError, PodKey};

/// The outcome of one successful load.
#[derive(Debug, Default)]
pub struct Resolution {
    pub node_state: MirrorNodeStateSpec,
    /// Explicit host interfaces from the inventory (`interface:`), by pod.
    pub interfaces: BTreeMap<PodKey, String>,
    /// The sessions in force after this load (pass back in next time).
    pub accepted: AcceptedSet,
    /// One entry per session that does not mirror as specified: refused
    /// (new ones), its change refused (kept as before), or unresolved.
    pub refusals: Vec<AgentError>,
    /// `spec.schedule` of the sessions that have one: the loop programs a
    /// session only inside its window (`standalone::schedule`).
    pub schedules: BTreeMap<SessionKey, SessionSchedule>,
}

/// Resolve a load against the sessions accepted before it.
pub fn resolve(
    loaded: &Loaded,
    previous: &AcceptedSet,
    node: &str,
    limits: QuotaLimits,
) -> Result<Resolution, AgentError> {
    let cluster = picture::cluster(loaded, node, Timestamp::now())?;
    let planned = plan(&cluster, previous.clone(), &limits);
    let refusals = planned.sessions.iter().filter_map(|(key, p)| refusal(key, p)).collect();
    let node_state = planned
        .nodes
        .get(node)
        .map(|s| MirrorNodeStateSpec::clone(s))
        .unwrap_or_else(|| MirrorNodeStateSpec { node: node.to_owned(), ..MirrorNodeStateSpec::default() });
    let interfaces = node_state
        .pods
        .iter()
        .map(|p| PodKey::new(p.namespace.clone(), p.name.clone()))
        .filter_map(|key| loaded.inventory.pods.get(&key).and_then(|e| e.interface.clone()).map(|i| (key, i)))
        .collect();
    let schedules = loaded
        .sessions
        .iter()
        .filter_map(|s| {
            let key = SessionKey::new(
                s.object.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                s.object.metadata.name.clone().unwrap_or_default(),
            );
            s.object.spec.schedule.clone().map(|sch| (key, sch))
        })
        .collect();
    Ok(Resolution { node_state, interfaces, accepted: planned.accepted, refusals, schedules })
}

/// Why `key` does not mirror as specified, if it does not: the admission
/// first, then what did not resolve (filter, sources, target), as the
/// session's conditions would say in a cluster.
fn refusal(key: &SessionKey, p: &SessionPlan) -> Option<AgentError> {
    let kept = |kept: Option<i64>| if kept.is_some() { " (keeps mirroring as last accepted)" } else { "" };
    let (field, message) = match &p.admission {
        Admission::Refused { refusal, kept: k } => {
            ("spec".to_owned(), format!("quota {}: {}{}", refusal.quota, refusal.message, kept(*k)))
        }
        Admission::Invalid { problem, kept: k } => {
            let (field, message) = split(problem);
            (field, format!("{message}{}", kept(*k)))
        }
        Admission::Accepted | Admission::Ended { .. } => {
            let r = &p.resolution;
            let problem = r.filter.as_ref().err().or(r.sources_problem.as_ref()).or(r.target.as_ref().err())?;
            split(problem)
        }
    };
    Some(AgentError::Config { object: format!("MirrorSession {key}"), field, message })
}

/// The planner's messages start with the field they are about
/// (`spec.sources[0].podName: pod default/x not found`).
fn split(problem: &Problem) -> (String, String) {
    match problem.message.split_once(": ") {
        Some((field, rest)) if field.starts_with("spec") && !field.contains(' ') => (field.to_owned(), rest.to_owned()),
        _ => ("spec".to_owned(), problem.message.clone()),
    }
}
