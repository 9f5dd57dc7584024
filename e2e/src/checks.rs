//! The pure checks that decide the kind e2e scenarios, over the copies a
//! collector's tcpdump printed (unit-tested below on synthetic captures).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::tcpdump::{Copy, Flow};

/// Every copy with `vni` left from `node_ip`, the address of the node
/// hosting the source (not, say, a CNI bridge's address).
pub fn check_outer_source(copies: &[Copy], vni: u32, node_ip: IpAddr) -> Result<(), String> {
    let ours: Vec<&Copy> = copies.iter().filter(|c| c.vni == Some(vni)).collect();
    if ours.is_empty() {
        return Err(format!("no VXLAN copy with vni {vni}"));
    }
    match ours.iter().find(|c| c.outer.as_ref().map(|f| f.src) != Some(node_ip)) {
        Some(bad) => Err(format!(
            "a vni {vni} copy left from {:?}, not the node's {node_ip}:\n{}",
            bad.outer.as_ref().map(|f| f.src),
            bad.text
        )),
        None => Ok(()),
    }
}

/// docs/concepts.md (seed scenario): for each payload a copy with `vni`, inner `client -> source:1234`
/// `Flags [P.]` carrying it, every copy cut to `packet_length` bytes of inner
/// frame, and no copy of the source's replies (no outbound rule).
pub fn check_seed_copies(
    copies: &[Copy],
    vni: u32,
    client: IpAddr,
    source: IpAddr,
    payloads: &[&str],
    packet_length: usize,
) -> Result<(), String> {
    let ours: Vec<&Copy> = copies.iter().filter(|c| c.vni == Some(vni)).collect();
    if ours.is_empty() {
        return Err(format!("no VXLAN copy with vni {vni} among {} captured", copies.len()));
    }
    for payload in payloads {
        let found = ours.iter().any(|c| {
            c.inner.as_ref().is_some_and(|f| f.src == client && f.dst == source && f.dport == 1234)
                && c.inner_flags.as_deref() == Some("P.")
                && c.text.contains(payload)
        });
        if !found {
            return Err(format!("no vni {vni} copy of {client} -> {source}:1234 [P.] carrying `{payload}`"));
        }
    }
    if let Some(reply) = ours.iter().find(|c| c.inner.as_ref().is_some_and(|f| f.src == source && f.sport == 1234)) {
        return Err(format!("a reply of the source was copied (no outbound rule): {}", reply.text));
    }
    // Outer Ethernet + IPv4 + UDP + VXLAN headers, then at most packetLength bytes.
    let max = 14 + 20 + 8 + 8 + packet_length;
    if let Some(long) = ours.iter().find(|c| c.outer_frame_len.is_some_and(|l| l > max)) {
        return Err(format!(
            "a copy is longer than {max} bytes (packetLength {packet_length}): {:?}",
            long.outer_frame_len
        ));
    }
    Ok(())
}

/// `packetLength` really cuts: some copy (of a long segment) is exactly
/// headers + `packet_length` bytes long.
pub fn check_cut_to(copies: &[Copy], vni: u32, packet_length: usize) -> Result<(), String> {
    let cut = 14 + 20 + 8 + 8 + packet_length;
    if copies.iter().any(|c| c.vni == Some(vni) && c.outer_frame_len == Some(cut)) {
        Ok(())
    } else {
        Err(format!("no vni {vni} copy is exactly {cut} bytes: the long segment was not cut to {packet_length}"))
    }
}

/// docs/wire-format.md for a Service target: every inner flow with `vni` was seen by
/// exactly one collector replica, and all `expected` flows were seen.
pub fn check_flows_split(per_replica: &[Vec<Copy>], vni: u32, expected: usize) -> Result<(), String> {
    let mut seen_by: BTreeMap<Flow, BTreeSet<usize>> = BTreeMap::new();
    for (replica, copies) in per_replica.iter().enumerate() {
        for copy in copies.iter().filter(|c| c.vni == Some(vni)) {
            if let Some(flow) = &copy.inner {
                seen_by.entry(flow.clone()).or_default().insert(replica);
            }
        }
    }
    if let Some((flow, replicas)) = seen_by.iter().find(|(_, r)| r.len() > 1) {
        return Err(format!("flow {flow:?} was split over replicas {replicas:?}"));
    }
    if seen_by.len() < expected {
        return Err(format!("{} of {expected} flows reached a collector", seen_by.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(
        vni: u32,
        (src, sport): (&str, u16),
        (dst, dport): (&str, u16),
        flags: &str,
        text: &str,
        len: usize,
    ) -> Copy {
        Copy {
            vni: Some(vni),
            outer: Some(Flow {
                src: "172.18.0.3".parse().expect("ip"),
                sport: 50000,
                dst: dst.parse().expect("ip"),
                dport: 4789,
            }),
            inner: Some(Flow { src: src.parse().expect("ip"), sport, dst: dst.parse().expect("ip"), dport }),
            inner_flags: Some(flags.into()),
            outer_frame_len: Some(len),
            text: text.into(),
        }
    }

    const C: &str = "10.244.1.5";
    const S: &str = "10.244.1.6";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn outer_source_must_be_the_node_address() {
        let copies = vec![copy(1, (C, 40000), (S, 1234), "P.", "hello", 120)];
        check_outer_source(&copies, 1, ip("172.18.0.3")).expect("the node's address");
        let err = check_outer_source(&copies, 1, ip("10.244.1.1")).expect_err("a bridge address is not the node");
        assert!(err.contains("not the node's 10.244.1.1"), "{err}");
        assert!(check_outer_source(&copies, 2, ip("172.18.0.3")).is_err(), "no copy of that vni");
    }

    #[test]
    fn seed_check_passes_on_the_seed_capture() {
        let copies = vec![
            copy(1, (C, 40000), (S, 1234), "P.", "hello", 120),
            copy(1, (C, 40000), (S, 1234), "P.", "12345", 120),
        ];
        check_seed_copies(&copies, 1, ip(C), ip(S), &["hello", "12345"], 96).expect("seed passes");
    }

    #[test]
    fn seed_check_fails_on_each_way_of_being_wrong() {
        let good = copy(1, (C, 40000), (S, 1234), "P.", "hello", 120);
        // wrong VNI
        assert!(
            check_seed_copies(&[copy(2, (C, 40000), (S, 1234), "P.", "hello", 120)], 1, ip(C), ip(S), &["hello"], 96)
                .is_err()
        );
        // payload missing
        assert!(check_seed_copies(std::slice::from_ref(&good), 1, ip(C), ip(S), &["hello", "12345"], 96).is_err());
        // an outbound reply copied
        let reply = copy(1, (S, 1234), (C, 40000), ".", "", 80);
        assert!(check_seed_copies(&[good.clone(), reply], 1, ip(C), ip(S), &["hello"], 96).is_err());
        // not cut to packetLength
        let long = copy(1, (C, 40000), (S, 1234), "P.", "x", 400);
        assert!(check_seed_copies(&[good, long], 1, ip(C), ip(S), &["hello"], 96).is_err());
    }

    #[test]
    fn a_long_segment_must_be_cut_to_packet_length() {
        let short = copy(1, (C, 40000), (S, 1234), "P.", "hello", 120);
        let cut = copy(1, (C, 40000), (S, 1234), "P.", "xxxx", 146);
        assert!(check_cut_to(std::slice::from_ref(&short), 1, 96).is_err());
        check_cut_to(&[short, cut], 1, 96).expect("cut copy found");
    }

    #[test]
    fn flows_must_not_be_split_over_replicas() {
        let a = copy(3, (C, 40001), (S, 1234), "P.", "", 100);
        let b = copy(3, (C, 40002), (S, 1234), "P.", "", 100);
        check_flows_split(&[vec![a.clone()], vec![b.clone()]], 3, 2).expect("one flow per replica");
        assert!(check_flows_split(&[vec![a.clone()], vec![a.clone(), b.clone()]], 3, 2).is_err());
        assert!(check_flows_split(&[vec![a], vec![]], 3, 2).is_err(), "a flow is missing");
    }
}
