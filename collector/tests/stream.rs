//! `GET /stream` end to end: `curl -sN .../stream?vni=7 | tshark -r -`
//! (the kubectl plugin's contract) while a client that never reads skips.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// A /stream client that reads the response head, then never reads again,
/// with a tiny receive buffer so that it falls behind at once.
fn slow_client(http: SocketAddr) -> (std::net::TcpStream, String) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect(&http.into()).expect("connect to /stream");
    let mut s: std::net::TcpStream = s.into();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: c\r\n\r\n").expect("send the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read the response head");
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_into_tshark_gets_every_copy_of_its_vni_while_a_slow_client_skips() {
    let c = collector(&[]).await;
    let url = format!("http://{}/stream?vni=7", c.http_addr);
    let reader = Command::new("sh")
        .arg("-c")
        .arg(format!("curl -sN --max-time 20 '{url}' | tshark -r - -T fields -e frame.len -e tcp.srcport"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl | tshark");
    let (slow, head) = slow_client(c.http_addr);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/vnd.tcpdump.pcap"), "{head}");
    assert!(eventually(WAIT, || c.metrics.stream_clients.get() == 2).await, "curl and the slow client are connected");

    let seven = traffic(40200, 2000, 200);
    // Enough to fill the slow client's socket buffers and its queue (4096).
    let nine = traffic(40201, 9000, 20_000);
    let (to, s7, s9) = (c.vxlan_addr, seven.clone(), nine.clone());
    tokio::task::spawn_blocking(move || {
        send_vxlan(to, 9, &s9[..4500]);
        send_vxlan(to, 7, &s7);
        send_vxlan(to, 9, &s9[4500..]);
    })
    .await
    .expect("sender");
    assert!(eventually(WAIT, || c.metrics.received(9, "vxlan") == 9000).await);
    assert!(c.metrics.dropped_count("stream") > 0, "the slow client skipped copies");
    drop(slow);
    send_vxlan(c.vxlan_addr, 9, &nine[..50]); // a write notices the closed client
    assert!(eventually(WAIT, || c.metrics.stream_clients.get() == 1).await);
    // Shutting down ends the stream after what it queued: curl exits.
    c.shutdown().await;

    let out =
        tokio::task::spawn_blocking(move || reader.wait_with_output()).await.expect("join").expect("curl | tshark ran");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), seven.len(), "tshark read every vni-7 copy: {}", String::from_utf8_lossy(&out.stderr));
    // vni 9 carries the flow of client port 40201: none of it.
    assert!(lines.iter().all(|l| l.ends_with("\t40200") || l.ends_with("\t80")), "only vni 7");
    assert!(out.status.success(), "curl ended cleanly with the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_a_bad_vni_query() {
    let c = collector(&[]).await;
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", &format!("http://{}{path}", c.http_addr)])
            .output();
        String::from_utf8_lossy(&out.expect("curl runs").stdout).into_owned()
    };
    assert!(get("/healthz").ends_with("200"));
    assert!(get("/readyz").ends_with("200"));
    let bad = get("/stream?vni=x");
    assert!(bad.ends_with("400") && bad.contains("vni"), "{bad}");
    send_vxlan(c.vxlan_addr, 3, &traffic(40210, 4, 10));
    assert!(eventually(WAIT, || c.metrics.received(3, "vxlan") == 4).await);
    let m = get("/metrics");
    for name in [
        "podmirror_collector_received_packets_total{vni=\"3\",input=\"vxlan\"} 4",
        "podmirror_collector_stream_clients",
        "podmirror_collector_replay_latency_seconds",
        "podmirror_collector_flows_tracked",
    ] {
        assert!(m.contains(name), "{name} in\n{m}");
    }
    c.shutdown().await;
}
