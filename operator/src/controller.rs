//! The operator's control loop: watches fill reflector stores; any change
//! wakes one planning pass over the whole cluster (debounced), which writes
//! only the difference. A pass never depends on what woke it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use podmirror_crds::api::{MirrorFilter, MirrorNodeState, MirrorSession, SessionPhase};
use podmirror_crds::model::quota::QuotaLimits;
use tokio::sync::{Notify, watch};

use crate::clock::{Clock, sleep_for};
use crate::index;
use crate::metrics::Metrics;
use crate::plan::cluster::{Cluster, TargetPolicy};
use crate::plan::{AcceptedSet, Plan, plan, recover};
use crate::sync::{Executor, Seen, Write, writes};

/// The watch caches of every kind the planner reads.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Store<MirrorSession>,
    pub filters: Store<MirrorFilter>,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub nodes: Store<Node>,
    pub node_states: Store<MirrorNodeState>,
}

/// Starts one reflector per kind; returns the stores and the merged stream
/// of "something changed" ticks to drive.
pub fn watch_all(client: &Client) -> (Stores, BoxStream<'static, ()>) {
    /// `trim` drops what nothing reads before the store keeps it (`crate::trim`).
    fn reflect<K>(api: Api<K>, trim: fn(&mut K)) -> (Store<K>, BoxStream<'static, ()>)
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let (reader, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(trim)
            .reflect(writer)
            .touched_objects()
            .map(|r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "watch error (retrying with backoff)");
                }
            })
            .boxed();
        (reader, stream)
    }
    let (sessions, a) = reflect(Api::<MirrorSession>::all(client.clone()), crate::trim::managed_fields);
    let (filters, b) = reflect(Api::<MirrorFilter>::all(client.clone()), crate::trim::managed_fields);
    let (pods, c) = reflect(Api::<Pod>::all(client.clone()), crate::trim::pod);
    let (services, d) = reflect(Api::<Service>::all(client.clone()), crate::trim::managed_fields);
    let (slices, e) = reflect(Api::<EndpointSlice>::all(client.clone()), crate::trim::managed_fields);
    let (nodes, f) = reflect(Api::<Node>::all(client.clone()), crate::trim::node);
    let (node_states, g) = reflect(Api::<MirrorNodeState>::all(client.clone()), crate::trim::managed_fields);
    let merged = futures::stream::select_all([a, b, c, d, e, f, g]).boxed();
    (Stores { sessions, filters, pods, services, slices, nodes, node_states }, merged)
}

impl Stores {
    pub async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.sessions.wait_until_ready().await?;
        self.filters.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.node_states.wait_until_ready().await
    }

    /// The planner's picture, read from the caches. Objects that cannot be
    /// read are skipped and counted (`missing_field`).
    pub fn cluster(&self, metrics: &Metrics) -> Cluster {
        let (sessions, filters, pods) = (self.sessions.state(), self.filters.state(), self.pods.state());
        let (services, slices, nodes) = (self.services.state(), self.slices.state(), self.nodes.state());
        let objects = index::Objects {
            sessions: &sessions,
            filters: &filters,
            pods: &pods,
            services: &services,
            slices: &slices,
            nodes: &nodes,
        };
        let (cluster, errors) = index::cluster(&objects);
        for e in errors {
            tracing::debug!(error = %e, "skipping object");
            metrics.error(e.metric_reason());
        }
        cluster
    }
}

/// Operator settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: QuotaLimits,
    /// Quiet time after a change before a pass starts (batches bursts).
    pub debounce: Duration,
    /// A pass runs at least this often even without changes.
    pub resync: Duration,
    /// Where `ip` targets may point (`--allowed-target-cidrs`).
    pub target_policy: TargetPolicy,
    /// "Now" for schedules; the system clock outside tests.
    pub clock: Arc<dyn Clock>,
}

/// Runs passes while `leader` says so. Returns only on a fatal error.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    mut leader: watch::Receiver<bool>,
    instance: Option<String>,
) -> anyhow::Result<()> {
    let (stores, changes) = watch_all(&client);
    let wake = notify_on(changes);
    stores.wait_ready().await?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!("watch caches synced");

    let executor = Executor::new(client, instance);
    let mut accepted: Option<AcceptedSet> = None;
    loop {
        if !*leader.borrow() {
            metrics.leader.set(0);
            accepted = None;
            leader.changed().await?;
            continue;
        }
        metrics.leader.set(1);
        let retry = pass(&stores, &settings, &metrics, &executor, &mut accepted).await;
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(settings.debounce).await,
            _ = tokio::time::sleep(retry) => {}
            _ = leader.changed() => {}
        }
    }
}

/// A `Notify` woken by every tick of `changes`, drained by its own task.
fn notify_on(mut changes: BoxStream<'static, ()>) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    tokio::spawn(async move {
        while changes.next().await.is_some() {
            waker.notify_one();
        }
    });
    wake
}

/// One planning pass: plans from the caches, writes the difference, and
/// returns how long to wait for the next pass if nothing wakes it. `accepted`
/// is the set to plan from, replaced by this pass's (or None after a failure).
async fn pass(
    stores: &Stores,
    settings: &Settings,
    metrics: &Metrics,
    executor: &Executor,
    accepted: &mut Option<AcceptedSet>,
) -> Duration {
    let started = Instant::now();
    let (cluster, p) = plan_pass(stores, settings, metrics, accepted.take());
    let sessions = stores.sessions.state();
    let filters = stores.filters.state();
    let node_states = stores.node_states.state();
    let node_objects = stores.nodes.state();
    let seen = Seen {
        sessions: sessions.iter().map(AsRef::as_ref).collect(),
        filters: filters.iter().map(AsRef::as_ref).collect(),
        node_states: node_states.iter().map(AsRef::as_ref).collect(),
        nodes: node_objects.iter().filter_map(|n| n.metadata.name.as_deref()).collect(),
    };
    let todo = writes(&p, &seen, &Time(cluster.now));
    let failed = execute_all(executor, &todo, metrics).await;
    // After a failed pass, what the nodes hold is whatever got written:
    // the next pass recovers the accepted set from the node states.
    metrics.set_counts(&phase_counts(&sessions, &todo), &p.refusals);
    *accepted = if failed { None } else { Some(p.accepted) };
    metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    tracing::info!(
        sessions = cluster.sessions.len(),
        writes = todo.len(),
        failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pass done"
    );

    // Awake at the next schedule boundary: nothing else changes then.
    let resync = sleep_for(p.next_wakeup, settings.clock.now(), settings.resync);
    if failed { Duration::from_secs(2).min(resync) } else { resync }
}

/// The cluster as the caches show it now, and its plan from `accepted`.
fn plan_pass(
    stores: &Stores,
    settings: &Settings,
    metrics: &Metrics,
    accepted: Option<AcceptedSet>,
) -> (Cluster, Plan) {
    let mut cluster = stores.cluster(metrics);
    cluster.now = settings.clock.now();
    cluster.target_policy = settings.target_policy.clone();
    // The accepted set survives restarts and failovers in the node states.
    let previous = match accepted {
        Some(a) => a,
        None => {
            let states = stores.node_states.state();
            recover(&cluster, states.iter().map(|s| &s.spec))
        }
    };
    let p = plan(&cluster, previous, &settings.limits);
    (cluster, p)
}

/// Sessions by phase after this pass: the phase just written, else the one
/// the object shows. One lookup table, not a scan of `todo` per session (a
/// cold pass at 20,000 sessions has ~40,000 writes).
pub fn phase_counts(sessions: &[Arc<MirrorSession>], todo: &[Write]) -> BTreeMap<String, i64> {
    let written: HashMap<(&str, &str), SessionPhase> = todo
        .iter()
        .filter_map(|w| match w {
            Write::ApplySessionStatus { namespace, name, status } => {
                status.phase.map(|ph| ((namespace.as_str(), name.as_str()), ph))
            }
            _ => None,
        })
        .collect();
    let mut phases: BTreeMap<String, i64> = BTreeMap::new();
    for s in sessions {
        let key = (s.metadata.namespace.as_deref().unwrap_or_default(), s.metadata.name.as_deref().unwrap_or_default());
        let ph = written.get(&key).copied().or_else(|| s.status.as_ref().and_then(|st| st.phase));
        if let Some(ph) = ph {
            *phases.entry(format!("{ph:?}")).or_default() += 1;
        }
    }
    phases
}

/// Carries out `todo` in order; a failed write is logged and counted and the
/// others still run. After a failed node-state write only the finalizer
/// removals are skipped (finalizers being added still are written), so a
/// session is never released while a node may still mirror it. Returns
/// whether anything failed.
pub async fn execute_all(executor: &Executor, todo: &[Write], metrics: &Metrics) -> bool {
    let mut failed = false;
    let mut node_failed = false;
    for w in todo {
        let kind = match w {
            Write::SetFinalizers { finalizers, .. }
                if node_failed && !finalizers.contains(&crate::sync::FINALIZER.to_owned()) =>
            {
                continue;
            }
            Write::SetFinalizers { .. } => "finalizers",
            Write::ApplyNodeState { .. } => "node_state",
            Write::DeleteNodeState { .. } => "node_state_delete",
            Write::ApplySessionStatus { .. } => "session_status",
            Write::ApplyFilterStatus { .. } => "filter_status",
            Write::RemoveNodeEntries { .. } => "stale_node_entries",
            Write::Event { .. } => "event",
        };
        match executor.execute(w).await {
            Ok(()) => metrics.wrote(kind),
            Err(e) => {
                tracing::warn!(error = %e, "write failed");
                metrics.error(e.metric_reason());
                failed = true;
                node_failed |= matches!(w, Write::ApplyNodeState { .. } | Write::DeleteNodeState { .. });
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmirror_crds::api::{MirrorSessionStatus, SessionPhase};
    use podmirror_testkit::objects::{self, Meta};

    fn session(name: &str, phase: Option<SessionPhase>) -> Arc<MirrorSession> {
        let s = objects::session(name).namespace("team").filter("f").source_pod("p").target_ip("10.0.0.1");
        match phase {
            Some(phase) => s.status(MirrorSessionStatus { phase: Some(phase), ..Default::default() }).arc(),
            None => s.arc(),
        }
    }

    #[test]
    fn phases_count_what_was_just_written_over_what_the_object_shows() {
        let sessions = vec![
            session("a", Some(SessionPhase::Pending)),
            session("b", Some(SessionPhase::Active)),
            session("c", None),
        ];
        let todo = vec![Write::ApplySessionStatus {
            namespace: "team".into(),
            name: "a".into(),
            status: MirrorSessionStatus { phase: Some(SessionPhase::Active), ..Default::default() },
        }];
        let counts = phase_counts(&sessions, &todo);
        assert_eq!(counts, BTreeMap::from([("Active".to_owned(), 2)]));
    }
}
