//! `/metrics`, `/healthz`, `/readyz`.
//!
//! Liveness is the process answering; readiness is the watch caches having
//! synced once (a standby replica is ready too: it serves metrics and takes
//! over the lease with warm caches).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(h: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(h)
}

async fn metrics(State(h): State<Health>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    const CT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    match h.metrics.encode() {
        Ok(body) => (StatusCode::OK, [("content-type", CT)], body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], e.to_string()),
    }
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

pub async fn serve(addr: SocketAddr, h: Health) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(h)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(h: &Health, path: &str) -> (StatusCode, String) {
        let res = router(h.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_the_caches_and_metrics_are_served() {
        let h = Health { metrics: Arc::new(Metrics::default()), ready: Arc::new(AtomicBool::new(false)) };
        assert_eq!(get(&h, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&h, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        h.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(&h, "/readyz").await.0, StatusCode::OK);
        h.metrics.error("conflict");
        let (status, body) = get(&h, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("podmirror_reconcile_errors_total{reason=\"conflict\"} 1"), "{body}");
        assert_eq!(get(&h, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}
