//! Restarts under traffic: a new `Datapath` instance adopts the pinned
//! datapath (new programs swapped into the pinned links one by one) while a
//! paced UDP stream crosses a mirrored veth. Every packet the veth programs
//! decide to copy must be copied and delivered, and the original stream must
//! lose nothing. Needs root; prints `SKIPPED:` off root and fails under
//! `CI=true` when it cannot run.

mod support;
use support::Cleanup;

use std::time::Duration;

use podmirror_agent::datapath::{AttachMode, Datapath, DatapathSession};
use podmirror_crds::model::{CompiledSession, Direction, PortRange, ipproto};
use podmirror_testkit::fixtures::{accept_ipv4, compiled_session};
use podmirror_testkit::{self as testbed, PodSpec, Topology};

const PACKETS: u32 = 24_000;
const PORT: u16 = 6000;

fn mirror_port(port: u16) -> DatapathSession {
    let inbound = vec![accept_ipv4(Some(ipproto::UDP), Some(PortRange { from: port, to: port }))];
    DatapathSession { id: 1, session: CompiledSession { vni: 7, inbound, ..compiled_session("restart", "10.77.0.2") } }
}

/// A UDP receiver that prints how many datagrams reached `port` once none
/// has come for 1.5 s (a big receive buffer: the sender is paced well below
/// what it reads).
fn count_udp(port: u16) -> String {
    format!(
        "exec python3 -c \"import socket\ns=socket.socket(2,2)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1<<24)\ns.bind(('0.0.0.0',{port}))\ns.settimeout(20)\nn=0\ntry:\n  while True:\n    s.recv(65535)\n    n+=1\n    s.settimeout(1.5)\nexcept socket.timeout:\n  pass\nprint(n)\""
    )
}

/// `PACKETS` datagrams in bursts of 10 per millisecond (about 3 s).
fn paced_sender(dst: &str) -> String {
    format!(
        "exec python3 -c \"import socket,time\ns=socket.socket(2,2)\nfor i in range({PACKETS}):\n  s.sendto(b'restart-%d' % i,('{dst}',{PORT}))\n  if i % 10 == 9:\n    time.sleep(0.001)\""
    )
}

fn printed_count(p: testbed::Process, what: &str) -> u64 {
    let out = p.finish(Duration::from_secs(30)).expect("receiver");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|e| panic!("{what} printed {text:?} ({e})"))
}

/// A datapath reopened again and again while traffic flows: zero clone
/// failures, every decided copy delivered, no original lost. TCX links.
#[test]
fn reopening_under_traffic_loses_no_copy() {
    if !testbed::require_root("reopening_under_traffic_loses_no_copy") {
        return;
    }
    reopen_under_traffic(AttachMode::Tcx);
}

/// The same with clsact filters (replaced in place on adoption).
#[test]
fn reopening_clsact_under_traffic_loses_no_copy() {
    if !testbed::require_root("reopening_clsact_under_traffic_loses_no_copy") {
        return;
    }
    reopen_under_traffic(AttachMode::Clsact);
}

fn reopen_under_traffic(mode: AttachMode) {
    let mut topo = Topology::new("pmrs").expect("topology");
    topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230")).expect("pod");
    topo.add_remote("collector", "10.77.0.2", "10.77.0.1", 1500).expect("remote");
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let (source, client, collector) = (
        topo.pod("ecs-source").expect("pod"),
        topo.pod("ecs-test").expect("pod"),
        topo.remote("collector").expect("remote"),
    );
    let session = mirror_port(PORT);
    let (counters, reopens) = topo
        .node
        .run(|| {
            let mut dp = Datapath::open(&cfg).expect("open");
            dp.set_attach_mode(mode);
            dp.attach(source.host_ifindex).expect("attach");
            dp.set_sessions(source.host_ifindex, std::slice::from_ref(&session)).expect("sessions");
            let originals = source.netns.spawn(&count_udp(PORT)).expect("original receiver");
            let copies = collector.netns.spawn(&count_udp(4789)).expect("copy receiver");
            std::thread::sleep(Duration::from_millis(500));
            let mut sender = client.netns.spawn(&paced_sender("192.168.0.230")).expect("sender");
            let mut reopens = 0u32;
            // What a restarted agent does: adopt the pins, then program its sessions again.
            while sender.child().try_wait().expect("sender state").is_none() {
                drop(dp);
                dp = Datapath::open(&cfg).expect("reopen");
                dp.set_attach_mode(mode);
                dp.attach(source.host_ifindex).expect("attach after reopen");
                dp.set_sessions(source.host_ifindex, std::slice::from_ref(&session)).expect("sessions again");
                reopens += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            // The veth is still attached the way this run asked for.
            let expected = match mode {
                AttachMode::Clsact => format!("clsact-{}-ingress-", source.host_ifindex),
                _ => format!("link-{}-ingress", source.host_ifindex),
            };
            let pins: Vec<String> = std::fs::read_dir(&cfg.pin_dir)
                .expect("pin dir")
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            assert!(pins.iter().any(|p| p.starts_with(&expected)), "no {expected}* among {pins:?}");
            let sent = sender.finish(Duration::from_secs(5)).expect("sender");
            assert!(sent.status.success(), "sender: {}", String::from_utf8_lossy(&sent.stderr));
            let originals = printed_count(originals, "the original receiver");
            let copies = printed_count(copies, "the copy receiver");
            let c = dp.counters().expect("counters").get(&(1, Direction::Inbound)).cloned().unwrap_or_default();
            ((c, originals, copies), reopens)
        })
        .expect("node namespace");
    let (c, originals, copies) = counters;
    assert!(reopens >= 5, "only {reopens} reopens while the traffic ran ({mode:?})");
    assert_eq!(originals, u64::from(PACKETS), "the original stream lost packets");
    assert_eq!(c.matched, u64::from(PACKETS), "decisions: {c:?}");
    assert_eq!(c.failed(), 0, "copies lost across {reopens} reopens ({mode:?}): {c:?}");
    assert_eq!(c.copied_packets, c.matched, "{c:?}");
    assert_eq!(copies, c.copied_packets, "copies counted as sent but not delivered: {c:?}");
}
