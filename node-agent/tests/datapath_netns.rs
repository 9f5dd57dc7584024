//! The datapath end to end on network namespaces: real eBPF (TCX) on real
//! veths of a "node" namespace, real traffic (nc), copies captured with
//! tcpdump and decoded with tshark. Needs root; prints `SKIPPED:` off root
//! and fails under `CI=true` when it cannot run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use podmirror_agent::datapath::{Datapath, DatapathConfig, DatapathSession, SessionCounters};
use podmirror_agent::testbed::{self, Capture, PodSpec, Topology, tcpdump_text, tshark_fields};
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Direction, Encapsulation, IpFamily, PortRange, SessionKey, ipproto,
};

/// Removes the datapath's pins and devices even when a test fails (the
/// topology's namespaces go with its own drop).
struct Cleanup(DatapathConfig);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Datapath::remove_all(&self.0);
    }
}

fn config(topo: &Topology, node_ip: Option<&str>) -> DatapathConfig {
    DatapathConfig {
        pin_dir: format!("/sys/fs/bpf/{}", topo.tag).into(),
        device_prefix: topo.tag.clone(),
        node_ipv4: node_ip.map(|s| s.parse().expect("literal IPv4")),
        node_ipv6: None,
    }
}

fn rule(
    priority: u16,
    action: Action,
    protocol: Option<u8>,
    src: &str,
    dst: &str,
    dports: Option<(u16, u16)>,
) -> CompiledRule {
    let source: ipnet::IpNet = src.parse().expect("literal CIDR");
    CompiledRule {
        priority,
        action,
        family: if source.addr().is_ipv4() { IpFamily::IPv4 } else { IpFamily::IPv6 },
        protocol,
        source,
        destination: dst.parse().expect("literal CIDR"),
        source_ports: None,
        destination_ports: dports.map(|(from, to)| PortRange { from, to }),
    }
}

#[allow(clippy::too_many_arguments)]
fn session(
    id: u32,
    name: &str,
    priority: u16,
    vni: u32,
    packet_length: Option<u16>,
    targets: &[&str],
    inbound: Vec<CompiledRule>,
    outbound: Vec<CompiledRule>,
) -> DatapathSession {
    DatapathSession {
        id,
        session: CompiledSession {
            key: SessionKey::new("default", name),
            priority,
            enabled: true,
            vni,
            packet_length,
            encapsulation: Encapsulation::VXLAN,
            target_port: 4789,
            targets: targets.iter().map(|t| t.parse::<IpAddr>().expect("literal IP")).collect(),
            inbound,
            outbound,
        },
    }
}

fn counters(dp: &Datapath, id: u32, d: Direction) -> SessionCounters {
    dp.counters().expect("counters").get(&(id, d)).cloned().unwrap_or_default()
}

/// Wait for counters to settle (copies are synchronous; this covers the
/// capture side).
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// SPEC §6: the seed scenario on one node. ecs-test -> ecs-source:1234 over
/// TCP, inbound rule of table 5, session VNI 1, packetLength 96, target the
/// pod ecs-target on the same node.
#[test]
fn seed_scenario_end_to_end() {
    if !testbed::require_root("seed_scenario_end_to_end") {
        return;
    }
    let mut topo = Topology::new("pmdp").expect("topology");
    topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-target", "192.168.0.164")).expect("pod");
    topo.add_node_address("172.31.255.1/32").expect("node address");
    let cfg = config(&topo, Some("172.31.255.1"));
    let _cleanup = Cleanup(cfg.clone());
    let source = topo.pod("ecs-source").expect("pod");
    let client = topo.pod("ecs-test").expect("pod");
    let target = topo.pod("ecs-target").expect("pod");
    let long_line = "x".repeat(400);

    let (received, pcap, inbound, outbound) = topo
        .node
        .run(|| {
            let mut dp = Datapath::open(&cfg).expect("open datapath");
            dp.attach(source.host_ifindex).expect("attach");
            let s = session(
                1,
                "mirror-session-a",
                1,
                1,
                Some(96),
                &["192.168.0.164"],
                vec![rule(1, Action::Accept, Some(ipproto::TCP), "192.168.0.161/32", "192.168.0.230/32", Some((1234, 1234)))],
                vec![],
            );
            dp.set_sessions(source.host_ifindex, &[s]).expect("set sessions");
            let cap = Capture::start(&target.netns, "eth0", "udp port 4789").expect("capture");
            let server = source.netns.spawn("exec nc -l 1234").expect("nc -l");
            std::thread::sleep(Duration::from_millis(300));
            client
                .netns
                .sh(&format!(
                    "(echo hello; sleep 0.3; echo 12345; sleep 0.3; echo {long_line}; sleep 0.3) | nc -N -w 3 192.168.0.230 1234"
                ))
                .expect("nc client");
            let out = server.finish(Duration::from_secs(5)).expect("server output");
            settle();
            let pcap = cap.stop().expect("stop capture");
            (String::from_utf8_lossy(&out.stdout).into_owned(), pcap, counters(&dp, 1, Direction::Inbound), counters(&dp, 1, Direction::Outbound))
        })
        .expect("node namespace");

    // The original is untouched: ecs-source got every byte, in order.
    assert_eq!(received, format!("hello\n12345\n{long_line}\n"), "original stream changed");

    // What the collector sees, decoded by tshark.
    let rows = tshark_fields(
        &pcap,
        "vxlan",
        &["vxlan.vni", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "udp.checksum", "tcp.srcport", "tcp.dstport", "tcp.flags.str", "tcp.payload", "frame.len", "ip.flags.mf", "ip.frag_offset"],
    )
    .expect("tshark");
    assert!(!rows.is_empty(), "no VXLAN copies captured; inbound {inbound:?}; capture:\n{}", tcpdump_text(&pcap, &[]).unwrap_or_default());
    let mut payloads = Vec::new();
    for r in &rows {
        assert_eq!(r[0], "1", "vni: {r:?}");
        assert_eq!(r[1], "172.31.255.1,192.168.0.161", "outer source = node, inner = ecs-test: {r:?}");
        assert_eq!(r[2], "192.168.0.164,192.168.0.230", "outer to ecs-target, inner to ecs-source: {r:?}");
        let sport: u16 = r[3].split(',').next().and_then(|p| p.parse().ok()).expect("outer udp sport");
        assert!(sport >= 49152, "outer source port {sport} from the flow hash range");
        assert!(r[4].starts_with("4789"), "outer dport: {r:?}");
        assert!(r[5].starts_with("0x0000"), "outer UDP checksum zero: {r:?}");
        assert_eq!(r[7], "1234", "inner destination port: {r:?}");
        let frame_len: usize = r[10].parse().expect("frame.len");
        assert!(frame_len <= 14 + 20 + 8 + 8 + 96, "copy not cut to 96 bytes of frame: {r:?}");
        assert!(r[11].starts_with("0") && r[12].starts_with("0"), "outer packet is a fragment: {r:?}");
        if !r[9].is_empty() {
            payloads.push((r[9].clone(), frame_len, r[8].clone()));
        }
    }
    // hello and 12345 whole (their frames are shorter than 96 bytes), the
    // long line cut to exactly 96 bytes of frame.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(payloads.iter().any(|(p, _, f)| *p == hex("hello\n") && f.contains('P')), "no copy of `hello` with [P.]: {payloads:?}");
    assert!(payloads.iter().any(|(p, _, f)| *p == hex("12345\n") && f.contains('P')), "no copy of `12345`: {payloads:?}");
    assert!(payloads.iter().any(|(p, len, _)| p.starts_with(&hex("xxxx")) && *len == 14 + 20 + 8 + 8 + 96), "long line not cut to 96: {payloads:?}");

    // tcpdump reads it like seed 000 table 6.
    let text = tcpdump_text(&pcap, &[]).expect("tcpdump -r");
    assert!(text.contains("VXLAN, flags [I] (0x08), vni 1"), "tcpdump decode:\n{text}");
    assert!(text.contains("192.168.0.161.") && text.contains("> 192.168.0.230.1234: Flags [P.]"), "tcpdump decode:\n{text}");

    // ecs-source's replies are outbound; the filter has no outbound rule.
    assert_eq!(outbound.matched, 0, "outbound copied: {outbound:?}");
    assert!(inbound.matched >= 3, "inbound counters: {inbound:?}");
    assert_eq!(inbound.copied_packets + inbound.failed(), inbound.matched, "unaccounted copies: {inbound:?}");
    assert_eq!(inbound.failed(), 0, "copy failures: {inbound:?}");
    assert_eq!(rows.len() as u64, inbound.copied_packets, "captured copies vs counters {inbound:?}:\n{text}");
}
