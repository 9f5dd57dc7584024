//! Time-bounded sessions (`spec.schedule`): validation with the same rules
//! as the CRD's CEL, and the window a session is programmed in. Pure: the
//! caller passes "now" (the operator's injectable clock, the standalone
//! agent's system clock), so every decision is testable with literals.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::SessionSchedule;
use crate::error::ModelError;

/// The longest `duration` text the CRD accepts (its `maxLength`).
const MAX_DURATION_LEN: usize = 32;

/// `10m`, `1h30m`, `90s`, `2h0m5s`: hours, minutes and seconds, in that
/// order, each at most once, positive in total. This is the subset of Go's
/// `time.ParseDuration` that the CRD's CEL pattern admits, so the API server
/// and this function accept exactly the same texts.
pub fn parse_duration(text: &str, field: &str) -> Result<SignedDuration, ModelError> {
    let bad = |why: &str| {
        ModelError::invalid(field, format!("{text:?} {why}; write hours, minutes and seconds such as 10m or 1h30m"))
    };
    if text.len() < 2 || text.len() > MAX_DURATION_LEN {
        return Err(bad(&format!("must be 2 to {MAX_DURATION_LEN} characters")));
    }
    let mut seconds: i64 = 0;
    let mut digits = String::new();
    let mut last_unit = 0; // order: h (1) < m (2) < s (3)
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, scale) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(bad(&format!("has {c:?}, not a unit (h, m or s)"))),
        };
        if digits.is_empty() || rank <= last_unit {
            return Err(bad("is not a duration"));
        }
        let n: i64 = digits.parse().map_err(|_| bad("is too long"))?;
        seconds = n.checked_mul(scale).and_then(|v| seconds.checked_add(v)).ok_or_else(|| bad("is too long"))?;
        digits.clear();
        last_unit = rank;
    }
    if !digits.is_empty() {
        return Err(bad("ends without a unit"));
    }
    if seconds == 0 {
        return Err(bad("is not positive"));
    }
    Ok(SignedDuration::from_secs(seconds))
}

/// The checks of the CRD's CEL rules on `spec.schedule`, naming the field.
pub fn validate_schedule(s: &SessionSchedule, at: &str) -> Result<(), ModelError> {
    if s.stop_time.is_some() && s.duration.is_some() {
        return Err(ModelError::invalid(
            format!("{at}.duration"),
            "schedule: stopTime and duration are mutually exclusive",
        ));
    }
    if let (Some(start), Some(stop)) = (&s.start_time, &s.stop_time)
        && stop.0 <= start.0
    {
        return Err(ModelError::invalid(
            format!("{at}.stopTime"),
            format!("{} is not after schedule.startTime {}", stop.0, start.0),
        ));
    }
    if let Some(d) = &s.duration {
        parse_duration(d, &format!("{at}.duration"))?;
    }
    Ok(())
}

/// When a session may be programmed: from `start` (inclusive) to `stop`
/// (exclusive); `None` is unbounded on that side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<Timestamp>,
    pub stop: Option<Timestamp>,
}

/// Where `now` falls in a [`Window`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowState {
    /// Before `start`.
    NotStarted { starts: Timestamp },
    /// Inside; `stops` when bounded.
    Running { stops: Option<Timestamp> },
    /// At or after `stop`.
    Ended { stopped: Timestamp },
}

impl Window {
    /// The window of a schedule. A `duration` counts from `startTime`, else
    /// from `accepted` (the session's first acceptance); while neither is
    /// known the stop is unknown too (the session is not accepted yet). A
    /// schedule that does not validate gives no bound it cannot read.
    pub fn of(s: &SessionSchedule, accepted: Option<Timestamp>) -> Window {
        let start = s.start_time.as_ref().map(|t| t.0);
        let stop = match (&s.stop_time, &s.duration) {
            (Some(t), _) => Some(t.0),
            (None, Some(d)) => {
                let from = start.or(accepted);
                let d = parse_duration(d, "spec.schedule.duration").ok();
                from.zip(d).and_then(|(f, d)| f.checked_add(d).ok())
            }
            (None, None) => None,
        };
        Window { start, stop }
    }

    pub fn at(&self, now: Timestamp) -> WindowState {
        match (self.start, self.stop) {
            (_, Some(stop)) if now >= stop => WindowState::Ended { stopped: stop },
            (Some(start), _) if now < start => WindowState::NotStarted { starts: start },
            (_, stops) => WindowState::Running { stops },
        }
    }

    /// The next moment after `now` at which [`Window::at`] changes, if any:
    /// when the operator must wake up without any object having changed.
    pub fn next_boundary(&self, now: Timestamp) -> Option<Timestamp> {
        [self.start, self.stop].into_iter().flatten().filter(|t| *t > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn durations_are_hours_minutes_seconds_in_order() {
        let ok = |s: &str| parse_duration(s, "d").map(|d| d.as_secs());
        assert_eq!(ok("10m"), Ok(600));
        assert_eq!(ok("1h30m"), Ok(5400));
        assert_eq!(ok("2h0m5s"), Ok(7205));
        assert_eq!(ok("90s"), Ok(90));
        for bad in ["", "m", "10", "0s", "0h0m", "1m1h", "10x", "1.5h", "-1m", "1h1h", "10 m", "99999999999999999999h"]
        {
            let err = parse_duration(bad, "spec.schedule.duration").expect_err(bad);
            assert_eq!(err.field(), "spec.schedule.duration", "{bad}: {err}");
        }
    }

    #[test]
    fn a_schedule_is_validated_like_the_crd_does() {
        let time = |s: &str| Some(Time(t(s)));
        let both = SessionSchedule {
            stop_time: time("2026-01-01T01:00:00Z"),
            duration: Some("1h".into()),
            ..Default::default()
        };
        assert_eq!(validate_schedule(&both, "spec.schedule").expect_err("both").field(), "spec.schedule.duration");
        let backwards = SessionSchedule {
            start_time: time("2026-01-01T01:00:00Z"),
            stop_time: time("2026-01-01T01:00:00Z"),
            duration: None,
        };
        assert_eq!(
            validate_schedule(&backwards, "spec.schedule").expect_err("equal").field(),
            "spec.schedule.stopTime"
        );
        let ok =
            SessionSchedule { start_time: time("2026-01-01T01:00:00Z"), stop_time: None, duration: Some("10m".into()) };
        assert_eq!(validate_schedule(&ok, "spec.schedule"), Ok(()));
    }

    #[test]
    fn the_window_counts_a_duration_from_start_else_from_acceptance() {
        let accepted = t("2026-01-01T00:00:00Z");
        let d = SessionSchedule { duration: Some("10m".into()), ..Default::default() };
        let w = Window::of(&d, Some(accepted));
        assert_eq!(w, Window { start: None, stop: Some(t("2026-01-01T00:10:00Z")) });
        assert_eq!(Window::of(&d, None), Window::default(), "not accepted yet: no stop known");

        let from_start = SessionSchedule { start_time: Some(Time(t("2026-01-01T02:00:00Z"))), ..d.clone() };
        let w = Window::of(&from_start, Some(accepted));
        assert_eq!(w.stop, Some(t("2026-01-01T02:10:00Z")));
        assert_eq!(w.at(t("2026-01-01T01:59:59Z")), WindowState::NotStarted { starts: t("2026-01-01T02:00:00Z") });
        assert_eq!(w.at(t("2026-01-01T02:00:00Z")), WindowState::Running { stops: w.stop });
        assert_eq!(w.at(t("2026-01-01T02:10:00Z")), WindowState::Ended { stopped: t("2026-01-01T02:10:00Z") });
        assert_eq!(w.next_boundary(t("2026-01-01T01:00:00Z")), Some(t("2026-01-01T02:00:00Z")));
        assert_eq!(w.next_boundary(t("2026-01-01T02:00:00Z")), Some(t("2026-01-01T02:10:00Z")));
        assert_eq!(w.next_boundary(t("2026-01-01T02:10:00Z")), None);
    }
}
