//! Copies and the path MTU, counted from a capture at the collector (the
//! inner TCP sequence space the copies cover against the bytes sent):
//! - pod MTU = underlay MTU (1500), full length: every segment of a TCP
//!   stream is mirrored, GSO copies are re-segmented and lose nothing, and
//!   the only bytes missing are those cut from single full-size frames (not
//!   GSO: frame + tunnel cannot fit), each cut counted as truncated; no
//!   outer IP fragments;
//! - copies cut to `packetLength` are one short packet each, GSO or not;
//! - UDP GSO sends are mirrored one whole copy per datagram;
//! - a locked route MTU below the device's is honoured;
//! - jumbo frames over a smaller underlay are cut and counted, not lost.
//!
//! Needs root; prints `SKIPPED:` off root and fails under `CI=true`.

mod support;
use support::Cleanup;

use std::net::IpAddr;
use std::time::Duration;

use podmirror_agent::datapath::{Datapath, DatapathSession, SessionCounters};
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Direction, Encapsulation, IpFamily, PortRange, SessionKey, ipproto,
};
use podmirror_testkit::{self as testbed, Capture, Pcap, Topology, tshark_rows};

const BYTES: u64 = 4_000_000;
/// Outer Ethernet, IPv4, UDP and VXLAN headers in front of the inner frame.
const VXLAN_FRAME_OVERHEAD: u64 = 14 + 20 + 8 + 8;

/// What the client sends to the source pod, mirrored inbound.
#[derive(Clone, Copy)]
enum Traffic {
    /// BYTES over TCP to port 5201 (GSO packets).
    Tcp,
    /// UDP_GSO_SENDS sends of 10 x 1400-byte datagrams each with UDP GSO
    /// (UDP_SEGMENT) to port 5300.
    UdpGso,
    /// UDP_GSO_SENDS single 8000-byte datagrams to port 5300, the pods at
    /// MTU 9000 over the 1500-byte underlay.
    Jumbo,
}

const UDP_GSO_SENDS: u64 = 20;

fn session(packet_length: Option<u16>, traffic: Traffic) -> DatapathSession {
    let (protocol, port) = match traffic {
        Traffic::Tcp => (ipproto::TCP, 5201),
        Traffic::UdpGso | Traffic::Jumbo => (ipproto::UDP, 5300),
    };
    DatapathSession {
        id: 1,
        session: CompiledSession {
            key: SessionKey::new("default", "equal-mtu"),
            priority: 1,
            enabled: true,
            vni: 77,
            packet_length,
            encapsulation: Encapsulation::VXLAN,
            target_port: 4789,
            targets: vec!["10.77.0.2".parse::<IpAddr>().expect("literal")],
            rate_limit: None,
            flow_sampling: None,
            inbound: vec![CompiledRule {
                priority: 1,
                action: Action::Accept,
                family: IpFamily::IPv4,
                protocol: Some(protocol),
                source: "0.0.0.0/0".parse().expect("literal"),
                destination: "192.168.0.230/32".parse().expect("literal"),
                source_ports: None,
                destination_ports: Some(PortRange { from: port, to: port }),
            }],
            outbound: vec![],
        },
    }
}

struct Run {
    pcap: Pcap,
    counters: SessionCounters,
    received: String,
}

/// BYTES of TCP client -> source:5201, pods and underlay at MTU 1500, the
/// stream mirrored inbound; the collector's capture keeps the headers (160
/// bytes: a busy machine drops packets from a capture of whole ones) and the
/// wire length of each packet.
fn stream(packet_length: Option<u16>) -> Run {
    stream_with(packet_length, None, Traffic::Tcp, false)
}

/// Like `stream`, with `traffic`, optionally the route to the collector's
/// address carrying a locked `mtu` (a smaller path MTU than the underlay
/// device's), optionally the client's sends paced.
fn stream_with(packet_length: Option<u16>, route_mtu: Option<u32>, traffic: Traffic, paced: bool) -> Run {
    let pod_mtu = if matches!(traffic, Traffic::Jumbo) { 9000 } else { 1500 };
    let topo = Topology::client_source_collector("pmcp", pod_mtu).expect("topology");
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let (source, client, collector) =
        (topo.pod("source").expect("pod"), topo.pod("client").expect("pod"), topo.remote("collector").expect("remote"));
    // Like a NIC without tunnel offload: the node segments GSO copies, so
    // the capture sees wire packets.
    let ul = &collector.node_ifname;
    let _ =
        topo.node.exec("ethtool", &["-K", ul, "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off"]);
    // The collector's address resolved beforehand: copies sent while ARP
    // is pending wait in a small neighbour queue and overflow it, after the
    // datapath has counted them.
    let mac = collector.netns.sh("cat /sys/class/net/eth0/address").expect("collector MAC");
    topo.node
        .ip(&["neigh", "replace", "10.77.0.2", "lladdr", mac.trim(), "dev", ul, "nud", "permanent"])
        .expect("neigh");
    if paced {
        // Paced TCP sends many segments on their own (not GSO), and no
        // bursts of software-segmented copies overflow the collector's
        // receive backlog on a busy machine.
        let tbf =
            ["qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "300mbit", "burst", "64kb", "latency", "100ms"];
        client.netns.exec("tc", &tbf).expect("pacing");
    }
    if let Some(mtu) = route_mtu {
        topo.node.ip(&["route", "add", "10.77.0.2/32", "dev", ul, "mtu", "lock", &mtu.to_string()]).expect("route");
    }
    topo.node
        .run(|| {
            let mut dp = Datapath::open(&cfg).expect("open");
            dp.attach(source.host_ifindex).expect("attach");
            dp.set_sessions(source.host_ifindex, &[session(packet_length, traffic)]).expect("sessions");
            let cap = Capture::start_with(&collector.netns, "eth0", "udp port 4789 or (ip[6:2] & 0x3fff != 0)", 160)
                .expect("capture");
            let udp_server = "python3 -c \"import socket\ns=socket.socket(2,2)\ns.bind(('',5300))\ns.settimeout(2)\nn=0\ntry:\n  while True:\n    s.recv(65535); n+=1\nexcept OSError: pass\nprint(n)\"";
            let (server, client_cmd) = match traffic {
                Traffic::Tcp => (
                    "nc -l 5201 | wc -c".to_string(),
                    format!("head -c {BYTES} /dev/zero | nc -N -w 5 192.168.0.230 5201"),
                ),
                // SOL_UDP = 17, UDP_SEGMENT = 103: one send, ten datagrams.
                Traffic::UdpGso => (
                    udp_server.to_string(),
                    format!("python3 -c \"import socket,time\ns=socket.socket(2,2)\ns.setsockopt(17,103,1400)\nfor i in range({UDP_GSO_SENDS}):\n  s.sendto(b'u'*14000,('192.168.0.230',5300)); time.sleep(0.01)\""),
                ),
                Traffic::Jumbo => (
                    udp_server.to_string(),
                    format!("python3 -c \"import socket,time\ns=socket.socket(2,2)\nfor i in range({UDP_GSO_SENDS}):\n  s.sendto(b'j'*8000,('192.168.0.230',5300)); time.sleep(0.01)\""),
                ),
            };
            let server = source.netns.spawn(&server).expect("server");
            std::thread::sleep(Duration::from_millis(300));
            client.netns.sh(&client_cmd).expect("client");
            let out = server.finish(Duration::from_secs(10)).expect("server");
            std::thread::sleep(Duration::from_millis(300));
            let counters = dp.counters().expect("counters").get(&(1, Direction::Inbound)).cloned().unwrap_or_default();
            Run {
                pcap: cap.stop().expect("stop"),
                counters,
                received: String::from_utf8_lossy(&out.stdout).trim().into(),
            }
        })
        .expect("node namespace")
}

/// One decoded copy: outer IP length, the captured inner frame's length, and
/// the inner TCP segment (relative sequence number, payload bytes present,
/// payload bytes its IP header claims).
struct Copy {
    outer_ip_len: u64,
    inner_frame_len: u64,
    seq: u64,
    payload: u64,
    claimed: u64,
}

/// A numeric tshark field (`row.outer(..)` or `row.inner(..)`); 0 when absent.
fn num(value: &str) -> u64 {
    value.parse().unwrap_or(0)
}

fn copies(pcap: &Pcap) -> Vec<Copy> {
    let rows = tshark_rows(
        pcap,
        "vxlan && tcp.dstport == 5201",
        &["frame.len", "ip.len", "ip.hdr_len", "tcp.hdr_len", "tcp.seq", "tcp.len"],
    )
    .expect("tshark");
    rows.iter()
        .map(|r| {
            let inner_frame_len = num(r.outer("frame.len")).saturating_sub(VXLAN_FRAME_OVERHEAD);
            // What the copy holds of the payload: the TCP length the inner
            // IP header claims, or less when the copy was cut.
            let (inner_ip_hdr, tcp_hdr) = (num(r.inner("ip.hdr_len")), num(r.get("tcp.hdr_len")));
            let present = inner_frame_len.saturating_sub(14 + inner_ip_hdr + tcp_hdr);
            Copy {
                outer_ip_len: num(r.outer("ip.len")),
                inner_frame_len,
                seq: num(r.get("tcp.seq")),
                payload: present.min(num(r.get("tcp.len"))),
                // From the inner IP header: tshark's tcp.len is what was captured.
                claimed: num(r.inner("ip.len")).saturating_sub(inner_ip_hdr + tcp_hdr),
            }
        })
        .collect()
}

/// Bytes of the stream [1, 1 + BYTES) that some copy carries (`len` of
/// each: the payload present, or the payload its header claims).
fn covered(copies: &[Copy], len: impl Fn(&Copy) -> u64) -> u64 {
    let mut ranges: Vec<(u64, u64)> = copies.iter().filter(|c| len(c) > 0).map(|c| (c.seq, c.seq + len(c))).collect();
    ranges.sort_unstable();
    let (mut total, mut end) = (0u64, 1u64);
    for (lo, hi) in ranges {
        let (lo, hi) = (lo.max(end), hi.min(1 + BYTES));
        if hi > lo {
            total += hi - lo;
            end = hi;
        }
    }
    total
}

fn outer_fragments(pcap: &Pcap) -> usize {
    tshark_rows(pcap, "ip.flags.mf == 1 || ip.frag_offset > 0", &["frame.number"]).expect("tshark").len()
}

/// Full length at equal MTUs: every segment of the stream is mirrored, no
/// outer fragment, and the only bytes missing are those cut from copies of
/// single full-size frames (not GSO: 1514 + 50 bytes cannot fit 1500), each
/// such cut counted as truncated. GSO copies are re-segmented, never cut.
fn check_equal_mtu_stream(run: &Run) {
    let c = &run.counters;
    assert_eq!(run.received, BYTES.to_string(), "the original stream lost bytes");
    assert_eq!((c.failed(), c.copied_packets), (0, c.matched), "{c:?}");
    assert_eq!(outer_fragments(&run.pcap), 0, "outer IP fragments reached the collector");
    let copies = copies(&run.pcap);
    assert!(copies.iter().all(|k| k.outer_ip_len <= 1500), "a copy over the 1500-byte underlay MTU");
    assert_eq!(covered(&copies, |k| k.claimed), BYTES, "stream segments never mirrored ({c:?})");
    let cut: Vec<&Copy> = copies.iter().filter(|k| k.payload < k.claimed).collect();
    assert_eq!(cut.len() as u64, c.truncated, "copies cut without being counted ({c:?})");
    assert!(cut.iter().all(|k| k.outer_ip_len == 1500), "a copy cut shorter than the MTU");
    let cut_bytes: u64 = cut.iter().map(|k| k.claimed - k.payload).sum();
    assert_eq!(covered(&copies, |k| k.payload) + cut_bytes, BYTES, "bytes lost beyond the counted cuts ({c:?})");
}

#[test]
fn full_length_copies_at_equal_mtu_lose_only_the_counted_cuts() {
    if !testbed::require_root("full_length_copies_at_equal_mtu_lose_only_the_counted_cuts") {
        return;
    }
    // Unpaced: mostly GSO packets; paced: mostly single segments.
    check_equal_mtu_stream(&stream(None));
    let paced = stream_with(None, None, Traffic::Tcp, true);
    check_equal_mtu_stream(&paced);
    assert!(paced.counters.truncated > 0, "the paced stream sent no single full-size frame");
}

#[test]
fn cut_copies_of_a_gso_stream_are_one_short_packet_each() {
    if !testbed::require_root("cut_copies_of_a_gso_stream_are_one_short_packet_each") {
        return;
    }
    let run = stream(Some(96));
    let c = &run.counters;
    assert_eq!(run.received, BYTES.to_string(), "the original stream lost bytes");
    assert_eq!((c.failed(), c.copied_packets, c.truncated), (0, c.matched, 0), "{c:?}");
    let copies = copies(&run.pcap);
    assert_eq!(copies.len() as u64, c.copied_packets, "one wire packet per cut copy");
    assert!(copies.iter().all(|k| k.inner_frame_len <= 96), "a copy longer than packetLength");
    // The stream is sent in GSO packets: far fewer copies than MSS segments,
    // and each carries the first 96 - 66 = 30 bytes of its packet's payload.
    assert!(c.copied_packets < BYTES / 1448, "{c:?}");
    let data: Vec<&Copy> = copies.iter().filter(|k| k.payload > 0).collect();
    assert!(data.iter().all(|k| k.payload <= 30), "a cut copy with more than 30 payload bytes");
    assert!(
        data.iter().filter(|k| k.payload == 30).count() * 10 >= data.len() * 9,
        "cut copies carry 30 payload bytes"
    );
    assert_eq!(c.copied_bytes, copies.iter().map(|k| k.inner_frame_len).sum::<u64>(), "copied bytes = inner bytes");
}

#[test]
fn copies_fit_a_locked_route_mtu_below_the_device_mtu() {
    if !testbed::require_root("copies_fit_a_locked_route_mtu_below_the_device_mtu") {
        return;
    }
    let run = stream_with(None, Some(1400), Traffic::Tcp, false);
    let c = &run.counters;
    assert_eq!(run.received, BYTES.to_string(), "the original stream lost bytes");
    assert_eq!((c.failed(), c.copied_packets), (0, c.matched), "{c:?}");
    assert_eq!(outer_fragments(&run.pcap), 0, "outer IP fragments reached the collector");
    let copies = copies(&run.pcap);
    assert!(!copies.is_empty());
    let too_big = copies.iter().filter(|k| k.outer_ip_len > 1400).count();
    assert_eq!(too_big, 0, "copies over the route's 1400-byte MTU");
    // Its 1500-byte segments do not fit a 1400-byte path: copies are cut.
    assert!(c.truncated > 0 && copies.iter().any(|k| k.outer_ip_len == 1400), "{c:?}");
}

#[test]
fn udp_gso_copies_keep_every_datagram() {
    if !testbed::require_root("udp_gso_copies_keep_every_datagram") {
        return;
    }
    let run = stream_with(None, None, Traffic::UdpGso, false);
    let c = &run.counters;
    assert_eq!(run.received, (UDP_GSO_SENDS * 10).to_string(), "the original datagrams were lost");
    assert_eq!((c.failed(), c.copied_packets, c.truncated), (0, c.matched, 0), "{c:?}");
    assert_eq!(outer_fragments(&run.pcap), 0, "outer IP fragments reached the collector");
    let rows = tshark_rows(&run.pcap, "vxlan && udp.dstport == 5300", &["ip.len", "udp.length"]).expect("tshark");
    assert_eq!(rows.len() as u64, UDP_GSO_SENDS * 10, "one copy per datagram at the collector");
    for r in &rows {
        assert!(num(r.outer("ip.len")) <= 1500, "a copy over the MTU: {r:?}");
        assert_eq!(num(r.inner("udp.length")), 1408, "the inner datagram is whole: {r:?}");
    }
}

#[test]
fn jumbo_frames_over_a_smaller_underlay_are_cut_not_lost() {
    if !testbed::require_root("jumbo_frames_over_a_smaller_underlay_are_cut_not_lost") {
        return;
    }
    let run = stream_with(None, None, Traffic::Jumbo, false);
    let c = &run.counters;
    assert_eq!(run.received, UDP_GSO_SENDS.to_string(), "the original datagrams were lost");
    // Not GSO, larger than the path MTU: cut to fit and counted, not dropped.
    assert_eq!((c.failed(), c.copied_packets, c.truncated), (0, UDP_GSO_SENDS, UDP_GSO_SENDS), "{c:?}");
    assert_eq!(outer_fragments(&run.pcap), 0, "outer IP fragments reached the collector");
    let rows = tshark_rows(&run.pcap, "vxlan", &["ip.len"]).expect("tshark");
    assert_eq!(rows.len() as u64, UDP_GSO_SENDS, "one copy per datagram at the collector");
    assert!(rows.iter().all(|r| num(r.outer("ip.len")) == 1500), "copies cut to the 1500-byte MTU: {rows:?}");
}
