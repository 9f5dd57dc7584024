//! The operator's Prometheus metrics (`podmirror_*`).

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    pub registry: Registry,
    /// Duration of one planning pass (plan + writes).
    pub reconcile_duration: Histogram,
    /// Failed writes or reads, by reason.
    pub reconcile_errors: Family<Labels, Counter>,
    /// Sessions by phase, as of the last pass.
    pub sessions: Family<Labels, Gauge>,
    /// Sessions whose current spec a quota refuses, by quota, as of the last pass.
    pub quota_refused: Family<Labels, Gauge>,
    /// Writes carried out, by kind.
    pub writes: Family<Labels, Counter>,
    /// 1 while this replica holds the lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("podmirror");
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass over the whole cluster",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<Labels, Counter>::default();
        registry.register("reconcile_errors", "Reconcile errors by reason", reconcile_errors.clone());
        let sessions = Family::<Labels, Gauge>::default();
        registry.register("sessions", "MirrorSessions by phase", sessions.clone());
        let quota_refused = Family::<Labels, Gauge>::default();
        registry.register("quota_refused_sessions", "Sessions refused by a quota, by quota", quota_refused.clone());
        let writes = Family::<Labels, Counter>::default();
        registry.register("operator_writes", "API writes by kind", writes.clone());
        let leader = Gauge::default();
        registry.register("operator_leader", "1 while this replica holds the leader lease", leader.clone());
        Metrics { registry, reconcile_duration, reconcile_errors, sessions, quota_refused, writes, leader }
    }
}

impl Metrics {
    pub fn error(&self, reason: &str) {
        self.reconcile_errors.get_or_create(&vec![("reason".into(), reason.into())]).inc();
    }

    pub fn wrote(&self, kind: &str) {
        self.writes.get_or_create(&vec![("kind".into(), kind.into())]).inc();
    }

    /// Replaces the per-phase and per-quota gauges with this pass's counts
    /// (phases and quotas that dropped to zero read 0, not their old value).
    pub fn set_counts(&self, phases: &BTreeMap<String, i64>, refusals: &BTreeMap<&'static str, usize>) {
        for phase in ["Pending", "Active", "Degraded", "Invalid", "Disabled", "Scheduled", "Completed"] {
            let n = phases.get(phase).copied().unwrap_or(0);
            self.sessions.get_or_create(&vec![("phase".into(), phase.into())]).set(n);
        }
        self.quota_refused.clear();
        for (quota, n) in refusals {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            self.quota_refused.get_or_create(&vec![("quota".into(), (*quota).into())]).set(n);
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_gauges_reset() {
        let m = Metrics::default();
        m.error("conflict");
        m.set_counts(&[("Active".to_owned(), 3)].into(), &[("PriorityClash", 2)].into());
        let text = m.encode().unwrap();
        assert!(text.contains("podmirror_reconcile_errors_total{reason=\"conflict\"} 1"), "{text}");
        assert!(text.contains("podmirror_sessions{phase=\"Active\"} 3"), "{text}");
        assert!(text.contains("podmirror_quota_refused_sessions{quota=\"PriorityClash\"} 2"), "{text}");
        m.set_counts(&BTreeMap::new(), &BTreeMap::new());
        let text = m.encode().unwrap();
        assert!(text.contains("podmirror_sessions{phase=\"Active\"} 0"), "{text}");
        assert!(!text.contains("quota=\"PriorityClash\""), "{text}");
    }
}
