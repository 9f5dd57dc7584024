//! Prometheus metrics of the agent (`podmirror_*`) and its tiny HTTP server
//! for `/metrics`, `/healthz` and `/readyz`.
//!
//! The reconcile loop owns the datapath; it publishes a `Snapshot` after each
//! pass and the scrape renders that snapshot. So a scrape never touches the
//! kernel and the datapath never needs to be shared between threads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use podmirror_crds::model::{Direction, SessionKey};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::core::{AgentError, SessionCounters};

/// What the agent knows at the end of its latest reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub counters: BTreeMap<(SessionKey, Direction), SessionCounters>,
    /// Host interfaces each session is programmed on.
    pub interfaces: BTreeMap<SessionKey, Vec<u32>>,
    /// Configuration loads that succeeded / were refused.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Whether the latest configuration load was accepted.
    pub config_valid: bool,
    /// Pods refused or interfaces that failed in the latest reconcile.
    pub apply_errors: u64,
    /// Set once the first reconcile has been made (readiness).
    pub ready: bool,
}

/// The handle shared between the reconcile loop and the HTTP server.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Metrics {
    pub fn publish(&self, snapshot: Snapshot) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.snapshot.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The OpenMetrics text of the current snapshot.
    pub fn render(&self) -> String {
        render(&self.snapshot())
    }
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// Renders a snapshot with const metrics (values owned by the datapath).
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

type SessionLabels = [(&'static str, String); 3];

fn session_labels(key: &SessionKey, direction: Direction) -> SessionLabels {
    [
        ("namespace", key.namespace.clone()),
        ("session", key.name.clone()),
        ("direction", direction_label(direction).to_string()),
    ]
}

impl SnapshotCollector {
    fn counter_family(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&SessionCounters) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
        for ((key, direction), counters) in &self.0.counters {
            let labels = session_labels(key, *direction);
            ConstCounter::new(value(counters)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// One family of per-session counters split by a `reason` label.
    fn reason_family(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        reasons: impl Fn(&SessionCounters) -> &BTreeMap<String, u64>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
        for ((key, direction), counters) in &self.0.counters {
            for (reason, count) in reasons(counters) {
                let [ns, session, dir] = session_labels(key, *direction);
                let labels = [ns, session, dir, ("reason", reason.clone())];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn interfaces_family(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "podmirror_programmed_interfaces",
            "Host interfaces a session is programmed on, on this node.",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (key, ifaces) in &self.0.interfaces {
            let labels = [("namespace", key.namespace.clone()), ("session", key.name.clone())];
            ConstGauge::new(i64::try_from(ifaces.len()).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn reloads_family(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "podmirror_config_reloads",
            "Loads of the desired state, by result.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (result, count) in [("ok", self.0.reloads_ok), ("error", self.0.reloads_failed)] {
            ConstCounter::new(count).encode(family.encode_family(&[("result", result)])?)?;
        }
        Ok(())
    }

    /// The unlabelled gauges about the latest reconcile.
    fn state_gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let valid = ConstGauge::new(i64::from(self.0.config_valid));
        valid.encode(encoder.encode_descriptor(
            "podmirror_config_valid",
            "1 when the latest desired state was accepted, 0 while the previous one stays in force.",
            None,
            valid.metric_type(),
        )?)?;
        let errors = ConstGauge::new(i64::try_from(self.0.apply_errors).unwrap_or(i64::MAX));
        errors.encode(encoder.encode_descriptor(
            "podmirror_apply_errors",
            "Pods refused or interfaces failed in the latest reconcile.",
            None,
            errors.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.counter_family(
            &mut encoder,
            "podmirror_matched_packets",
            "Packets a session's Accept rule decided to copy (copies decided).",
            |c| c.matched,
        )?;
        self.counter_family(
            &mut encoder,
            "podmirror_mirrored_packets",
            "Copies sent towards the session's target.",
            |c| c.copied_packets,
        )?;
        self.counter_family(
            &mut encoder,
            "podmirror_mirrored_bytes",
            "Bytes of the copies sent: the mirrored frames after the cut, outer headers not counted.",
            |c| c.copied_bytes,
        )?;
        self.counter_family(&mut encoder, "podmirror_truncated_packets", "Copies cut to fit the path MTU.", |c| {
            c.truncated
        })?;
        self.counter_family(
            &mut encoder,
            "podmirror_rejected_packets",
            "Packets whose first matching rule was a Reject (not copied).",
            |c| c.rejected,
        )?;
        self.reason_family(
            &mut encoder,
            "podmirror_mirror_failures",
            "Decided copies that were not sent, by reason.",
            |c| &c.failures,
        )?;
        self.reason_family(
            &mut encoder,
            "podmirror_skipped_packets",
            "Decided copies not sent on purpose, by reason (rate_limit: over spec.rateLimit; flow_sampling: the flow is outside spec.flowSampling).",
            |c| &c.skipped,
        )?;
        self.interfaces_family(&mut encoder)?;
        self.reloads_family(&mut encoder)?;
        self.state_gauges(&mut encoder)?;
        Ok(())
    }
}

/// The OpenMetrics text for one snapshot.
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in
    // the collector and yields an empty body rather than a crash.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// Serve `/metrics`, `/healthz` and `/readyz` until the task is dropped.
/// Binds first so the caller learns of a busy port at start-up.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Io { context: format!("--metrics-addr {addr}: cannot listen"), source })
}

pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let (status, content_type, body) = respond(&String::from_utf8_lossy(&buf[..n]), &metrics);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Route one request (only its request line matters).
fn respond(request: &str, metrics: &Metrics) -> (&'static str, &'static str, String) {
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/metrics" => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render()),
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" if metrics.snapshot().ready => ("200 OK", TEXT, "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", TEXT, "not yet reconciled\n".into()),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let key = SessionKey::new("default", "mirror-session-a");
        let counters = SessionCounters {
            matched: 10,
            copied_packets: 9,
            copied_bytes: 1234,
            truncated: 2,
            rejected: 3,
            failures: BTreeMap::from([("no_route".to_string(), 1)]),
            skipped: BTreeMap::from([("rate_limit".to_string(), 4)]),
        };
        Snapshot {
            counters: BTreeMap::from([((key.clone(), Direction::Inbound), counters)]),
            interfaces: BTreeMap::from([(key, vec![7])]),
            reloads_ok: 2,
            reloads_failed: 1,
            config_valid: true,
            apply_errors: 0,
            ready: true,
        }
    }

    #[test]
    fn renders_session_counters_with_labels() {
        let text = render(&sample());
        let labels = r#"namespace="default",session="mirror-session-a",direction="inbound""#;
        for line in [
            format!("podmirror_matched_packets_total{{{labels}}} 10"),
            format!("podmirror_mirrored_packets_total{{{labels}}} 9"),
            format!("podmirror_mirrored_bytes_total{{{labels}}} 1234"),
            format!("podmirror_truncated_packets_total{{{labels}}} 2"),
            format!("podmirror_rejected_packets_total{{{labels}}} 3"),
            format!("podmirror_mirror_failures_total{{{labels},reason=\"no_route\"}} 1"),
            format!("podmirror_skipped_packets_total{{{labels},reason=\"rate_limit\"}} 4"),
            r#"podmirror_programmed_interfaces{namespace="default",session="mirror-session-a"} 1"#.to_string(),
            r#"podmirror_config_reloads_total{result="error"} 1"#.to_string(),
            "podmirror_config_valid 1".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"));
        // The datapath counts the copied frame after the cut (pm_abi.h):
        // the help text must not claim the encapsulation is included.
        let help = text.lines().find(|l| l.starts_with("# HELP podmirror_mirrored_bytes")).expect("help line");
        assert!(help.contains("outer headers not counted"), "{help}");
    }

    #[test]
    fn routes_health_readiness_and_unknown_paths() {
        let metrics = Metrics::default();
        assert_eq!(respond("GET /healthz HTTP/1.1\r\n", &metrics).0, "200 OK");
        assert_eq!(respond("GET /readyz HTTP/1.1\r\n", &metrics).0, "503 Service Unavailable");
        metrics.publish(sample());
        assert_eq!(respond("GET /readyz HTTP/1.1\r\n", &metrics).0, "200 OK");
        assert!(respond("GET /metrics HTTP/1.1\r\n", &metrics).2.contains("podmirror_matched_packets_total"));
        assert_eq!(respond("GET /nope HTTP/1.1\r\n", &metrics).0, "404 Not Found");
        assert_eq!(respond("POST /metrics HTTP/1.1\r\n", &metrics).0, "405 Method Not Allowed");
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::default();
        metrics.publish(sample());
        let server = tokio::spawn(serve(listener, metrics));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        server.abort();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("podmirror_mirrored_packets_total{"), "{body}");
    }
}
