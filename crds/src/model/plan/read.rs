//! From the API objects to the planner's picture, as both modes read them:
//! the operator from its watch caches, the standalone agent from its files.
//! A spec the model refuses is carried as `invalid` (field named), so the
//! session is refused with that reason instead of failing the whole pass.

use crate::api::{MirrorFilter, MirrorSession};
use crate::model::compile::{compile_filter, validate_session_spec};
use crate::model::{ObjKey, SessionKey};

use super::cluster::{FilterInfo, NodeReport, Selector, SessionInfo, SourceRef, TargetRef};

impl SessionInfo {
    /// `s` as the planner reads it; `key` and `uid` come from its metadata,
    /// which the caller has checked (or defaulted).
    pub fn read(key: SessionKey, uid: String, s: &MirrorSession) -> SessionInfo {
        let spec = &s.spec;
        let mut invalid = validate_session_spec(spec).err().map(|e| e.to_string());
        let mut sources = Vec::with_capacity(spec.sources.len());
        for (i, src) in spec.sources.iter().enumerate() {
            match (&src.pod_name, &src.pod_selector) {
                (Some(n), _) => sources.push(SourceRef::PodName(n.clone())),
                (None, Some(sel)) => match Selector::parse(sel, &format!("spec.sources[{i}].podSelector")) {
                    Ok(sel) => sources.push(SourceRef::Selector(sel)),
                    // The session is refused with this; the selector selects nothing.
                    Err(e) => invalid = invalid.or(Some(e.to_string())),
                },
                (None, None) => {}
            }
        }
        SessionInfo {
            uid,
            generation: s.metadata.generation.unwrap_or(0),
            created: s.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            priority: spec.priority.into(),
            vni: spec.vni.into(),
            packet_length: spec.packet_length.map(Into::into),
            enabled: spec.enabled,
            filter_ref: spec.filter_ref.name.clone(),
            sources,
            target: target(&key, s),
            encapsulation: spec.encapsulation,
            target_port: spec.target_port.into(),
            rate_limit: spec.rate_limit,
            flow_sampling: spec.flow_sampling,
            invalid,
            deleting: s.metadata.deletion_timestamp.is_some(),
            node_reports: node_reports(s),
            schedule: spec.schedule.clone(),
            accepted_time: s.status.as_ref().and_then(|st| st.accepted_time.as_ref()).map(|t| t.0),
            key,
        }
    }
}

impl FilterInfo {
    /// `f` as the planner reads it, with the model's compile error if any.
    pub fn read(key: &ObjKey, f: &MirrorFilter) -> FilterInfo {
        FilterInfo {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            invalid: compile_filter(&f.spec).err().map(|e| e.to_string()),
            inbound: f.spec.inbound_rules.clone(),
            outbound: f.spec.outbound_rules.clone(),
            deleting: f.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// `spec.target`, when it names exactly one kind of target.
fn target(key: &SessionKey, s: &MirrorSession) -> Option<TargetRef> {
    let t = &s.spec.target;
    match (&t.service, &t.pod, &t.ip) {
        (Some(svc), None, None) => Some(TargetRef::Service {
            namespace: svc.namespace.clone().unwrap_or_else(|| key.namespace.clone()),
            name: svc.name.clone(),
        }),
        (None, Some(p), None) => Some(TargetRef::Pod { name: p.name.clone() }),
        (None, None, Some(ip)) => Some(TargetRef::Ip(ip.clone())),
        _ => None,
    }
}

/// What the agents report in `status.nodes[]`, by node.
fn node_reports(s: &MirrorSession) -> std::collections::BTreeMap<String, NodeReport> {
    let nodes = s.status.as_ref().and_then(|st| st.nodes.as_ref());
    nodes
        .into_iter()
        .flatten()
        .map(|n| {
            let report = NodeReport {
                generation: n.programmed_generation,
                programmed_pods: n.programmed_interfaces.as_ref().map(Vec::len).unwrap_or(0),
                error: n.error.clone(),
            };
            (n.node.clone(), report)
        })
        .collect()
}
