//! `rateLimit` and `flowSampling` on the real eBPF datapath: packet and byte
//! rate caps accurate within 10% at (at least) 10x overload (real UDP traffic on veths in network
//! namespaces, the original untouched), and flow sampling at 1/4 choosing
//! 25% +- 3% of 10,000 flows (BPF_PROG_TEST_RUN) and mirroring each chosen
//! flow whole, both directions (real traffic, copies decoded by tshark).
//! Needs root; prints `SKIPPED:` off root and fails under `CI=true`.

mod support;
use support::Cleanup;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use podmirror_agent::datapath::abi::{PM_VERDICT_COPY, PM_VERDICT_UNSAMPLED};
use podmirror_agent::datapath::flow::flow_hash;
use podmirror_agent::datapath::{Datapath, DatapathSession};
use podmirror_crds::model::{CompiledSession, Direction, FlowShare, PacketMeta, RateCap, ipproto};
use podmirror_testkit::fixtures::{accept_ipv4, compiled_session};
use podmirror_testkit::{self as testbed, Capture, Topology, tshark_rows};

const QUARTER: FlowShare = FlowShare { numerator: 1, denominator: 4 };

fn session(rate_limit: Option<RateCap>, flow_sampling: Option<FlowShare>) -> DatapathSession {
    let udp = accept_ipv4(Some(ipproto::UDP), None);
    let (inbound, outbound) = (vec![udp.clone()], vec![udp]);
    let shaped = compiled_session("shaped", "10.77.0.2");
    DatapathSession {
        id: 3,
        session: CompiledSession { vni: 5, rate_limit, flow_sampling, inbound, outbound, ..shaped },
    }
}

fn topology() -> Topology {
    Topology::client_source_collector("pmsh", 1500).expect("topology")
}

/// Python in `ns`: send UDP to `dst:port` as fast as it can for `secs`
/// seconds; prints "<sent> <elapsed seconds>".
fn blast(ns: &testbed::Netns, dst: &str, port: u16, secs: f64) -> (u64, f64) {
    let out = ns
        .sh(&format!(
            "python3 -c \"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nt=time.monotonic();n=0\nwhile time.monotonic()-t<{secs}:\n  s.sendto(b'x'*100,('{dst}',{port}));n+=1\nprint(n, time.monotonic()-t)\""
        ))
        .expect("udp blast");
    let mut it = out.split_whitespace();
    let sent = it.next().and_then(|n| n.parse().ok()).expect("sent count");
    let elapsed = it.next().and_then(|n| n.parse().ok()).expect("elapsed");
    (sent, elapsed)
}

#[test]
fn rate_limit_holds_within_ten_percent_at_tenfold_overload() {
    if !testbed::require_root("rate_limit_holds_within_ten_percent_at_tenfold_overload") {
        return;
    }
    overload(RateCap { packets_per_second: Some(300), bytes_per_second: None }, 300.0);
}

#[test]
fn byte_rate_limit_holds_within_ten_percent_at_tenfold_overload() {
    if !testbed::require_root("byte_rate_limit_holds_within_ten_percent_at_tenfold_overload") {
        return;
    }
    // 142-byte frames (Ethernet, IPv4, UDP, 100 bytes): 42,600 B/s = 300 copies/s.
    overload(RateCap { packets_per_second: None, bytes_per_second: Some(42_600) }, 300.0);
}

/// Blast UDP at the source pod for 2 s (far over the cap) with a session
/// capped at `rate`, which admits `cap` copies per second.
fn overload(rate: RateCap, cap: f64) {
    let topo = topology();
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let (source, client) = (topo.pod("source").expect("pod"), topo.pod("client").expect("pod"));
    // Packets the pod's interface received (the originals), from its own counters.
    let rx = || -> u64 {
        source
            .netns
            .sh("cat /sys/class/net/eth0/statistics/rx_packets")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let rx_before = rx();
    let ((sent, elapsed), c) = topo
        .node
        .run(|| {
            let mut dp = Datapath::open(&cfg).expect("open");
            dp.attach(source.host_ifindex).expect("attach");
            let s = session(Some(rate), None);
            dp.set_sessions(source.host_ifindex, &[s]).expect("sessions");
            let sent = blast(&client.netns, "192.168.0.230", 9000, 2.0);
            std::thread::sleep(Duration::from_millis(200));
            (sent, dp.counters().expect("counters").get(&(3, Direction::Inbound)).cloned().unwrap_or_default())
        })
        .expect("node namespace");
    let got = rx() - rx_before;
    let offered = sent as f64 / elapsed;
    assert!(offered >= 10.0 * cap, "offered only {offered:.0} pps, not a tenfold overload of {cap}");
    let copies = (c.copied_packets + c.failed()) as f64;
    let want = cap * elapsed;
    eprintln!(
        "rate cap {rate:?} = {cap}/s: offered {offered:.0}/s for {elapsed:.2}s, {copies} copies (want {want:.0})"
    );
    assert!(
        (copies - want).abs() <= want * 0.10,
        "{copies} copies in {elapsed:.2}s, cap {cap}/s wants {want:.0}: {c:?}"
    );
    assert_eq!(c.failed(), 0, "{c:?}");
    assert_eq!(c.matched, c.copied_packets + c.skipped_for("rate_limit"), "every Accept copied or skipped: {c:?}");
    assert!(c.matched >= sent * 95 / 100, "the datapath saw {} of {sent}", c.matched);
    assert!(got >= sent * 95 / 100, "originals lost: the pod's interface received {got} of {sent}");
}

/// The flow `i` seen by the source pod: inbound request, outbound reply.
fn flow_meta(i: u32, reply: bool) -> PacketMeta {
    let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    let server = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 230));
    let cport = 1024 + (i % 50_000) as u16;
    if reply {
        PacketMeta { source: server, destination: client, protocol: ipproto::UDP, ports: Some((8000, cport)) }
    } else {
        PacketMeta { source: client, destination: server, protocol: ipproto::UDP, ports: Some((cport, 8000)) }
    }
}

fn frame(m: &PacketMeta) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (m.source, m.destination) else { panic!("IPv4 only") };
    let (sp, dp) = m.ports.unwrap_or((0, 0));
    let mut f = vec![0u8; 14 + 20 + 8 + 8];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&36u16.to_be_bytes());
    f[22] = 64;
    f[23] = ipproto::UDP;
    f[26..30].copy_from_slice(&src.octets());
    f[30..34].copy_from_slice(&dst.octets());
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    f[38..40].copy_from_slice(&16u16.to_be_bytes());
    f
}

#[test]
fn flow_sampling_one_in_four_picks_a_quarter_of_ten_thousand_flows() {
    if !testbed::require_root("flow_sampling_one_in_four_picks_a_quarter_of_ten_thousand_flows") {
        return;
    }
    let topo = Topology::new("pmsh").expect("node namespace");
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let result = topo
        .node
        .run(|| -> Result<usize, String> {
            let mut dp = Datapath::open(&cfg).map_err(|e| e.to_string())?;
            dp.set_sessions(4244, &[session(None, Some(QUARTER))]).map_err(|e| e.to_string())?;
            let mut sampled = 0;
            for i in 0..10_000 {
                let (req, rep) = (flow_meta(i, false), flow_meta(i, true));
                let a = dp.test_decide(4244, Direction::Inbound, &frame(&req)).map_err(|e| e.to_string())?.verdict;
                let b = dp.test_decide(4244, Direction::Outbound, &frame(&rep)).map_err(|e| e.to_string())?.verdict;
                let want = if QUARTER.samples(flow_hash(&req)) { PM_VERDICT_COPY } else { PM_VERDICT_UNSAMPLED };
                if a != want || b != want {
                    return Err(format!("flow {i}: request {a}, reply {b}, the model says {want}"));
                }
                sampled += usize::from(a == PM_VERDICT_COPY);
            }
            Ok(sampled)
        })
        .expect("enter node namespace");
    let sampled = result.unwrap_or_else(|e| panic!("{e}"));
    assert!((2_200..=2_800).contains(&sampled), "{sampled} of 10000 flows sampled at 1/4");
}

#[test]
fn a_sampled_flow_is_mirrored_whole_both_directions() {
    if !testbed::require_root("a_sampled_flow_is_mirrored_whole_both_directions") {
        return;
    }
    let topo = topology();
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let (source, client, collector) =
        (topo.pod("source").expect("pod"), topo.pod("client").expect("pod"), topo.remote("collector").expect("remote"));
    let flows = 48u16;
    let (pcap, c_in, c_out) = topo
        .node
        .run(|| {
            let mut dp = Datapath::open(&cfg).expect("open");
            dp.attach(source.host_ifindex).expect("attach");
            dp.set_sessions(source.host_ifindex, &[session(None, Some(QUARTER))]).expect("sessions");
            let cap = Capture::start(&collector.netns, "eth0", "udp port 4789").expect("capture");
            // Each flow: two requests client:p -> source:8000, two replies back.
            let py = |me: &str, peer: &str, mine: &str, theirs: &str| {
                format!("python3 -c \"import socket,time\nfor p in range(30000,30000+{flows}):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n  s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n  s.bind(('{me}',{mine}))\n  for i in range(2):\n    s.sendto(b'flow',('{peer}',{theirs}))\n    time.sleep(0.001)\n  s.close()\"")
            };
            client.netns.sh(&py("192.168.0.161", "192.168.0.230", "p", "8000")).expect("requests");
            source.netns.sh(&py("192.168.0.230", "192.168.0.161", "8000", "p")).expect("replies");
            std::thread::sleep(Duration::from_millis(300));
            let counters = dp.counters().expect("counters");
            let get = |d| counters.get(&(3, d)).cloned().unwrap_or_default();
            (cap.stop().expect("stop"), get(Direction::Inbound), get(Direction::Outbound))
        })
        .expect("node namespace");
    let rows = tshark_rows(&pcap, "vxlan", &["udp.srcport", "udp.dstport"]).expect("tshark");
    let mut copies: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &rows {
        let inner = |field| r.inner(field).parse::<u16>().expect("inner port");
        let (s, d) = (inner("udp.srcport"), inner("udp.dstport"));
        // The client's port identifies the flow (the server's is 8000).
        *copies.entry(s.max(d)).or_default() += 1;
    }
    let mut want = BTreeSet::new();
    for p in 30000..30000 + flows {
        let m = PacketMeta {
            source: "192.168.0.161".parse().expect("literal"),
            destination: "192.168.0.230".parse().expect("literal"),
            protocol: ipproto::UDP,
            ports: Some((p, 8000)),
        };
        if QUARTER.samples(flow_hash(&m)) {
            want.insert(p);
        }
    }
    assert!(!want.is_empty() && want.len() < flows as usize, "the flows chosen must be a strict subset: {want:?}");
    let got: BTreeSet<u16> = copies.keys().copied().collect();
    assert_eq!(got, want, "mirrored flows differ from the sampled ones");
    assert!(
        copies.values().all(|n| *n == 4),
        "a sampled flow must be mirrored whole (2 requests + 2 replies): {copies:?}"
    );
    let skipped = c_in.skipped_for("flow_sampling") + c_out.skipped_for("flow_sampling");
    assert_eq!(skipped, 4 * (flows as u64 - want.len() as u64), "{c_in:?} {c_out:?}");
    assert_eq!(c_in.copied_packets + c_out.copied_packets, 4 * want.len() as u64);
}
