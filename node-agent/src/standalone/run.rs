//! The standalone agent's loop: watch the directory, reload on change,
//! reconcile every tick (so a pod whose veth was recreated is picked up
//! again), publish metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use podmirror_crds::api::NodePod;
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::plan::AcceptedSet;
use podmirror_crds::model::quota::QuotaLimits;

use k8s_openapi::jiff::Timestamp;

use super::files::{fingerprint, load_dir};
use super::resolve::{Resolution, resolve};
use super::schedule;
use crate::core::{AgentError, DatapathOps, DesiredState, PodKey, Reconciler, desired_from_node_state};
use crate::ifdiscovery::{self, HostInterface};
use crate::metrics::{Metrics, Snapshot};

/// What the standalone mode needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    pub node_name: String,
    pub poll_interval: Duration,
    pub limits: QuotaLimits,
}

/// The configuration state across reloads.
#[derive(Debug, Default)]
pub struct Config {
    /// The resolution in force (the last load that succeeded).
    pub current: Option<Resolution>,
    accepted: AcceptedSet,
    fingerprint: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_error: Option<String>,
    /// First acceptance of each accepted session (`schedule.duration`).
    pub accepted_at: BTreeMap<SessionKey, Timestamp>,
}

impl Config {
    /// Reload when the directory changed. Returns `None` when nothing changed,
    /// else the outcome; a failed load leaves `current` as it was.
    pub fn reload_if_changed(&mut self, opts: &Options) -> Option<Result<(), AgentError>> {
        let now = fingerprint(&opts.dir);
        if self.fingerprint.as_ref() == Some(&now) {
            return None;
        }
        self.fingerprint = Some(now);
        Some(self.reload(opts))
    }

    /// Load and resolve the directory now.
    pub fn reload(&mut self, opts: &Options) -> Result<(), AgentError> {
        let outcome = load_dir(&opts.dir).and_then(|loaded| {
            for skipped in &loaded.skipped {
                tracing::info!("skipping {skipped}: not a podmirror.io object");
            }
            resolve(&loaded, &self.accepted, &opts.node_name, opts.limits)
        });
        match outcome {
            Ok(resolution) => {
                for refusal in &resolution.refusals {
                    tracing::warn!("refused: {refusal}");
                }
                self.accepted = resolution.accepted.clone();
                schedule::note_acceptance(&mut self.accepted_at, resolution.accepted.keys(), Timestamp::now());
                self.current = Some(resolution);
                self.reloads_ok += 1;
                self.last_error = None;
                Ok(())
            }
            Err(error) => {
                self.reloads_failed += 1;
                self.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }
}

/// The host interface of a pod: the inventory's `interface:` if given, else
/// found from its IPs by `finder`.
pub fn discover(
    finder: &mut ifdiscovery::Finder,
    pod: &NodePod,
    interfaces: &BTreeMap<PodKey, String>,
) -> Result<HostInterface, AgentError> {
    let key = PodKey::new(pod.namespace.clone(), pod.name.clone());
    match interfaces.get(&key) {
        Some(name) => ifdiscovery::by_name(&key.to_string(), name),
        None => finder.find(&key.to_string(), &pod.ips),
    }
}

/// Interfaces found for pods in earlier ticks.
pub type KnownInterfaces = BTreeMap<PodKey, HostInterface>;

/// The desired state of the resolution in force, or `None` before the first
/// good load (then the datapath must not be touched: after a restart it
/// holds what the previous run accepted).
///
/// A pod whose lookup fails keeps the interface found before as long as that
/// interface still exists under the same name and index, so a transient
/// failure (a route being replaced) never detaches a running source.
pub fn desired(config: &Config, known: &mut KnownInterfaces) -> Option<(DesiredState, Vec<AgentError>)> {
    let resolution = config.current.as_ref()?;
    let mut finder = ifdiscovery::Finder::new();
    let state =
        schedule::in_window(&resolution.node_state, &resolution.schedules, &config.accepted_at, Timestamp::now());
    Some(desired_from_node_state(&state, |pod| {
        let key = PodKey::new(pod.namespace.clone(), pod.name.clone());
        match discover(&mut finder, pod, &resolution.interfaces) {
            Ok(found) => {
                let ifindex = found.ifindex;
                known.insert(key, found);
                Ok(ifindex)
            }
            Err(error) => match known.get(&key) {
                Some(prev) if ifdiscovery::ifindex_of(&prev.name) == Ok(prev.ifindex) => {
                    tracing::debug!("{error}; keeping {} (ifindex {})", prev.name, prev.ifindex);
                    Ok(prev.ifindex)
                }
                _ => {
                    known.remove(&key);
                    Err(error)
                }
            },
        }
    }))
}

/// Runs until `shutdown` completes. Never returns early on a bad file or a
/// failing interface: those are logged, counted and retried.
pub async fn run<D: DatapathOps>(
    opts: &Options,
    reconciler: &mut Reconciler<D>,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut config = Config::default();
    let mut ticker = tokio::time::interval(opts.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_problems: BTreeSet<String> = BTreeSet::new();
    let mut known = KnownInterfaces::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match config.reload_if_changed(opts) {
            Some(Ok(())) => tracing::info!(dir = %opts.dir.display(), "configuration loaded"),
            Some(Err(error)) => tracing::error!("{error}; the previous configuration stays in force"),
            None => {}
        }
        tick(&config, reconciler, metrics, &mut known, &mut last_problems);
    }
}

/// One reconcile and metrics publication; problems are logged when they change.
fn tick<D: DatapathOps>(
    config: &Config,
    reconciler: &mut Reconciler<D>,
    metrics: &Metrics,
    known: &mut KnownInterfaces,
    last: &mut BTreeSet<String>,
) {
    let Some((desired, discovery_errors)) = desired(config, known) else {
        // Nothing valid loaded yet: leave the datapath as it is, report not ready.
        metrics.update(|s| {
            s.reloads_ok = config.reloads_ok;
            s.reloads_failed = config.reloads_failed;
            s.config_valid = false;
            s.ready = false;
        });
        return;
    };
    let report = reconciler.apply(&desired);
    let problems: BTreeSet<String> = discovery_errors
        .iter()
        .map(ToString::to_string)
        .chain(report.refused.iter().map(ToString::to_string))
        .chain(report.failures.iter().map(|f| f.error.to_string()))
        .collect();
    for p in problems.difference(last) {
        tracing::warn!("{p}");
    }
    if !report.programmed.is_empty() && report.calls > 0 {
        tracing::info!(pods = ?report.programmed, "datapath programmed");
    }
    let counters = match reconciler.counters() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("{e}");
            BTreeMap::new()
        }
    };
    metrics.publish(Snapshot {
        counters,
        interfaces: reconciler.interfaces_by_session(),
        reloads_ok: config.reloads_ok,
        reloads_failed: config.reloads_failed,
        config_valid: config.last_error.is_none() && config.current.is_some(),
        apply_errors: u64::try_from(problems.len()).unwrap_or(u64::MAX),
        ready: true,
    });
    *last = problems;
}

/// For `--check`: load and resolve `dir` once, without touching the datapath.
pub fn check(dir: &Path, node_name: &str, limits: QuotaLimits) -> Result<Resolution, AgentError> {
    let loaded = load_dir(dir)?;
    resolve(&loaded, &AcceptedSet::new(), node_name, limits)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn no_desired_state_before_a_good_load_and_a_failed_reload_keeps_it() {
        let dir = std::env::temp_dir().join(format!("pmsa-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bad.yaml"),
            "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: f}\nspec: {inboundRules: 3}\n",
        )
        .unwrap();
        let opts = Options {
            dir: dir.clone(),
            node_name: "n".into(),
            poll_interval: Duration::from_secs(1),
            limits: QuotaLimits::default(),
        };
        let mut config = Config::default();
        let mut known = KnownInterfaces::new();
        assert!(desired(&config, &mut known).is_none(), "nothing loaded: the datapath must be left alone");
        let err = config.reload_if_changed(&opts).unwrap().unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("spec.inboundRules"), "{err}");
        assert!(desired(&config, &mut known).is_none(), "a failed first load must not produce an empty desired state");
        std::fs::write(
            dir.join("bad.yaml"),
            "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: f}\nspec: {}\n",
        )
        .unwrap();
        assert!(matches!(config.reload_if_changed(&opts), Some(Ok(()))));
        let (state, errors) = desired(&config, &mut known).unwrap();
        assert!(state.pods.is_empty() && errors.is_empty(), "a filter alone mirrors nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
