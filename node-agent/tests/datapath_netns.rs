//! The datapath end to end on network namespaces: real eBPF (TCX) on real
//! veths of a "node" namespace, real traffic (nc), copies captured with
//! tcpdump and decoded with tshark. Needs root; prints `SKIPPED:` off root
//! and fails under `CI=true` when it cannot run.

mod support;
use support::Cleanup;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use podmirror_agent::datapath::{Datapath, DatapathConfig, DatapathSession, SessionCounters};
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Direction, Encapsulation, IpFamily, PortRange, ipproto,
};
use podmirror_testkit::fixtures::compiled_session;
use podmirror_testkit::{self as testbed, Capture, PodSpec, Topology, tcpdump_text, tshark_rows};

fn config(topo: &Topology, node_ip: Option<&str>) -> DatapathConfig {
    DatapathConfig { node_ipv4: node_ip.map(|s| s.parse().expect("literal IPv4")), ..support::config(topo) }
}

/// One test's node: its topology, the datapath's configuration, and the
/// cleanup of what the datapath leaves (before the namespaces go).
struct Bed {
    _cleanup: Cleanup,
    cfg: DatapathConfig,
    topo: Topology,
}

impl Bed {
    /// `node_ip`: the node address the datapath is configured with.
    fn new(topo: Topology, node_ip: Option<&str>) -> Bed {
        let cfg = config(&topo, node_ip);
        Bed { _cleanup: Cleanup(cfg.clone()), cfg, topo }
    }

    fn pod(&self, name: &str) -> &testbed::Pod {
        self.topo.pod(name).expect("pod")
    }

    fn collector(&self) -> &testbed::Remote {
        self.topo.remote("collector").expect("remote")
    }

    /// In the node namespace: opens the datapath, attaches `pod`'s veth with
    /// `sessions`, then runs `traffic` with the datapath (for its counters).
    fn mirror<T: Send>(
        &self,
        pod: &str,
        sessions: &[DatapathSession],
        traffic: impl FnOnce(&mut Datapath) -> T + Send,
    ) -> T {
        let ifindex = self.pod(pod).host_ifindex;
        self.topo
            .node
            .run(|| {
                let mut dp = Datapath::open(&self.cfg).expect("open datapath");
                dp.attach(ifindex).expect("attach");
                dp.set_sessions(ifindex, sessions).expect("set sessions");
                traffic(&mut dp)
            })
            .expect("node namespace")
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

/// Session `id` named `name` in `default`: priority 1, VNI 1, no cut, VXLAN
/// to the remote collector 10.77.0.2, no rules yet.
fn session(id: u32, name: &str) -> DatapathSession {
    DatapathSession { id, session: compiled_session(name, "10.77.0.2") }
}

/// The setters a case uses on [`session`]'s result.
trait With: Sized {
    fn s(&mut self) -> &mut CompiledSession;
    fn priority(mut self, priority: u16) -> Self {
        self.s().priority = priority;
        self
    }
    fn vni(mut self, vni: u32) -> Self {
        self.s().vni = vni;
        self
    }
    fn cut(mut self, packet_length: u16) -> Self {
        self.s().packet_length = Some(packet_length);
        self
    }
    fn gre(mut self) -> Self {
        self.s().encapsulation = Encapsulation::GRE;
        self
    }
    fn to(mut self, targets: &[&str]) -> Self {
        self.s().targets = targets.iter().map(|t| t.parse::<IpAddr>().expect("literal IP")).collect();
        self
    }
    fn inbound(mut self, rule: CompiledRule) -> Self {
        self.s().inbound.push(rule);
        self
    }
    fn outbound(mut self, rule: CompiledRule) -> Self {
        self.s().outbound.push(rule);
        self
    }
}

impl With for DatapathSession {
    fn s(&mut self) -> &mut CompiledSession {
        &mut self.session
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

/// docs/concepts.md: the seed scenario on one node. ecs-test -> ecs-source:1234 over
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
    let bed = Bed::new(topo, Some("172.31.255.1"));
    let (source, client, target) = (bed.pod("ecs-source"), bed.pod("ecs-test"), bed.pod("ecs-target"));
    let long_line = "x".repeat(400);
    let table5 =
        rule(1, Action::Accept, Some(ipproto::TCP), "192.168.0.161/32", "192.168.0.230/32", Some((1234, 1234)));
    let s = session(1, "mirror-session-a").cut(96).to(&["192.168.0.164"]).inbound(table5);

    let (received, pcap, inbound, outbound) = bed.mirror("ecs-source", &[s], |dp| {
        let cap = Capture::start(&target.netns, "eth0", "udp port 4789").expect("capture");
        let server = source.netns.spawn("exec nc -l 1234").expect("nc -l");
        std::thread::sleep(Duration::from_millis(300));
        let lines = format!("(echo hello; sleep 0.3; echo 12345; sleep 0.3; echo {long_line}; sleep 0.3)");
        client.netns.sh(&format!("{lines} | nc -N -w 3 192.168.0.230 1234")).expect("nc client");
        let out = server.finish(Duration::from_secs(5)).expect("server output");
        settle();
        let pcap = cap.stop().expect("stop capture");
        let received = String::from_utf8_lossy(&out.stdout).into_owned();
        (received, pcap, counters(dp, 1, Direction::Inbound), counters(dp, 1, Direction::Outbound))
    });

    // The original is untouched: ecs-source got every byte, in order.
    assert_eq!(received, format!("hello\n12345\n{long_line}\n"), "original stream changed");

    // What the collector sees, decoded by tshark.
    let rows = tshark_rows(
        &pcap,
        "vxlan",
        &[
            "vxlan.vni",
            "ip.src",
            "ip.dst",
            "udp.srcport",
            "udp.dstport",
            "udp.checksum",
            "tcp.dstport",
            "tcp.flags.str",
            "tcp.payload",
            "frame.len",
            "ip.flags.mf",
            "ip.frag_offset",
        ],
    )
    .expect("tshark");
    assert!(
        !rows.is_empty(),
        "no VXLAN copies captured; inbound {inbound:?}; capture:\n{}",
        tcpdump_text(&pcap, &[]).unwrap_or_default()
    );
    let mut payloads = Vec::new();
    for r in &rows {
        assert_eq!(r.get("vxlan.vni"), "1", "vni: {r:?}");
        assert_eq!(r.get("ip.src"), "172.31.255.1,192.168.0.161", "outer source = node, inner = ecs-test: {r:?}");
        assert_eq!(r.get("ip.dst"), "192.168.0.164,192.168.0.230", "outer to ecs-target, inner to ecs-source: {r:?}");
        let sport: u16 = r.outer("udp.srcport").parse().expect("outer udp sport");
        assert!(sport >= 49152, "outer source port {sport} from the flow hash range");
        assert_eq!(r.outer("udp.dstport"), "4789", "outer dport: {r:?}");
        assert!(r.outer("udp.checksum").starts_with("0x0000"), "outer UDP checksum zero: {r:?}");
        assert_eq!(r.get("tcp.dstport"), "1234", "inner destination port: {r:?}");
        let frame_len: usize = r.get("frame.len").parse().expect("frame.len");
        assert!(frame_len <= 14 + 20 + 8 + 8 + 96, "copy not cut to 96 bytes of frame: {r:?}");
        assert!(r.outer("ip.flags.mf") == "0" && r.outer("ip.frag_offset") == "0", "outer packet is a fragment: {r:?}");
        if !r.get("tcp.payload").is_empty() {
            payloads.push((r.get("tcp.payload").to_owned(), frame_len, r.get("tcp.flags.str").to_owned()));
        }
    }
    // hello and 12345 whole (their frames are shorter than 96 bytes), the
    // long line cut to exactly 96 bytes of frame.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        payloads.iter().any(|(p, _, f)| *p == hex("hello\n") && f.contains('P')),
        "no copy of `hello` with [P.]: {payloads:?}"
    );
    assert!(
        payloads.iter().any(|(p, _, f)| *p == hex("12345\n") && f.contains('P')),
        "no copy of `12345`: {payloads:?}"
    );
    assert!(
        payloads.iter().any(|(p, len, _)| p.starts_with(&hex("xxxx")) && *len == 14 + 20 + 8 + 8 + 96),
        "long line not cut to 96: {payloads:?}"
    );

    // tcpdump reads it like seed 000 table 6.
    let text = tcpdump_text(&pcap, &[]).expect("tcpdump -r");
    assert!(text.contains("VXLAN, flags [I] (0x08), vni 1"), "tcpdump decode:\n{text}");
    assert!(
        text.contains("192.168.0.161.") && text.contains("> 192.168.0.230.1234: Flags [P.]"),
        "tcpdump decode:\n{text}"
    );

    // ecs-source's replies are outbound; the filter has no outbound rule.
    assert_eq!(outbound.matched, 0, "outbound copied: {outbound:?}");
    assert!(inbound.matched >= 3, "inbound counters: {inbound:?}");
    assert_eq!(inbound.copied_packets + inbound.failed(), inbound.matched, "unaccounted copies: {inbound:?}");
    assert_eq!(inbound.failed(), 0, "copy failures: {inbound:?}");
    assert_eq!(rows.len() as u64, inbound.copied_packets, "captured copies vs counters {inbound:?}:\n{text}");
}

/// Send `count` UDP datagrams from inside `ns` (python3: exact ports).
fn udp_send(ns: &testbed::Netns, dst: &str, sport: u16, dport: u16, count: u32) {
    let family = if dst.contains(':') { "socket.AF_INET6" } else { "socket.AF_INET" };
    ns.sh(&format!(
        "python3 -c \"import socket,time\ns=socket.socket({family},socket.SOCK_DGRAM)\ns.bind(('',{sport}))\nfor i in range({count}):\n  s.sendto(b'podmirror-%d' % i,('{dst}',{dport}))\n  time.sleep(0.002)\""
    ))
    .expect("udp send");
}

/// The standard two-pod node with a remote collector behind the underlay.
fn two_pods_and_collector(v6: bool, mtu: u32) -> Topology {
    let mut topo = Topology::new("pmdp").expect("topology");
    if v6 {
        topo.add_pod(PodSpec::dual("ecs-test", "192.168.0.161", "fd00::161").mtu(mtu)).expect("pod");
        topo.add_pod(PodSpec::dual("ecs-source", "192.168.0.230", "fd00::230").mtu(mtu)).expect("pod");
    } else {
        topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161").mtu(mtu)).expect("pod");
        topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230").mtu(mtu)).expect("pod");
    }
    topo.add_remote("collector", "10.77.0.2", "10.77.0.1", mtu).expect("remote");
    topo
}

fn udp_rule(priority: u16, action: Action, dport: Option<u16>) -> CompiledRule {
    rule(priority, action, Some(ipproto::UDP), "0.0.0.0/0", "0.0.0.0/0", dport.map(|p| (p, p)))
}

/// Outbound rules; a Reject shadowing an Accept of the same session; two
/// sessions on one pod decided by session priority (seed 002 table 3).
#[test]
fn outbound_rules_reject_shadowing_and_session_priority() {
    if !testbed::require_root("outbound_rules_reject_shadowing_and_session_priority") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (source, client) = (bed.pod("ecs-source"), bed.pod("ecs-test"));
    // A (priority 1): outbound Reject UDP 5001 before Accept UDP; no inbound rules.
    let a = session(1, "a").vni(10).outbound(udp_rule(1, Action::Reject, Some(5001))).outbound(udp_rule(
        2,
        Action::Accept,
        None,
    ));
    // B (priority 2): accepts everything outbound and UDP inbound.
    let all = rule(1, Action::Accept, None, "0.0.0.0/0", "0.0.0.0/0", None);
    let b = session(2, "b").priority(2).vni(20).inbound(udp_rule(1, Action::Accept, None)).outbound(all);
    let (pcap, a_out, b_in, b_out) = bed.mirror("ecs-source", &[b, a], |dp| {
        let cap = Capture::start(&bed.collector().netns, "eth0", "udp port 4789").expect("capture");
        udp_send(&source.netns, "192.168.0.161", 40000, 5000, 3);
        udp_send(&source.netns, "192.168.0.161", 40001, 5001, 3);
        udp_send(&client.netns, "192.168.0.230", 40002, 6000, 3);
        settle();
        let c = |id, d| counters(dp, id, d);
        (cap.stop().expect("stop"), c(1, Direction::Outbound), c(2, Direction::Inbound), c(2, Direction::Outbound))
    });
    let rows = tshark_rows(&pcap, "vxlan", &["vxlan.vni", "udp.dstport", "ip.proto"]).expect("tshark");
    let mut seen: BTreeMap<(String, String), u32> = BTreeMap::new();
    for r in &rows {
        // Inner ICMP errors (B outbound) quote a UDP header: key them apart.
        let inner_proto = r.inner("ip.proto");
        let key = if inner_proto == "17" { r.inner("udp.dstport").to_owned() } else { format!("proto {inner_proto}") };
        *seen.entry((r.get("vxlan.vni").to_owned(), key)).or_default() += 1;
    }
    // UDP 5000 outbound: A decides (Accept, rule 2) -> VNI 10, never B's 20.
    assert_eq!(seen.get(&("10".into(), "5000".into())), Some(&3), "{seen:?}");
    // UDP 5001 outbound: A's Reject decides; B is never asked.
    assert!(!seen.keys().any(|(_, p)| p == "5001"), "5001 was copied: {seen:?}");
    // Inbound UDP 6000: A has no inbound rules, B accepts -> VNI 20.
    assert_eq!(seen.get(&("20".into(), "6000".into())), Some(&3), "{seen:?}");
    assert!(
        seen.keys().all(|(v, p)| (v == "10" && p == "5000") || (v == "20" && (p == "6000" || p.starts_with("proto")))),
        "{seen:?}"
    );
    assert_eq!((a_out.matched, a_out.rejected, a_out.copied_packets), (3, 3, 3), "{a_out:?}");
    assert_eq!(b_in.copied_packets, 3, "{b_in:?}");
    // B outbound gets only what A's rules do not match (ICMP errors), never UDP.
    assert_eq!(
        b_out.copied_packets as usize,
        seen.iter().filter(|((v, p), _)| v == "20" && p.starts_with("proto")).map(|(_, n)| *n as usize).sum::<usize>()
    );
    assert_eq!(b_out.copied_packets + b_out.failed(), b_out.matched);
}

/// IPv6 inside a VXLAN copy, and a GRE session on the same pod.
#[test]
fn ipv6_inside_vxlan_and_gre_encapsulation() {
    if !testbed::require_root("ipv6_inside_vxlan_and_gre_encapsulation") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(true, 1500), Some("10.77.0.1"));
    let client = bed.pod("ecs-test");
    let v6 = session(1, "v6").vni(6).inbound(rule(
        1,
        Action::Accept,
        Some(ipproto::UDP),
        "fd00::161/128",
        "fd00::/64",
        Some((7000, 7000)),
    ));
    let gre = session(2, "gre").priority(2).vni(77).cut(128).gre().inbound(udp_rule(1, Action::Accept, Some(7001)));
    let pcap = bed.mirror("ecs-source", &[v6, gre], |dp| {
        let cap = Capture::start(&bed.collector().netns, "eth0", "udp port 4789 or ip proto 47").expect("capture");
        udp_send(&client.netns, "fd00::230", 41000, 7000, 3);
        udp_send(&client.netns, "192.168.0.230", 41001, 7001, 3);
        settle();
        let c1 = counters(dp, 1, Direction::Inbound);
        let c2 = counters(dp, 2, Direction::Inbound);
        assert_eq!((c1.copied_packets, c2.copied_packets), (3, 3), "{c1:?} {c2:?}");
        cap.stop().expect("stop")
    });
    let vx =
        tshark_rows(&pcap, "vxlan", &["vxlan.vni", "ipv6.src", "ipv6.dst", "udp.dstport", "ip.src"]).expect("tshark");
    assert_eq!(vx.len(), 3, "{vx:?}");
    for r in &vx {
        assert_eq!(r.get("vxlan.vni"), "6");
        assert_eq!((r.get("ipv6.src"), r.get("ipv6.dst")), ("fd00::161", "fd00::230"), "{r:?}");
        assert_eq!(r.get("udp.dstport"), "4789,7000", "{r:?}");
        assert_eq!(r.get("ip.src"), "10.77.0.1", "outer source is the configured node IP: {r:?}");
    }
    let gre = tshark_rows(&pcap, "gre", &["gre.key", "gre.proto", "ip.proto", "ip.src", "ip.dst", "udp.dstport"])
        .expect("tshark");
    assert_eq!(gre.len(), 3, "{gre:?}");
    for r in &gre {
        assert_eq!(r.get("gre.key"), "0x0000004d", "GRE key = VNI 77: {r:?}");
        assert_eq!(r.get("gre.proto"), "0x6558", "transparent Ethernet bridging: {r:?}");
        assert!(r.get("ip.proto").starts_with("47,17"), "outer GRE, inner UDP: {r:?}");
        assert_eq!(r.get("ip.src"), "10.77.0.1,192.168.0.161", "{r:?}");
        assert_eq!(r.get("ip.dst"), "10.77.0.2,192.168.0.230", "{r:?}");
        assert_eq!(r.get("udp.dstport"), "7001", "{r:?}");
    }
}

/// A Service target with two endpoints: each inner flow goes to one,
/// chosen by the flow hash (`flow::pick_target`), and both are used.
#[test]
fn service_target_flows_stick_to_one_endpoint() {
    if !testbed::require_root("service_target_flows_stick_to_one_endpoint") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (client, collector) = (bed.pod("ecs-test"), bed.collector());
    collector.netns.ip(&["addr", "add", "10.77.0.3/24", "dev", "eth0"]).expect("second endpoint");
    let targets = ["10.77.0.2", "10.77.0.3"];
    let s = session(1, "svc").vni(5).cut(64).to(&targets).inbound(udp_rule(1, Action::Accept, None));
    let pcap = bed.mirror("ecs-source", &[s], |_| {
        let cap = Capture::start(&collector.netns, "eth0", "udp port 4789").expect("capture");
        for i in 0..16u16 {
            udp_send(&client.netns, "192.168.0.230", 42000 + i, 8000, 3);
        }
        settle();
        cap.stop().expect("stop")
    });
    let rows = tshark_rows(&pcap, "vxlan", &["ip.dst", "udp.srcport"]).expect("tshark");
    assert_eq!(rows.len(), 48, "{rows:?}");
    let mut per_flow: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        let inner_sport: u16 = r.inner("udp.srcport").parse().expect("inner sport");
        per_flow.entry(inner_sport).or_default().insert(r.outer("ip.dst").to_owned());
    }
    let ordered: Vec<IpAddr> = targets.iter().map(|t| t.parse().expect("literal")).collect();
    let mut used = BTreeSet::new();
    for (sport, endpoints) in &per_flow {
        assert_eq!(endpoints.len(), 1, "flow from port {sport} split over {endpoints:?}");
        let meta = podmirror_crds::model::PacketMeta {
            source: "192.168.0.161".parse().expect("literal"),
            destination: "192.168.0.230".parse().expect("literal"),
            protocol: ipproto::UDP,
            ports: Some((*sport, 8000)),
        };
        let want =
            podmirror_agent::datapath::flow::pick_target(podmirror_agent::datapath::flow::flow_hash(&meta), &ordered)
                .expect("a target");
        assert!(endpoints.contains(&want.to_string()), "flow {sport}: {endpoints:?} but the hash picks {want}");
        used.extend(endpoints.iter().cloned());
    }
    assert_eq!(per_flow.len(), 16);
    assert_eq!(used.len(), 2, "16 flows all on one endpoint: {per_flow:?}");
}

/// Pod MTU equal to the underlay MTU, full-length copies of a TCP stream:
/// no outer IP fragment reaches the collector, no copy exceeds the MTU, and
/// every copy is accounted for (copied + failures == matched).
#[test]
fn full_length_copies_of_a_tcp_stream_are_never_fragmented() {
    if !testbed::require_root("full_length_copies_of_a_tcp_stream_are_never_fragmented") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (source, client, collector) = (bed.pod("ecs-source"), bed.pod("ecs-test"), bed.collector());
    // Like a physical NIC without tunnel offload: the kernel segments GSO
    // copies before they leave the node, so the capture sees wire packets.
    let ul = &collector.node_ifname;
    let _ = bed
        .topo
        .node
        .exec("ethtool", &["-K", ul, "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off"]);
    let bytes = 20_000_000u64;
    // Both hooks: client -> source is the source's inbound (host-veth
    // egress), source -> client its outbound (host-veth ingress); both GSO.
    let tcp_to = |src: &str, dst: &str, port| rule(1, Action::Accept, Some(ipproto::TCP), src, dst, Some((port, port)));
    let s = session(1, "bulk").vni(9).inbound(tcp_to("0.0.0.0/0", "192.168.0.230/32", 5201)).outbound(tcp_to(
        "192.168.0.230/32",
        "0.0.0.0/0",
        5202,
    ));
    let (pcap, c_in, c_out, received_in, received_out) = bed.mirror("ecs-source", &[s], |dp| {
        let cap = Capture::start_with(&collector.netns, "eth0", "udp port 4789 or (ip[6:2] & 0x3fff != 0)", 96)
            .expect("capture");
        let transfer = |server_ns: &testbed::Netns, client_ns: &testbed::Netns, dst: &str, port: u16| -> String {
            let server = server_ns.spawn(&format!("nc -l {port} | wc -c")).expect("server");
            std::thread::sleep(Duration::from_millis(300));
            client_ns.sh(&format!("head -c {bytes} /dev/zero | nc -N -w 5 {dst} {port}")).expect("client");
            let out = server.finish(Duration::from_secs(10)).expect("server");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let received_in = transfer(&source.netns, &client.netns, "192.168.0.230", 5201);
        let received_out = transfer(&client.netns, &source.netns, "192.168.0.161", 5202);
        settle();
        let (c_in, c_out) = (counters(dp, 1, Direction::Inbound), counters(dp, 1, Direction::Outbound));
        (cap.stop().expect("stop"), c_in, c_out, received_in, received_out)
    });
    assert_eq!(received_in, bytes.to_string(), "the original inbound stream lost bytes");
    assert_eq!(received_out, bytes.to_string(), "the original outbound stream lost bytes");
    for c in [&c_in, &c_out] {
        // GSO: one matched packet is up to 64 KB of stream.
        assert!(c.matched > 100 && c.copied_bytes >= bytes, "{c:?}");
        assert_eq!(c.copied_packets + c.failed(), c.matched, "unaccounted copies: {c:?}");
        assert_eq!(c.failed(), 0, "{c:?}");
    }
    let c = SessionCounters {
        matched: c_in.matched + c_out.matched,
        copied_packets: c_in.copied_packets + c_out.copied_packets,
        copied_bytes: c_in.copied_bytes + c_out.copied_bytes,
        ..SessionCounters::default()
    };
    let frags = tshark_rows(&pcap, "ip.flags.mf == 1 || ip.frag_offset > 0", &["frame.number"]).expect("tshark");
    assert!(frags.is_empty(), "{} outer IP fragments reached the collector", frags.len());
    let sizes = tshark_rows(&pcap, "vxlan", &["ip.len"]).expect("tshark");
    assert!(sizes.len() as u64 >= c.copied_packets / 2, "too few copies captured: {} of {c:?}", sizes.len());
    let outer_len = |r: &testbed::Row| r.outer("ip.len").parse::<u64>().ok();
    let too_big: Vec<&testbed::Row> = sizes.iter().filter(|r| outer_len(r).is_none_or(|l| l > 1500)).collect();
    assert!(
        too_big.is_empty(),
        "{} copies exceed the 1500-byte underlay MTU, e.g. {:?}",
        too_big.len(),
        too_big.first()
    );
    // What reached the collector: inner frame = outer IP length - 36 (IP, UDP, VXLAN).
    let delivered: u64 = sizes.iter().filter_map(outer_len).map(|l| l - 36).sum();
    let inner_headers = 66 * (sizes.len() as u64); // each segment repeats Ethernet + IP + TCP headers
    assert!(
        delivered >= (c.copied_bytes as f64 * 0.99) as u64,
        "collector got {delivered} bytes of inner frames ({inner_headers} of them re-segmentation headers) for {} copied",
        c.copied_bytes
    );
}

/// Swapping a pod's sessions while traffic flows: every copy matches the
/// old set or the new set, never a mix (VNI of one, rules of the other).
#[test]
fn live_session_update_under_traffic_never_mixes_versions() {
    if !testbed::require_root("live_session_update_under_traffic_never_mixes_versions") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (source, client) = (bed.pod("ecs-source"), bed.pod("ecs-test"));
    // Same key, two versions: rules and VNI change together.
    let x = session(1, "live").vni(100).inbound(udp_rule(1, Action::Accept, Some(6000)));
    let y = session(2, "live").vni(200).inbound(udp_rule(1, Action::Accept, Some(7000)));
    let (pcap, cx, cy, swaps) = bed.mirror("ecs-source", std::slice::from_ref(&x), |dp| {
        let cap = Capture::start_with(&bed.collector().netns, "eth0", "udp port 4789", 128).expect("capture");
        let traffic = client
            .netns
            .spawn(
                "exec python3 -c \"import socket,time\ns=socket.socket(2,2)\nend=time.time()+2.5\nwhile time.time()<end:\n  s.sendto(b'a',('192.168.0.230',6000))\n  s.sendto(b'b',('192.168.0.230',7000))\"",
            )
            .expect("traffic");
        let start = std::time::Instant::now();
        let mut swaps = 0u32;
        while start.elapsed() < Duration::from_secs(2) {
            let next = if swaps.is_multiple_of(2) { &y } else { &x };
            dp.set_sessions(source.host_ifindex, std::slice::from_ref(next)).expect("swap");
            swaps += 1;
            std::thread::sleep(Duration::from_micros(500));
        }
        let _ = traffic.finish(Duration::from_secs(5));
        settle();
        (cap.stop().expect("stop"), counters(dp, 1, Direction::Inbound), counters(dp, 2, Direction::Inbound), swaps)
    });
    let rows = tshark_rows(&pcap, "vxlan", &["vxlan.vni", "udp.dstport"]).expect("tshark");
    let mut by_vni: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let (vni, inner) = (r.get("vxlan.vni"), r.inner("udp.dstport"));
        let ok = (vni == "100" && inner == "6000") || (vni == "200" && inner == "7000");
        assert!(ok, "a copy mixes versions: vni {vni} for inner port {inner}");
        *by_vni.entry(vni.to_owned()).or_default() += 1;
    }
    assert!(swaps > 100, "only {swaps} swaps");
    assert!(by_vni.get("100").is_some_and(|n| *n > 10) && by_vni.get("200").is_some_and(|n| *n > 10), "{by_vni:?}");
    for c in [&cx, &cy] {
        assert_eq!(c.copied_packets + c.failed(), c.matched, "{c:?}");
    }
}

/// A copy is never copied again: the copies to a target pod on this node
/// cross that pod's veth, which here carries a session accepting
/// everything (UDP 4789 included); it must not see them.
#[test]
fn copies_are_never_mirrored_again() {
    if !testbed::require_root("copies_are_never_mirrored_again") {
        return;
    }
    let mut topo = two_pods_and_collector(false, 1500);
    topo.add_pod(PodSpec::v4("ecs-target", "192.168.0.164")).expect("pod");
    let bed = Bed::new(topo, None);
    let (client, target) = (bed.pod("ecs-test"), bed.pod("ecs-target"));
    let all = |p| rule(p, Action::Accept, None, "0.0.0.0/0", "0.0.0.0/0", None);
    let first = session(1, "to-target").to(&["192.168.0.164"]).inbound(all(1)).outbound(all(1));
    let second = session(2, "from-target").vni(2).inbound(udp_rule(1, Action::Accept, Some(4789))).inbound(all(2));
    let (first, second, pcap) = bed.mirror("ecs-source", &[first], |dp| {
        dp.attach(target.host_ifindex).expect("attach");
        dp.set_sessions(target.host_ifindex, &[second]).expect("sessions");
        let cap = Capture::start(&bed.collector().netns, "eth0", "udp port 4789").expect("capture");
        udp_send(&client.netns, "192.168.0.230", 43000, 9000, 5);
        settle();
        (counters(dp, 1, Direction::Inbound), counters(dp, 2, Direction::Inbound), cap.stop().expect("stop"))
    });
    assert!(first.copied_packets >= 5, "the copies to the target pod: {first:?}");
    assert_eq!(second.matched, 0, "a copy was mirrored again: {second:?}");
    let rows = tshark_rows(&pcap, "vxlan", &["vxlan.vni"]).expect("tshark");
    assert!(rows.is_empty(), "copies of copies reached the collector: {rows:?}");
}

/// Detach leaves no program or link on the veth; remove_all leaves no pins
/// and no device. Before that, a reopened datapath adopts what was pinned.
#[test]
fn restart_adopts_and_detach_and_remove_all_leave_nothing() {
    if !testbed::require_root("restart_adopts_and_detach_and_remove_all_leave_nothing") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (topo, cfg) = (&bed.topo, &bed.cfg);
    let (source, client) = (bed.pod("ecs-source"), bed.pod("ecs-test"));
    // The TCX programs on a device, as the kernel lists them (run inside the node namespace).
    let tcx = |dev: &str| -> String {
        let mut names = Vec::new();
        for hook in [aya::programs::TcAttachType::Ingress, aya::programs::TcAttachType::Egress] {
            if let Ok((_, progs)) = aya::programs::SchedClassifier::query_tcx(dev, hook) {
                names.extend(progs.iter().map(|p| p.name_as_str().unwrap_or("?").to_string()));
            }
        }
        names.join(",")
    };
    topo.node
        .run(|| {
            let mut dp = Datapath::open(cfg).expect("open");
            dp.attach(source.host_ifindex).expect("attach");
            dp.attach(source.host_ifindex).expect("attach is idempotent");
            let s = session(1, "keep").vni(3).inbound(udp_rule(1, Action::Accept, None));
            dp.set_sessions(source.host_ifindex, &[s]).expect("sessions");
            udp_send(&client.netns, "192.168.0.230", 44000, 9100, 2);
            drop(dp); // the agent stops; pins keep mirroring

            udp_send(&client.netns, "192.168.0.230", 44000, 9100, 2);
            let mut dp = Datapath::open(cfg).expect("reopen");
            assert_eq!(dp.attached(), vec![source.host_ifindex], "not adopted");
            let c = counters(&dp, 1, Direction::Inbound);
            assert_eq!(c.matched, 4, "mirroring stopped across the restart: {c:?}");
            let shown = tcx(&source.host_ifname);
            assert!(shown.contains("pm_veth_ingress") && shown.contains("pm_veth_egress"), "{shown}");

            dp.detach(source.host_ifindex).expect("detach");
            dp.detach(source.host_ifindex).expect("detach is idempotent");
            assert!(dp.attached().is_empty());
            let shown = tcx(&source.host_ifname);
            assert!(!shown.contains("pm_veth"), "programs left on the veth after detach: {shown}");
            udp_send(&client.netns, "192.168.0.230", 44000, 9100, 2);
            assert_eq!(counters(&dp, 1, Direction::Inbound).matched, 4, "still mirroring after detach");
            drop(dp);

            Datapath::remove_all(cfg).expect("remove_all");
            assert!(!cfg.pin_dir.exists(), "pins left in {}", cfg.pin_dir.display());
            assert!(podmirror_agent::datapath::netlink::ifindex(&cfg.copy_device()).is_none(), "copy device left");
            assert!(podmirror_agent::datapath::netlink::ifindex(&cfg.copy_device_peer()).is_none(), "copy peer left");
            Datapath::remove_all(cfg).expect("remove_all is idempotent");

            // `--cleanup` while an agent still runs: the pins alone hold the links.
            let mut dp = Datapath::open(cfg).expect("open again");
            dp.attach(source.host_ifindex).expect("attach");
            assert!(tcx(&source.host_ifname).contains("pm_veth"));
            Datapath::remove_all(cfg).expect("remove_all with a live instance");
            let shown = tcx(&source.host_ifname);
            assert!(!shown.contains("pm_veth"), "remove_all left programs on the veth: {shown}");
            assert!(!cfg.pin_dir.exists());
            drop(dp);
        })
        .expect("node namespace");
}

/// Without BPF permission `open` fails with a clear error and no panic: the
/// test re-runs itself as `nobody` without capabilities.
#[test]
fn open_without_permission_fails_clearly() {
    if std::env::var("PMDP_UNPRIVILEGED_CHILD").is_ok() {
        let cfg = DatapathConfig {
            pin_dir: format!("/sys/fs/bpf/pmdp-noperm-{}", std::process::id()).into(),
            device_prefix: "pmdpnp".into(),
            ..DatapathConfig::default()
        };
        let err = Datapath::open(&cfg).expect_err("open must fail without privileges");
        let text = err.to_string();
        println!("UNPRIVILEGED-ERROR: {text}");
        assert!(!cfg.pin_dir.exists(), "a failed open left {}", cfg.pin_dir.display());
        assert!(text.to_lowercase().contains("permission") || text.contains("not permitted"), "unclear error: {text}");
        return;
    }
    if !testbed::require_root("open_without_permission_fails_clearly") {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(exe)
        .args(["--exact", "open_without_permission_fails_clearly", "--nocapture"])
        .env("PMDP_UNPRIVILEGED_CHILD", "1")
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("UNPRIVILEGED-ERROR:"), "{stdout}");
    assert!(!stdout.contains("panicked"), "{stdout}");
}

/// The fallback for kernels without TCX, forced here: clsact filters mirror
/// the same way, are adopted after a restart and leave nothing behind.
#[test]
fn clsact_fallback_mirrors_adopts_and_cleans_up() {
    if !testbed::require_root("clsact_fallback_mirrors_adopts_and_cleans_up") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (topo, cfg) = (&bed.topo, &bed.cfg);
    let (source, client) = (bed.pod("ecs-source"), bed.pod("ecs-test"));
    let filters = |hook: &str| -> String {
        topo.node
            .exec("tc", &["filter", "show", "dev", &source.host_ifname, hook])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    topo.node
        .run(|| {
            let mut dp = Datapath::open(cfg).expect("open");
            dp.set_attach_mode(podmirror_agent::datapath::AttachMode::Clsact);
            dp.attach(source.host_ifindex).expect("attach");
            dp.attach(source.host_ifindex).expect("attach is idempotent");
            assert!(filters("ingress").contains("pm_veth_ingress"), "{}", filters("ingress"));
            assert!(filters("egress").contains("pm_veth_egress"), "{}", filters("egress"));
            let s = session(1, "tc").vni(4).inbound(udp_rule(1, Action::Accept, None));
            dp.set_sessions(source.host_ifindex, &[s]).expect("sessions");
            udp_send(&client.netns, "192.168.0.230", 45000, 9200, 3);
            let c = counters(&dp, 1, Direction::Inbound);
            assert_eq!((c.matched, c.copied_packets), (3, 3), "{c:?}");
            drop(dp);

            let mut dp = Datapath::open(cfg).expect("reopen");
            assert_eq!(dp.attached(), vec![source.host_ifindex], "clsact filters not adopted");
            let shown = filters("ingress");
            assert_eq!(
                shown.lines().filter(|l| l.contains("pm_veth_ingress")).count(),
                1,
                "adoption duplicated the filter:\n{shown}"
            );
            udp_send(&client.netns, "192.168.0.230", 45000, 9200, 2);
            assert_eq!(counters(&dp, 1, Direction::Inbound).copied_packets, 5);
            dp.detach(source.host_ifindex).expect("detach");
            assert!(!filters("ingress").contains("pm_veth") && !filters("egress").contains("pm_veth"), "filters left");
            dp.attach(source.host_ifindex).expect("attach again");
            drop(dp);
            Datapath::remove_all(cfg).expect("remove_all");
            assert!(
                !filters("ingress").contains("pm_veth") && !filters("egress").contains("pm_veth"),
                "remove_all left filters"
            );
            assert!(!cfg.pin_dir.exists());
        })
        .expect("node namespace");
}

/// A collector reached over IPv6: the copy gets an outer IPv6 header
/// (source from the route, as no node IPv6 is configured).
#[test]
fn ipv6_outer_header_to_an_ipv6_collector() {
    if !testbed::require_root("ipv6_outer_header_to_an_ipv6_collector") {
        return;
    }
    let bed = Bed::new(two_pods_and_collector(false, 1500), None);
    let (client, collector) = (bed.pod("ecs-test"), bed.collector());
    bed.topo.node.ip(&["-6", "addr", "add", "fd77::1/64", "dev", &collector.node_ifname, "nodad"]).expect("node v6");
    collector.netns.ip(&["-6", "addr", "add", "fd77::2/64", "dev", "eth0", "nodad"]).expect("collector v6");
    let s = session(1, "v6out").vni(66).cut(100).to(&["fd77::2"]).inbound(udp_rule(1, Action::Accept, None));
    let pcap = bed.mirror("ecs-source", &[s], |dp| {
        let cap = Capture::start(&collector.netns, "eth0", "ip6 and udp port 4789").expect("capture");
        udp_send(&client.netns, "192.168.0.230", 46000, 9300, 3);
        settle();
        let c = counters(dp, 1, Direction::Inbound);
        assert_eq!(c.copied_packets, 3, "{c:?}");
        cap.stop().expect("stop")
    });
    let fields = ["ipv6.src", "ipv6.dst", "vxlan.vni", "ip.src", "ip.dst", "udp.dstport"];
    let rows = tshark_rows(&pcap, "vxlan", &fields).expect("tshark");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!((r.get("ipv6.src"), r.get("ipv6.dst"), r.get("vxlan.vni")), ("fd77::1", "fd77::2", "66"), "{r:?}");
        assert_eq!((r.get("ip.src"), r.get("ip.dst")), ("192.168.0.161", "192.168.0.230"), "{r:?}");
        assert_eq!(r.get("udp.dstport"), "4789,9300", "{r:?}");
    }
}
