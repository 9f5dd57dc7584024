//! docs/matching.md: which session, if any, copies one packet.
//!
//! This is the reference the eBPF datapath is tested against (the differential
//! test in `node-agent`), so it stays obvious rather than fast.

use super::types::{CompiledRule, CompiledSession, Direction, IpFamily, PacketMeta, PortRange, Verdict};
use crate::model::types::Action;

/// Decide one packet seen on one source pod in one direction.
///
/// `sessions` are the sessions that include the pod, in any order: they are
/// walked by session priority (then key, for a total order), disabled ones
/// skipped; in each, the rules of `direction` are walked in rule priority
/// order, and the first rule that matches decides for the packet as a whole.
pub fn evaluate<'a>(sessions: &'a [CompiledSession], packet: &PacketMeta, direction: Direction) -> Verdict<'a> {
    let mut ordered: Vec<&CompiledSession> = sessions.iter().filter(|s| s.enabled).collect();
    ordered.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.key.cmp(&b.key)));
    for session in ordered {
        let mut rules: Vec<&CompiledRule> = session.rules(direction).iter().collect();
        rules.sort_by_key(|r| r.priority);
        if let Some(rule) = rules.into_iter().find(|r| rule_matches(r, packet)) {
            return match rule.action {
                Action::Accept => Verdict::Copy { session, rule_priority: rule.priority },
                Action::Reject => Verdict::Rejected { session, rule_priority: rule.priority },
            };
        }
    }
    Verdict::NoMatch
}

/// Does `rule` match `packet`? Family, protocol, both CIDRs, both port ranges.
pub fn rule_matches(rule: &CompiledRule, packet: &PacketMeta) -> bool {
    if IpFamily::of(&packet.source) != rule.family || IpFamily::of(&packet.destination) != rule.family {
        return false;
    }
    if rule.protocol.is_some_and(|p| p != packet.protocol) {
        return false;
    }
    if !rule.source.contains(&packet.source) || !rule.destination.contains(&packet.destination) {
        return false;
    }
    port_matches(rule.source_ports, packet.ports.map(|(s, _)| s))
        && port_matches(rule.destination_ports, packet.ports.map(|(_, d)| d))
}

/// An absent range matches anything; a range needs a port inside it, so a
/// packet without ports (non-first fragment, ICMP, ...) never matches one.
fn port_matches(range: Option<PortRange>, port: Option<u16>) -> bool {
    match (range, port) {
        (None, _) => true,
        (Some(r), Some(p)) => r.contains(p),
        (Some(_), None) => false,
    }
}
