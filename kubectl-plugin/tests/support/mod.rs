//! Shared by the capture tests: a classic pcap stream and a real HTTP/1.1
//! server on 127.0.0.1 that serves it the way the collector does.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

pub mod mock;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The pcap global header (LINKTYPE_ETHERNET, snaplen 65535, microseconds).
pub fn pcap_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// One record holding an Ethernet frame of `len` bytes filled with `fill`.
pub fn pcap_record(seconds: u32, len: usize, fill: u8) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&seconds.to_le_bytes());
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&(len as u32).to_le_bytes());
    r.extend_from_slice(&(len as u32).to_le_bytes());
    r.extend(std::iter::repeat_n(fill, len));
    r
}

/// What the server does after its chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// End the chunked body: the stream is over.
    End,
    /// Keep the connection open, sending nothing more.
    Hang,
}

/// How the server answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub chunks: Vec<Vec<u8>>,
    pub then: Then,
}

impl Reply {
    pub fn pcap(chunks: Vec<Vec<u8>>, then: Then) -> Reply {
        Reply { status: "200 OK", content_type: "application/vnd.tcpdump.pcap", chunks, then }
    }
}

/// Serves `reply` to each connection; sends each request head on the
/// returned channel (for the test to assert the path).
pub async fn http_server(reply: Reply) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let reply = reply.clone();
            let heads = heads.clone();
            tokio::spawn(async move { serve(socket, reply, heads).await });
        }
    });
    (addr, rx)
}

async fn serve(mut socket: TcpStream, reply: Reply, heads: mpsc::UnboundedSender<String>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read_exact(&mut byte).await.is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
    let start = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        reply.status, reply.content_type
    );
    if socket.write_all(start.as_bytes()).await.is_err() {
        return;
    }
    for chunk in &reply.chunks {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if socket.write_all(&framed).await.is_err() {
            return;
        }
    }
    match reply.then {
        Then::End => {
            let _ = socket.write_all(b"0\r\n\r\n").await;
            let _ = socket.shutdown().await;
        }
        Then::Hang => {
            // Until the client goes away.
            let _ = socket.read(&mut [0u8; 1]).await;
        }
    }
}
