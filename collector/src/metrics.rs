//! Prometheus metrics of the collector (`podmirror_collector_*`). Counters
//! are updated in place by the receiving threads, the sinks and the replay
//! (atomics, no lock on the hot path except the label lookup) and rendered
//! on `/metrics`. Tests read the same counters through the getters.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Distinct (method, path) pairs kept as labels of the mismatch counter;
/// further paths share the label `(other)` so a crawler cannot blow up the
/// series count.
const MAX_MISMATCH_PATHS: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VniLabels {
    pub vni: u32,
    pub input: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    pub outcome: &'static str,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MismatchLabels {
    pub method: String,
    pub path: String,
    pub production: &'static str,
    pub test: &'static str,
}

/// Every metric the collector exports.
#[derive(Debug)]
pub struct Metrics {
    pub received_packets: Family<VniLabels, Counter>,
    pub received_bytes: Family<VniLabels, Counter>,
    pub malformed: Family<ReasonLabels, Counter>,
    pub written: Family<SinkLabels, Counter>,
    pub dropped: Family<SinkLabels, Counter>,
    pub stream_clients: Gauge,
    pub files_rotated: Counter,
    pub files_removed: Counter,
    pub replay_requests: Family<ReplayLabels, Counter>,
    pub replay_incomplete: Family<ReasonLabels, Counter>,
    pub replay_unreplayable_flows: Family<ReasonLabels, Counter>,
    pub replay_latency: Histogram,
    pub replay_paired: Counter,
    pub replay_mismatches: Family<MismatchLabels, Counter>,
    pub flows_tracked: Gauge,
    pub flows_evicted: Family<ReasonLabels, Counter>,
    /// Copies the kernel could not hand to an AF_XDP socket, by reason.
    pub xdp_dropped: Family<ReasonLabels, Counter>,
    /// Copies the ring input dropped: its ring was full.
    pub ring_full: Counter,
    mismatch_paths: Mutex<std::collections::HashSet<(String, String)>>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let mut m = Metrics {
            received_packets: Family::default(),
            received_bytes: Family::default(),
            malformed: Family::default(),
            written: Family::default(),
            dropped: Family::default(),
            stream_clients: Gauge::default(),
            files_rotated: Counter::default(),
            files_removed: Counter::default(),
            replay_requests: Family::default(),
            replay_incomplete: Family::default(),
            replay_unreplayable_flows: Family::default(),
            replay_latency: Histogram::new(buckets),
            replay_paired: Counter::default(),
            replay_mismatches: Family::default(),
            flows_tracked: Gauge::default(),
            flows_evicted: Family::default(),
            xdp_dropped: Family::default(),
            ring_full: Counter::default(),
            mismatch_paths: Mutex::default(),
            registry: Registry::with_prefix("podmirror_collector"),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register("received_packets", "Copies received, by VNI and input (vxlan, gre)", self.received_packets.clone());
        r.register("received_bytes", "Bytes of inner frames received, by VNI and input", self.received_bytes.clone());
        r.register("malformed", "Datagrams dropped before any sink, by reason", self.malformed.clone());
        r.register(
            "written",
            "Copies a sink took: written to a capture file, sent to a stream client, queued for replay",
            self.written.clone(),
        );
        r.register(
            "xdp_dropped",
            "Copies the kernel could not hand to the AF_XDP input (ring_full: the collector fell behind; \
             no_frame: no free frame in the fill ring)",
            self.xdp_dropped.clone(),
        );
        r.register(
            "ring_full",
            "Copies the ring input dropped because its ring was full (the collector fell a ring behind)",
            self.ring_full.clone(),
        );
        r.register("dropped", "Copies a sink could not take (queue full, slow client), by sink", self.dropped.clone());
        r.register("stream_clients", "Clients connected to /stream", self.stream_clients.clone());
        r.register("files_rotated", "Capture files closed by size or age", self.files_rotated.clone());
        r.register("files_removed", "Capture files removed to keep the retention limits", self.files_removed.clone());
        r.register(
            "replay_requests",
            "Mirrored HTTP requests by outcome (ok, error, timeout, sampled_out, backlog) and status class",
            self.replay_requests.clone(),
        );
        r.register(
            "replay_incomplete",
            "Requests never sent because the copies do not hold them whole, by reason",
            self.replay_incomplete.clone(),
        );
        r.register(
            "replay_unreplayable_flows",
            "TCP flows on replay ports that carry no replayable HTTP (tls, not_http, midstream)",
            self.replay_unreplayable_flows.clone(),
        );
        r.register("replay_latency_seconds", "Latency of replayed requests", self.replay_latency.clone());
        r.register(
            "replay_paired",
            "Replayed requests paired with the mirrored production response",
            self.replay_paired.clone(),
        );
        r.register(
            "replay_status_mismatches",
            "Paired requests whose test status class differs from production, by method and path",
            self.replay_mismatches.clone(),
        );
        r.register("flows_tracked", "TCP flows held by the replay", self.flows_tracked.clone());
        r.register(
            "flows_evicted",
            "TCP flows dropped by the replay, by reason (idle, memory, max_flows)",
            self.flows_evicted.clone(),
        );
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail (fmt::Write on String is total).
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn malformed(&self, reason: &'static str) {
        self.malformed.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn dropped(&self, sink: &'static str) {
        self.dropped_n(sink, 1);
    }

    pub fn dropped_n(&self, sink: &'static str, n: u64) {
        self.dropped.get_or_create(&SinkLabels { sink }).inc_by(n);
    }

    pub fn written(&self, sink: &'static str) {
        self.written.get_or_create(&SinkLabels { sink }).inc();
    }

    pub fn written_n(&self, sink: &'static str, n: u64) {
        if n > 0 {
            self.written.get_or_create(&SinkLabels { sink }).inc_by(n);
        }
    }

    pub fn replayed(&self, outcome: &'static str, status_class: &'static str) {
        self.replay_requests.get_or_create(&ReplayLabels { outcome, status_class }).inc();
    }

    pub fn incomplete(&self, reason: &'static str) {
        self.replay_incomplete.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn evicted(&self, reason: &'static str) {
        self.flows_evicted.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn mismatch(&self, method: &str, path: &str, production: &'static str, test: &'static str) {
        let key = (method.to_string(), path.to_string());
        let keep = {
            let mut seen = self.mismatch_paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.contains(&key) || (seen.len() < MAX_MISMATCH_PATHS && seen.insert(key.clone()))
        };
        let (method, path) = if keep { key } else { (key.0, "(other)".to_string()) };
        self.replay_mismatches.get_or_create(&MismatchLabels { method, path, production, test }).inc();
    }

    // Getters for tests and the demo.
    pub fn received(&self, vni: u32, input: &'static str) -> u64 {
        self.received_packets.get_or_create(&VniLabels { vni, input }).get()
    }
    pub fn malformed_count(&self, reason: &'static str) -> u64 {
        self.malformed.get_or_create(&ReasonLabels { reason }).get()
    }
    pub fn dropped_count(&self, sink: &'static str) -> u64 {
        self.dropped.get_or_create(&SinkLabels { sink }).get()
    }
    pub fn written_count(&self, sink: &'static str) -> u64 {
        self.written.get_or_create(&SinkLabels { sink }).get()
    }
    pub fn replayed_count(&self, outcome: &'static str, status_class: &'static str) -> u64 {
        self.replay_requests.get_or_create(&ReplayLabels { outcome, status_class }).get()
    }
    pub fn incomplete_count(&self, reason: &'static str) -> u64 {
        self.replay_incomplete.get_or_create(&ReasonLabels { reason }).get()
    }
    pub fn unreplayable_count(&self, reason: &'static str) -> u64 {
        self.replay_unreplayable_flows.get_or_create(&ReasonLabels { reason }).get()
    }
    pub fn evicted_count(&self, reason: &'static str) -> u64 {
        self.flows_evicted.get_or_create(&ReasonLabels { reason }).get()
    }
    pub fn mismatch_count(&self, method: &str, path: &str, production: &'static str, test: &'static str) -> u64 {
        let labels = MismatchLabels { method: method.into(), path: path.into(), production, test };
        self.replay_mismatches.get_or_create(&labels).get()
    }
}

/// `2xx`, `5xx`, ...: the status class label.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}
