//! Builders for the API types the agent's tests feed it, so a test states
//! only what it is about (`NodeSession { vni: 7, ..node_session("team", "s") }`).

use podmirror_crds::api::NodeSession;

/// An enabled session of a node's desired state: generation 1, priority 1,
/// VNI 1, one IP target (10.9.0.1:4789), no rules, no cut, no shaping.
pub fn node_session(namespace: &str, name: &str) -> NodeSession {
    NodeSession {
        namespace: namespace.into(),
        name: name.into(),
        uid: String::new(),
        generation: 1,
        priority: 1,
        enabled: true,
        vni: 1,
        packet_length: None,
        encapsulation: Default::default(),
        target_port: 4789,
        targets: vec!["10.9.0.1".into()],
        inbound_rules: vec![],
        outbound_rules: vec![],
        rate_limit: None,
        flow_sampling: None,
    }
}
