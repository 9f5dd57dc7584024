//! Builders for the model's tests: compiled rules, sessions and packets
//! written the way the seeds' tables read, without going through the API
//! types (those are `compile`'s business and tested there).

#![allow(dead_code)] // each test binary uses its own subset

use std::net::IpAddr;

use ipnet::IpNet;
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Encapsulation, IpFamily, PacketMeta, PortRange, SessionKey, Verdict, ipproto,
};

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad address {s}: {e}"))
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("bad prefix {s}: {e}"))
}

/// A rule of `family` matching everything; narrow it with the methods below.
pub fn rule(priority: u16, action: Action, family: IpFamily) -> CompiledRule {
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

pub trait RuleExt {
    fn proto(self, protocol: u8) -> Self;
    fn src(self, cidr: &str) -> Self;
    fn dst(self, cidr: &str) -> Self;
    fn sports(self, from: u16, to: u16) -> Self;
    fn dports(self, from: u16, to: u16) -> Self;
}

impl RuleExt for CompiledRule {
    fn proto(mut self, protocol: u8) -> Self {
        self.protocol = Some(protocol);
        self
    }
    fn src(mut self, cidr: &str) -> Self {
        self.source = net(cidr);
        self
    }
    fn dst(mut self, cidr: &str) -> Self {
        self.destination = net(cidr);
        self
    }
    fn sports(mut self, from: u16, to: u16) -> Self {
        self.source_ports = Some(PortRange { from, to });
        self
    }
    fn dports(mut self, from: u16, to: u16) -> Self {
        self.destination_ports = Some(PortRange { from, to });
        self
    }
}

/// An enabled VXLAN session in namespace `default` sending to 10.9.9.9.
pub fn session(name: &str, priority: u16, inbound: Vec<CompiledRule>, outbound: Vec<CompiledRule>) -> CompiledSession {
    CompiledSession {
        key: SessionKey::new("default", name),
        priority,
        enabled: true,
        vni: u32::from(priority),
        packet_length: None,
        encapsulation: Encapsulation::VXLAN,
        target_port: 4789,
        rate_limit: None,
        flow_sampling: None,
        targets: vec![addr("10.9.9.9")],
        inbound,
        outbound,
    }
}

/// A TCP/UDP/SCTP packet with its ports.
pub fn l4(protocol: u8, src: &str, sport: u16, dst: &str, dport: u16) -> PacketMeta {
    PacketMeta { source: addr(src), destination: addr(dst), protocol, ports: Some((sport, dport)) }
}

pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> PacketMeta {
    l4(ipproto::TCP, src, sport, dst, dport)
}

/// A packet without ports: ICMP, another protocol, or a non-first fragment.
pub fn portless(protocol: u8, src: &str, dst: &str) -> PacketMeta {
    PacketMeta { source: addr(src), destination: addr(dst), protocol, ports: None }
}

/// What a verdict says, without the borrowed session: (outcome, session
/// name, rule priority). Comparable across differently ordered inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    NoMatch,
    Rejected(String, u16),
    Copy(String, u16),
}

pub fn outcome(v: Verdict<'_>) -> Outcome {
    match v {
        Verdict::NoMatch => Outcome::NoMatch,
        Verdict::Rejected { session, rule_priority } => Outcome::Rejected(session.key.name.clone(), rule_priority),
        Verdict::Copy { session, rule_priority } => Outcome::Copy(session.key.name.clone(), rule_priority),
    }
}
