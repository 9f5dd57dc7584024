//! The capture flow against a mock API server (tower-test): the exact
//! requests (method, path, query, body) in order, and the delete of what was
//! created on every way out: stream end, `--duration`, Ctrl-C, a refusal, a
//! stream failure, a 403. The pcap comes from a real HTTP server on 127.0.0.1.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kubectl_podmirror::capture::objects::{CaptureFilter, Pods};
use kubectl_podmirror::capture::run::{CaptureReport, CaptureRequest, Ended, capture};
use kubectl_podmirror::error::PluginError;
use serde_json::{Value, json};
use support::mock::*;
use support::*;
use tokio::net::TcpStream;

const NAME: &str = "podmirror-capture-16000001";
const SESSIONS: &str = "/apis/podmirror.io/v1alpha1/namespaces/shop/mirrorsessions";
const FILTERS: &str = "/apis/podmirror.io/v1alpha1/namespaces/shop/mirrorfilters";

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}]}})
}

fn collector_services_allowing(consent: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": [{
        "metadata": {"name": "podmirror-collector", "namespace": "podmirror-system",
                     "annotations": {"podmirror.io/allow-mirror-from": consent}},
        "spec": {"selector": {"app.kubernetes.io/component": "collector"},
                 "ports": [{"name": "vxlan", "port": 4789, "protocol": "UDP"},
                           {"name": "http", "port": 80, "targetPort": 8080}]}}]})
}

/// One session of the pod already holds VNI 16000000 and priority 32766:
/// the capture must take the next VNI and the next lower precedence.
fn collector_services() -> Value {
    collector_services_allowing("team, shop")
}

fn existing_sessions() -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSessionList", "metadata": {}, "items": [{
        "apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession",
        "metadata": {"name": "existing", "namespace": "shop"},
        "spec": {"priority": 32766, "vni": 16000000, "filterRef": {"name": "f"},
                 "sources": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                 "target": {"service": {"name": "podmirror-collector", "namespace": "podmirror-system"}}}}]})
}

fn session_with(conditions: Value) -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession",
           "metadata": {"name": NAME, "namespace": "shop"},
           "spec": {}, "status": {"conditions": conditions}})
}

fn accepted() -> Value {
    session_with(json!([{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]))
}

fn echo(kind: &str) -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": kind, "metadata": {"name": NAME, "namespace": "shop"}})
}

/// Reads, creates, and the first poll finding no condition yet.
fn until_created(schedule: &'static str) -> Vec<Expect> {
    let mut create_filter = expect(Method::POST, FILTERS, "", echo("MirrorFilter"));
    create_filter.body = Box::new(|b| {
        assert_eq!(b["metadata"]["name"], NAME);
        assert_eq!(b["metadata"]["labels"]["podmirror.io/capture"], NAME);
        let rules = b["spec"]["inboundRules"].as_array().unwrap();
        // --proto tcp --port 8080: both families, the port on either side.
        assert_eq!(rules.len(), 4);
        assert_eq!(
            rules[0],
            json!({"priority": 1, "action": "Accept", "protocol": 6, "ipFamily": "IPv4",
            "sourcePorts": {"from": 8080, "to": 8080}, "description": "kubectl podmirror capture"})
        );
        assert_eq!(rules[3]["destinationPorts"], json!({"from": 8080, "to": 8080}));
        assert_eq!(rules[3]["ipFamily"], "IPv6");
        assert_eq!(b["spec"]["outboundRules"], json!([]), "--in only");
    });
    let mut create_session = expect(Method::POST, SESSIONS, "", echo("MirrorSession"));
    create_session.body = Box::new(move |b| {
        assert_eq!(
            b["spec"],
            json!({
            "priority": 32765, "vni": 16000001, "enabled": true, "filterRef": {"name": NAME},
            "sources": [{"podName": "web-0"}],
            "target": {"service": {"name": "podmirror-collector", "namespace": "podmirror-system"}},
            "encapsulation": "VXLAN", "targetPort": 4789, "schedule": {"duration": schedule}})
        );
    });
    vec![
        expect(Method::GET, "/api/v1/namespaces/shop/pods/web-0", "", pod()),
        expect(
            Method::GET,
            "/api/v1/namespaces/podmirror-system/services",
            "labelSelector=app.kubernetes.io/component=collector",
            collector_services(),
        ),
        expect(Method::GET, "/apis/podmirror.io/v1alpha1/mirrorsessions", "", existing_sessions()),
        create_filter,
        create_session,
        expect(Method::GET, &format!("{SESSIONS}/{NAME}"), "", session_with(json!([]))),
    ]
}

fn deletes() -> Vec<Expect> {
    vec![
        expect(Method::DELETE, &format!("{SESSIONS}/{NAME}"), "", echo("MirrorSession")),
        expect(Method::DELETE, &format!("{FILTERS}/{NAME}"), "", echo("MirrorFilter")),
    ]
}

fn request(duration: Duration) -> CaptureRequest {
    CaptureRequest {
        namespace: "shop".into(),
        pods: Pods::Named("web-0".into()),
        filter: CaptureFilter { inbound: true, outbound: false, protocol: Some(6), port: Some(8080) },
        duration,
        priority: None,
        snaplen: None,
        collector_namespace: "podmirror-system".into(),
        poll: Duration::from_millis(5),
        accept_timeout: Duration::from_secs(5),
    }
}

/// Runs one capture against `script`, streaming from `server` (None: a
/// port nobody listens on), stopped by `stop_after` if given.
async fn run(
    script: Vec<Expect>,
    req: CaptureRequest,
    server: Option<SocketAddr>,
    stop_after: Option<Duration>,
) -> (Result<CaptureReport, PluginError>, Vec<u8>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let api = tokio::spawn(serve(handle, script));
    let addr = match server {
        Some(addr) => addr,
        None => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap() // dropped: connections are refused
        }
    };
    let connect = move |collector: kubectl_podmirror::capture::cluster::Collector| async move {
        assert_eq!(collector.http_port, 8080, "the http port's targetPort");
        assert_eq!(collector.selector, BTreeMap::from([("app.kubernetes.io/component".into(), "collector".into())]));
        TcpStream::connect(addr).await.map_err(|e| PluginError::Stream(e.to_string()))
    };
    let stop = async move {
        match stop_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut out = Vec::new();
    let result = capture(&client, &req, connect, stop, &mut out, "test").await;
    drop(client);
    api.await.unwrap();
    (result, out)
}

fn script(parts: Vec<Vec<Expect>>) -> Vec<Expect> {
    parts.into_iter().flatten().collect()
}

#[tokio::test]
async fn the_stream_ends_then_session_and_filter_are_deleted() {
    let pcap = vec![pcap_header(), pcap_record(1, 98, 1)];
    let (addr, mut heads) = http_server(Reply::pcap(pcap.clone(), Then::End)).await;
    let accepted_poll = vec![expect(Method::GET, &format!("{SESSIONS}/{NAME}"), "", accepted())];
    let (result, out) = run(
        script(vec![until_created("300s"), accepted_poll, deletes()]),
        request(Duration::from_secs(300)),
        Some(addr),
        None,
    )
    .await;
    let report = result.unwrap();
    assert_eq!(report.ended, Ended::StreamClosed);
    assert_eq!((report.vni, report.bytes), (16000001, pcap.concat().len() as u64));
    assert_eq!(out, pcap.concat());
    assert!(heads.recv().await.unwrap().starts_with("GET /stream?vni=16000001 HTTP/1.1"));
}

#[tokio::test]
async fn duration_over_deletes_and_keeps_what_was_written() {
    let pcap = vec![pcap_header(), pcap_record(1, 60, 2)];
    let (addr, _heads) = http_server(Reply::pcap(pcap.clone(), Then::Hang)).await;
    let accepted_poll = vec![expect(Method::GET, &format!("{SESSIONS}/{NAME}"), "", accepted())];
    let (result, out) = run(
        script(vec![until_created("2s"), accepted_poll, deletes()]),
        request(Duration::from_millis(1500)),
        Some(addr),
        None,
    )
    .await;
    let report = result.unwrap();
    assert_eq!(report.ended, Ended::DurationOver);
    assert_eq!(out, pcap.concat());
    assert_eq!(report.bytes, out.len() as u64);
}

#[tokio::test]
async fn ctrl_c_deletes_session_and_filter() {
    let (addr, _heads) = http_server(Reply::pcap(vec![pcap_header()], Then::Hang)).await;
    let accepted_poll = vec![expect(Method::GET, &format!("{SESSIONS}/{NAME}"), "", accepted())];
    let (result, out) = run(
        script(vec![until_created("300s"), accepted_poll, deletes()]),
        request(Duration::from_secs(300)),
        Some(addr),
        Some(Duration::from_millis(1000)),
    )
    .await;
    assert_eq!(result.unwrap().ended, Ended::Interrupted);
    assert_eq!(out, pcap_header());
}

#[tokio::test]
async fn a_quota_refusal_names_the_quota_and_the_holders_and_cleans_up() {
    let refused = session_with(json!([{"type": "Accepted", "status": "False", "reason": "SessionsPerSourcePod",
        "message": "quota SessionsPerSourcePod exceeded (4 > 3): pod shop/web-0 is in 3 sessions",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]));
    let poll = vec![expect(Method::GET, &format!("{SESSIONS}/{NAME}"), "", refused)];
    let (result, out) =
        run(script(vec![until_created("300s"), poll, deletes()]), request(Duration::from_secs(300)), None, None).await;
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "session shop/{NAME} was refused (SessionsPerSourcePod): quota SessionsPerSourcePod exceeded (4 > 3): \
                 pod shop/web-0 is in 3 sessions; held by: shop/existing (free a place by deleting one of them, \
                 or ask for the quota to be raised)"
        )
    );
    assert!(out.is_empty());
}

#[tokio::test]
async fn a_collector_that_cannot_be_reached_still_cleans_up() {
    let accepted_poll = vec![expect(Method::GET, &format!("{SESSIONS}/{NAME}"), "", accepted())];
    let (result, _) = run(
        script(vec![until_created("300s"), accepted_poll, deletes()]),
        request(Duration::from_secs(300)),
        None,
        None,
    )
    .await;
    assert!(matches!(result, Err(PluginError::Stream(_))), "{result:?}");
}

#[tokio::test]
async fn no_right_to_create_sessions_deletes_the_filter_and_says_what_to_ask_for() {
    let mut steps = until_created("300s");
    steps.truncate(4); // up to the filter's creation
    steps.push(failing(
        Method::POST,
        SESSIONS,
        403,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "mirrorsessions.podmirror.io is forbidden: User \"dev\" cannot create resource \"mirrorsessions\"",
        "reason": "Forbidden", "code": 403}),
    ));
    steps.push(expect(Method::DELETE, &format!("{FILTERS}/{NAME}"), "", echo("MirrorFilter")));
    let (result, _) = run(steps, request(Duration::from_secs(300)), None, None).await;
    let err = result.unwrap_err().to_string();
    assert!(err.starts_with("you may not create mirrorsessions.podmirror.io in namespace shop: "), "{err}");
    assert!(err.contains("kubectl auth can-i create mirrorsessions.podmirror.io -n shop"), "{err}");
}

#[tokio::test]
async fn a_missing_pod_creates_nothing() {
    let steps = vec![failing(
        Method::GET,
        "/api/v1/namespaces/shop/pods/web-0",
        404,
        json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "pods \"web-0\" not found",
        "reason": "NotFound", "details": {"name": "web-0", "kind": "pods"}, "code": 404}),
    )];
    let (result, _) = run(steps, request(Duration::from_secs(300)), None, None).await;
    assert_eq!(result.unwrap_err().to_string(), "pod shop/web-0 not found (kubectl get pods -n shop)");
}

#[tokio::test]
async fn podmirror_not_installed_creates_nothing() {
    let mut steps = until_created("300s");
    steps.truncate(2);
    steps.push(failing(
        Method::GET,
        "/apis/podmirror.io/v1alpha1/mirrorsessions",
        404,
        json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404}),
    ));
    let (result, _) = run(steps, request(Duration::from_secs(300)), None, None).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "podmirror is not installed in this cluster: the API server does not serve mirrorsessions.podmirror.io"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_collector_without_consent_for_the_namespace_creates_nothing() {
    let mut steps = until_created("300s");
    steps.truncate(3);
    steps[1] = expect(
        Method::GET,
        "/api/v1/namespaces/podmirror-system/services",
        "labelSelector=app.kubernetes.io/component=collector",
        collector_services_allowing("team"),
    );
    let (result, _) = run(steps, request(Duration::from_secs(300)), None, None).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "collector Service podmirror-system/podmirror-collector: it does not allow mirroring from namespace shop"
        ),
        "{err}"
    );
}
