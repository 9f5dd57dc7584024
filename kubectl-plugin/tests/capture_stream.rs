//! The streaming client against a real HTTP server on 127.0.0.1 that
//! serves a pcap stream as the collector does (`GET /stream?vni=N`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use kubectl_podmirror::capture::stream::{StreamEnd, stream_pcap};
use support::*;
use tokio::net::TcpStream;

#[tokio::test]
async fn the_pcap_stream_is_copied_byte_for_byte() {
    let chunks = vec![pcap_header(), pcap_record(1, 60, 0xaa), pcap_record(2, 1514, 0xbb)];
    let expected: Vec<u8> = chunks.concat();
    let (addr, mut heads) = http_server(Reply::pcap(chunks, Then::End)).await;
    let mut out = Vec::new();
    let written = AtomicU64::new(0);
    let io = TcpStream::connect(addr).await.unwrap();
    let end = stream_pcap(io, 7, &mut out, "test", &written).await.unwrap();
    assert_eq!(end, StreamEnd::CollectorClosed);
    assert_eq!(out, expected);
    assert_eq!(written.load(Ordering::Relaxed), expected.len() as u64);
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /stream?vni=7 HTTP/1.1\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("accept: application/vnd.tcpdump.pcap\r\n"), "{head}");
}

#[tokio::test]
async fn an_http_error_is_reported_with_its_status_and_body() {
    let reply = Reply {
        status: "404 Not Found",
        content_type: "text/plain",
        chunks: vec![b"no session with vni 9\n".to_vec()],
        then: Then::End,
    };
    let (addr, _heads) = http_server(reply).await;
    let io = TcpStream::connect(addr).await.unwrap();
    let err = stream_pcap(io, 9, &mut Vec::new(), "test", &AtomicU64::new(0)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "capture stream from the collector: GET /stream?vni=9 answered 404 Not Found: no session with vni 9"
    );
}

#[tokio::test]
async fn a_server_that_is_not_the_collector_is_refused_before_writing() {
    let reply =
        Reply { status: "200 OK", content_type: "text/html", chunks: vec![b"<html>".to_vec()], then: Then::End };
    let (addr, _heads) = http_server(reply).await;
    let io = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let err = stream_pcap(io, 1, &mut out, "test", &AtomicU64::new(0)).await.unwrap_err();
    assert!(err.to_string().contains("\"text/html\", not application/vnd.tcpdump.pcap"), "{err}");
    assert!(out.is_empty(), "nothing but pcap is written");
}

#[tokio::test]
async fn a_stream_cut_mid_body_is_an_error_not_a_clean_end() {
    // The server promises a chunk and closes the socket in the middle.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.read(&mut [0u8; 1024]).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc")
            .await;
    });
    let io = TcpStream::connect(addr).await.unwrap();
    let err = stream_pcap(io, 1, &mut Vec::new(), "test", &AtomicU64::new(0)).await.unwrap_err();
    assert!(err.to_string().starts_with("capture stream from the collector: reading the stream"), "{err}");
}

/// An output whose reader has gone, like a pipe into a closed Wireshark.
struct ClosedPipe;

impl tokio::io::AsyncWrite for ClosedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_stream_without_an_error() {
    let (addr, _heads) = http_server(Reply::pcap(vec![pcap_header()], Then::Hang)).await;
    let io = TcpStream::connect(addr).await.unwrap();
    let end = stream_pcap(io, 1, &mut ClosedPipe, "stdout", &AtomicU64::new(0)).await.unwrap();
    assert_eq!(end, StreamEnd::ReaderClosed);
}
