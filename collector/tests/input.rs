//! Input: malformed datagrams counted by reason, GRE like VXLAN, the CLI.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use podmirror_collector::decode::{gre_header, vxlan_header};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_counted_by_reason_and_the_rest_still_flows() {
    let c = collector(&["--vni-allow", "1"]).await;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let frame = traffic(40300, 1, 0).remove(0);
    let mut bad_flags = vxlan_header(1).to_vec();
    bad_flags[0] = 0;
    bad_flags.extend(&frame);
    let mut short_inner = vxlan_header(1).to_vec();
    short_inner.extend([0u8; 5]);
    let mut other_vni = vxlan_header(2).to_vec();
    other_vni.extend(&frame);
    for d in [&b"\x08\x00"[..], &bad_flags, &short_inner, &other_vni, &[]] {
        sock.send_to(d, c.vxlan_addr).expect("send");
    }
    send_vxlan(c.vxlan_addr, 1, &[frame]);
    assert!(eventually(WAIT, || c.metrics.received(1, "vxlan") == 1).await);
    for (reason, n) in [("short_header", 2), ("bad_flags", 1), ("short_inner_frame", 1), ("vni_not_allowed", 1)] {
        assert!(eventually(WAIT, || c.metrics.malformed_count(reason) == n).await, "{reason}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gre_copies_are_received_and_replayed_like_vxlan() {
    if !require_root("gre_copies_are_received_and_replayed_like_vxlan") {
        return;
    }
    let (server, log) = test_server().await;
    let url = format!("http://{server}");
    let c = collector(&["--gre", "--gre-bind", "127.0.0.1", "--replay-to", &url, "--replay-ports", "80"]).await;
    let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(47)))
        .expect("raw GRE socket (root)");
    let to: SocketAddr = "127.0.0.1:0".parse().expect("address");
    // A VNI no other test uses: the raw socket sees every GRE packet.
    let vni = 0x00c0_11ec;
    let mut tcp = Tcp::new(40310, 80, 1448);
    let mut frames = tcp.handshake();
    let (wire, expected) = request("POST", "/gre?x=1", 1, &body(5000, 2), false);
    frames.extend(tcp.client_sends(&wire));
    frames.extend(tcp.close());
    for f in &frames {
        let mut p = gre_header(vni).to_vec();
        p.extend(f);
        raw.send_to(&p, &to.into()).expect("send a GRE packet");
    }
    assert!(eventually(WAIT, || c.metrics.received(vni, "gre") == frames.len() as u64).await);
    assert!(eventually(WAIT, || log_of(&log).len() == 1).await);
    assert_eq!(log_of(&log), [expected]);
    c.shutdown().await;
}

/// Sends `datagrams` (equal-sized but the last) as one UDP GSO send: on
/// loopback the kernel hands such a send whole to a socket with `UDP_GRO`,
/// as a NIC's GRO hands over a coalesced run.
fn send_coalesced(sock: &UdpSocket, datagrams: &[Vec<u8>]) {
    let seg = u16::try_from(datagrams[0].len()).expect("a datagram fits in u16");
    let mut data: Vec<u8> = datagrams.concat();
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut control = podmirror_testkit::gso::segment_cmsg(seg);
    // SAFETY: the msghdr points at iov (which points at data) and at the
    // control buffer; all live across the call.
    let sent = unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = control.as_mut_ptr().cast();
        m.msg_controllen = libc::CMSG_SPACE(2) as _;
        libc::sendmsg(std::os::fd::AsRawFd::as_raw_fd(sock), &m, 0)
    };
    assert_eq!(sent, data.len() as isize, "GSO send: {}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_runs_of_datagrams_are_cut_apart_into_their_copies() {
    let (server, log) = test_server().await;
    let url = format!("http://{server}");
    let c = collector(&["--replay-to", &url, "--replay-ports", "80"]).await;
    let vni = 7;
    let mut tcp = Tcp::new(40320, 80, 1448);
    let (wire, expected) = request("POST", "/gro?x=1", 1, &body(40_000, 3), false);
    let handshake = tcp.handshake();
    let data = tcp.client_sends(&wire);
    let vxlan = |f: &Vec<u8>| [&vxlan_header(vni)[..], f].concat();
    send_vxlan(c.vxlan_addr, vni, &handshake);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(c.vxlan_addr).expect("connect");
    // 28 data segments: a run of 16 full ones, then the other 11 and the
    // shorter last one.
    let datagrams: Vec<Vec<u8>> = data.iter().map(vxlan).collect();
    assert_eq!(datagrams.len(), 28, "the request's segments");
    send_coalesced(&sock, &datagrams[..16]);
    send_coalesced(&sock, &datagrams[16..]);
    send_vxlan(c.vxlan_addr, vni, &tcp.close());
    let total = 3 + 28 + 2;
    assert!(eventually(WAIT, || c.metrics.received(vni, "vxlan") == total).await, "every copy counted once");
    assert_eq!(c.metrics.malformed_count("short_inner_frame"), 0);
    assert!(eventually(WAIT, || log_of(&log).len() == 1).await, "the request is replayed");
    assert_eq!(log_of(&log), [expected], "replayed byte for byte");
    c.shutdown().await;
}

#[test]
fn help_lists_the_flags_and_bad_flags_name_themselves() {
    let bin = env!("CARGO_BIN_EXE_podmirror-collector");
    let help = Command::new(bin).arg("--help").output().expect("run --help");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--vxlan-listen",
        "--gre",
        "--vni-allow",
        "--http-addr",
        "--files-dir",
        "--replay-to",
        "--replay-ports",
        "--xdp-iface",
        "--ring-iface",
    ] {
        assert!(text.contains(flag), "{flag} in --help");
    }
    let bad = Command::new(bin).args(["--replay-to", "https://x"]).output().expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--replay-to"), "{}", String::from_utf8_lossy(&bad.stderr));
    // A kernel input (AF_XDP, ring) that cannot start stops the collector,
    // naming the flag and the interface (as root: the interface is missing;
    // otherwise the program cannot be loaded).
    for flag in ["--xdp-iface", "--ring-iface"] {
        let bad = Command::new(bin)
            .args(["--vxlan-listen", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", flag, "pm-no-such-if"])
            .output()
            .expect("run");
        assert!(!bad.status.success(), "{flag}");
        let said = format!("{}{}", String::from_utf8_lossy(&bad.stdout), String::from_utf8_lossy(&bad.stderr));
        assert!(said.contains(&format!("{flag} pm-no-such-if:")), "{said}");
    }
}
