//! The client of the collector's live capture: `GET /stream?vni=N`, a
//! classic pcap stream (`application/vnd.tcpdump.pcap`), copied to a file or
//! stdout as it arrives. Generic over the connection, so it runs the same
//! over a port-forward and over a plain TCP socket (the tests).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::PluginError;

pub const PCAP_CONTENT_TYPE: &str = "application/vnd.tcpdump.pcap";

/// Stream the capture of `vni` from `io` into `out`, counting the bytes
/// written in `written` (still right when the caller stops the stream by
/// dropping this future: Ctrl-C, `--duration`). Ends when the collector
/// ends the stream.
pub async fn stream_pcap<IO, W>(
    io: IO,
    vni: u32,
    out: &mut W,
    target: &str,
    written: &AtomicU64,
) -> Result<StreamEnd, PluginError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let body = open_stream(io, vni).await?;
    copy_body(body, out, target, written).await
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> PluginError {
    PluginError::Stream(format!("{what}: {e}"))
}

/// Send `GET /stream?vni=N` over `io` and return the body of a successful
/// pcap answer; any other answer is an error that quotes it.
async fn open_stream<IO>(io: IO, vni: u32) -> Result<Incoming, PluginError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| failed("HTTP handshake", &e))?;
    // The connection is driven beside the request; it ends with the body.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get(format!("/stream?vni={vni}"))
        .header(http::header::HOST, "collector")
        .header(http::header::ACCEPT, PCAP_CONTENT_TYPE)
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed("request", &e))?;
    let response = sender.send_request(request).await.map_err(|e| failed("GET /stream", &e))?;
    let status = response.status();
    let content_type =
        response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = response.into_body();
    if !status.is_success() {
        let text =
            body.collect().await.map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned()).unwrap_or_default();
        return Err(PluginError::Stream(format!("GET /stream?vni={vni} answered {status}: {text}")));
    }
    if !content_type.starts_with(PCAP_CONTENT_TYPE) {
        return Err(PluginError::Stream(format!(
            "GET /stream?vni={vni} answered {content_type:?}, not {PCAP_CONTENT_TYPE} (is this the podmirror collector?)"
        )));
    }
    Ok(body)
}

/// Copy the body's chunks to `out` as they arrive, counting them in `written`.
async fn copy_body<W>(
    mut body: Incoming,
    out: &mut W,
    target: &str,
    written: &AtomicU64,
) -> Result<StreamEnd, PluginError>
where
    W: AsyncWrite + Unpin,
{
    let output = |source| PluginError::Output { target: target.to_owned(), source };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed("reading the stream", &e))?;
        if let Ok(data) = frame.into_data() {
            // Flushed per chunk: a reader such as `wireshark -k -i -` shows
            // packets as they come, not when a buffer fills.
            let result = match out.write_all(&data).await {
                Ok(()) => out.flush().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    written.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                // The reader of a pipe went away (Wireshark closed): an end, not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(StreamEnd::ReaderClosed);
                }
                Err(e) => return Err(output(e)),
            }
        }
    }
    Ok(StreamEnd::CollectorClosed)
}

/// How a stream ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The collector ended the response.
    CollectorClosed,
    /// The output is a pipe whose reader is gone.
    ReaderClosed,
}
