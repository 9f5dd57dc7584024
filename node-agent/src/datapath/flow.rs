//! The flow hash of `bpf/pm_match.h` (`pm_flow_hash`), mirrored for the
//! agent and the tests: it picks the Service endpoint of a flow (through the
//! session's Maglev table) and the outer UDP source port. Symmetric: both directions of a conversation hash alike.

use std::net::IpAddr;

use podmirror_crds::model::PacketMeta;

use super::encode::addr_words;
use super::maglev::EndpointTable;

fn fold(w: [u32; 4]) -> u32 {
    let mut h = w[0].wrapping_mul(0x9e37_79b1);
    h = (h ^ w[1]).wrapping_mul(0x85eb_ca6b);
    h = (h ^ w[2]).wrapping_mul(0xc2b2_ae35);
    h = (h ^ w[3]).wrapping_mul(0x27d4_eb2f);
    h ^ (h >> 15)
}

/// `pm_flow_hash` of a parsed packet.
pub fn flow_hash(packet: &PacketMeta) -> u32 {
    let a = fold(addr_words(&packet.source).w);
    let b = fold(addr_words(&packet.destination).w);
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let (ps, pd) = packet.ports.map_or((0u32, 0u32), |(s, d)| (s as u32, d as u32));
    let (plo, phi) = if ps < pd { (ps, pd) } else { (pd, ps) };
    let mut h = lo.wrapping_mul(0x9e37_79b1);
    h = (h ^ hi).wrapping_mul(0x85eb_ca6b);
    h = (h ^ ((plo << 16) | phi)).wrapping_mul(0xc2b2_ae35);
    h = (h ^ packet.protocol as u32).wrapping_mul(0x27d4_eb2f);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h
}

/// The outer UDP source port of a copy (49152..=65535).
pub fn outer_source_port(hash: u32) -> u16 {
    49152 + (hash & 0x3fff) as u16
}

/// The endpoint a flow goes to, as the datapath picks it (the Maglev table
/// of `maglev::EndpointTable`; build the table once when picking for many
/// flows). `None` without a target or over the endpoint bound.
pub fn pick_target(hash: u32, targets: &[IpAddr]) -> Option<IpAddr> {
    EndpointTable::new(targets).ok().flatten().map(|t| t.pick(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_symmetric_and_port_in_range() {
        let a = PacketMeta {
            source: "192.168.0.161".parse().expect("literal"),
            destination: "192.168.0.230".parse().expect("literal"),
            protocol: 6,
            ports: Some((40000, 1234)),
        };
        let b = PacketMeta { source: a.destination, destination: a.source, protocol: 6, ports: Some((1234, 40000)) };
        assert_eq!(flow_hash(&a), flow_hash(&b));
        let c = PacketMeta { ports: Some((40001, 1234)), ..a };
        assert_ne!(flow_hash(&a), flow_hash(&c));
        assert!(outer_source_port(flow_hash(&a)) >= 49152);
        assert!(outer_source_port(u32::MAX) >= 49152);
    }
}
