//! Builders for the API types the agent's tests feed it, so a test states
//! only what it is about (`NodeSession { vni: 7, ..node_session("team", "s") }`).

use std::net::IpAddr;

use podmirror_crds::api::NodeSession;
use podmirror_crds::model::{Action, CompiledRule, CompiledSession, Encapsulation, IpFamily, PortRange, SessionKey};

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

/// A compiled session as the agent programs it (the datapath tests' start):
/// `default/<name>`, priority 1, VNI 1, VXLAN to `target`:4789, no rules,
/// no cut, no shaping. Tests set what they are about with struct update.
pub fn compiled_session(name: &str, target: &str) -> CompiledSession {
    CompiledSession {
        key: SessionKey::new("default", name),
        priority: 1,
        enabled: true,
        vni: 1,
        packet_length: None,
        encapsulation: Encapsulation::VXLAN,
        target_port: 4789,
        rate_limit: None,
        flow_sampling: None,
        targets: vec![target.parse::<IpAddr>().unwrap_or_else(|e| panic!("target {target:?}: {e}"))],
        inbound: vec![],
        outbound: vec![],
    }
}

/// An Accept rule for IPv4 `protocol` (any when `None`) from and to any
/// address, to destination ports `dports` when given; priority 1.
pub fn accept_ipv4(protocol: Option<u8>, dports: Option<PortRange>) -> CompiledRule {
    CompiledRule { protocol, destination_ports: dports, ..any_rule(1, Action::Accept, IpFamily::IPv4) }
}

/// A rule of `family` matching every packet of that family, at `priority`.
pub fn any_rule(priority: u16, action: Action, family: IpFamily) -> CompiledRule {
    CompiledRule {
        priority,
        action,
        family,
        protocol: None,
        source: family.any_net(),
        destination: family.any_net(),
        source_ports: None,
        destination_ports: None,
    }
}
