//! Scale benchmark of the operator's pure reconcile path (not a test):
//! 20,000 sessions over 10,000 source pods on 100 nodes, through
//! object conversion (`index::cluster`), the planner (`plan`), and the write
//! computation (`sync::writes`), twice: a cold pass (nothing written yet) and
//! a steady pass (everything as written). Reports time and peak RSS.
//!
//! Run: `cargo run --release -p podmirror-operator --example scale`
//! (`SCALE_NAMESPACES=10` for a smaller run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podmirror_crds::api::{MirrorFilter, MirrorNodeState, MirrorSession, MirrorSessionStatus};
use podmirror_crds::model::quota::QuotaLimits;
use podmirror_operator::index::{self, Objects};
use podmirror_operator::plan::{AcceptedSet, Plan, plan};
use podmirror_operator::sync::{Seen, Write, writes};
use serde_json::json;

const NODES: usize = 100;
const PODS_PER_NS: usize = 100;
const SESSIONS_PER_NS: usize = 200;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    match serde_json::from_value(v) {
        Ok(o) => Arc::new(o),
        Err(e) => panic!("benchmark fixture does not deserialize: {e}"),
    }
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn rss_mib() -> u64 {
    status_kib("VmRSS:") / 1024
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Ends a plan's life but for the accepted set it hands to the next pass.
fn into_accepted(p: Plan) -> AcceptedSet {
    p.accepted
}

struct World {
    sessions: Vec<Arc<MirrorSession>>,
    filters: Vec<Arc<MirrorFilter>>,
    pods: Vec<Arc<Pod>>,
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    nodes: Vec<Arc<Node>>,
}

/// Per namespace: 100 source pods spread over the nodes; sessions 0..100 take
/// one pod by name (priority 1), 100..150 and 150..200 take two pods each by
/// selector (priorities 2 and 3): every pod is in exactly 3 sessions, the
/// per-pod maximum. All 200 go to the namespace's collector Service (the
/// per-Service maximum), VNI = index (unique per target).
fn world(namespaces: usize) -> World {
    let mut w =
        World { sessions: vec![], filters: vec![], pods: vec![], services: vec![], slices: vec![], nodes: vec![] };
    for n in 0..NODES {
        w.nodes.push(obj(json!({"metadata": {"name": format!("node-{n:03}")}})));
    }
    let mut ip = 0u32;
    let mut next_ip = || {
        ip += 1;
        format!("10.{}.{}.{}", (ip >> 16) & 255, (ip >> 8) & 255, ip & 255)
    };
    for ns_i in 0..namespaces {
        let ns = format!("tenant-{ns_i:03}");
        for p in 0..PODS_PER_NS {
            w.pods.push(obj(json!({
                "metadata": {"name": format!("web-{p:03}"), "namespace": ns, "uid": format!("{ns}-web-{p}"),
                    "labels": {"pair": format!("{}", p / 2), "pair2": format!("{}", ((p + 99) % 100) / 2)}},
                "spec": {"nodeName": format!("node-{:03}", (ns_i + p) % NODES), "containers": []},
                "status": {"phase": "Running", "podIP": next_ip()}
            })));
        }
        let mut endpoints = vec![];
        for c in 0..2 {
            let addr = next_ip();
            let name = format!("collector-{c}");
            w.pods.push(obj(json!({
                "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "labels": {"app": "collector"}},
                "spec": {"nodeName": format!("node-{:03}", (ns_i + c) % NODES), "containers": []},
                "status": {"phase": "Running", "podIP": addr}
            })));
            endpoints.push(json!({"addresses": [addr], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": name, "namespace": ns, "uid": format!("{ns}-{name}")}}));
        }
        w.services.push(obj(json!({"metadata": {"name": "collector", "namespace": ns}})));
        w.slices.push(obj(json!({"metadata": {"name": "collector-x", "namespace": ns,
            "labels": {"kubernetes.io/service-name": "collector"}}, "addressType": "IPv4", "endpoints": endpoints})));
        w.filters.push(obj(
            json!({"metadata": {"name": "f", "namespace": ns, "uid": format!("{ns}-f"), "generation": 1,
                "finalizers": ["podmirror.io/cleanup"]},
            "spec": {"inboundRules": [{"priority": 1, "action": "Accept", "protocol": "TCP", "ipFamily": "IPv4",
                "destinationPorts": {"from": 80, "to": 80}}],
                "outboundRules": [{"priority": 1, "action": "Reject", "protocol": "All", "ipFamily": "IPv4"}]}}),
        ));
        for j in 0..SESSIONS_PER_NS {
            let (priority, source) = match j {
                0..100 => (1, json!({"podName": format!("web-{j:03}")})),
                100..150 => (2, json!({"podSelector": {"matchLabels": {"pair": format!("{}", j - 100)}}})),
                _ => (3, json!({"podSelector": {"matchLabels": {"pair2": format!("{}", j - 150)}}})),
            };
            w.sessions.push(obj(json!({
                "metadata": {"name": format!("s-{j:03}"), "namespace": ns, "uid": format!("{ns}-s-{j}"), "generation": 1,
                    "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", j / 60, j % 60),
                    "finalizers": ["podmirror.io/cleanup"]},
                "spec": {"priority": priority, "vni": j + 1, "filterRef": {"name": "f"}, "sources": [source],
                    "target": {"service": {"name": "collector"}}}
            })));
        }
    }
    w
}

fn main() {
    let namespaces: usize = std::env::var("SCALE_NAMESPACES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let t0 = Instant::now();
    let mut w = world(namespaces);
    let built = t0.elapsed();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    println!(
        "fixture: {} sessions, {} pods, {} nodes, {} namespaces (built in {:.2?})",
        w.sessions.len(),
        w.pods.len(),
        w.nodes.len(),
        namespaces,
        built
    );

    let mut node_states: Vec<Arc<MirrorNodeState>> = Vec::new();
    let mut accepted = AcceptedSet::new();
    for pass in ["cold", "steady"] {
        accepted = run_pass(pass, &mut w, &mut node_states, accepted, &now);
    }
    println!("peak RSS of the process (VmHWM): {} MiB", peak_rss_kib() / 1024);
}

/// One reconcile pass over `w` (index, plan, writes), reported, then its
/// writes fed back into `w` and `node_states`. Returns the accepted set
/// the next pass starts from.
fn run_pass(
    pass: &str,
    w: &mut World,
    node_states: &mut Vec<Arc<MirrorNodeState>>,
    accepted: AcceptedSet,
    now: &Time,
) -> AcceptedSet {
    let t = Instant::now();
    let objects = Objects {
        sessions: &w.sessions,
        filters: &w.filters,
        pods: &w.pods,
        services: &w.services,
        slices: &w.slices,
        nodes: &w.nodes,
    };
    let rss0 = rss_mib();
    let (cluster, errors) = index::cluster(&objects);
    let t_index = t.elapsed();
    let rss1 = rss_mib();
    let p = plan(&cluster, accepted, &QuotaLimits::default());
    let t_plan = t.elapsed() - t_index;
    let rss2 = rss_mib();
    let seen = Seen {
        sessions: w.sessions.iter().map(AsRef::as_ref).collect(),
        filters: w.filters.iter().map(AsRef::as_ref).collect(),
        node_states: node_states.iter().map(AsRef::as_ref).collect(),
        nodes: w.nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect(),
    };
    let todo = writes(&p, &seen, now);
    let total = t.elapsed();
    println!("{pass:>6} RSS MiB: before {rss0}, after index {rss1}, after plan {rss2}, after writes {}", rss_mib());
    report_pass(pass, &p, errors.len(), todo.len(), [total, t_index, t_plan]);
    // The pass is over: a real operator drops its picture and its plan
    // (keeping only the accepted set) before the watches deliver what it
    // wrote, so the caches never grow while a plan is still held.
    let accepted = into_accepted(p);
    drop(seen);
    drop(cluster);
    let pass_peak = peak_rss_kib() / 1024;
    feed_back(w, node_states, todo);
    println!(
        "{pass:>6} caches updated: RSS {} MiB, peak RSS {} MiB (through the pass: {pass_peak} MiB)",
        rss_mib(),
        peak_rss_kib() / 1024
    );
    accepted
}

/// The pass's line of times and counts; `times` is total, index, plan.
fn report_pass(pass: &str, p: &Plan, errors: usize, writes: usize, times: [Duration; 3]) {
    let [total, t_index, t_plan] = times;
    let accepted_n =
        p.sessions.values().filter(|s| matches!(s.admission, podmirror_operator::plan::Admission::Accepted)).count();
    let node_sessions: usize = p.nodes.values().map(|n| n.sessions.len()).sum();
    println!(
        "{pass:>6} pass: {:.2?} total (index {:.2?}, plan {:.2?}, writes {:.2?}); {} accepted, {} refused, \
         {} object errors, {} node states with {} session entries, {} writes; peak RSS {} MiB",
        total,
        t_index,
        t_plan,
        total - t_index - t_plan,
        accepted_n,
        p.sessions.len() - accepted_n,
        errors,
        p.nodes.len(),
        node_sessions,
        writes,
        peak_rss_kib() / 1024
    );
}

/// Feed what a pass wrote back in, as the watches would: each written
/// object becomes an independent cache entry (a clone when the data is
/// still shared, as the API server's copy would be).
fn feed_back(w: &mut World, node_states: &mut Vec<Arc<MirrorNodeState>>, todo: Vec<Write>) {
    let mut statuses: std::collections::HashMap<(String, String), MirrorSessionStatus> = Default::default();
    let mut filter_statuses: std::collections::HashMap<String, podmirror_crds::api::MirrorFilterStatus> =
        Default::default();
    for wr in todo {
        match wr {
            Write::ApplyNodeState { name, spec } => {
                node_states.push(Arc::new(MirrorNodeState::new(&name, Arc::unwrap_or_clone(spec))))
            }
            Write::ApplySessionStatus { namespace, name, status } => {
                statuses.insert((namespace, name), status);
            }
            Write::ApplyFilterStatus { namespace, status, .. } => {
                filter_statuses.insert(namespace, status);
            }
            _ => {}
        }
    }
    for s in &mut w.sessions {
        let key = (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default());
        if let Some(st) = statuses.remove(&key) {
            let mut o = (**s).clone();
            o.status = Some(st);
            *s = Arc::new(o);
        }
    }
    for f in &mut w.filters {
        if let Some(st) = filter_statuses.remove(&f.metadata.namespace.clone().unwrap_or_default()) {
            let mut o = (**f).clone();
            o.status = Some(st);
            *f = Arc::new(o);
        }
    }
}
