//! Pure decoding of the outer encapsulation: VXLAN (RFC 7348) payloads of UDP
//! datagrams and GRE (RFC 2784/2890, transparent Ethernet bridging) packets as
//! a raw IPv4 socket delivers them. Every malformed input maps to a
//! [`DropReason`]: these functions never panic on any byte string (a
//! proptest checks it), because the copies come from the network.

/// The IANA VXLAN port, the agent's default `targetPort`.
pub const VXLAN_PORT: u16 = 4789;
/// GRE protocol type of transparent Ethernet bridging (inner MAC header kept).
pub const ETH_P_TEB: u16 = 0x6558;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: i32 = 47;
/// An Ethernet header: the least an inner frame must hold to be a frame.
pub const ETH_HLEN: usize = 14;

const VXLAN_HLEN: usize = 8;
const VXLAN_FLAG_I: u8 = 0x08;
const GRE_C: u16 = 0x8000;
const GRE_R: u16 = 0x4000;
const GRE_K: u16 = 0x2000;
const GRE_S: u16 = 0x1000;
const GRE_VERSION: u16 = 0x0007;

/// Why a datagram was not accepted as a copy (the `reason` label of
/// `podmirror_collector_malformed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Fewer bytes than the outer header needs.
    ShortHeader,
    /// VXLAN without the I flag; GRE with routing or a version other than 0.
    BadFlags,
    /// GRE carrying something other than Ethernet (0x6558).
    UnknownInnerType,
    /// GRE without a key: a podmirror copy always carries the VNI as key.
    MissingKey,
    /// The inner frame is shorter than an Ethernet header.
    ShortInnerFrame,
    /// The outer IP header of a GRE packet is not IPv4 or not GRE.
    BadOuterIp,
    /// The VNI is not in the configured allow-list.
    VniNotAllowed,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::ShortHeader,
        DropReason::BadFlags,
        DropReason::UnknownInnerType,
        DropReason::MissingKey,
        DropReason::ShortInnerFrame,
        DropReason::BadOuterIp,
        DropReason::VniNotAllowed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::ShortHeader => "short_header",
            DropReason::BadFlags => "bad_flags",
            DropReason::UnknownInnerType => "unknown_inner_type",
            DropReason::MissingKey => "missing_key",
            DropReason::ShortInnerFrame => "short_inner_frame",
            DropReason::BadOuterIp => "bad_outer_ip",
            DropReason::VniNotAllowed => "vni_not_allowed",
        }
    }
}

/// The UDP payload of an Ethernet frame carrying IPv4 (any header length,
/// not fragmented) or IPv6 (UDP as the next header) to `port`: how the
/// AF_XDP input reaches the VXLAN header of a whole packet. None for
/// anything else (the XDP program passes such packets to the kernel, so
/// they should not arrive here).
pub fn udp_payload(packet: &[u8], port: u16) -> Option<&[u8]> {
    let l4 = match be16(packet, 12)? {
        0x0800 => {
            let ihl = usize::from(packet.get(ETH_HLEN)? & 0x0f) * 4;
            let fragmented = be16(packet, ETH_HLEN + 6)? & 0x3fff != 0;
            if ihl < 20 || *packet.get(ETH_HLEN + 9)? != 17 || fragmented {
                return None;
            }
            ETH_HLEN + ihl
        }
        0x86dd if *packet.get(ETH_HLEN + 6)? == 17 => ETH_HLEN + 40,
        _ => return None,
    };
    if be16(packet, l4 + 2)? != port {
        return None;
    }
    // The UDP length bounds the payload (an Ethernet pad may follow).
    let udp_len = usize::from(be16(packet, l4 + 4)?);
    packet.get(l4 + 8..l4 + udp_len.max(8))
}

/// A decoded copy: its VNI and the inner Ethernet frame (borrowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub vni: u32,
    pub frame: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?]))
}

fn inner(vni: u32, frame: &[u8]) -> Result<Decoded<'_>, DropReason> {
    if frame.len() < ETH_HLEN {
        return Err(DropReason::ShortInnerFrame);
    }
    Ok(Decoded { vni, frame })
}

/// Decodes the payload of a UDP datagram sent to the VXLAN port.
///
/// Only the I flag is required; the reserved bits are ignored on receipt as
/// RFC 7348 asks.
pub fn decode_vxlan(payload: &[u8]) -> Result<Decoded<'_>, DropReason> {
    let header = payload.get(..VXLAN_HLEN).ok_or(DropReason::ShortHeader)?;
    if header[0] & VXLAN_FLAG_I == 0 {
        return Err(DropReason::BadFlags);
    }
    let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
    inner(vni, &payload[VXLAN_HLEN..])
}

/// Decodes a GRE header and what follows it (the bytes after the outer IP
/// header).
pub fn decode_gre(gre: &[u8]) -> Result<Decoded<'_>, DropReason> {
    let flags = be16(gre, 0).ok_or(DropReason::ShortHeader)?;
    let proto = be16(gre, 2).ok_or(DropReason::ShortHeader)?;
    if flags & (GRE_R | GRE_VERSION) != 0 {
        return Err(DropReason::BadFlags);
    }
    let mut at = 4;
    if flags & GRE_C != 0 {
        at += 4; // checksum + reserved1
    }
    let key = if flags & GRE_K != 0 {
        let key = be32(gre, at).ok_or(DropReason::ShortHeader)?;
        at += 4;
        Some(key)
    } else {
        None
    };
    if flags & GRE_S != 0 {
        at += 4;
    }
    let rest = gre.get(at..).ok_or(DropReason::ShortHeader)?;
    if proto != ETH_P_TEB {
        return Err(DropReason::UnknownInnerType);
    }
    inner(key.ok_or(DropReason::MissingKey)?, rest)
}

/// Decodes a packet read from a raw IPv4 socket of protocol 47 (the kernel
/// hands over the IPv4 header too).
pub fn decode_gre_ipv4(packet: &[u8]) -> Result<Decoded<'_>, DropReason> {
    let first = *packet.first().ok_or(DropReason::ShortHeader)?;
    if first >> 4 != 4 {
        return Err(DropReason::BadOuterIp);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 {
        return Err(DropReason::BadOuterIp);
    }
    let proto = *packet.get(9).ok_or(DropReason::ShortHeader)?;
    if i32::from(proto) != IPPROTO_GRE {
        return Err(DropReason::BadOuterIp);
    }
    decode_gre(packet.get(ihl..).ok_or(DropReason::ShortHeader)?)
}

/// The VXLAN header for `vni` (used by tests and tools that craft copies).
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [VXLAN_FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// A GRE header with the K bit and `vni` as key, protocol 0x6558.
pub fn gre_header(vni: u32) -> [u8; 8] {
    let f = GRE_K.to_be_bytes();
    let p = ETH_P_TEB.to_be_bytes();
    let k = vni.to_be_bytes();
    [f[0], f[1], p[0], p[1], k[0], k[1], k[2], k[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[12] = 0x08;
        f
    }

    #[test]
    fn vxlan_round_trip_keeps_vni_and_frame() {
        let mut d = vxlan_header(0x00ab_cdef).to_vec();
        d.extend(frame());
        let got = decode_vxlan(&d).expect("valid vxlan");
        assert_eq!(got.vni, 0x00ab_cdef);
        assert_eq!(got.frame, &frame()[..]);
    }

    #[test]
    fn vxlan_drop_reasons() {
        assert_eq!(decode_vxlan(&[0x08, 0, 0]), Err(DropReason::ShortHeader));
        let mut d = vxlan_header(1).to_vec();
        d[0] = 0x00;
        d.extend(frame());
        assert_eq!(decode_vxlan(&d), Err(DropReason::BadFlags));
        let mut d = vxlan_header(1).to_vec();
        d.extend([0u8; 13]);
        assert_eq!(decode_vxlan(&d), Err(DropReason::ShortInnerFrame));
    }

    #[test]
    fn vxlan_keeps_a_jumbo_frame_whole() {
        let mut d = vxlan_header(7).to_vec();
        d.extend(vec![0x5a; 9000]);
        assert_eq!(decode_vxlan(&d).map(|x| x.frame.len()), Ok(9000));
    }

    #[test]
    fn gre_with_key_checksum_and_sequence() {
        let mut g = vec![0xb0, 0x00, 0x65, 0x58]; // C, K, S
        g.extend([0, 0, 0, 0]); // checksum
        g.extend(42u32.to_be_bytes());
        g.extend([0, 0, 0, 9]); // sequence
        g.extend(frame());
        assert_eq!(decode_gre(&g).map(|d| d.vni), Ok(42));
        let mut plain = gre_header(5).to_vec();
        plain.extend(frame());
        assert_eq!(decode_gre(&plain), Ok(Decoded { vni: 5, frame: &frame() }));
    }

    #[test]
    fn gre_drop_reasons() {
        assert_eq!(decode_gre(&[0x20]), Err(DropReason::ShortHeader));
        assert_eq!(decode_gre(&[0x20, 0, 0x65, 0x58, 0, 0]), Err(DropReason::ShortHeader));
        let mut g = gre_header(1).to_vec();
        g[1] = 0x01; // version 1 (PPTP)
        assert_eq!(decode_gre(&g), Err(DropReason::BadFlags));
        let mut g = gre_header(1).to_vec();
        g[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        g.extend(frame());
        assert_eq!(decode_gre(&g), Err(DropReason::UnknownInnerType));
        let mut g = vec![0, 0, 0x65, 0x58];
        g.extend(frame());
        assert_eq!(decode_gre(&g), Err(DropReason::MissingKey));
    }

    #[test]
    fn gre_ipv4_skips_the_outer_header_with_options() {
        let mut p = vec![0x46, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0];
        p.extend([127, 0, 0, 1, 127, 0, 0, 1, 0, 0, 0, 0]); // addresses + 4 bytes options
        p.extend(gre_header(9));
        p.extend(frame());
        assert_eq!(decode_gre_ipv4(&p).map(|d| d.vni), Ok(9));
        p[9] = 17;
        assert_eq!(decode_gre_ipv4(&p), Err(DropReason::BadOuterIp));
        assert_eq!(decode_gre_ipv4(&[0x65]), Err(DropReason::BadOuterIp));
        assert_eq!(decode_gre_ipv4(&[]), Err(DropReason::ShortHeader));
    }

    /// A VXLAN datagram to `port` in Ethernet/IPv4 (with `options` words of
    /// IP options) or Ethernet/IPv6, with an Ethernet pad after it.
    fn outer(v6: bool, options: usize, port: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        let udp_len = (8 + payload.len()) as u16;
        if v6 {
            p.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            p.extend(udp_len.to_be_bytes());
            p.extend([17, 64]);
            p.extend([0u8; 32]);
        } else {
            let ihl = 5 + options as u8;
            p.extend([0x08, 0x00, 0x40 | ihl, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
            p.extend([0u8; 8]);
            p.extend(vec![0u8; options * 4]);
        }
        p.extend([0x9c, 0x40]);
        p.extend(port.to_be_bytes());
        p.extend(udp_len.to_be_bytes());
        p.extend([0, 0]);
        p.extend(payload);
        p.extend([0u8; 6]);
        p
    }

    #[test]
    fn udp_payload_of_ipv4_with_options_and_of_ipv6_without_the_pad() {
        let payload = [&vxlan_header(5)[..], &frame()].concat();
        for packet in [outer(false, 0, 4789, &payload), outer(false, 3, 4789, &payload), outer(true, 0, 4789, &payload)]
        {
            assert_eq!(udp_payload(&packet, 4789), Some(&payload[..]));
            assert_eq!(udp_payload(&packet, 4790), None, "another port");
        }
        let mut fragment = outer(false, 0, 4789, &payload);
        fragment[ETH_HLEN + 6] = 0x20;
        assert_eq!(udp_payload(&fragment, 4789), None, "a first fragment");
        let mut tcp = outer(false, 0, 4789, &payload);
        tcp[ETH_HLEN + 9] = 6;
        assert_eq!(udp_payload(&tcp, 4789), None);
        let cut = outer(false, 0, 4789, &payload);
        assert_eq!(udp_payload(&cut[..cut.len() - 20], 4789), None, "shorter than its UDP length");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

        /// Any bytes, and bytes that start like a valid header: no panic.
        #[test]
        fn decoders_never_panic() {
            let mut runner = TestRunner::new_with_rng(
                Config { cases: 4096, ..Config::default() },
                TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
            );
            let strategy = (proptest::collection::vec(any::<u8>(), 0..128), 0u8..4);
            runner
                .run(&strategy, |(tail, prefix)| {
                    let mut b = match prefix {
                        0 => vec![],
                        1 => vxlan_header(1).to_vec(),
                        2 => gre_header(1).to_vec(),
                        _ => vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47],
                    };
                    b.extend(tail);
                    let _ = decode_vxlan(&b);
                    let _ = decode_gre(&b);
                    let _ = decode_gre_ipv4(&b);
                    let _ = crate::frame::parse_tcp(&b);
                    let _ = udp_payload(&b, VXLAN_PORT);
                    Ok(())
                })
                .map_err(|e| e.to_string())
                .expect("decoders never panic");
        }
    }
}
