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

#[test]
fn help_lists_the_flags_and_bad_flags_name_themselves() {
    let bin = env!("CARGO_BIN_EXE_podmirror-collector");
    let help = Command::new(bin).arg("--help").output().expect("run --help");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in
        ["--vxlan-listen", "--gre", "--vni-allow", "--http-addr", "--files-dir", "--replay-to", "--replay-ports"]
    {
        assert!(text.contains(flag), "{flag} in --help");
    }
    let bad = Command::new(bin).args(["--replay-to", "https://x"]).output().expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--replay-to"), "{}", String::from_utf8_lossy(&bad.stderr));
}
