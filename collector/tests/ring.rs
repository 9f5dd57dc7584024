//! The ring input (`--ring-iface`), on a veth pair between two network
//! namespaces with the collector running as its own process in one of them:
//! copies that fit a record arrive through the BPF ring buffer (the kernel's
//! UDP layer never sees them), larger ones (9000-byte frames) through the
//! UDP socket, every copy is recorded byte for byte, other traffic still
//! flows, the program is gone when the collector stops; a full ring drops
//! what it cannot hold and counts it. Root.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn copies_arrive_through_the_ring_and_jumbo_copies_through_the_socket() {
    if !require_root("copies_arrive_through_the_ring_and_jumbo_copies_through_the_socket") {
        return;
    }
    let attached = |said: &[String]| {
        assert!(said.iter().any(|l| l.contains("ring input attached")), "the ring input attached: {said:?}");
    };
    // Two receive queues: one ring serves them all.
    kernel_input_scenario("ring", "--ring-iface eth0", 2, attached, ring_on_eth0);
}

/// A small ring (16 KiB: nine records) wraps around its end eleven times
/// over 100 copies; records that straddle the end must come out whole (the
/// reader maps the data area twice in a row for them). Each copy is sent
/// once the previous one is in the file, so that the ring never fills.
#[test]
fn records_that_wrap_around_the_ring_arrive_whole() {
    if !require_root("records_that_wrap_around_the_ring_arrive_whole") {
        return;
    }
    let mut bed = PodBed::start("ring-wrap", 1, "--ring-iface eth0 --ring-bytes 16384");
    // Frames of different lengths, so that records fall on every offset.
    let frames: Vec<Vec<u8>> = traffic(40600, 100, 30_000)
        .into_iter()
        .enumerate()
        .map(|(i, f)| f[..f.len().saturating_sub((i * 37) % 400).max(f.len().min(60))].to_vec())
        .collect();
    let to = SocketAddr::from(([10, 77, 0, 2], 4789));
    let sock = bed.node.run(|| UdpSocket::bind("10.77.0.1:0").expect("bind")).expect("sender namespace");
    for (i, f) in frames.iter().enumerate() {
        sock.send_to(&[&podmirror_collector::decode::vxlan_header(9)[..], f].concat(), to).expect("send a copy");
        let deadline = Instant::now() + Duration::from_secs(5);
        while recorded_frames(&bed.dir).len() <= i {
            assert!(Instant::now() < deadline, "copy {i} not recorded");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    bed.stop();
    assert!(recorded_frames(&bed.dir) == frames, "every record whole and in order across the wraps");
}

#[test]
fn a_full_ring_drops_and_counts_what_it_cannot_hold() {
    if !require_root("a_full_ring_drops_and_counts_what_it_cannot_hold") {
        return;
    }
    // One page of ring: two records.
    let mut bed = PodBed::start("ring-full", 1, "--ring-iface eth0 --ring-bytes 4096");
    let http = bed.http_addr();
    assert!(ring_on_eth0(&bed.pod), "the program is on eth0: {:?}", bed.said);

    // The collector stopped: the ring fills after two copies, and the
    // program drops the rest, counted; none reaches the pod's UDP layer.
    let pid = bed.pid();
    let before = udp_in_datagrams(&bed.pod);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    wait_until_stopped(pid);
    let frames = traffic(40500, 100, 10_000);
    bed.node
        .run(|| send_vxlan_from("10.77.0.1:0", SocketAddr::from(([10, 77, 0, 2], 4789)), 5, &frames))
        .expect("send from the sender namespace");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };

    let deadline = Instant::now() + Duration::from_secs(10);
    while recorded_frames(&bed.dir).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The full-ring count is exported once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let metrics = bed.pod.http_get(http, "/metrics").expect("GET /metrics");
    bed.stop();
    let full: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("podmirror_collector_ring_full_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("podmirror_collector_ring_full_total in\n{metrics}"));
    let got = recorded_frames(&bed.dir);
    assert_eq!(got, frames[..2], "the ring held the first two copies, recorded byte for byte");
    assert_eq!(full, 98, "the other 98 were dropped and counted");
    assert_eq!(udp_in_datagrams(&bed.pod), before, "none went the socket's way");
}

/// Waits until every thread of `pid` is stopped (SIGSTOP is delivered
/// asynchronously; a reader still running would make room in the ring).
fn wait_until_stopped(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the collector's threads")
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter_map(|st| st.rsplit_once(") ").map(|(_, rest)| rest.chars().take(1).collect()))
            .collect();
        if states.iter().all(|s| s == "T") {
            return;
        }
        assert!(Instant::now() < deadline, "the collector did not stop: {states:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `frames` in VXLAN with `vni` from a socket bound to `from`.
fn send_vxlan_from(from: &str, to: SocketAddr, vni: u32, frames: &[Vec<u8>]) {
    let sock = UdpSocket::bind(from).expect("bind in the sender namespace");
    for f in frames {
        let d = [&podmirror_collector::decode::vxlan_header(vni)[..], f].concat();
        sock.send_to(&d, to).expect("send a copy");
    }
}

#[test]
fn the_charts_capabilities_are_enough_and_each_is_needed() {
    if require_root("the_charts_capabilities_are_enough_and_each_is_needed") {
        assert_capabilities_enough_and_each_needed(
            "ring",
            &["--ring-iface", "eth0"],
            "ring input attached",
            "--ring-iface eth0",
        );
    }
}
