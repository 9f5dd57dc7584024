//! The operator's notion of "now", injectable so schedule decisions
//! (`spec.schedule`) are deterministic in tests.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: Timestamp) {
        // A poisoned lock only means a test panicked while holding it.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long the control loop may sleep before its next pass: the resync
/// interval, or less to be awake at the next schedule boundary.
pub fn sleep_for(next_wakeup: Option<Timestamp>, now: Timestamp, resync: Duration) -> Duration {
    let Some(next) = next_wakeup else {
        return resync;
    };
    let until: SignedDuration = next.duration_since(now);
    // A boundary already passed (a slow pass) wakes at once.
    let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
    until.min(resync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_loop_wakes_at_the_next_boundary_within_the_resync() {
        let now = t("2026-01-01T00:00:00Z");
        let resync = Duration::from_secs(60);
        assert_eq!(sleep_for(None, now, resync), resync);
        assert_eq!(sleep_for(Some(t("2026-01-01T00:00:07.5Z")), now, resync), Duration::from_millis(7500));
        assert_eq!(sleep_for(Some(t("2026-01-01T01:00:00Z")), now, resync), resync, "far away: resync first");
        assert_eq!(sleep_for(Some(t("2025-12-31T23:59:59Z")), now, resync), Duration::ZERO);
    }

    #[test]
    fn a_manual_clock_moves_only_when_set() {
        let c = ManualClock::new(t("2026-01-01T00:00:00Z"));
        assert_eq!(c.now(), t("2026-01-01T00:00:00Z"));
        c.set(t("2026-01-01T00:10:00Z"));
        assert_eq!(c.now(), t("2026-01-01T00:10:00Z"));
    }
}
