//! The planner's decisions, on literal clusters (no API server).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podmirror_crds::api::{FilterRule, SessionPhase};
use podmirror_crds::model::{Action, Encapsulation, IpFamily, SessionKey};

use super::cluster::*;
use super::status::session_status;
use super::*;
use podmirror_crds::model::quota::QuotaLimits as Limits;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn rule(priority: i32) -> FilterRule {
    FilterRule {
        priority,
        action: Action::Accept,
        protocol: IntOrString::String("TCP".into()),
        ip_family: IpFamily::IPv4,
        source_cidr: Some("192.168.0.161/32".into()),
        destination_cidr: Some("192.168.0.230/32".into()),
        source_ports: None,
        destination_ports: None,
        description: None,
    }
}

pub(super) fn pod(ns: &str, name: &str, node: &str, addr: &str, app: &str) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("uid-{ns}-{name}"),
        labels: [("app".to_owned(), app.to_owned())].into(),
        node: Some(node.into()),
        ips: vec![ip(addr)],
        host_network: false,
        interface_known: false,
        deleting: false,
        consent: Consent::OwnNamespace,
    }
}

pub(super) fn session(
    ns: &str,
    name: &str,
    created: &str,
    priority: i64,
    vni: i64,
    sources: Vec<SourceRef>,
    target: TargetRef,
) -> SessionInfo {
    SessionInfo {
        key: SessionKey::new(ns, name),
        uid: format!("uid-ms-{ns}-{name}"),
        generation: 1,
        created: stamp(created),
        priority,
        vni,
        packet_length: Some(96),
        enabled: true,
        filter_ref: "mirror-filter-a".into(),
        sources,
        target: Some(target),
        encapsulation: Encapsulation::VXLAN,
        target_port: 4789,
        rate_limit: None,
        flow_sampling: None,
        invalid: None,
        deleting: false,
        node_reports: BTreeMap::new(),
        schedule: None,
        accepted_time: None,
    }
}

/// `"t7"` is shorthand for the 7th second of 2026; anything else is RFC 3339 already.
pub(super) fn stamp(created: &str) -> String {
    match created.strip_prefix('t').and_then(|n| n.parse::<u32>().ok()) {
        Some(n) => format!("2026-01-01T00:{:02}:{:02}Z", n / 60, n % 60),
        None => created.to_owned(),
    }
}

pub(super) fn by_name(n: &str) -> Vec<SourceRef> {
    vec![SourceRef::PodName(n.into())]
}

pub(super) fn by_app(app: &str) -> Vec<SourceRef> {
    vec![SourceRef::Selector(Selector { match_labels: [("app".into(), app.into())].into(), expressions: vec![] })]
}

/// Seed 000/001: ecs-source on node-a, ecs-target on node-b, one filter.
pub(super) fn seed_cluster() -> Cluster {
    let mut c = Cluster::default();
    c.nodes.extend(["node-a".to_owned(), "node-b".to_owned()]);
    c.add_pod(pod("team", "ecs-source", "node-a", "192.168.0.230", "src"));
    c.add_pod(pod("team", "ecs-test", "node-b", "192.168.0.161", "client"));
    c.add_pod(pod("team", "ecs-target", "node-b", "192.168.0.12", "collector"));
    c.filters.insert(
        ObjKey::new("team", "mirror-filter-a"),
        FilterInfo {
            namespace: "team".into(),
            name: "mirror-filter-a".into(),
            inbound: vec![rule(1)],
            outbound: vec![],
            invalid: None,
            deleting: false,
        },
    );
    c
}

pub(super) fn add(c: &mut Cluster, s: SessionInfo) {
    c.sessions.insert(s.key.clone(), s);
}

pub(super) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

pub(super) fn cond<'a>(
    st: &'a podmirror_crds::api::MirrorSessionStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    st.conditions.as_ref().and_then(|v| v.iter().find(|c| c.type_ == t)).unwrap()
}

#[test]
fn seed_session_resolves_and_lands_on_the_source_node_only() {
    let mut c = seed_cluster();
    add(
        &mut c,
        session(
            "team",
            "mirror-session-a",
            "t1",
            1,
            1,
            by_name("ecs-source"),
            TargetRef::Pod { name: "ecs-target".into() },
        ),
    );
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let sp = &p.sessions[&SessionKey::new("team", "mirror-session-a")];
    assert_eq!(sp.admission, Admission::Accepted);
    assert_eq!(sp.resolution.target, Ok(vec![ip("192.168.0.12")]));
    assert_eq!(sp.accepted_generation, Some(1));

    let a = &p.nodes["node-a"];
    assert_eq!(a.node, "node-a");
    assert_eq!(a.sessions.len(), 1);
    let ns = &a.sessions[0];
    assert_eq!((ns.vni, ns.priority, ns.packet_length), (1, 1, Some(96)));
    assert_eq!(ns.targets, vec!["192.168.0.12".to_owned()]);
    assert_eq!(ns.inbound_rules, vec![rule(1)]);
    assert_eq!(a.pods.len(), 1);
    assert_eq!(a.pods[0].name, "ecs-source");
    assert_eq!(a.pods[0].ips, vec!["192.168.0.230".to_owned()]);
    assert_eq!(a.pods[0].sessions, vec!["team/mirror-session-a".to_owned()]);
    // node-b hosts no source: an empty object, so its agent knows it has nothing.
    assert!(p.nodes["node-b"].sessions.is_empty() && p.nodes["node-b"].pods.is_empty());
    assert_eq!(p.filter_sessions[&ObjKey::new("team", "mirror-filter-a")], 1);
}

#[test]
fn rate_limit_and_flow_sampling_reach_the_node_state() {
    let mut c = seed_cluster();
    let mut s = session(
        "team",
        "mirror-session-a",
        "t1",
        1,
        1,
        by_name("ecs-source"),
        TargetRef::Pod { name: "ecs-target".into() },
    );
    s.rate_limit = Some(podmirror_crds::api::RateLimit { packets_per_second: Some(500), bytes_per_second: None });
    s.flow_sampling = Some(podmirror_crds::api::FlowSampling { one_in: Some(4), percent: None });
    add(&mut c, s);
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let ns = &p.nodes["node-a"].sessions[0];
    assert_eq!(ns.rate_limit.and_then(|r| r.packets_per_second), Some(500));
    assert_eq!(ns.flow_sampling.and_then(|f| f.one_in), Some(4));
}

#[test]
fn status_goes_pending_then_active_when_the_node_reports() {
    let mut c = seed_cluster();
    add(&mut c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Pod { name: "ecs-target".into() }));
    let key = SessionKey::new("team", "s");
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    assert_eq!(st.phase, Some(SessionPhase::Pending));
    assert_eq!(cond(&st, "Accepted").status, "True");
    assert_eq!(cond(&st, "Programmed").status, "False");
    assert_eq!(cond(&st, "Programmed").reason, "WaitingForNodes");
    assert_eq!(cond(&st, "Programmed").observed_generation, Some(1));

    c.sessions
        .get_mut(&key)
        .unwrap()
        .node_reports
        .insert("node-a".into(), NodeReport { generation: Some(1), programmed_pods: 1, error: None });
    let p = plan(&c, p.accepted.clone(), &Limits::default());
    let st2 = session_status(&c.sessions[&key], &p.sessions[&key], st.conditions.as_deref().unwrap(), &now());
    assert_eq!(st2.phase, Some(SessionPhase::Active));
    assert_eq!(cond(&st2, "Programmed").status, "True");
    let src = &st2.sources.as_ref().unwrap()[0];
    assert_eq!((src.pod.as_str(), src.node.as_deref()), ("ecs-source", Some("node-a")));
    assert_eq!(st2.target.as_ref().unwrap().addresses, Some(vec!["192.168.0.12".to_owned()]));
}

#[test]
fn missing_filter_and_unconsented_service_are_named() {
    let mut c = seed_cluster();
    c.services.insert(
        ObjKey::new("obs", "collector"),
        ServiceInfo {
            namespace: "obs".into(),
            name: "collector".into(),
            consent: Consent::OwnNamespace,
            cluster_ips: vec![],
        },
    );
    c.endpoints.insert(
        ObjKey::new("obs", "collector"),
        [("s1".to_owned(), vec![EndpointInfo { ip: ip("10.9.0.1"), pod: None }])].into(),
    );
    let mut s = session(
        "team",
        "s",
        "t1",
        1,
        1,
        by_name("ecs-source"),
        TargetRef::Service { namespace: "obs".into(), name: "collector".into() },
    );
    s.filter_ref = "nope".into();
    add(&mut c, s);
    let key = SessionKey::new("team", "s");
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    assert_eq!(cond(&st, "FilterResolved").reason, "FilterNotFound");
    assert!(cond(&st, "FilterResolved").message.contains("spec.filterRef"));
    assert_eq!(cond(&st, "TargetResolved").reason, "TargetNotConsented");
    assert!(cond(&st, "TargetResolved").message.contains("podmirror.io/allow-mirror-from"));
    assert!(p.nodes["node-a"].sessions.is_empty(), "nothing is programmed without filter and target");

    // Consent given: the target resolves to the ready endpoints.
    c.services.get_mut(&ObjKey::new("obs", "collector")).unwrap().consent = Consent::parse(Some("team"));
    c.sessions.get_mut(&key).unwrap().filter_ref = "mirror-filter-a".into();
    let p = plan(&c, p.accepted.clone(), &Limits::default());
    assert_eq!(p.sessions[&key].resolution.target, Ok(vec![ip("10.9.0.1")]));
    assert_eq!(p.nodes["node-a"].sessions[0].targets, vec!["10.9.0.1".to_owned()]);
}

#[test]
fn sources_stay_in_the_session_namespace() {
    let mut c = seed_cluster();
    c.add_pod(pod("other", "foreign", "node-a", "10.1.1.1", "src"));
    add(&mut c, session("team", "s", "t1", 1, 1, by_app("src"), TargetRef::Ip("10.50.0.1".into())));
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let names: Vec<&str> =
        p.sessions[&SessionKey::new("team", "s")].resolution.sources.iter().map(|s| s.pod.name()).collect();
    assert_eq!(names, vec!["ecs-source"]);
}

#[test]
fn newer_session_is_refused_on_a_priority_clash_and_the_older_keeps_running() {
    let mut c = seed_cluster();
    add(
        &mut c,
        session("team", "old", "2026-01-01T00:00:00Z", 1, 1, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())),
    );
    add(
        &mut c,
        session("team", "new", "2026-01-02T00:00:00Z", 1, 2, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())),
    );
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    assert_eq!(p.sessions[&SessionKey::new("team", "old")].admission, Admission::Accepted);
    match &p.sessions[&SessionKey::new("team", "new")].admission {
        Admission::Refused { refusal, kept: None } => {
            assert_eq!(refusal.quota.reason(), "PriorityClash");
            assert!(refusal.message.contains("team/old"), "{}", refusal.message);
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let st = session_status(
        &c.sessions[&SessionKey::new("team", "new")],
        &p.sessions[&SessionKey::new("team", "new")],
        &[],
        &now(),
    );
    assert_eq!(st.phase, Some(SessionPhase::Invalid));
    assert_eq!(cond(&st, "Accepted").reason, "PriorityClash");
    // Programmed says the refusal is why, not the (resolved) filter and target.
    let programmed = cond(&st, "Programmed");
    assert_eq!((programmed.status.as_str(), programmed.reason.as_str()), ("False", "NotAccepted"));
    assert!(programmed.message.contains("quota") && !programmed.message.contains("filter"), "{}", programmed.message);
    assert_eq!(p.refusals["PriorityClash"], 1);
    let names: Vec<&str> = p.nodes["node-a"].sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["old"]);
}

#[test]
fn an_accepted_session_is_never_displaced_by_an_older_newcomer() {
    // "old" is accepted first; then a session with an *earlier* creation time
    // appears (clock skew, restore): it is new, so it is the one refused.
    let mut c = seed_cluster();
    add(
        &mut c,
        session(
            "team",
            "running",
            "2026-01-02T00:00:00Z",
            1,
            1,
            by_name("ecs-source"),
            TargetRef::Ip("10.50.0.1".into()),
        ),
    );
    let p1 = plan(&c, AcceptedSet::new(), &Limits::default());
    add(
        &mut c,
        session(
            "team",
            "restored",
            "2026-01-01T00:00:00Z",
            1,
            1,
            by_name("ecs-source"),
            TargetRef::Ip("10.50.0.1".into()),
        ),
    );
    let p2 = plan(&c, p1.accepted.clone(), &Limits::default());
    assert_eq!(p2.sessions[&SessionKey::new("team", "running")].admission, Admission::Accepted);
    assert!(matches!(p2.sessions[&SessionKey::new("team", "restored")].admission, Admission::Refused { .. }));
    assert_eq!(p1.nodes["node-a"], p2.nodes["node-a"], "running mirroring undisturbed");
}

#[test]
fn a_refused_change_keeps_the_last_accepted_state_on_the_nodes() {
    let mut c = seed_cluster();
    for i in 0..10 {
        c.add_pod(pod("team", &format!("web-{i}"), "node-b", &format!("10.2.0.{}", i + 1), "web"));
    }
    let key = SessionKey::new("team", "s");
    add(&mut c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    let p1 = plan(&c, AcceptedSet::new(), &Limits::default());
    assert_eq!(p1.sessions[&key].admission, Admission::Accepted);

    // Generation 2 selects 11 pods: over the sources-per-session quota.
    let s = c.sessions.get_mut(&key).unwrap();
    s.generation = 2;
    s.sources = vec![SourceRef::PodName("ecs-source".into()), by_app("web").remove(0)];
    let p2 = plan(&c, p1.accepted.clone(), &Limits::default());
    match &p2.sessions[&key].admission {
        Admission::Refused { refusal, kept } => {
            assert_eq!(refusal.quota.reason(), "SourcesPerSession");
            assert_eq!((refusal.limit, refusal.would_be), (10, 11));
            assert_eq!(*kept, Some(1));
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(p2.sessions[&key].accepted_generation, Some(1));
    assert_eq!(p2.nodes["node-a"], p1.nodes["node-a"]);
    assert!(p2.nodes["node-b"].sessions.is_empty(), "the refused pods are not mirrored");
    let st = session_status(&c.sessions[&key], &p2.sessions[&key], &[], &now());
    assert_eq!(st.phase, Some(SessionPhase::Degraded));
    let msg = &cond(&st, "Accepted").message;
    assert!(
        msg.contains("SourcesPerSession") && msg.contains("11 > 10") && msg.contains("generation 1 keeps"),
        "{msg}"
    );

    // Raising the operator setting accepts the change.
    let p3 = plan(&c, p2.accepted.clone(), &Limits { sources_per_session: 20, ..Limits::default() });
    assert_eq!(p3.sessions[&key].admission, Admission::Accepted);
    assert_eq!(p3.nodes["node-b"].pods.len(), 10);
}

#[test]
fn vni_clash_per_target_and_target_capacity() {
    let mut c = seed_cluster();
    add(&mut c, session("team", "a", "t1", 1, 7, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    add(&mut c, session("team", "b", "t2", 2, 7, by_name("ecs-test"), TargetRef::Ip("10.50.0.1".into())));
    add(&mut c, session("team", "c", "t3", 2, 7, by_name("ecs-test"), TargetRef::Ip("10.50.0.2".into())));
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    assert_eq!(p.sessions[&SessionKey::new("team", "a")].admission, Admission::Accepted);
    assert!(matches!(&p.sessions[&SessionKey::new("team", "b")].admission,
        Admission::Refused { refusal, .. } if refusal.quota.reason() == "VNIClash"));
    assert_eq!(p.sessions[&SessionKey::new("team", "c")].admission, Admission::Accepted, "same VNI, other target");

    // An IP target takes 10 sessions; the 11th is refused.
    let mut c = seed_cluster();
    for i in 0..11 {
        c.add_pod(pod("team", &format!("p{i}"), "node-a", &format!("10.3.0.{}", i + 1), "x"));
        add(
            &mut c,
            session(
                "team",
                &format!("s{i:02}"),
                &format!("t{i:02}"),
                1,
                i,
                by_name(&format!("p{i}")),
                TargetRef::Ip("10.50.0.9".into()),
            ),
        );
    }
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let refused: Vec<String> =
        p.sessions.iter().filter(|(_, s)| s.admission != Admission::Accepted).map(|(k, _)| k.name.clone()).collect();
    assert_eq!(refused, vec!["s10".to_owned()]);
}

#[test]
fn three_sessions_per_pod_and_source_may_not_be_target() {
    let mut c = seed_cluster();
    for i in 1..=4 {
        add(
            &mut c,
            session(
                "team",
                &format!("s{i}"),
                &format!("t{i}"),
                i,
                i,
                by_name("ecs-source"),
                TargetRef::Ip("10.50.0.1".into()),
            ),
        );
    }
    add(&mut c, session("team", "loop", "t9", 9, 9, by_name("ecs-test"), TargetRef::Pod { name: "ecs-source".into() }));
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    assert!(matches!(&p.sessions[&SessionKey::new("team", "s4")].admission,
        Admission::Refused { refusal, .. } if refusal.quota.reason() == "SessionsPerSourcePod" && refusal.would_be == 4));
    assert!(matches!(&p.sessions[&SessionKey::new("team", "loop")].admission,
        Admission::Refused { refusal, .. } if refusal.quota.reason() == "SourceIsTarget"));
}

#[test]
fn cluster_quota_is_an_operator_setting() {
    let mut c = seed_cluster();
    add(&mut c, session("team", "a", "t1", 1, 1, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    add(&mut c, session("team", "b", "t2", 2, 2, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    let p = plan(&c, AcceptedSet::new(), &Limits { sessions_per_cluster: 1, ..Limits::default() });
    assert!(matches!(&p.sessions[&SessionKey::new("team", "b")].admission,
        Admission::Refused { refusal, .. } if refusal.quota.reason() == "SessionsPerCluster" && refusal.limit == 1));
}

#[test]
fn deletion_and_disable_and_vanishing_pods() {
    let mut c = seed_cluster();
    let key = SessionKey::new("team", "s");
    add(&mut c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    let p1 = plan(&c, AcceptedSet::new(), &Limits::default());
    assert_eq!(p1.nodes["node-a"].sessions.len(), 1);

    c.sessions.get_mut(&key).unwrap().enabled = false;
    c.sessions.get_mut(&key).unwrap().generation = 2;
    let p2 = plan(&c, p1.accepted.clone(), &Limits::default());
    assert!(!p2.nodes["node-a"].sessions[0].enabled, "the agent learns it is disabled");
    let st = session_status(&c.sessions[&key], &p2.sessions[&key], &[], &now());
    assert_eq!(st.phase, Some(SessionPhase::Disabled));

    // The pod goes away: the session stays accepted, nothing on the node.
    c.pods.get_mut("team").unwrap().remove("ecs-source");
    let p3 = plan(&c, p2.accepted.clone(), &Limits::default());
    assert!(p3.nodes["node-a"].sessions.is_empty());
    assert_eq!(p3.sessions[&key].resolution.sources_problem.as_ref().unwrap().reason.as_str(), "SourceNotFound");

    // Deleting: gone from every node and from the accepted set.
    c.sessions.get_mut(&key).unwrap().deleting = true;
    let p4 = plan(&c, p3.accepted.clone(), &Limits::default());
    assert!(p4.sessions.is_empty() && p4.accepted.is_empty());
}

#[test]
fn recovery_from_node_states_keeps_the_accepted_generation() {
    let mut c = seed_cluster();
    let key = SessionKey::new("team", "s");
    add(&mut c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    let p1 = plan(&c, AcceptedSet::new(), &Limits::default());
    // A refused change is pending when the operator restarts.
    let s = c.sessions.get_mut(&key).unwrap();
    s.generation = 2;
    s.vni = 99_999_999; // not a valid VNI: the model refuses it
    s.target_port = 0;
    let recovered = recover(&c, p1.nodes.values().map(|n| &**n));
    assert_eq!(recovered[&key].session.generation, 1);
    assert_eq!(recovered[&key].facts.sources.len(), 1);
    let p2 = plan(&c, recovered.clone(), &Limits::default());
    assert_eq!(p2.nodes["node-a"].sessions[0].generation, 1, "generation 1 keeps mirroring");
    assert!(
        matches!(p2.sessions[&key].admission, Admission::Invalid { kept: Some(1), .. }),
        "{:?}",
        p2.sessions[&key].admission
    );
}

#[test]
fn an_invalid_filter_refuses_its_sessions_and_says_so_on_the_filter() {
    let mut c = seed_cluster();
    let fk = ObjKey::new("team", "mirror-filter-a");
    c.filters.get_mut(&fk).unwrap().invalid =
        Some("spec.inboundRules[0].destinationCIDR: 10.0.0.0/33 is not a valid IPv4 prefix".into());
    add(&mut c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Ip("10.50.0.1".into())));
    let key = SessionKey::new("team", "s");
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    match &p.sessions[&key].admission {
        Admission::Invalid { problem, kept: None } => {
            assert_eq!(problem.reason.as_str(), "InvalidFilter");
            assert!(
                problem.message.contains("MirrorFilter team/mirror-filter-a: spec.inboundRules[0].destinationCIDR"),
                "{}",
                problem.message
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(p.nodes["node-a"].sessions.is_empty());
    let fs = super::status::filter_status(&c.filters[&fk], p.filter_sessions[&fk], Some(4), &[], &now());
    let cond = &fs.conditions.as_ref().unwrap()[0];
    assert_eq!((cond.type_.as_str(), cond.status.as_str(), cond.reason.as_str()), ("Valid", "False", "InvalidRules"));
    assert!(cond.message.contains("/33"));
    assert_eq!((fs.sessions, fs.observed_generation), (Some(1), Some(4)));
}
