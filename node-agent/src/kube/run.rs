//! The Kubernetes-mode loop: watch → desired state → core → status entries.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::kube::Client;
use ::kube::api::Api;
use ::kube::runtime::{WatchStreamExt, reflector, watcher};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podmirror_crds::api::{MirrorNodeState, MirrorNodeStateSpec, NodeMirrorStatus, NodePod};
use podmirror_crds::model::SessionKey;
use tokio::sync::Notify;

use super::reloads::Reloads;
use super::report;
use super::status::{Observed, due, entries, record_before, recorded_as_written};
use crate::core::{AgentError, DatapathOps, PodKey, Reconciler, desired_from_node_state};
use crate::datapath::AttachMode;
use crate::ifdiscovery;
use crate::metrics::{Metrics, Snapshot};

#[derive(Clone, Debug)]
pub struct Options {
    pub node_name: String,
    /// Counters are reported this often (`--status-interval`, default 30 s).
    pub status_interval: Duration,
    /// While some pod has no veth yet (or a datapath call failed), the node
    /// state is applied again this often.
    pub retry_interval: Duration,
    /// How new veths are attached (`--attach-mode`).
    pub attach_mode: AttachMode,
}

impl Options {
    pub fn new(node_name: impl Into<String>, status_interval: Duration) -> Self {
        Options {
            node_name: node_name.into(),
            status_interval,
            retry_interval: Duration::from_secs(2),
            attach_mode: AttachMode::Auto,
        }
    }
}

/// Finds a pod's host veth from its IPs, with the pass's `finder`.
fn discover(finder: &mut ifdiscovery::Finder, pod: &NodePod, seen: &mut Observed) -> Result<u32, AgentError> {
    let key = PodKey::new(pod.namespace.clone(), pod.name.clone());
    match finder.find(&key.to_string(), &pod.ips) {
        Ok(found) => {
            seen.interfaces.insert(key, found.name);
            Ok(found.ifindex)
        }
        Err(e) => {
            seen.pod_errors.insert(key, e.to_string());
            Err(e)
        }
    }
}

/// One reconcile of `spec`: the datapath brought to it, and what was seen.
pub fn reconcile_once<D: DatapathOps>(
    spec: &MirrorNodeStateSpec,
    reconciler: &mut Reconciler<D>,
    discover_fn: &mut dyn FnMut(&NodePod, &mut Observed) -> Result<u32, AgentError>,
) -> (Observed, usize) {
    let mut seen = Observed::default();
    let (desired, errors) = desired_from_node_state(spec, |pod| discover_fn(pod, &mut seen));
    let mut problems = 0;
    for e in errors {
        problems += 1;
        match &e {
            AgentError::SessionConfig { session, .. } => {
                seen.config_errors += 1;
                seen.session_errors.insert(session.clone(), e.to_string());
            }
            AgentError::Config { .. } => seen.config_errors += 1,
            AgentError::Discovery { .. } => {} // recorded by `discover`
            _ => tracing::warn!(error = %e, "node state"),
        }
    }
    let report = reconciler.apply(&desired);
    for e in &report.refused {
        problems += 1;
        seen.config_errors += 1;
        let pod = match e {
            AgentError::TooManySessions { pod, .. }
            | AgentError::PriorityClash { pod, .. }
            | AgentError::InterfaceClash { pod, .. } => Some(pod.clone()),
            _ => None,
        };
        if let Some(pod) = pod {
            seen.pod_errors.insert(pod, e.to_string());
        }
        if let AgentError::TooManyEndpoints { session, .. } = e {
            seen.session_errors.insert(session.clone(), e.to_string());
        }
    }
    let by_ifindex: BTreeMap<u32, PodKey> = desired.pods.iter().map(|p| (p.ifindex, p.pod.clone())).collect();
    for f in &report.failures {
        problems += 1;
        seen.config_errors += 1;
        if let Some(pod) = by_ifindex.get(&f.ifindex) {
            seen.pod_errors.insert(pod.clone(), f.error.to_string());
        }
    }
    seen.programmed = report.programmed.keys().cloned().collect();
    match reconciler.counters() {
        Ok(c) => seen.counters = c,
        Err(e) => tracing::warn!(error = %e, "reading counters"),
    }
    (seen, problems)
}

/// Brings the record of sessions holding our entry (`status.reportedSessions`)
/// to `wanted`; returns false when that write failed (it is retried on the
/// next round, and entries not yet recorded wait for it).
async fn update_record(
    client: &Client,
    node: &str,
    recorded: &mut BTreeSet<SessionKey>,
    wanted: BTreeSet<SessionKey>,
) -> bool {
    if wanted == *recorded {
        return true;
    }
    match report::record(client, node, &wanted).await {
        Ok(()) => {
            *recorded = wanted;
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "recording the sessions that hold this node's entry (retried next round)");
            false
        }
    }
}

type NodeStore = reflector::Store<MirrorNodeState>;

/// Starts watching this node's MirrorNodeState; the returned `Notify` fires
/// on every event so the loop reconciles at once.
fn start_watch(client: &Client, node: &str) -> (NodeStore, tokio::task::JoinHandle<()>, Arc<Notify>) {
    let api = Api::<MirrorNodeState>::all(client.clone());
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    let watch = watcher(api, config).default_backoff().reflect(writer).touched_objects().for_each(move |r| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "MirrorNodeState watch (retrying)");
        }
        notify.notify_one();
        std::future::ready(())
    });
    (store, tokio::spawn(watch), changed)
}

/// This node's MirrorNodeState, if the store holds it.
fn own_state(store: &NodeStore, node: &str) -> Option<Arc<MirrorNodeState>> {
    store.state().into_iter().find(|s| s.metadata.name.as_deref() == Some(node))
}

/// The spec to apply now; no object yet means nothing to mirror.
fn current_spec(store: &NodeStore, node: &str) -> MirrorNodeStateSpec {
    own_state(store, node)
        .map(|s| s.spec.clone())
        .unwrap_or_else(|| MirrorNodeStateSpec { node: node.to_string(), ..MirrorNodeStateSpec::default() })
}

/// Writes the `todo` status entries, recording the sessions that hold an
/// entry before and after; returns true when some write failed.
async fn write_status(
    client: &Client,
    node: &str,
    written: &mut BTreeMap<SessionKey, NodeMirrorStatus>,
    recorded: &mut BTreeSet<SessionKey>,
    todo: Vec<(SessionKey, Option<NodeMirrorStatus>)>,
) -> bool {
    let mut report_failed = false;
    let wanted = record_before(recorded, &todo);
    report_failed |= !update_record(client, node, recorded, wanted).await;
    for (key, entry) in todo {
        if entry.is_some() && !recorded.contains(&key) {
            continue; // never an entry that a restart could not find
        }
        match report::apply(client, node, &key, entry.as_ref()).await {
            Ok(()) => match entry {
                Some(e) => {
                    written.insert(key, e);
                }
                None => {
                    written.remove(&key);
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "status report (retried next round)");
                report_failed = true;
            }
        }
    }
    report_failed |= !update_record(client, node, recorded, written.keys().cloned().collect()).await;
    report_failed
}

/// Runs until `shutdown` completes. Errors of one pod, one session or one
/// status write are logged and retried; they never stop the loop.
pub async fn run<D: DatapathOps>(
    client: Client,
    opts: &Options,
    reconciler: &mut Reconciler<D>,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let node = opts.node_name.clone();
    let (store, watch, changed) = start_watch(&client, &node);
    tokio::pin!(shutdown);

    if tokio::select! { r = store.wait_until_ready() => r.is_err(), _ = &mut shutdown => true } {
        watch.abort();
        return;
    }
    // What an earlier agent of this node recorded as holding an entry.
    let previous: Vec<String> = own_state(&store, &node)
        .and_then(|s| s.status.as_ref().and_then(|st| st.reported_sessions.clone()))
        .unwrap_or_default();
    let mut written: BTreeMap<SessionKey, NodeMirrorStatus> = recorded_as_written(&node, &previous);
    let mut recorded: BTreeSet<SessionKey> = written.keys().cloned().collect();
    let mut last_counters = Instant::now();
    let mut reloads = Reloads::default();
    loop {
        let spec = current_spec(&store, &node);
        let mut finder = ifdiscovery::Finder::new();
        let mut discover_in_pass = |pod: &NodePod, seen: &mut Observed| discover(&mut finder, pod, seen);
        let (seen, problems) = reconcile_once(&spec, reconciler, &mut discover_in_pass);
        reloads.applied(&spec, seen.config_errors);

        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let current = entries(&node, &spec, &seen, &now);
        let counters_due = last_counters.elapsed() >= opts.status_interval;
        if counters_due {
            last_counters = Instant::now();
        }
        let todo = due(&written, &current, counters_due);
        let report_failed = write_status(&client, &node, &mut written, &mut recorded, todo).await;
        metrics.publish(Snapshot {
            counters: seen.counters.clone(),
            interfaces: reconciler.interfaces_by_session(),
            reloads_ok: reloads.ok,
            reloads_failed: reloads.failed,
            config_valid: seen.session_errors.is_empty(),
            apply_errors: problems as u64,
            ready: true,
        });

        let wait = if problems > 0 || report_failed { opts.retry_interval } else { opts.status_interval };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => break,
        }
    }
    watch.abort();
    tracing::info!(node = %node, "Kubernetes mode stopped; the datapath stays as programmed");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use podmirror_crds::api::NodeSession;
    use podmirror_testkit::fixtures::node_session;

    use super::*;
    use crate::core::fake::FakeDatapath;

    fn spec(pods: &[&str]) -> MirrorNodeStateSpec {
        MirrorNodeStateSpec {
            node: "node-a".into(),
            sessions: vec![NodeSession { uid: "u".into(), packet_length: Some(96), ..node_session("team", "s") }],
            pods: pods
                .iter()
                .enumerate()
                .map(|(i, p)| NodePod {
                    namespace: "team".into(),
                    name: (*p).into(),
                    uid: format!("u{i}"),
                    ips: vec![format!("10.0.0.{}", i + 1)],
                    sessions: vec!["team/s".into()],
                })
                .collect(),
        }
    }

    #[test]
    fn a_late_veth_is_picked_up_and_a_gone_pod_is_detached() {
        let mut r = Reconciler::new(FakeDatapath::default());
        // "b" has no veth yet.
        let mut veths: BTreeMap<String, u32> = [("a".to_owned(), 11)].into();
        let discover = |veths: &BTreeMap<String, u32>| {
            let veths = veths.clone();
            move |pod: &NodePod, seen: &mut Observed| {
                let key = PodKey::new(pod.namespace.clone(), pod.name.clone());
                match veths.get(&pod.name) {
                    Some(i) => {
                        seen.interfaces.insert(key, format!("veth-{}", pod.name));
                        Ok(*i)
                    }
                    None => {
                        let e = AgentError::Discovery { pod: key.to_string(), message: "no veth yet".into() };
                        seen.pod_errors.insert(key, e.to_string());
                        Err(e)
                    }
                }
            }
        };
        let (seen, problems) = reconcile_once(&spec(&["a", "b"]), &mut r, &mut discover(&veths));
        assert_eq!(problems, 1);
        assert!(seen.programmed.contains(&PodKey::new("team", "a")));
        assert!(seen.pod_errors[&PodKey::new("team", "b")].contains("no veth yet"));
        assert_eq!(r.ops().attached, [11].into());

        veths.insert("b".into(), 12);
        let (seen, problems) = reconcile_once(&spec(&["a", "b"]), &mut r, &mut discover(&veths));
        assert_eq!(problems, 0);
        assert_eq!(seen.programmed.len(), 2);
        assert_eq!(r.ops().attached, [11, 12].into());
        let e = super::entries("node-a", &spec(&["a", "b"]), &seen, &Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            e[&SessionKey::new("team", "s")].programmed_interfaces,
            Some(vec!["veth-a".to_owned(), "veth-b".to_owned()])
        );

        // "a" goes away: the operator drops it from the node state.
        let (_, problems) = reconcile_once(&spec(&["b"]), &mut r, &mut discover(&veths));
        assert_eq!(problems, 0);
        assert_eq!(r.ops().attached, [12].into());
    }

    #[test]
    fn a_session_that_does_not_compile_is_named_on_its_entry() {
        let mut r = Reconciler::new(FakeDatapath::default());
        let mut bad = spec(&["a"]);
        bad.sessions[0].vni = 1 << 24;
        let mut discover = |_: &NodePod, _: &mut Observed| Ok(11);
        let (seen, problems) = reconcile_once(&bad, &mut r, &mut discover);
        assert!(problems >= 1);
        let why = &seen.session_errors[&SessionKey::new("team", "s")];
        assert!(why.contains("sessions[team/s].vni"), "{why}");
        assert!(r.ops().attached.is_empty());
    }

    /// The loop's reload count: one per desired state, `error` when a
    /// session of it does not compile, never per iteration (retries, counter
    /// reports); a pod waiting for its veth is not a configuration error.
    #[test]
    fn reloads_count_desired_states_and_their_errors_not_iterations() {
        let mut r = Reconciler::new(FakeDatapath::default());
        let mut reloads = super::Reloads::default();
        let mut bad = spec(&["a"]);
        bad.sessions[0].vni = 1 << 24;
        let mut only_a = |pod: &NodePod, _: &mut Observed| match pod.name.as_str() {
            "a" => Ok(11),
            _ => Err(AgentError::Discovery { pod: pod.name.clone(), message: "no veth yet".into() }),
        };
        for _ in 0..3 {
            let (seen, _) = reconcile_once(&bad, &mut r, &mut only_a);
            reloads.applied(&bad, seen.config_errors);
        }
        assert_eq!((reloads.ok, reloads.failed), (0, 1));
        for _ in 0..3 {
            let (seen, problems) = reconcile_once(&spec(&["a", "b"]), &mut r, &mut only_a);
            assert_eq!((problems, seen.config_errors), (1, 0), "b waits for its veth");
            reloads.applied(&spec(&["a", "b"]), seen.config_errors);
        }
        assert_eq!((reloads.ok, reloads.failed), (1, 1));
    }
}
