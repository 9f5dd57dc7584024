//! `MirrorNodeState` (the operator's per-node desired state, or the one the
//! standalone mode builds from files) -> the core's `DesiredState`.
//!
//! Both agent modes go through here, so a node state is held to the same
//! compile checks whatever wrote it. A bad session or pod is left out and
//! reported; it never takes the rest of the node down with it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use podmirror_crds::api::{MirrorNodeStateSpec, NodePod};
use podmirror_crds::model::compile::compile_node_session;
use podmirror_crds::model::{CompiledSession, SessionKey};

use super::desired::{DesiredPod, DesiredState, PodKey};
use super::error::AgentError;

/// Builds the desired state; `find_ifindex` locates a pod's host interface.
/// Returns the pods it could place and an error for each it could not.
pub fn desired_from_node_state(
    spec: &MirrorNodeStateSpec,
    mut find_ifindex: impl FnMut(&NodePod) -> Result<u32, AgentError>,
) -> (DesiredState, Vec<AgentError>) {
    let mut errors = Vec::new();
    let sessions = compile_sessions(spec, &mut errors);
    let mut pods = Vec::new();
    for (index, pod) in spec.pods.iter().enumerate() {
        let key = PodKey::new(pod.namespace.clone(), pod.name.clone());
        let Some(ips) = parse_ips(spec, index, pod, &mut errors) else {
            continue;
        };
        // A session that failed to compile is already reported; the pod is
        // still mirrored by its other sessions.
        let pod_sessions: Vec<CompiledSession> =
            pod.sessions.iter().filter_map(|name| sessions.get(name).cloned()).collect();
        report_unknown_sessions(spec, index, pod, &sessions, &mut errors);
        if pod_sessions.is_empty() {
            continue;
        }
        match find_ifindex(pod) {
            Ok(ifindex) => pods.push(DesiredPod { pod: key, ips, ifindex, sessions: pod_sessions }),
            Err(error) => errors.push(error),
        }
    }
    (DesiredState { pods }, errors)
}

/// The sessions that compile, by `namespace/name`; an error for each other.
fn compile_sessions(spec: &MirrorNodeStateSpec, errors: &mut Vec<AgentError>) -> BTreeMap<String, CompiledSession> {
    let mut sessions: BTreeMap<String, CompiledSession> = BTreeMap::new();
    for node_session in &spec.sessions {
        match compile_node_session(node_session) {
            Ok(compiled) => {
                sessions.insert(format!("{}/{}", node_session.namespace, node_session.name), compiled);
            }
            Err(error) => errors.push(AgentError::SessionConfig {
                node: spec.node.clone(),
                session: SessionKey::new(node_session.namespace.clone(), node_session.name.clone()),
                field: error.field().to_string(),
                message: error.to_string(),
            }),
        }
    }
    sessions
}

/// The pod's IPs; `None` (every bad one reported) when any does not parse.
fn parse_ips(
    spec: &MirrorNodeStateSpec,
    index: usize,
    pod: &NodePod,
    errors: &mut Vec<AgentError>,
) -> Option<Vec<IpAddr>> {
    let mut ips = Vec::new();
    let mut bad_ip = false;
    for (i, ip) in pod.ips.iter().enumerate() {
        match ip.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                bad_ip = true;
                errors.push(AgentError::Config {
                    object: format!("MirrorNodeState {}", spec.node),
                    field: format!("pods[{index}].ips[{i}]"),
                    message: format!("{ip:?} is not an IP address"),
                });
            }
        }
    }
    (!bad_ip).then_some(ips)
}

/// Reports the session names of a pod that the node state does not hold at
/// all (those that only failed to compile are reported already).
fn report_unknown_sessions(
    spec: &MirrorNodeStateSpec,
    index: usize,
    pod: &NodePod,
    sessions: &BTreeMap<String, CompiledSession>,
    errors: &mut Vec<AgentError>,
) {
    for name in &pod.sessions {
        if !sessions.contains_key(name) && !spec.sessions.iter().any(|s| format!("{}/{}", s.namespace, s.name) == *name)
        {
            errors.push(AgentError::Config {
                object: format!("MirrorNodeState {}", spec.node),
                field: format!("pods[{index}].sessions"),
                message: format!("names session {name:?}, which the node state does not hold"),
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use podmirror_crds::api::{FilterRule, NodeSession};

    fn rule_yaml(priority: i32) -> FilterRule {
        serde_yaml::from_str(&format!(
            "{{priority: {priority}, action: Accept, protocol: TCP, ipFamily: IPv4, destinationCIDR: 192.168.0.230/32}}"
        ))
        .unwrap()
    }

    fn node_session(name: &str, vni: i32) -> NodeSession {
        NodeSession {
            vni,
            packet_length: Some(96),
            targets: vec!["192.168.0.164".into()],
            inbound_rules: vec![rule_yaml(1)],
            ..podmirror_testkit::fixtures::node_session("default", name)
        }
    }

    fn node_pod(name: &str, sessions: &[&str]) -> NodePod {
        NodePod {
            namespace: "default".into(),
            name: name.into(),
            uid: String::new(),
            ips: vec!["192.168.0.230".into()],
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn bad_session_is_reported_and_the_rest_is_kept() {
        let spec = MirrorNodeStateSpec {
            node: "n1".into(),
            sessions: vec![node_session("good", 1), node_session("bad", 1 << 24)],
            pods: vec![node_pod("a", &["default/good", "default/bad"]), node_pod("b", &["default/bad"])],
        };
        let (desired, errors) = desired_from_node_state(&spec, |_| Ok(7));
        assert_eq!(desired.pods.len(), 1, "{desired:?}");
        assert_eq!(desired.pods[0].pod, PodKey::new("default", "a"));
        assert_eq!(desired.pods[0].sessions.len(), 1);
        assert_eq!(desired.pods[0].ifindex, 7);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let msg = errors[0].to_string();
        assert!(msg.contains("sessions[default/bad].vni"), "{msg}");
    }

    #[test]
    fn undiscoverable_pod_and_unknown_session_are_reported() {
        let spec = MirrorNodeStateSpec {
            node: "n1".into(),
            sessions: vec![node_session("good", 1)],
            pods: vec![node_pod("a", &["default/good"]), node_pod("b", &["default/nope"])],
        };
        let (desired, errors) = desired_from_node_state(&spec, |pod| {
            Err(AgentError::Discovery { pod: pod.name.clone(), message: "no veth".into() })
        });
        assert!(desired.pods.is_empty());
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|m| m.contains("pods[1].sessions") && m.contains("default/nope")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("no veth")), "{text:?}");
    }
}
