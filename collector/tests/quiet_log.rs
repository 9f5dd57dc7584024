//! TLS on a replayed port: the reference replayer of seed 003 logs a
//! "malformed HTTP request" per segment of a TLS stream (aws-samples
//! http-requests-mirroring #5). The real `podmirror-collector` binary, even
//! at debug level, logs at most one line per TLS flow, replays nothing and
//! counts each flow as not replayable.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// TLS flows in the test, and application data records per flow.
const FLOWS: u16 = 20;
const RECORDS: usize = 30;

/// A log line without ANSI colour codes.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `name=` in a log line.
fn field(line: &str, name: &str) -> Option<SocketAddr> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..].split_whitespace().next()?.parse().ok()
}

/// The Prometheus text of the collector's /metrics.
fn metrics(http: SocketAddr) -> String {
    let text = podmirror_testkit::probe::http_get(http, "/metrics");
    assert!(!text.is_empty(), "no answer from {http}/metrics");
    text
}

/// A TLS 1.2 conversation: ClientHello, ServerHello, then application data
/// records both ways, cut into 1448-byte segments.
fn tls_flow(port: u16) -> Vec<Vec<u8>> {
    let record = |kind: u8, len: usize| {
        let mut r = vec![kind, 0x03, 0x03, (len >> 8) as u8, len as u8];
        r.extend(body(len, port as u8));
        r
    };
    let mut tcp = Tcp::new(port, 443, 1448);
    let mut frames = tcp.handshake();
    frames.extend(tcp.client_sends(&record(0x16, 512)));
    frames.extend(tcp.server_sends(&record(0x16, 3000)));
    for _ in 0..RECORDS {
        frames.extend(tcp.client_sends(&record(0x17, 2000)));
        frames.extend(tcp.server_sends(&record(0x17, 1200)));
    }
    frames.extend(tcp.close());
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_streams_are_counted_not_replayed_and_do_not_flood_the_log() {
    let (server, log) = test_server().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_podmirror-collector"))
        .args(["--vxlan-listen", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--replay-ports", "80,443"])
        .args(["--replay-to", &format!("http://{server}")])
        .env("RUST_LOG", "podmirror_collector=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the collector binary runs");
    let (tx, lines) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            BufReader::new(pipe).lines().map_while(Result::ok).for_each(|l| drop(tx.send(plain(&l))))
        });
    }
    let started = lines.recv_timeout(Duration::from_secs(10)).expect("a first log line");
    assert!(started.contains("collector started"), "{started}");
    let (vxlan, http) =
        (field(&started, "vxlan_addr").expect("vxlan_addr"), field(&started, "http_addr").expect("http_addr"));

    let frames: Vec<Vec<u8>> = (0..FLOWS).flat_map(|f| tls_flow(42000 + f)).collect();
    send_vxlan(vxlan, 1, &frames);
    let tls = format!("podmirror_collector_replay_unreplayable_flows_total{{reason=\"tls\"}} {FLOWS}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics(http).contains(&tls) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = metrics(http);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();

    assert!(text.contains(&tls), "every TLS flow counted once: {text}");
    assert!(log_of(&log).is_empty(), "nothing replayed: {:?}", log_of(&log));
    let logged: Vec<String> = lines.try_iter().collect();
    assert!(
        logged.len() <= usize::from(FLOWS),
        "{} segments, {} log lines (at most one per flow): {logged:#?}",
        frames.len(),
        logged.len()
    );
    assert!(!logged.iter().any(|l| l.contains("malformed")), "no malformed-request noise: {logged:#?}");
}
