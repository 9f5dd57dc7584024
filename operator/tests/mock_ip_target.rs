//! Tenant safety of `ip` targets through the whole operator path against a
//! mock API server: Kubernetes objects (a pod and a Service of another
//! namespace, with and without `podmirror.io/allow-mirror-from`) are read by
//! `index`, planned, and the session status, node states and Events are
//! written. A refused target is never sent to a node.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod recorder;

use std::sync::Arc;

use http::{Request, Response};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use podmirror_crds::api::{MirrorFilter, MirrorSession};
use podmirror_crds::model::quota::QuotaLimits;
use podmirror_operator::controller::execute_all;
use podmirror_operator::index::{self, Objects};
use podmirror_operator::metrics::Metrics;
use podmirror_operator::plan::cluster::TargetPolicy;
use podmirror_operator::plan::{AcceptedSet, plan};
use podmirror_operator::sync::{Executor, Seen, writes};
use podmirror_testkit::objects::{self, Meta, accept};
use recorder::{Log, answer, condition, events, status_write};
use serde_json::Value;

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).unwrap()
}

fn session(target_ip: &str) -> MirrorSession {
    objects::session("s")
        .namespace("team")
        .uid("uid-s")
        .generation(1)
        .resource_version("20")
        .created("2026-01-01T00:00:00Z")
        .finalizer("podmirror.io/cleanup")
        .vni(7)
        .filter("f")
        .source_pod("web")
        .target_ip(target_ip)
        .build()
}

fn filter() -> MirrorFilter {
    let f = objects::filter("f").namespace("team").uid("uid-f").generation(1).resource_version("10");
    f.finalizer("podmirror.io/cleanup").inbound(accept(1)).build()
}

fn pod(ns: &str, name: &str, ip: &str, consent: Option<&str>) -> Arc<Pod> {
    let p = objects::pod(name).namespace(ns).uid(&format!("uid-{name}")).node("node-a").running(ip);
    match consent {
        Some(c) => p.annotation("podmirror.io/allow-mirror-from", c).arc(),
        None => p.arc(),
    }
}

fn service(consent: Option<&str>) -> Arc<Service> {
    let annotations =
        consent.map(|c| format!(", annotations: {{podmirror.io/allow-mirror-from: \"{c}\"}}")).unwrap_or_default();
    Arc::new(yaml(&format!(
        "metadata: {{name: collector, namespace: obs{annotations}}}\nspec: {{clusterIP: 10.96.0.40, clusterIPs: [10.96.0.40]}}"
    )))
}

/// One pass; the requests it sent.
async fn pass(
    session: MirrorSession,
    pods: &[Arc<Pod>],
    services: &[Arc<Service>],
    policy: &str,
) -> Vec<(String, String, Value)> {
    let filter = filter();
    let sessions = [Arc::new(session.clone())];
    let filters = [Arc::new(filter.clone())];
    let nodes = [objects::node("node-a")];
    let objects = Objects { sessions: &sessions, filters: &filters, pods, services, slices: &[], nodes: &nodes };
    let (mut cluster, errors) = index::cluster(&objects);
    assert!(errors.is_empty(), "{errors:?}");
    cluster.now = "2026-01-02T00:00:00Z".parse().unwrap();
    cluster.target_policy = TargetPolicy::parse(policy).unwrap();
    let p = plan(&cluster, AcceptedSet::new(), &QuotaLimits::default());
    let seen = Seen { sessions: vec![&session], filters: vec![&filter], node_states: vec![], nodes: ["node-a"].into() };
    let todo = writes(&p, &seen, &Time(cluster.now));
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let executor = Executor::new(kube::Client::new(svc, "default"), Some("op-0".into()));
    let log: Log = Arc::default();
    let replies = (serde_json::to_value(&session).unwrap(), serde_json::to_value(&filter).unwrap());
    let server = tokio::spawn(answer(handle, log.clone(), replies.0, replies.1));
    assert!(!execute_all(&executor, &todo, &Metrics::default()).await, "a write failed");
    drop(executor);
    server.await.unwrap();
    std::mem::take(&mut *log.lock().unwrap())
}

/// The sessions of node-a's state as written.
fn node_a_sessions(requests: &[(String, String, Value)]) -> usize {
    let (_, _, body) =
        requests.iter().find(|(_, p, _)| p.ends_with("/mirrornodestates/node-a")).expect("node-a written");
    body["spec"]["sessions"].as_array().map_or(0, Vec::len)
}

fn target(requests: &[(String, String, Value)]) -> (String, String, String) {
    let c = condition(status_write(requests, "/mirrorsessions/s/status"), "TargetResolved");
    let text = |k: &str| c[k].as_str().unwrap().to_owned();
    (text("status"), text("reason"), text("message"))
}

#[tokio::test]
async fn another_namespaces_pod_ip_is_refused_without_the_pods_consent_and_taken_with_it() {
    let web = pod("team", "web", "10.1.0.5", None);
    let requests = pass(session("10.8.0.9"), &[web.clone(), pod("obs", "sink-0", "10.8.0.9", None)], &[], "").await;
    let (status, reason, message) = target(&requests);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "TargetNotConsented"));
    assert!(
        message.contains("10.8.0.9") && message.contains("pod obs/sink-0") && message.contains("namespace team"),
        "{message}"
    );
    assert_eq!(node_a_sessions(&requests), 0, "nothing goes to the node");
    assert_eq!(events(&requests), [("Degraded".to_owned(), "Warning".to_owned())]);

    // The annotation on the pod (as the collector's pod template would carry it).
    let requests = pass(session("10.8.0.9"), &[web, pod("obs", "sink-0", "10.8.0.9", Some("team"))], &[], "").await;
    assert_eq!(target(&requests).0, "True");
    assert_eq!(node_a_sessions(&requests), 1);
}

#[tokio::test]
async fn another_namespaces_cluster_ip_needs_the_services_consent() {
    let web = pod("team", "web", "10.1.0.5", None);
    let requests = pass(session("10.96.0.40"), std::slice::from_ref(&web), &[service(None)], "").await;
    let (status, reason, message) = target(&requests);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "TargetNotConsented"));
    assert!(message.contains("ClusterIP of service obs/collector"), "{message}");
    assert_eq!(node_a_sessions(&requests), 0);
    let requests = pass(session("10.96.0.40"), &[web], &[service(Some("*"))], "").await;
    assert_eq!(target(&requests).0, "True");
}

#[tokio::test]
async fn an_address_outside_the_admins_cidrs_is_refused_naming_the_rule() {
    let web = pod("team", "web", "10.1.0.5", None);
    let requests = pass(session("203.0.113.7"), std::slice::from_ref(&web), &[], "10.0.0.0/8").await;
    let (status, reason, message) = target(&requests);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "TargetIPNotAllowed"));
    for part in ["203.0.113.7", "session namespace team", "10.0.0.0/8", "--allowed-target-cidrs"] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    assert_eq!(node_a_sessions(&requests), 0);
    let requests = pass(session("10.200.0.7"), &[web], &[], "10.0.0.0/8").await;
    assert_eq!(target(&requests).0, "True");
    assert_eq!(node_a_sessions(&requests), 1);
}
