//! The replay rate: copies of keep-alive HTTP POSTs, replayed by the
//! collector (in this process) to a local HTTP server that checks every
//! body byte for byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use podmirror_collector::config::Args;
use podmirror_collector::decode::vxlan_header;
use podmirror_collector::frame::{TCP_SYN, build_ipv4_tcp};

use crate::sender::{Pool, SenderConfig, send};

async fn server() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    use axum::extract::{Request, State};
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let state = (ok.clone(), bad.clone());
    let app = axum::Router::new()
        .fallback(|State((ok, bad)): State<(Arc<AtomicU64>, Arc<AtomicU64>)>, req: Request| async move {
            let id = req.uri().path().trim_start_matches("/r/").to_string();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap_or_default();
            if body == expected_body(&id) {
                ok.fetch_add(1, Ordering::Relaxed)
            } else {
                bad.fetch_add(1, Ordering::Relaxed)
            };
            "ok"
        })
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, ok, bad)
}

fn expected_body(id: &str) -> Vec<u8> {
    format!("{id}:").repeat(40).into_bytes()
}

/// Copies of `conns` keep-alive connections with `per` POSTs each, one
/// outer source socket per connection (in order within it).
fn stream(conns: u16, per: usize) -> Pool {
    let mut groups = Vec::new();
    for c in 0..conns {
        let cl = SocketAddr::from(([10, 0, 1, 1], 20000 + c));
        let sv = SocketAddr::from(([10, 0, 1, 2], 80));
        let mut seq = 1000u32;
        let mut frames = vec![build_ipv4_tcp(cl, sv, seq - 1, 0, TCP_SYN, b"")];
        for i in 0..per {
            let id = format!("{c}-{i}");
            let body = expected_body(&id);
            let mut req =
                format!("POST /r/{id} HTTP/1.1\r\nHost: shop\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            req.extend(body);
            frames.push(build_ipv4_tcp(cl, sv, seq, 1, 0x08, &req));
            seq = seq.wrapping_add(req.len() as u32);
        }
        groups.push(
            frames
                .into_iter()
                .map(|f| {
                    let mut d = vxlan_header(2).to_vec();
                    d.extend(f);
                    d
                })
                .collect(),
        );
    }
    Pool { groups }
}

/// A markdown table row: requests, replayed whole, corrupt, seconds, rate.
pub async fn run(conns: u16, per: usize, pps: u64, sender: &SenderConfig) -> String {
    let (server, ok, bad) = server().await;
    let url = format!("http://{server}");
    let argv = ["c", "--vxlan-listen", "127.0.0.1:4791", "--http-addr", "127.0.0.1:0", "--replay-to", &url];
    let c = podmirror_collector::start(&Args::parse_from([&argv[..], &["--replay-ports", "80"]].concat()))
        .await
        .expect("collector");
    let total = u64::from(conns) * per as u64;
    let pool = stream(conns, per);
    let start = Instant::now();
    let to = c.vxlan_addr;
    tokio::task::block_in_place(|| send(to, &pool, 0, pps, false, sender));
    while ok.load(Ordering::Relaxed) + bad.load(Ordering::Relaxed) < total && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    c.shutdown().await;
    format!(
        "| {conns} keep-alive connections x {per} POSTs, copies at {pps} pps | {total} | {ok} | {bad} | {secs:.2} | {:.0} |",
        ok as f64 / secs
    )
}
