//! Shared harness of the collector's tests: a TCP conversation that yields
//! real Ethernet/IPv4/TCP frames, a VXLAN sender on loopback, the collector
//! itself (in process) and a real HTTP test server (axum/hyper) that records
//! what it receives.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use podmirror_collector::config::Args;
use podmirror_collector::decode::vxlan_header;
use podmirror_collector::frame::{TCP_FIN, TCP_SYN, build_ipv4_tcp};

/// One TCP connection between a client and a server port, as frames.
pub struct Tcp {
    pub client: SocketAddr,
    pub server: SocketAddr,
    cseq: u32,
    sseq: u32,
    pub mss: usize,
}

impl Tcp {
    pub fn new(client_port: u16, server_port: u16, mss: usize) -> Self {
        Tcp {
            client: SocketAddr::from(([10, 0, 0, 1], client_port)),
            server: SocketAddr::from(([10, 0, 0, 2], server_port)),
            // Close to the wrap so that every test crosses it.
            cseq: u32::MAX - 3000,
            sseq: 7_000_000,
            mss,
        }
    }

    pub fn handshake(&mut self) -> Vec<Vec<u8>> {
        let syn = build_ipv4_tcp(self.client, self.server, self.cseq, 0, TCP_SYN, b"");
        let synack = build_ipv4_tcp(self.server, self.client, self.sseq, self.cseq.wrapping_add(1), TCP_SYN, b"");
        self.cseq = self.cseq.wrapping_add(1);
        self.sseq = self.sseq.wrapping_add(1);
        let ack = build_ipv4_tcp(self.client, self.server, self.cseq, self.sseq, 0, b"");
        vec![syn, synack, ack]
    }

    pub fn client_sends(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in data.chunks(self.mss) {
            out.push(build_ipv4_tcp(self.client, self.server, self.cseq, self.sseq, 0x08, chunk));
            self.cseq = self.cseq.wrapping_add(chunk.len() as u32);
        }
        out
    }

    pub fn server_sends(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in data.chunks(self.mss) {
            out.push(build_ipv4_tcp(self.server, self.client, self.sseq, self.cseq, 0x08, chunk));
            self.sseq = self.sseq.wrapping_add(chunk.len() as u32);
        }
        out
    }

    pub fn close(&mut self) -> Vec<Vec<u8>> {
        let a = build_ipv4_tcp(self.client, self.server, self.cseq, self.sseq, TCP_FIN, b"");
        let b = build_ipv4_tcp(self.server, self.client, self.sseq, self.cseq.wrapping_add(1), TCP_FIN, b"");
        vec![a, b]
    }
}

/// Sends frames as VXLAN datagrams, paced so that a loopback socket buffer
/// never overflows (the tests count on every datagram arriving).
pub fn send_vxlan(to: SocketAddr, vni: u32, frames: &[Vec<u8>]) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
    for (i, f) in frames.iter().enumerate() {
        let mut d = vxlan_header(vni).to_vec();
        d.extend_from_slice(f);
        sock.send_to(&d, to).expect("send a VXLAN datagram");
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Starts the collector on loopback ports with `extra` flags.
pub async fn collector(extra: &[&str]) -> podmirror_collector::Running {
    let mut argv = vec!["podmirror-collector", "--vxlan-listen", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    let args = Args::try_parse_from(argv).expect("valid flags");
    podmirror_collector::start(&args).await.expect("collector starts")
}

/// Polls `cond` until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// What the test server received.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Received {
    pub method: String,
    pub target: String,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub type Log = Arc<Mutex<Vec<Received>>>;

pub fn log_of(log: &Log) -> Vec<Received> {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// A real HTTP/1.1 server (hyper via axum) recording every request; it
/// answers 500 to paths starting with `/fail`, 200 otherwise.
pub async fn test_server() -> (SocketAddr, Log) {
    use axum::extract::{Request, State};
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .fallback(|State(log): State<Log>, req: Request| async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.map(|b| b.to_vec()).unwrap_or_default();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let target = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let fail = target.starts_with("/fail");
            log.lock().unwrap_or_else(PoisonError::into_inner).push(Received {
                method: parts.method.to_string(),
                target,
                headers,
                body,
            });
            if fail { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
        })
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test server");
    let addr = listener.local_addr().expect("test server address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

/// A request as a client writes it, with the fields the test server should
/// see.
pub fn request(method: &str, target: &str, id: usize, body: &[u8], chunked: bool) -> (Vec<u8>, Received) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: prod.example\r\nX-Req-Id: {id}\r\nUser-Agent: t/1\r\n");
    let mut headers = vec![
        ("host".to_string(), "prod.example".to_string()),
        ("x-req-id".to_string(), id.to_string()),
        ("user-agent".to_string(), "t/1".to_string()),
    ];
    let mut wire_body = Vec::new();
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
        headers.push(("transfer-encoding".into(), "chunked".into()));
        for c in body.chunks(1000) {
            wire_body.extend(format!("{:x}\r\n", c.len()).into_bytes());
            wire_body.extend_from_slice(c);
            wire_body.extend_from_slice(b"\r\n");
        }
        wire_body.extend_from_slice(b"0\r\n\r\n");
    } else if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        headers.push(("content-length".into(), body.len().to_string()));
        wire_body.extend_from_slice(body);
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend(wire_body);
    let expect = Received { method: method.into(), target: target.into(), headers, body: body.to_vec() };
    (wire, expect)
}

/// A body that differs at every position (so a misplaced byte shows).
pub fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| b'a' + ((i * 7 + usize::from(seed)) % 26) as u8).collect()
}

/// Sorted, so that two logs compare regardless of arrival order.
pub fn sorted(mut v: Vec<Received>) -> Vec<Received> {
    v.sort();
    v
}

#[allow(unused_imports)] // not every test file has a root test
pub use podmirror_testkit::require_root;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("podmirror-collector-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temp dir");
    d
}

/// Frames of a small HTTP conversation (a few requests), `n` copies long at least.
pub fn traffic(port: u16, n: usize, payload: usize) -> Vec<Vec<u8>> {
    let mut tcp = Tcp::new(port, 80, 1448);
    let mut frames = tcp.handshake();
    let mut i = 0;
    while frames.len() < n {
        let (wire, _) = request("POST", "/t", i, &body(payload, i as u8), false);
        frames.extend(tcp.client_sends(&wire));
        i += 1;
    }
    frames.truncate(n);
    frames
}
