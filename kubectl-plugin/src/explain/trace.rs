//! Why a rule does or does not match a packet, in words.
//!
//! The decision itself is always `model::rule_matches`/`model::evaluate`
//! (what the datapath is tested against); this module only explains it, so
//! the two can never disagree on the outcome.

use podmirror_crds::model::{CompiledRule, IpFamily, PacketMeta, PortRange, rule_matches};

use crate::packet::protocol_name;

/// `None` when the rule matches, else the first field that does not.
pub fn mismatch(rule: &CompiledRule, packet: &PacketMeta) -> Option<String> {
    if rule_matches(rule, packet) {
        return None;
    }
    let family = IpFamily::of(&packet.source);
    if family != rule.family || IpFamily::of(&packet.destination) != rule.family {
        return Some(format!("an {:?} rule, the packet is {family:?}", rule.family));
    }
    if let Some(protocol) = rule.protocol
        && protocol != packet.protocol
    {
        return Some(format!("protocol {}, the packet is {}", protocol_name(protocol), protocol_name(packet.protocol)));
    }
    if !rule.source.contains(&packet.source) {
        return Some(format!("source {} is not in {}", packet.source, rule.source));
    }
    if !rule.destination.contains(&packet.destination) {
        return Some(format!("destination {} is not in {}", packet.destination, rule.destination));
    }
    let ports = packet.ports;
    port_mismatch("source", rule.source_ports, ports.map(|(s, _)| s))
        .or_else(|| port_mismatch("destination", rule.destination_ports, ports.map(|(_, d)| d)))
        .or_else(|| Some("does not match".to_owned()))
}

fn port_mismatch(side: &str, range: Option<PortRange>, port: Option<u16>) -> Option<String> {
    let range = range?;
    match port {
        Some(port) if range.contains(port) => None,
        Some(port) => Some(format!("{side} port {port} is not in {}", range_text(range))),
        None => Some(format!("the packet has no ports and the rule needs {side} ports {}", range_text(range))),
    }
}

fn range_text(range: PortRange) -> String {
    if range.from == range.to { range.from.to_string() } else { format!("{}-{}", range.from, range.to) }
}

/// One line for a rule: `TCP 192.168.0.161/32 -> 192.168.0.230/32 port 1234`.
pub fn summary(rule: &CompiledRule) -> String {
    let protocol = rule.protocol.map(protocol_name).unwrap_or_else(|| "all protocols".to_owned());
    let side = |net: &ipnet::IpNet, ports: Option<PortRange>| {
        let net = if net.prefix_len() == 0 { format!("any {:?}", rule.family) } else { net.to_string() };
        match ports {
            Some(range) => format!("{net} port {}", range_text(range)),
            None => net,
        }
    };
    format!(
        "{protocol} {} -> {}",
        side(&rule.source, rule.source_ports),
        side(&rule.destination, rule.destination_ports)
    )
}
