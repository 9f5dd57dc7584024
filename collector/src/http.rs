//! The HTTP server: `GET /stream[?vni=N]` (a live classic pcap of new
//! copies, the contract the kubectl plugin relies on), `/metrics`,
//! `/healthz`, `/readyz`. Each stream client has its own bounded queue
//! (`stream`): a slow client skips copies, counted, and never slows the
//! receivers or the other clients.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::dispatch::Copy;
use crate::metrics::Metrics;
use crate::pcap;
use crate::stream::StreamHub;

pub const PCAP_CONTENT_TYPE: &str = "application/vnd.tcpdump.pcap";

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub stream: Arc<StreamHub>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/stream", get(stream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
}

/// The `vni` query parameter: absent means every VNI.
fn vni_filter(uri: &Uri) -> Result<Option<u32>, String> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("vni=") {
            return v
                .parse::<u32>()
                .ok()
                .filter(|v| *v <= crate::config::MAX_VNI)
                .map(Some)
                .ok_or_else(|| format!("vni: {v:?} is not a VNI (0..=16777215)\n"));
        }
    }
    Ok(None)
}

/// Decrements the client gauge when the response body is dropped (the
/// client went away).
struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.stream_clients.dec();
    }
}

async fn stream(State(s): State<HttpState>, uri: Uri) -> Response {
    let vni = match vni_filter(&uri) {
        Ok(v) => v,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    s.metrics.stream_clients.inc();
    let guard = ClientGuard(s.metrics.clone());
    let rx = s.stream.subscribe(vni);
    let header = futures::stream::once(async { Ok::<Bytes, std::io::Error>(Bytes::from_static(&HEADER)) });
    let records = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let copy: Copy = rx.recv().await?;
        Some((Ok(Bytes::from(pcap::record(copy.at, &copy.frame))), (rx, guard)))
    });
    let body = Body::from_stream(futures::StreamExt::chain(header, records));
    ([(header::CONTENT_TYPE, PCAP_CONTENT_TYPE), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

static HEADER: [u8; pcap::FILE_HEADER_LEN] = header_bytes();

const fn header_bytes() -> [u8; pcap::FILE_HEADER_LEN] {
    // Same bytes as pcap::file_header(), computed at compile time.
    let m = 0xa1b2_3c4du32.to_le_bytes();
    let s = pcap::SNAPLEN.to_le_bytes();
    [m[0], m[1], m[2], m[3], 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, s[0], s[1], s[2], s[3], 1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_header_is_the_pcap_header() {
        assert_eq!(HEADER, pcap::file_header());
    }

    #[test]
    fn vni_query() {
        let u = |s: &str| s.parse::<Uri>().expect("uri");
        assert_eq!(vni_filter(&u("/stream")), Ok(None));
        assert_eq!(vni_filter(&u("/stream?vni=7")), Ok(Some(7)));
        assert_eq!(vni_filter(&u("/stream?x=1&vni=0")), Ok(Some(0)));
        assert!(vni_filter(&u("/stream?vni=abc")).is_err());
        assert!(vni_filter(&u("/stream?vni=16777216")).is_err());
    }
}
