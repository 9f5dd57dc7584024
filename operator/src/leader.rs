//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never
//! write at once. The decisions are pure ([`decide`] on the lease read,
//! [`step`] on a round's outcome); the loop does the I/O.
//!
//! A leader whose renewal fails keeps leading while the lease it last wrote
//! is valid, retrying with a short backoff: a blip of the API server must not
//! restart the operator. It steps down when the lease is about to run out or
//! someone else holds it.
//!
//! Writes are `replace` calls carrying the resourceVersion read just before:
//! two candidates racing for an expired lease cannot both win, the loser gets
//! 409 and reads again.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Error;

pub const LEASE_NAME: &str = "podmirror-operator";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (a new holder, transitions + 1).
    Acquire,
    /// Someone else holds a live lease.
    Wait { holder: String },
}

/// What to do with `spec` as read at `now`.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp, default_duration: Duration) -> Decision {
    let Some(spec) = spec else { return Decision::Acquire };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(h) => {
            let secs = spec.lease_duration_seconds.map(i64::from).unwrap_or(default_duration.as_secs() as i64);
            let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
            match last {
                Some(t) if t + SignedDuration::from_secs(secs) > now => Decision::Wait { holder: h.to_owned() },
                _ => Decision::Acquire,
            }
        }
    }
}

/// What one round found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Round {
    /// We hold the lease: renewed (or taken) as read at the round's start.
    Held,
    /// Someone else holds a live lease.
    HeldBy(String),
    /// Someone else wrote between our read and our write (409): read again.
    Conflict,
}

/// Where this replica stands between rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Follower,
    /// Leading on a lease that, as we last wrote it, runs until `expires`
    /// (the round's start + the lease duration: our renewTime + duration).
    /// `failures` renewals in a row have failed since.
    Leader {
        expires: Instant,
        failures: u32,
    },
}

/// What the loop does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Continue {
        standing: Standing,
        sleep: Duration,
    },
    /// We led and can no longer claim the lease: stop writing.
    StepDown {
        reason: String,
    },
}

/// The first retry after a failed renewal; later ones double, up to the
/// renewal period.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);

/// When a leader whose renewals keep failing gives up: a little before its
/// lease as written expires, so it has stopped writing before another
/// replica may take the lease (1 s of a 15 s lease).
pub fn give_up_at(expires: Instant, duration: Duration) -> Instant {
    expires.checked_sub(duration / 15).unwrap_or(expires)
}

/// The decision after a round that started at `started` and ended at `now`.
/// A failed or contested renewal is retried with a short backoff while the
/// lease we last wrote is still ours; only a lease someone else holds, or
/// running out of time, ends the leadership.
pub fn step(
    standing: Standing,
    round: Result<&Round, &str>,
    started: Instant,
    now: Instant,
    duration: Duration,
) -> Step {
    let period = duration / 3;
    match (standing, round) {
        (_, Ok(Round::Held)) => {
            Step::Continue { standing: Standing::Leader { expires: started + duration, failures: 0 }, sleep: period }
        }
        (Standing::Leader { .. }, Ok(Round::HeldBy(holder))) => {
            Step::StepDown { reason: format!("the lease is now held by {holder}") }
        }
        (Standing::Follower, _) => Step::Continue { standing: Standing::Follower, sleep: period },
        (Standing::Leader { expires, failures }, failed) => {
            let why = match failed {
                Err(e) => e.to_string(),
                Ok(_) => "another write to the lease came first".to_string(),
            };
            let failures = failures.saturating_add(1);
            let deadline = give_up_at(expires, duration);
            if now >= deadline {
                return Step::StepDown {
                    reason: format!("{failures} renewals failed until the lease ran out; last: {why}"),
                };
            }
            let backoff = FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(period);
            let sleep = backoff.min(deadline - now);
            Step::Continue { standing: Standing::Leader { expires, failures }, sleep }
        }
    }
}

pub struct Elector {
    pub api: Api<Lease>,
    pub identity: String,
    pub duration: Duration,
}

impl Elector {
    /// One round: read the lease, then renew or take it when [`decide`] says so.
    pub async fn round(&self) -> Result<Round, Error> {
        let err = |reason: String| Error::Lease { lease: LEASE_NAME.into(), reason };
        let now = Timestamp::now();
        let current = self.api.get_opt(LEASE_NAME).await.map_err(|e| err(format!("reading: {e}")))?;
        let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &self.identity, now, self.duration);
        let secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let mut lease = current.clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta { name: Some(LEASE_NAME.into()), ..ObjectMeta::default() },
            spec: None,
        });
        let mut spec = lease.spec.take().unwrap_or_default();
        match &decision {
            Decision::Wait { holder } => return Ok(Round::HeldBy(holder.clone())),
            Decision::Renew => spec.renew_time = Some(MicroTime(now)),
            Decision::Acquire => {
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(current.is_some()));
            }
        }
        spec.lease_duration_seconds = Some(secs);
        lease.spec = Some(spec);
        let res = if current.is_some() {
            self.api.replace(LEASE_NAME, &PostParams::default(), &lease).await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match res {
            Ok(_) => Ok(Round::Held),
            // Someone else wrote first: not ours this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
            Err(e) => Err(err(format!("writing: {e}"))),
        }
    }

    /// Runs forever, publishing leadership. A failed renewal is retried
    /// while the lease is still ours ([`step`]); losing it for real is fatal
    /// (returns an error): the process restarts rather than risk two writers.
    pub async fn run(self, tx: watch::Sender<bool>) -> Result<(), Error> {
        let mut standing = Standing::Follower;
        loop {
            let started = Instant::now();
            let outcome = match standing {
                // A leader's round must not outlive its lease.
                Standing::Leader { expires, .. } => {
                    let left = give_up_at(expires, self.duration).saturating_duration_since(started);
                    match tokio::time::timeout(left, self.round()).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(Error::Lease {
                            lease: LEASE_NAME.into(),
                            reason: "no answer before the lease ran out".into(),
                        }),
                    }
                }
                Standing::Follower => self.round().await,
            };
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, leader = matches!(standing, Standing::Leader { .. }), "lease round failed");
            }
            let message;
            let seen: Result<&Round, &str> = match &outcome {
                Ok(round) => Ok(round),
                Err(e) => {
                    message = e.to_string();
                    Err(&message)
                }
            };
            match step(standing, seen, started, Instant::now(), self.duration) {
                Step::Continue { standing: next, sleep } => {
                    if matches!(next, Standing::Leader { .. }) && standing == Standing::Follower {
                        tracing::info!(identity = %self.identity, "acquired the leader lease");
                        let _ = tx.send(true);
                    }
                    standing = next;
                    tokio::time::sleep(sleep).await;
                }
                Step::StepDown { reason } => {
                    let _ = tx.send(false);
                    return Err(Error::Lease { lease: LEASE_NAME.into(), reason: format!("lost the lease: {reason}") });
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: Timestamp, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", now, d), Decision::Acquire);
        assert_eq!(decide(Some(&spec("a", now, 15)), "a", now, d), Decision::Renew);
        let fresh = spec("b", now - SignedDuration::from_secs(5), 15);
        assert_eq!(decide(Some(&fresh), "a", now, d), Decision::Wait { holder: "b".into() });
        let stale = spec("b", now - SignedDuration::from_secs(16), 15);
        assert_eq!(decide(Some(&stale), "a", now, d), Decision::Acquire);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", now, d), Decision::Acquire);
    }

    /// One failed renewal keeps the leader; renewals retried with a short,
    /// growing backoff; a success clears the failures and extends the lease.
    #[test]
    fn a_failed_renewal_is_retried_while_the_lease_is_valid() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let leader = match step(Standing::Follower, Ok(&Round::Held), t0, at(50), d) {
            Step::Continue { standing, sleep } => {
                assert_eq!(sleep, Duration::from_secs(5));
                standing
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(leader, Standing::Leader { expires: at(15_000), failures: 0 });
        // The next renewal (5 s later) fails: still the leader, retry soon.
        let Step::Continue { standing, sleep } = step(leader, Err("reading: 503"), at(5_000), at(5_100), d) else {
            panic!()
        };
        assert_eq!(standing, Standing::Leader { expires: at(15_000), failures: 1 });
        assert_eq!(sleep, FIRST_RETRY);
        let Step::Continue { standing, sleep } = step(standing, Ok(&Round::Conflict), at(5_300), at(5_400), d) else {
            panic!()
        };
        assert_eq!(standing, Standing::Leader { expires: at(15_000), failures: 2 });
        assert_eq!(sleep, FIRST_RETRY * 2);
        // The retry renews: the lease runs from that round's start.
        let Step::Continue { standing, sleep } = step(standing, Ok(&Round::Held), at(5_800), at(5_900), d) else {
            panic!()
        };
        assert_eq!(standing, Standing::Leader { expires: at(20_800), failures: 0 });
        assert_eq!(sleep, Duration::from_secs(5));
    }

    /// Failures until the lease (as last written) is about to expire step
    /// down; never before, and the last retry is timed to land before it.
    #[test]
    fn the_leader_steps_down_only_when_its_lease_runs_out() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let expires = t0 + d;
        let deadline = give_up_at(expires, d);
        assert_eq!(expires - deadline, Duration::from_secs(1));
        let mut standing = Standing::Leader { expires, failures: 0 };
        let mut now = t0 + Duration::from_secs(5);
        let mut retries = 0;
        loop {
            match step(standing, Err("writing: 500"), now, now, d) {
                Step::Continue { standing: next, sleep } => {
                    assert!(now < deadline, "still leading at {:?} past the deadline", now - t0);
                    assert!(sleep <= Duration::from_secs(5) && now + sleep <= deadline, "{sleep:?}");
                    standing = next;
                    now += sleep;
                    retries += 1;
                }
                Step::StepDown { reason } => {
                    assert!(now >= deadline, "stepped down {:?} early", deadline - now);
                    assert!(reason.contains("renewals failed") && reason.contains("writing: 500"), "{reason}");
                    break;
                }
            }
            assert!(retries < 100, "never stepped down");
        }
        assert!(retries >= 5, "only {retries} retries in 9 s");
    }

    /// Someone else holding the lease ends the leadership at once; a
    /// follower just waits.
    #[test]
    fn another_holder_ends_the_leadership_at_once() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let leader = Standing::Leader { expires: t0 + d, failures: 0 };
        let other = Round::HeldBy("b".into());
        assert!(
            matches!(step(leader, Ok(&other), t0, t0, d), Step::StepDown { reason } if reason.contains("held by b"))
        );
        let follower = step(Standing::Follower, Ok(&other), t0, t0, d);
        assert_eq!(follower, Step::Continue { standing: Standing::Follower, sleep: Duration::from_secs(5) });
        let failed = step(Standing::Follower, Err("reading: 503"), t0, t0, d);
        assert_eq!(failed, Step::Continue { standing: Standing::Follower, sleep: Duration::from_secs(5) });
    }
}
