//! Geneve and ERSPAN copies on the real datapath (network namespaces, real
//! eBPF): decoded by tshark (Geneve: UDP 6081, VNI, protocol 0x6558; ERSPAN
//! II: GRE 0x88BE with sequence numbers, session ID from the VNI), and
//! MTU-safe like VXLAN: full-length copies of a TCP stream at an underlay
//! MTU equal to the pod's never become outer IP fragments nor exceed it.
//! Needs root; prints `SKIPPED:` off root and fails under `CI=true`.

mod support;
use support::Cleanup;

use std::net::IpAddr;
use std::time::Duration;

use podmirror_agent::datapath::{Datapath, DatapathSession, SessionCounters};
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Direction, Encapsulation, IpFamily, SessionKey, ipproto,
};
use podmirror_testkit::{self as testbed, Capture, Pcap, Topology, tshark_rows};

fn tcp_to(port: u16) -> CompiledRule {
    CompiledRule {
        priority: 1,
        action: Action::Accept,
        family: IpFamily::IPv4,
        protocol: Some(ipproto::TCP),
        source: "0.0.0.0/0".parse().expect("literal"),
        destination: "192.168.0.230/32".parse().expect("literal"),
        source_ports: None,
        destination_ports: Some(podmirror_crds::model::PortRange { from: port, to: port }),
    }
}

const BYTES: u64 = 5_000_000;

/// A 5 MB TCP stream client -> source:5201, mirrored inbound with
/// `encapsulation`, VNI 4660, captured at the collector with `filter`.
fn stream(encapsulation: Encapsulation, filter: &str) -> (Pcap, SessionCounters, String) {
    let topo = Topology::client_source_collector("pmgn", 1500).expect("topology");
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let (source, client, collector) =
        (topo.pod("source").expect("pod"), topo.pod("client").expect("pod"), topo.remote("collector").expect("remote"));
    // Like a NIC without tunnel offload: GSO copies are segmented on the node.
    let ul = &collector.node_ifname;
    let _ = topo.node.exec(
        "ethtool",
        &[
            "-K",
            ul,
            "tx-udp_tnl-segmentation",
            "off",
            "tx-udp_tnl-csum-segmentation",
            "off",
            "tx-gre-segmentation",
            "off",
            "tx-gre-csum-segmentation",
            "off",
        ],
    );
    let bytes = BYTES;
    topo.node
        .run(|| {
            let mut dp = Datapath::open(&cfg).expect("open");
            dp.attach(source.host_ifindex).expect("attach");
            let s = DatapathSession {
                id: 1,
                session: CompiledSession {
                    key: SessionKey::new("default", "geneve"),
                    priority: 1,
                    enabled: true,
                    vni: 4660,
                    packet_length: None,
                    encapsulation,
                    target_port: 4789, // VXLAN's; Geneve always uses 6081
                    targets: vec!["10.77.0.2".parse::<IpAddr>().expect("literal")],
                    rate_limit: None,
                    flow_sampling: None,
                    inbound: vec![tcp_to(5201)],
                    outbound: vec![],
                },
            };
            dp.set_sessions(source.host_ifindex, &[s]).expect("sessions");
            let cap = Capture::start_with(&collector.netns, "eth0", filter, 128).expect("capture");
            let server = source.netns.spawn("nc -l 5201 | wc -c").expect("server");
            std::thread::sleep(Duration::from_millis(300));
            client.netns.sh(&format!("head -c {bytes} /dev/zero | nc -N -w 5 192.168.0.230 5201")).expect("client");
            let out = server.finish(Duration::from_secs(10)).expect("server");
            std::thread::sleep(Duration::from_millis(300));
            let c = dp.counters().expect("counters").get(&(1, Direction::Inbound)).cloned().unwrap_or_default();
            (cap.stop().expect("stop"), c, String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .expect("node namespace")
}

#[test]
fn geneve_copies_decode_and_are_never_fragmented() {
    if !testbed::require_root("geneve_copies_decode_and_are_never_fragmented") {
        return;
    }
    let (pcap, c, received) = stream(Encapsulation::Geneve, "udp port 6081 or (ip[6:2] & 0x3fff != 0)");
    let bytes = BYTES;
    assert_eq!(received, bytes.to_string(), "the original stream lost bytes");
    assert!(c.matched > 10 && c.copied_bytes >= bytes, "{c:?}");
    assert_eq!((c.failed(), c.copied_packets), (0, c.matched), "{c:?}");
    let frags = tshark_rows(&pcap, "ip.flags.mf == 1 || ip.frag_offset > 0", &["frame.number"]).expect("tshark");
    assert!(frags.is_empty(), "{} outer IP fragments reached the collector", frags.len());
    let rows =
        tshark_rows(&pcap, "geneve", &["geneve.vni", "geneve.proto_type", "udp.dstport", "ip.len", "tcp.dstport"])
            .expect("tshark");
    assert!(rows.len() as u64 >= c.copied_packets, "{} Geneve packets decoded for {c:?}", rows.len());
    for r in &rows {
        assert_eq!(r.get("geneve.vni"), "0x001234", "VNI 4660: {r:?}");
        assert_eq!(r.get("geneve.proto_type"), "0x6558", "protocol type: {r:?}");
        assert_eq!(r.outer("udp.dstport"), "6081", "outer port: {r:?}");
        let outer_len: u32 = r.outer("ip.len").parse().expect("ip.len");
        assert!(outer_len <= 1500, "a copy over the 1500-byte underlay MTU: {r:?}");
        assert_eq!(r.get("tcp.dstport"), "5201", "inner TCP port: {r:?}");
    }
}

#[test]
fn erspan_copies_decode_with_sequence_numbers_and_are_never_fragmented() {
    if !testbed::require_root("erspan_copies_decode_with_sequence_numbers_and_are_never_fragmented") {
        return;
    }
    let (pcap, c, received) = stream(Encapsulation::ERSPAN, "ip proto 47 or (ip[6:2] & 0x3fff != 0)");
    assert_eq!(received, BYTES.to_string(), "the original stream lost bytes");
    assert!(c.matched > 10 && c.copied_bytes >= BYTES, "{c:?}");
    assert_eq!((c.failed(), c.copied_packets), (0, c.matched), "{c:?}");
    let frags = tshark_rows(&pcap, "ip.flags.mf == 1 || ip.frag_offset > 0", &["frame.number"]).expect("tshark");
    assert!(frags.is_empty(), "{} outer IP fragments reached the collector", frags.len());
    let rows = tshark_rows(
        &pcap,
        "erspan",
        &["gre.proto", "gre.sequence_number", "erspan.version", "erspan.spanid", "ip.len", "tcp.dstport"],
    )
    .expect("tshark");
    assert!(rows.len() as u64 >= c.copied_packets, "{} ERSPAN packets decoded for {c:?}", rows.len());
    let mut seqs = Vec::new();
    for r in &rows {
        assert_eq!(r.get("gre.proto"), "0x88be", "GRE protocol: {r:?}");
        assert_eq!(r.get("erspan.version"), "1", "ERSPAN version 1 = type II: {r:?}");
        assert_eq!(r.get("erspan.spanid"), "564", "session ID = 4660 & 0x3ff: {r:?}");
        let outer_len: u32 = r.outer("ip.len").parse().expect("ip.len");
        assert!(outer_len <= 1500, "a copy over the 1500-byte underlay MTU: {r:?}");
        assert_eq!(r.get("tcp.dstport"), "5201", "inner TCP port: {r:?}");
        seqs.push(r.get("gre.sequence_number").parse::<u64>().expect("sequence number"));
    }
    // One number per copy, none skipped (segments of one GSO copy share it).
    // Copies made on different CPUs can reach the capture slightly out of
    // order, so the numbers are checked as a set, not as a sequence.
    let distinct: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len() as u64, c.copied_packets, "one sequence number per copy");
    let first = distinct.first().copied().unwrap_or_default();
    let contiguous: std::collections::BTreeSet<u64> = (first..first + c.copied_packets).collect();
    assert_eq!(distinct, contiguous, "sequence numbers skip or repeat");
}
