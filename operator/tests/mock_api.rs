//! The I/O layer against a mock API server (tower-test), the controller-rs
//! fixtures habit: for a happy path, a quota refusal and a deletion, the exact
//! requests (method, path, query, body) and Events a pass sends, in order.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use podmirror_crds::api::{MirrorFilter, MirrorNodeState, MirrorSession};
use podmirror_crds::model::quota::QuotaLimits;
use podmirror_operator::controller::execute_all;
use podmirror_operator::index::{self, Objects};
use podmirror_operator::metrics::Metrics;
use podmirror_operator::plan::{AcceptedSet, plan};
use podmirror_operator::sync::{Executor, Seen, Write, writes};
use podmirror_testkit::objects::{self, Meta, accept, node};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn filter(finalized: bool, deleting: bool) -> Arc<MirrorFilter> {
    let rule = accept(1).protocol("TCP").from_cidr("192.168.0.161/32").to_cidr("192.168.0.230/32").to_port(1234);
    let f = objects::filter("mirror-filter-a").namespace("team").uid("fu").generation(1).resource_version("10");
    let f = if finalized { f.finalizer("podmirror.io/cleanup") } else { f };
    let f = if deleting { f.deleting("2026-01-02T00:00:00Z") } else { f };
    f.inbound(rule).arc()
}

fn session(name: &str, created: &str, priority: i32, finalized: bool, deleting: bool) -> Arc<MirrorSession> {
    let s = objects::session(name)
        .namespace("team")
        .uid(&format!("uid-{name}"))
        .generation(1)
        .resource_version("20")
        .created(created)
        .priority(priority)
        .vni(priority)
        .packet_length(96);
    let s = if finalized { s.finalizer("podmirror.io/cleanup") } else { s };
    let s = if deleting { s.deleting("2026-01-02T00:00:00Z") } else { s };
    s.arc()
}

fn pod(name: &str, node: &str, ip: &str) -> Arc<Pod> {
    objects::pod(name).namespace("team").uid(&format!("uid-{name}")).node(node).running(ip).arc()
}

/// One expected request: method, path, the query it must contain, and a check of its body.
struct Expect {
    status: u16,
    method: Method,
    path: String,
    query: &'static str,
    body: Box<dyn Fn(&Value) + Send>,
    reply: Value,
}

fn expect(
    method: Method,
    path: &str,
    query: &'static str,
    body: impl Fn(&Value) + Send + 'static,
    reply: Value,
) -> Expect {
    Expect { status: 200, method, path: path.to_owned(), query, body: Box::new(body), reply }
}

/// Serves `script` in order, asserting each request; then asserts nothing more comes.
async fn serve(mut handle: Handle, script: Vec<Expect>) {
    for (i, e) in script.into_iter().enumerate() {
        let (req, send) =
            handle.next_request().await.unwrap_or_else(|| panic!("request {i} ({} {}) never came", e.method, e.path));
        assert_eq!(req.method(), e.method, "request {i}: method of {}", req.uri());
        assert_eq!(req.uri().path(), e.path, "request {i}: path");
        let q = req.uri().query().unwrap_or_default().to_owned();
        for part in e.query.split('&').filter(|p| !p.is_empty()) {
            assert!(q.split('&').any(|x| x == part), "request {i}: query {q:?} lacks {part:?}");
        }
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (e.body)(&body);
        send.send_response(
            Response::builder().status(e.status).body(Body::from(serde_json::to_vec(&e.reply).unwrap())).unwrap(),
        );
    }
    // The client is dropped when the pass is over: anything sent after the
    // script is an unexpected write.
    if let Some((req, _)) = handle.next_request().await {
        panic!("unexpected request after the script: {} {}", req.method(), req.uri());
    }
}

fn now() -> Time {
    Time("2026-01-03T00:00:00Z".parse().unwrap())
}

struct World {
    sessions: Vec<Arc<MirrorSession>>,
    filters: Vec<Arc<MirrorFilter>>,
    pods: Vec<Arc<Pod>>,
    nodes: Vec<Arc<Node>>,
    node_states: Vec<Arc<MirrorNodeState>>,
    accepted: AcceptedSet,
}

impl World {
    fn seed() -> World {
        World {
            sessions: vec![],
            filters: vec![],
            pods: vec![pod("ecs-source", "node-a", "192.168.0.230"), pod("ecs-target", "node-b", "192.168.0.12")],
            nodes: vec![node("node-a"), node("node-b")],
            node_states: vec![],
            accepted: AcceptedSet::new(),
        }
    }

    /// One pass against the mock; the script checks every request.
    async fn pass(&mut self, script: Vec<Expect>) {
        let failed = self.pass_allowing_failure(script).await;
        assert!(!failed, "a write failed");
    }

    /// Like `pass`; returns whether some write failed.
    async fn pass_allowing_failure(&mut self, script: Vec<Expect>) -> bool {
        let objects = Objects {
            sessions: &self.sessions,
            filters: &self.filters,
            pods: &self.pods,
            services: &[],
            slices: &[],
            nodes: &self.nodes,
        };
        let (cluster, errors) = index::cluster(&objects);
        assert!(errors.is_empty(), "{errors:?}");
        let p = plan(&cluster, self.accepted.clone(), &QuotaLimits::default());
        let seen = Seen {
            sessions: self.sessions.iter().map(AsRef::as_ref).collect(),
            filters: self.filters.iter().map(AsRef::as_ref).collect(),
            node_states: self.node_states.iter().map(AsRef::as_ref).collect(),
            nodes: self.nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect(),
        };
        let todo = writes(&p, &seen, &now());
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let executor = Executor::new(client, Some("op-0".into()));
        let metrics = Metrics::default();
        let server = tokio::spawn(serve(handle, script));
        let failed = execute_all(&executor, &todo, &metrics).await;
        drop(executor);
        server.await.unwrap();
        if !failed {
            self.accepted = p.accepted;
        }
        failed
    }
}

const MS: &str = "/apis/podmirror.io/v1alpha1/namespaces/team/mirrorsessions";
const MF: &str = "/apis/podmirror.io/v1alpha1/namespaces/team/mirrorfilters";
const MNS: &str = "/apis/podmirror.io/v1alpha1/mirrornodestates";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team/events";
const APPLY: &str = "fieldManager=podmirror-operator&force=true";
/// Non-apply patches name the operator as their field manager too.
const MANAGED: &str = "fieldManager=podmirror-operator";

fn as_json<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap()
}

fn condition<'a>(status: &'a Value, t: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap()
}

/// A filter status as the operator last wrote it (so no rewrite is due).
fn converged_filter_status(sessions: i32) -> podmirror_crds::api::MirrorFilterStatus {
    podmirror_crds::api::MirrorFilterStatus {
        sessions: Some(sessions),
        inbound_rule_count: Some(1),
        outbound_rule_count: Some(0),
        conditions: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Valid".into(),
            status: "True".into(),
            reason: "RulesValid".into(),
            message: "every rule compiles".into(),
            observed_generation: Some(1),
            last_transition_time: now(),
        }]),
        observed_generation: Some(1),
    }
}

fn node_state_reply(name: &str) -> Value {
    json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorNodeState", "metadata": {"name": name}, "spec": {"node": name}})
}

fn event_reply() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "team"}, "eventTime": "2026-01-03T00:00:00.000000Z"})
}

#[tokio::test]
async fn happy_path_writes_finalizers_node_states_status_and_an_event() {
    let mut w = World::seed();
    w.filters.push(filter(false, false));
    w.sessions.push(session("mirror-session-a", "2026-01-01T00:00:00Z", 1, false, false));
    let s_reply = as_json(&*w.sessions[0]);
    let f_reply = as_json(&*w.filters[0]);
    let script = vec![
        expect(
            Method::PATCH,
            &format!("{MS}/mirror-session-a"),
            MANAGED,
            |b| {
                assert_eq!(b, &json!({"metadata": {"finalizers": ["podmirror.io/cleanup"], "resourceVersion": "20"}}));
            },
            s_reply.clone(),
        ),
        expect(
            Method::PATCH,
            &format!("{MF}/mirror-filter-a"),
            MANAGED,
            |b| {
                assert_eq!(b, &json!({"metadata": {"finalizers": ["podmirror.io/cleanup"], "resourceVersion": "10"}}));
            },
            f_reply.clone(),
        ),
        expect(
            Method::PATCH,
            &format!("{MNS}/node-a"),
            APPLY,
            |b| {
                assert_eq!(b["kind"], "MirrorNodeState");
                assert_eq!(b["metadata"]["name"], "node-a");
                let spec = &b["spec"];
                assert_eq!(spec["node"], "node-a");
                let s = &spec["sessions"][0];
                assert_eq!(
                    (s["name"].as_str(), s["vni"].as_i64(), s["packetLength"].as_i64()),
                    (Some("mirror-session-a"), Some(1), Some(96))
                );
                assert_eq!(s["targets"], json!(["192.168.0.12"]));
                assert_eq!(s["inboundRules"][0]["destinationPorts"], json!({"from": 1234, "to": 1234}));
                assert_eq!(
                    spec["pods"],
                    json!([{"namespace": "team", "name": "ecs-source", "uid": "uid-ecs-source",
                "ips": ["192.168.0.230"], "sessions": ["team/mirror-session-a"]}])
                );
            },
            node_state_reply("node-a"),
        ),
        expect(
            Method::PATCH,
            &format!("{MNS}/node-b"),
            APPLY,
            |b| {
                assert_eq!(b["spec"], json!({"node": "node-b", "sessions": [], "pods": []}));
            },
            node_state_reply("node-b"),
        ),
        expect(
            Method::POST,
            EVENTS,
            "",
            |b| {
                assert_eq!(b["reason"], "Pending");
                assert_eq!(b["type"], "Normal");
                assert_eq!(b["regarding"]["name"], "mirror-session-a");
                assert_eq!(b["reportingController"], "podmirror-operator");
            },
            event_reply(),
        ),
        expect(
            Method::PATCH,
            &format!("{MS}/mirror-session-a/status"),
            APPLY,
            |b| {
                assert_eq!(b["kind"], "MirrorSession");
                let st = &b["status"];
                assert_eq!(st["phase"], "Pending");
                assert_eq!(st["observedGeneration"], 1);
                assert_eq!(st["acceptedGeneration"], 1);
                assert_eq!(condition(st, "Accepted")["status"], "True");
                assert_eq!(condition(st, "FilterResolved")["status"], "True");
                assert_eq!(condition(st, "TargetResolved")["status"], "True");
                assert_eq!(condition(st, "SourcesResolved")["status"], "True");
                assert_eq!(condition(st, "Programmed")["status"], "False");
                assert_eq!(condition(st, "Programmed")["observedGeneration"], 1);
                assert_eq!(
                    st["sources"],
                    json!([{"pod": "ecs-source", "node": "node-a", "podIPs": ["192.168.0.230"], "state": "Resolved"}])
                );
                assert_eq!(st["target"], json!({"kind": "Pod", "name": "ecs-target", "addresses": ["192.168.0.12"]}));
                assert!(st.get("nodes").is_none(), "the operator never claims agents' entries");
            },
            s_reply.clone(),
        ),
        expect(
            Method::PATCH,
            &format!("{MF}/mirror-filter-a/status"),
            APPLY,
            |b| {
                assert_eq!(
                    b["status"],
                    json!({"sessions": 1, "inboundRuleCount": 1, "outboundRuleCount": 0, "observedGeneration": 1,
                "conditions": [{"type": "Valid", "status": "True", "reason": "RulesValid", "message": "every rule compiles",
                    "observedGeneration": 1, "lastTransitionTime": "2026-01-03T00:00:00Z"}]})
                );
            },
            f_reply,
        ),
    ];
    w.pass(script).await;
}

#[tokio::test]
async fn a_refusal_is_a_condition_and_a_warning_event_and_leaves_the_incumbent_alone() {
    let mut w = World::seed();
    w.filters.push(filter(true, false));
    w.sessions.push(session("first", "2026-01-01T00:00:00Z", 1, true, false));
    // Converge the first session without looking at the writes.
    let objects = Objects {
        sessions: &w.sessions,
        filters: &w.filters,
        pods: &w.pods,
        services: &[],
        slices: &[],
        nodes: &w.nodes,
    };
    let (cluster, _) = index::cluster(&objects);
    let p = plan(&cluster, AcceptedSet::new(), &QuotaLimits::default());
    w.accepted = p.accepted.clone();
    w.node_states = p
        .nodes
        .iter()
        .map(|(n, spec)| {
            let mut o = MirrorNodeState::new(n, (**spec).clone());
            o.metadata.resource_version = Some("1".into());
            Arc::new(o)
        })
        .collect();
    let mut first = (*w.sessions[0]).clone();
    let seen = Seen { sessions: vec![&first], filters: vec![&w.filters[0]], ..Seen::default() };
    let status = writes(&p, &seen, &now()).into_iter().find_map(|x| match x {
        podmirror_operator::sync::Write::ApplySessionStatus { status, .. } => Some(status),
        _ => None,
    });
    first.status = status;
    w.sessions[0] = Arc::new(first);
    let mut fl = (*w.filters[0]).clone();
    fl.status = Some(converged_filter_status(2));
    w.filters[0] = Arc::new(fl);

    // A newer session with the same priority on the same pod.
    w.sessions.push(session("second", "2026-01-02T00:00:00Z", 1, true, false));
    let reply = as_json(&*w.sessions[1]);
    let script = vec![
        expect(
            Method::POST,
            EVENTS,
            "",
            |b| {
                assert_eq!(b["type"], "Warning");
                assert_eq!(b["reason"], "QuotaRefused");
                assert_eq!(b["regarding"]["name"], "second");
                let note = b["note"].as_str().unwrap();
                assert!(note.starts_with("PriorityClash:") && note.contains("team/first"), "{note}");
            },
            event_reply(),
        ),
        expect(
            Method::POST,
            EVENTS,
            "",
            |b| {
                assert_eq!((b["type"].as_str(), b["reason"].as_str()), (Some("Warning"), Some("Invalid")));
            },
            event_reply(),
        ),
        expect(
            Method::PATCH,
            &format!("{MS}/second/status"),
            APPLY,
            |b| {
                let st = &b["status"];
                assert_eq!(st["phase"], "Invalid");
                let acc = condition(st, "Accepted");
                assert_eq!((acc["status"].as_str(), acc["reason"].as_str()), (Some("False"), Some("PriorityClash")));
                let msg = acc["message"].as_str().unwrap();
                assert!(msg.contains("PriorityClash") && msg.contains("2 > 1"), "{msg}");
                assert!(st.get("acceptedGeneration").is_none());
            },
            reply,
        ),
    ];
    // No node state write: the incumbent's mirroring is exactly as it was.
    w.pass(script).await;
}

#[tokio::test]
async fn deletion_removes_the_session_from_its_node_before_releasing_the_finalizer() {
    let mut w = World::seed();
    w.filters.push(filter(true, false));
    let mut s = (*session("mirror-session-a", "2026-01-01T00:00:00Z", 1, true, true)).clone();
    s.metadata.finalizers = Some(vec!["example.com/other".into(), "podmirror.io/cleanup".into()]);
    w.sessions.push(Arc::new(s));
    // node-a still programs the session (from before the deletion).
    let mut live = World::seed();
    live.filters.push(filter(true, false));
    live.sessions.push(session("mirror-session-a", "2026-01-01T00:00:00Z", 1, true, false));
    let objects = Objects {
        sessions: &live.sessions,
        filters: &live.filters,
        pods: &live.pods,
        services: &[],
        slices: &[],
        nodes: &live.nodes,
    };
    let before = plan(&index::cluster(&objects).0, AcceptedSet::new(), &QuotaLimits::default());
    assert_eq!(before.nodes["node-a"].sessions.len(), 1);
    w.node_states = before.nodes.iter().map(|(n, spec)| Arc::new(MirrorNodeState::new(n, (**spec).clone()))).collect();
    w.accepted = before.accepted;
    let mut fl = (*w.filters[0]).clone();
    fl.status = Some(converged_filter_status(0));
    w.filters[0] = Arc::new(fl);
    let reply = as_json(&*w.sessions[0]);
    let script = vec![
        expect(
            Method::PATCH,
            &format!("{MNS}/node-a"),
            APPLY,
            |b| {
                assert_eq!(b["spec"], json!({"node": "node-a", "sessions": [], "pods": []}));
            },
            node_state_reply("node-a"),
        ),
        expect(
            Method::PATCH,
            &format!("{MS}/mirror-session-a"),
            MANAGED,
            |b| {
                // Only our finalizer goes; someone else's stays.
                assert_eq!(b, &json!({"metadata": {"finalizers": ["example.com/other"], "resourceVersion": "20"}}));
            },
            reply,
        ),
    ];
    w.pass(script).await;
    assert!(w.accepted.is_empty());
}

#[tokio::test]
async fn a_failed_node_state_write_keeps_the_finalizer() {
    let mut w = World::seed();
    w.filters.push(filter(true, false));
    w.sessions.push(session("mirror-session-a", "2026-01-01T00:00:00Z", 1, true, true));
    let mut live = World::seed();
    live.filters.push(filter(true, false));
    live.sessions.push(session("mirror-session-a", "2026-01-01T00:00:00Z", 1, true, false));
    let objects = Objects {
        sessions: &live.sessions,
        filters: &live.filters,
        pods: &live.pods,
        services: &[],
        slices: &[],
        nodes: &live.nodes,
    };
    let before = plan(&index::cluster(&objects).0, AcceptedSet::new(), &QuotaLimits::default());
    w.node_states = before.nodes.iter().map(|(n, spec)| Arc::new(MirrorNodeState::new(n, (**spec).clone()))).collect();
    let mut fl = (*w.filters[0]).clone();
    fl.status = Some(converged_filter_status(0));
    w.filters[0] = Arc::new(fl);
    let mut refused = expect(
        Method::PATCH,
        &format!("{MNS}/node-a"),
        APPLY,
        |_| {},
        json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500}),
    );
    refused.status = 500;
    // The API server fails the node-state write: no finalizer removal follows
    // (the script ends; any further request fails the pass differently).
    let failed = w.pass_allowing_failure(vec![refused]).await;
    assert!(failed, "the failed write is reported");
}

/// Converges `w`'s session and filter statuses as the operator writes them
/// (no API involved), so a scenario's pass shows only what it is about.
fn converge(w: &mut World) {
    let objects = Objects {
        sessions: &w.sessions,
        filters: &w.filters,
        pods: &w.pods,
        services: &[],
        slices: &[],
        nodes: &w.nodes,
    };
    let (cluster, _) = index::cluster(&objects);
    let p = plan(&cluster, w.accepted.clone(), &QuotaLimits::default());
    w.node_states = p.nodes.iter().map(|(n, spec)| Arc::new(MirrorNodeState::new(n, (**spec).clone()))).collect();
    let todo = {
        let seen = Seen {
            sessions: w.sessions.iter().map(AsRef::as_ref).collect(),
            filters: w.filters.iter().map(AsRef::as_ref).collect(),
            ..Seen::default()
        };
        writes(&p, &seen, &now())
    };
    for x in todo {
        match x {
            Write::ApplySessionStatus { name, status, .. } => {
                for s in &mut w.sessions {
                    if s.metadata.name.as_deref() == Some(name.as_str()) {
                        let mut o = (**s).clone();
                        let nodes = o.status.take().and_then(|st| st.nodes);
                        o.status = Some(podmirror_crds::api::MirrorSessionStatus { nodes, ..status.clone() });
                        *s = Arc::new(o);
                    }
                }
            }
            Write::ApplyFilterStatus { status, .. } => {
                let mut o = (*w.filters[0]).clone();
                o.status = Some(status);
                w.filters[0] = Arc::new(o);
            }
            _ => {}
        }
    }
    w.accepted = p.accepted;
}

fn node_entry(node: &str, packets: i64) -> podmirror_crds::api::NodeMirrorStatus {
    podmirror_crds::api::NodeMirrorStatus {
        node: node.into(),
        programmed_generation: None,
        programmed_interfaces: Some(vec![]),
        mirrored_packets: Some(packets),
        mirrored_bytes: None,
        dropped: None,
        truncated: None,
        skipped: None,
        last_update: None,
        error: None,
    }
}

#[tokio::test]
async fn entries_of_nodes_that_are_gone_are_removed_and_live_ones_stay() {
    let mut w = World::seed();
    w.filters.push(filter(true, false));
    w.sessions.push(session("mirror-session-a", "2026-01-01T00:00:00Z", 1, true, false));
    // node-c was deleted with its agent; its entry would stay forever.
    let mut s = (*w.sessions[0]).clone();
    s.status = Some(podmirror_crds::api::MirrorSessionStatus {
        nodes: Some(vec![node_entry("node-c", 0), node_entry("node-a", 7), node_entry("node-d", 0)]),
        ..Default::default()
    });
    w.sessions[0] = Arc::new(s);
    converge(&mut w);
    converge(&mut w);
    let reply = as_json(&*w.sessions[0]);
    let script = vec![expect(
        Method::PATCH,
        &format!("{MS}/mirror-session-a/status"),
        MANAGED,
        |b| {
            // Highest index first, each removal guarded by a test of the name.
            assert_eq!(
                b,
                &json!([
                    {"op": "test", "path": "/status/nodes/2/node", "value": "node-d"},
                    {"op": "remove", "path": "/status/nodes/2"},
                    {"op": "test", "path": "/status/nodes/0/node", "value": "node-c"},
                    {"op": "remove", "path": "/status/nodes/0"},
                ])
            );
        },
        reply,
    )];
    w.pass(script).await;

    // Without a Node list (unknown), nothing is ever treated as stale: the
    // only write is node-b's state going with its (now unlisted) Node.
    w.nodes.clear();
    w.pass(vec![expect(Method::DELETE, &format!("{MNS}/node-b"), "", |_| {}, node_state_reply("node-b"))]).await;
}

#[tokio::test]
async fn a_filter_whose_rules_do_not_compile_gets_a_warning_event() {
    let mut w = World::seed();
    let mut f = (*filter(true, false)).clone();
    // A port range with ICMP: the model refuses it (the API server's CEL would too).
    f.spec.inbound_rules[0].protocol = serde_json::from_value(json!("ICMP")).unwrap();
    w.filters.push(Arc::new(f));
    converge(&mut w);
    let mut f = (*w.filters[0]).clone();
    f.status = None;
    w.filters[0] = Arc::new(f);
    let reply = as_json(&*w.filters[0]);
    let script = vec![
        expect(
            Method::POST,
            EVENTS,
            "",
            |b| {
                assert_eq!((b["type"].as_str(), b["reason"].as_str()), (Some("Warning"), Some("InvalidRules")));
                assert_eq!(b["regarding"]["kind"], "MirrorFilter");
                assert_eq!(b["regarding"]["name"], "mirror-filter-a");
                let note = b["note"].as_str().unwrap();
                assert!(note.contains("inboundRules[0]"), "{note}");
            },
            event_reply(),
        ),
        expect(
            Method::PATCH,
            &format!("{MF}/mirror-filter-a/status"),
            APPLY,
            |b| {
                assert_eq!(condition(&b["status"], "Valid")["status"], "False");
            },
            reply,
        ),
    ];
    w.pass(script).await;
}
