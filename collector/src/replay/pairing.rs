//! Pairs a replayed request's test response with the mirrored production
//! response to the same request, whichever arrives first, and counts status
//! class mismatches by method and path.

use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::{Metrics, status_class};

#[derive(Debug, Default)]
struct State {
    production: Option<u16>,
    /// `Some(None)`: the request was not replayed or got no response.
    test: Option<Option<u16>>,
}

#[derive(Debug)]
pub struct Slot {
    pub method: String,
    /// Path without the query: a label, so its cardinality must stay low.
    pub path: String,
    state: Mutex<State>,
}

impl Slot {
    pub fn new(method: &str, target: &str) -> Arc<Slot> {
        let path = target.split('?').next().unwrap_or_default();
        Arc::new(Slot { method: method.into(), path: path.into(), state: Mutex::default() })
    }

    pub fn production(&self, status: u16, metrics: &Metrics) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.production = Some(status);
        self.compare(&s, metrics);
    }

    pub fn test(&self, status: Option<u16>, metrics: &Metrics) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.test = Some(status);
        self.compare(&s, metrics);
    }

    fn compare(&self, s: &State, metrics: &Metrics) {
        let (Some(prod), Some(Some(test))) = (s.production, s.test) else {
            return;
        };
        metrics.replay_paired.inc();
        let (p, t) = (status_class(prod), status_class(test));
        if p != t {
            metrics.mismatch(&self.method, &self.path, p, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_once_whichever_side_comes_first() {
        let m = Metrics::new();
        let a = Slot::new("GET", "/x?q=1");
        a.test(Some(500), &m);
        a.production(200, &m);
        let b = Slot::new("GET", "/x");
        b.production(200, &m);
        b.test(Some(204), &m);
        let c = Slot::new("GET", "/x");
        c.production(200, &m);
        c.test(None, &m);
        assert_eq!(m.replay_paired.get(), 2);
        assert_eq!(m.mismatch_count("GET", "/x", "2xx", "5xx"), 1);
    }
}
