//! The replay end to end on loopback: real VXLAN datagrams carrying real
//! TCP/HTTP frames into the real collector, replayed to a real HTTP server.

mod common;

use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const WAIT: Duration = Duration::from_secs(10);

fn replay_flags(server: std::net::SocketAddr) -> Vec<String> {
    vec!["--replay-to".into(), format!("http://{server}"), "--replay-ports".into(), "80".into()]
}

async fn start(server: std::net::SocketAddr, extra: &[&str]) -> podmirror_collector::Running {
    let flags = replay_flags(server);
    let mut argv: Vec<&str> = flags.iter().map(String::as_str).collect();
    argv.extend_from_slice(extra);
    collector(&argv).await
}

/// One connection: handshake, each request, optionally its response, close.
fn connection(port: u16, mss: usize, requests: &[Vec<u8>], pipelined: bool, responses: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut tcp = Tcp::new(port, 80, mss);
    let mut frames = tcp.handshake();
    if pipelined {
        frames.extend(tcp.client_sends(&requests.concat()));
        for r in responses {
            frames.extend(tcp.server_sends(r));
        }
    } else {
        for (i, r) in requests.iter().enumerate() {
            frames.extend(tcp.client_sends(r));
            if let Some(resp) = responses.get(i) {
                frames.extend(tcp.server_sends(resp));
            }
        }
    }
    frames.extend(tcp.close());
    frames
}

/// Keep-alive requests of a 9000-MTU client: every full segment is a
/// 9000-byte IP packet (a 9014-byte frame, a 9022-byte VXLAN payload: far
/// more than a 1526-byte buffer holds). Plain and chunked bodies, large and
/// small, so that a cut frame would show in most of them.
fn jumbo_connection(port: u16, expected: &mut Vec<Received>) -> Vec<Vec<u8>> {
    let mut reqs = Vec::new();
    for (i, len) in [64 << 10, 9000, 200 << 10, 17_000, 8960, 100_000].into_iter().enumerate() {
        let (wire, exp) = request("POST", &format!("/upload/jumbo/{i}"), 300 + i, &body(len, i as u8), i % 2 == 1);
        reqs.push(wire);
        expected.push(exp);
    }
    let frames = connection(port, 8960, &reqs, false, &[]);
    let full = frames.iter().filter(|f| f.len() == 9014).count();
    assert!(full >= 30, "the test sends 9000-byte IP packets: {full}");
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pipelined_chunked_large_and_jumbo_requests_arrive_whole() {
    let (server, log) = test_server().await;
    let c = start(server, &[]).await;
    let mut expected = Vec::new();
    let mut frames = Vec::new();

    // 100 keep-alive requests on one connection, some with bodies.
    let mut reqs = Vec::new();
    for i in 0..100 {
        let (wire, exp) = if i % 3 == 0 {
            request("POST", &format!("/items/{i}?q={i}"), i, &body(100 + i, i as u8), false)
        } else {
            request("GET", &format!("/items/{i}?q=a%20b"), i, b"", false)
        };
        reqs.push(wire);
        expected.push(exp);
    }
    frames.extend(connection(40001, 1448, &reqs, false, &[]));

    // Pipelined: three requests written back to back.
    let mut piped = Vec::new();
    for i in 100..103 {
        let (wire, exp) = request("PUT", &format!("/pipe/{i}"), i, &body(700, i as u8), false);
        piped.push(wire);
        expected.push(exp);
    }
    frames.extend(connection(40002, 1448, &piped, true, &[]));

    // A chunked POST and a 1 MiB POST.
    let (chunked, exp) = request("POST", "/upload/chunked", 200, &body(10_000, 3), true);
    expected.push(exp);
    frames.extend(connection(40003, 1448, &[chunked], false, &[]));
    let (big, exp) = request("POST", "/upload/big", 201, &body(1 << 20, 5), false);
    expected.push(exp);
    frames.extend(connection(40004, 1448, &[big], false, &[]));
    frames.extend(jumbo_connection(40005, &mut expected));

    send_vxlan(c.vxlan_addr, 1, &frames);
    let n = expected.len();
    assert!(eventually(WAIT, || log_of(&log).len() >= n).await, "only {} of {n} replayed", log_of(&log).len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.metrics.received(1, "vxlan"), frames.len() as u64, "every datagram arrived");
    assert_eq!(sorted(log_of(&log)), sorted(expected), "method, target, headers and body are the original ones");
    assert_eq!(c.metrics.replayed_count("ok", "2xx"), n as u64);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_cut_by_packet_length_replay_nothing_and_say_why() {
    let (server, log) = test_server().await;
    let c = start(server, &[]).await;
    let reqs: Vec<Vec<u8>> = (0..5).map(|i| request("POST", "/cut", i, &body(3000, 1), false).0).collect();
    let frames: Vec<Vec<u8>> =
        connection(40010, 1448, &reqs, false, &[]).into_iter().map(|f| f[..f.len().min(96)].to_vec()).collect();
    send_vxlan(c.vxlan_addr, 1, &frames);
    assert!(eventually(WAIT, || c.metrics.incomplete_count("truncated") >= 5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.metrics.incomplete_count("truncated"), 5, "one per request");
    assert!(log_of(&log).is_empty(), "nothing replayed: {:?}", log_of(&log));
    c.shutdown().await;
}

/// Copies of `conns` keep-alive connections of `per` POSTs (every 4th
/// chunked, sizes from `sizes`), with `loss` of the copies dropped and the
/// rest reordered within windows of 8 (fixed seed): every replayed request
/// is exactly an original one, and every request is replayed or counted.
async fn lossy_replay(seed: u64, loss: f64, conns: u16, per: usize, sizes: &[usize]) {
    let (server, log) = test_server().await;
    // Idle flows go after 1 s: a request whose last copy was lost is counted then.
    let c = start(server, &["--replay-flow-idle-secs", "1"]).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut originals = Vec::new();
    let mut frames = Vec::new();
    for conn in 0..conns {
        let mut reqs = Vec::new();
        for i in 0..per {
            let id = usize::from(conn) * 100 + i;
            let len = sizes[rng.random_range(0..sizes.len())] + rng.random_range(0..1000);
            let (wire, exp) = request("POST", &format!("/l/{id}"), id, &body(len, id as u8), i % 4 == 0);
            reqs.push(wire);
            originals.push(exp);
        }
        frames.extend(connection(41000 + conn, 1448, &reqs, false, &[]));
    }
    let total = frames.len();
    let mut kept: Vec<Vec<u8>> = frames.into_iter().filter(|_| !rng.random_bool(loss)).collect();
    let lost = total - kept.len();
    for w in kept.chunks_mut(8) {
        w.shuffle(&mut rng);
    }
    send_vxlan(c.vxlan_addr, 1, &kept);
    assert!(lost > 0);
    let incomplete = || {
        ["lost_segment", "connection_closed", "evicted_idle"].iter().map(|r| c.metrics.incomplete_count(r)).sum::<u64>()
    };
    // Every request is either replayed whole or counted (a lost copy can
    // take at most one request with it).
    let settled =
        eventually(WAIT, || log_of(&log).len() as u64 + incomplete() >= originals.len() as u64 - lost as u64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = log_of(&log);
    assert!(settled, "replayed {} counted {} of {}", got.len(), incomplete(), originals.len());
    assert!(got.len() > originals.len() / 3, "many requests survive {loss} loss: {}", got.len());
    for r in &got {
        assert!(originals.contains(r), "a replayed request is exactly an original one: {} {}", r.method, r.target);
    }
    assert_eq!(c.metrics.replayed_count("ok", "2xx"), got.len() as u64);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_and_reordering_never_produce_a_corrupt_request() {
    lossy_replay(0x5eed_0003, 0.02, 8, 20, &[0, 1000, 5000]).await;
}

/// The reference replayer sent corrupted bodies under 1% loss: here large
/// and chunked bodies (many segments each, so most see a loss) over 1%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_percent_loss_on_large_bodies_never_produces_a_corrupt_request() {
    lossy_replay(0x5eed_0103, 0.01, 6, 8, &[20_000, 64 << 10, 150_000]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_counted_once_per_flow_and_not_replayed() {
    let (server, log) = test_server().await;
    let c = start(server, &[]).await;
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    hello.extend(vec![0x42; 500]);
    let mut frames = connection(40020, 1448, &[hello, vec![0x17, 0x03, 0x03, 0, 10, 1, 2, 3]], false, &[]);
    frames.extend(connection(40021, 1448, &[b"SSH-2.0-x\r\n".to_vec()], false, &[]));
    send_vxlan(c.vxlan_addr, 1, &frames);
    assert!(eventually(WAIT, || c.metrics.unreplayable_count("tls") == 1).await);
    assert!(eventually(WAIT, || c.metrics.unreplayable_count("not_http") == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(log_of(&log).is_empty());
    assert_eq!(c.metrics.incomplete_count("malformed"), 0, "no per-segment noise");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_responses_pair_with_test_responses_and_mismatches_are_counted() {
    let (server, log) = test_server().await;
    let c = start(server, &[]).await;
    let reqs = [
        request("GET", "/ok", 1, b"", false).0,
        request("GET", "/fail/x?y=1", 2, b"", false).0,
        request("HEAD", "/ok", 3, b"", false).0,
    ];
    let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    let frames = connection(40030, 1448, &reqs, false, &[ok, ok, head]);
    send_vxlan(c.vxlan_addr, 1, &frames);
    assert!(eventually(WAIT, || c.metrics.replay_paired.get() == 3).await, "paired {}", c.metrics.replay_paired.get());
    assert_eq!(c.metrics.mismatch_count("GET", "/fail/x", "2xx", "5xx"), 1);
    assert_eq!(c.metrics.mismatch_count("GET", "/ok", "2xx", "5xx"), 0);
    assert_eq!(log_of(&log).len(), 3);
    assert!(
        c.metrics
            .render()
            .contains("podmirror_collector_replay_status_mismatches_total{method=\"GET\",path=\"/fail/x\"")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_host_rewrite_and_idle_eviction() {
    let (server, log) = test_server().await;
    let c = start(server, &["--replay-sample-percent", "0", "--replay-flow-idle-secs", "1"]).await;
    let frames = connection(40040, 1448, &[request("GET", "/s", 1, b"", false).0], false, &[]);
    send_vxlan(c.vxlan_addr, 1, &frames);
    assert!(eventually(WAIT, || c.metrics.replayed_count("sampled_out", "none") == 1).await);
    // A request that never ends is evicted with its flow, and counted.
    let mut tcp = Tcp::new(40041, 80, 1448);
    let mut partial = tcp.handshake();
    partial.extend(tcp.client_sends(b"POST /never HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
    send_vxlan(c.vxlan_addr, 1, &partial);
    assert!(eventually(WAIT, || c.metrics.incomplete_count("evicted_idle") == 1).await);
    assert!(c.metrics.evicted_count("idle") >= 1);
    assert!(log_of(&log).is_empty());
    c.shutdown().await;

    let c = start(server, &["--replay-rewrite-host"]).await;
    let frames = connection(40042, 1448, &[request("GET", "/h", 1, b"", false).0], false, &[]);
    send_vxlan(c.vxlan_addr, 1, &frames);
    assert!(eventually(WAIT, || log_of(&log).len() == 1).await);
    assert_eq!(log_of(&log)[0].header("host"), Some(server.to_string().as_str()));
    c.shutdown().await;
}
