//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never
//! write at once. The decision is pure ([`decide`]); the loop does the I/O.
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

pub struct Elector {
    pub api: Api<Lease>,
    pub identity: String,
    pub duration: Duration,
}

impl Elector {
    /// One round: returns whether we hold the lease afterwards.
    pub async fn round(&self) -> Result<bool, Error> {
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
            Decision::Wait { .. } => return Ok(false),
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
            Ok(_) => Ok(true),
            // Someone else wrote first: not ours this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(err(format!("writing: {e}"))),
        }
    }

    /// Runs forever, publishing leadership. Losing a lease we held is fatal
    /// (returns an error): the process restarts rather than risk two writers.
    pub async fn run(self, tx: watch::Sender<bool>) -> Result<(), Error> {
        let period = self.duration / 3;
        let mut held = false;
        loop {
            let now_held = match self.round().await {
                Ok(h) => h,
                Err(e) if held => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    false
                }
            };
            if held && !now_held {
                let _ = tx.send(false);
                return Err(Error::Lease { lease: LEASE_NAME.into(), reason: "lost the lease".into() });
            }
            if now_held && !held {
                tracing::info!(identity = %self.identity, "acquired the leader lease");
                let _ = tx.send(true);
            }
            held = now_held;
            tokio::time::sleep(period).await;
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
}
