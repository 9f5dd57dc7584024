//! The reads of `explain` and `status` against a mock API server, and the
//! errors a person can act on (no CRDs, 403, no pod); and a Ctrl-C during a
//! capture's first reads, which must create nothing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kubectl_podmirror::capture::objects::{CaptureFilter, Pods};
use kubectl_podmirror::capture::run::{CaptureRequest, capture};
use kubectl_podmirror::error::PluginError;
use kubectl_podmirror::explain::{Decision, explain};
use kubectl_podmirror::live::{snapshot, status_rows};
use kubectl_podmirror::packet::packet;
use podmirror_crds::model::Direction::Inbound;
use serde_json::{Value, json};
use support::mock::*;

const SESSIONS: &str = "/apis/podmirror.io/v1alpha1/namespaces/default/mirrorsessions";
const FILTERS: &str = "/apis/podmirror.io/v1alpha1/namespaces/default/mirrorfilters";

fn mock(script: Vec<Expect>) -> (kube::Client, tokio::task::JoinHandle<()>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), tokio::spawn(serve(handle, script)))
}

fn list(kind: &str, items: Value) -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": kind, "metadata": {}, "items": items})
}

fn seed_session() -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession",
        "metadata": {"name": "mirror-session-a", "namespace": "default"},
        "spec": {"priority": 1, "vni": 1, "packetLength": 96, "filterRef": {"name": "mirror-filter-a"},
                 "sources": [{"podName": "ecs-source"}], "target": {"pod": {"name": "ecs-target"}}},
        "status": {"phase": "Active",
                   "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "target": {"kind": "Pod", "name": "ecs-target", "addresses": ["10.244.1.7"]},
                   "nodes": [{"node": "node-a", "mirroredPackets": 9, "skipped": 4}]}})
}

fn seed_filter() -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorFilter",
        "metadata": {"name": "mirror-filter-a", "namespace": "default"},
        "spec": {"inboundRules": [{"priority": 1, "action": "Accept", "protocol": "TCP", "ipFamily": "IPv4",
            "sourceCIDR": "192.168.0.161/32", "destinationCIDR": "192.168.0.230/32",
            "destinationPorts": {"from": 1234, "to": 1234}}]}})
}

fn not_found(message: &str, details: Option<Value>) -> Value {
    let mut status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": message, "reason": "NotFound", "code": 404});
    if let Some(d) = details {
        status["details"] = d;
    }
    status
}

#[tokio::test]
async fn live_explain_reads_the_pod_and_its_namespace_and_decides_like_the_files() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ecs-source", "namespace": "default"},
                     "status": {"podIPs": [{"ip": "192.168.0.230"}]}});
    let (client, api) = mock(vec![
        expect(Method::GET, "/api/v1/namespaces/default/pods/ecs-source", "", pod),
        expect(Method::GET, SESSIONS, "", list("MirrorSessionList", json!([seed_session()]))),
        expect(Method::GET, FILTERS, "", list("MirrorFilterList", json!([seed_filter()]))),
    ]);
    let snap = snapshot(&client, "default", "ecs-source").await.unwrap();
    drop(client);
    api.await.unwrap();
    let p = packet("tcp", "192.168.0.161:40000", "192.168.0.230:1234").unwrap();
    let e = explain(&snap, "default", "ecs-source", Inbound, p).unwrap();
    match e.decision {
        Decision::Copied { session, rule, targets, .. } => {
            assert_eq!((session.name.as_str(), rule), ("mirror-session-a", 1));
            assert_eq!(targets, ["10.244.1.7".parse::<std::net::IpAddr>().unwrap()], "from status.target");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn live_explain_says_podmirror_is_missing_or_rights_are() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}});
    let (client, api) = mock(vec![
        expect(Method::GET, "/api/v1/namespaces/default/pods/p", "", pod.clone()),
        failing(Method::GET, SESSIONS, 404, not_found("the server could not find the requested resource", None)),
    ]);
    let err = snapshot(&client, "default", "p").await.unwrap_err();
    drop(client);
    api.await.unwrap();
    assert!(matches!(&err, PluginError::NotInstalled { resource } if resource == "mirrorsessions"), "{err}");

    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                           "message": "mirrorfilters.podmirror.io is forbidden: User \"dev\" cannot list resource"});
    let (client, api) = mock(vec![
        expect(Method::GET, "/api/v1/namespaces/default/pods/p", "", pod),
        expect(Method::GET, SESSIONS, "", list("MirrorSessionList", json!([]))),
        failing(Method::GET, FILTERS, 403, forbidden),
    ]);
    let err = snapshot(&client, "default", "p").await.unwrap_err().to_string();
    drop(client);
    api.await.unwrap();
    assert!(err.starts_with("you may not list mirrorfilters.podmirror.io in namespace default: "), "{err}");
}

#[tokio::test]
async fn status_lists_one_namespace_all_namespaces_or_gets_one_session() {
    let (client, api) = mock(vec![
        expect(Method::GET, SESSIONS, "", list("MirrorSessionList", json!([seed_session()]))),
        expect(Method::GET, "/apis/podmirror.io/v1alpha1/mirrorsessions", "", list("MirrorSessionList", json!([]))),
        expect(Method::GET, &format!("{SESSIONS}/mirror-session-a"), "", seed_session()),
        failing(
            Method::GET,
            &format!("{SESSIONS}/gone"),
            404,
            not_found("mirrorsessions.podmirror.io \"gone\" not found", Some(json!({"name": "gone"}))),
        ),
    ]);
    let rows = status_rows(&client, Some("default"), None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].skipped.get("node-a"), Some(&4), "the skipped counter is read from the raw object");
    assert!(status_rows(&client, None, None).await.unwrap().is_empty());
    let one = status_rows(&client, Some("default"), Some("mirror-session-a")).await.unwrap();
    assert_eq!(one[0].session.spec.vni, 1);
    let err = status_rows(&client, Some("default"), Some("gone")).await.unwrap_err();
    assert_eq!(err.to_string(), "session default/gone not found (kubectl get mirrorsessions -n default)");
    drop(client);
    api.await.unwrap();
}

#[tokio::test]
async fn ctrl_c_while_looking_creates_nothing() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    // The API never answers the pod GET; Ctrl-C comes meanwhile.
    let api = tokio::spawn(async move {
        let (req, _send) = handle.next_request().await.unwrap();
        assert_eq!(req.uri().path(), "/api/v1/namespaces/default/pods/p");
        assert!(handle.next_request().await.is_none(), "nothing after the interrupted read");
    });
    let request = CaptureRequest {
        namespace: "default".into(),
        pods: Pods::Named("p".into()),
        filter: CaptureFilter::default(),
        duration: Duration::from_secs(60),
        priority: None,
        snaplen: None,
        collector_namespace: "podmirror-system".into(),
        poll: Duration::from_millis(5),
        accept_timeout: Duration::from_secs(1),
    };
    let connect = |_| async { Err::<tokio::net::TcpStream, _>(PluginError::Stream("unused".into())) };
    let stop = tokio::time::sleep(Duration::from_millis(200));
    let result = capture(&client, &request, connect, stop, &mut Vec::new(), "test").await;
    assert!(matches!(result, Err(PluginError::Interrupted)), "{result:?}");
    drop(client);
    api.await.unwrap();
}
