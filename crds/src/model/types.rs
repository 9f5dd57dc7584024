//! The vocabulary of the pure model: normalized rules and sessions as the
//! matcher sees them, and the packet summary it decides on.
//!
//! Everything downstream (the operator's desired state, the agent's map
//! contents, the eBPF differential test) speaks these types, so they carry no
//! Kubernetes objects: only what docs/matching.md needs to decide one packet.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Direction seen from the source pod (docs/concepts.md): inbound = packets the pod
/// receives (host-veth egress), outbound = packets it sends (host-veth ingress).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];
}

/// What a matching rule does (seed 002 table 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Action {
    /// Mirror the packet to the session's target.
    Accept,
    /// Do not mirror the packet, and stop looking.
    Reject,
}

/// IP family of a rule (seed: "type").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    pub fn of(addr: &IpAddr) -> IpFamily {
        match addr {
            IpAddr::V4(_) => IpFamily::IPv4,
            IpAddr::V6(_) => IpFamily::IPv6,
        }
    }

    /// The prefix that matches every address of this family (an omitted CIDR).
    pub fn any_net(self) -> IpNet {
        match self {
            IpFamily::IPv4 => IpNet::V4(ipnet::Ipv4Net::default()),
            IpFamily::IPv6 => IpNet::V6(ipnet::Ipv6Net::default()),
        }
    }
}

/// How a copy is wrapped on its way to the target (docs/wire-format.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Encapsulation {
    /// RFC 7348 VXLAN over UDP (default port 4789).
    #[default]
    VXLAN,
    /// GRE with transparent Ethernet bridging (0x6558), key = VNI (seed 004).
    GRE,
    /// RFC 8926 Geneve over UDP port 6081 (`targetPort` is VXLAN's only):
    /// VNI in the Geneve header, protocol type 0x6558, no options.
    Geneve,
    /// ERSPAN type II: GRE (protocol 0x88BE) with sequence numbers, the
    /// ERSPAN session ID = the VNI's low 10 bits.
    ERSPAN,
}

/// The IANA port of Geneve (RFC 8926): the outer UDP destination port of
/// every Geneve copy.
pub const GENEVE_PORT: u16 = 6081;

/// IP protocol numbers the model and the datapath give names to.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;

    /// Protocols whose packets carry ports the rules may match (docs/matching.md).
    pub fn has_ports(proto: u8) -> bool {
        matches!(proto, TCP | UDP | SCTP)
    }
}

/// An inclusive port range `{from, to}` with `from <= to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.from <= port && port <= self.to
    }
}

/// One filter rule after compilation: every omission made explicit.
///
/// Invariants (established by `compile`): `source` and `destination` are of
/// `family`; port ranges are `Some` only when `protocol` is TCP, UDP or SCTP.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompiledRule {
    /// Evaluation order within its list, lower first (1..=32766, unique).
    pub priority: u16,
    pub action: Action,
    pub family: IpFamily,
    /// `None` = any protocol ("All").
    pub protocol: Option<u8>,
    /// Omitted CIDRs become the family's /0.
    pub source: IpNet,
    pub destination: IpNet,
    /// `None` = any port, including packets that have no ports.
    pub source_ports: Option<PortRange>,
    pub destination_ports: Option<PortRange>,
}

/// `namespace/name` of a namespaced object: the one key type of sessions,
/// filters, pods and Services, in the operator and the agent alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjKey { namespace: namespace.into(), name: name.into() }
    }
}

/// Identifies a session cluster-wide.
pub type SessionKey = ObjKey;

/// Identifies a filter cluster-wide: filters are namespaced and referenced by
/// name from sessions of the same namespace.
pub type FilterKey = ObjKey;

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A session as one source pod's datapath needs it: its filter compiled into
/// priority-ordered rule lists and its target resolved to addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledSession {
    pub key: SessionKey,
    /// Order among the sessions of one source pod, lower first.
    pub priority: u16,
    /// Mirroring runs only while true; a disabled session never matches.
    pub enabled: bool,
    /// VXLAN network identifier (24 bits) or GRE key.
    pub vni: u32,
    /// Bytes of the original frame kept in the copy; `None` = whole frame.
    pub packet_length: Option<u16>,
    pub encapsulation: Encapsulation,
    /// Outer UDP destination port (VXLAN only; 4789 by default).
    pub target_port: u16,
    /// Resolved target endpoints; a flow hash picks one per inner flow.
    pub targets: Vec<IpAddr>,
    /// Per-node cap on the copies (`rateLimit`); `None` = no cap.
    pub rate_limit: Option<super::shaping::RateCap>,
    /// Share of flows mirrored (`flowSampling`); `None` = every flow.
    pub flow_sampling: Option<super::shaping::FlowShare>,
    /// Sorted by `priority`, ascending.
    pub inbound: Vec<CompiledRule>,
    /// Sorted by `priority`, ascending.
    pub outbound: Vec<CompiledRule>,
}

impl CompiledSession {
    pub fn rules(&self, direction: Direction) -> &[CompiledRule] {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
}

/// What the matcher needs to know of one packet, as parsed off the veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketMeta {
    pub source: IpAddr,
    pub destination: IpAddr,
    /// The L4 protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// `(source, destination)` ports: `Some` only for TCP/UDP/SCTP packets that
    /// carry their L4 header (not for a non-first IP fragment).
    pub ports: Option<(u16, u16)>,
}

/// The decision for one packet on one source pod in one direction (docs/matching.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No rule of any enabled session matched: nothing is copied.
    NoMatch,
    /// The first matching rule was a Reject: nothing is copied.
    Rejected { session: &'a CompiledSession, rule_priority: u16 },
    /// The first matching rule was an Accept: one copy goes to this session.
    Copy { session: &'a CompiledSession, rule_priority: u16 },
}
