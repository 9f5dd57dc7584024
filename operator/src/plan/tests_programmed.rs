//! `Programmed` waits for every source node to report the accepted generation.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use podmirror_crds::api::SessionPhase;
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::quota::QuotaLimits as Limits;

use super::cluster::{NodeReport, TargetRef};
use super::status::session_status;
use super::tests::{add, by_app, cond, now, pod, seed_cluster, session};
use super::{AcceptedSet, plan};

fn report(generation: Option<i64>, pods: usize) -> NodeReport {
    NodeReport { generation, programmed_pods: pods, error: None }
}

#[test]
fn a_node_still_on_an_older_generation_keeps_programmed_false_and_is_named() {
    let mut c = seed_cluster();
    // Sources on two nodes: node-a (ecs-source) and node-b (web-b).
    c.add_pod(pod("team", "web-a", "node-a", "192.168.0.240", "web"));
    c.add_pod(pod("team", "web-b", "node-b", "192.168.0.241", "web"));
    let mut s = session("team", "s", "t1", 1, 1, by_app("web"), TargetRef::Pod { name: "ecs-target".into() });
    s.generation = 2;
    s.node_reports.insert("node-a".into(), report(Some(2), 1));
    // node-b programmed generation 1 and has not caught up with the change.
    s.node_reports.insert("node-b".into(), report(Some(1), 1));
    add(&mut c, s);
    let key = SessionKey::new("team", "s");
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    assert_eq!(p.sessions[&key].accepted_generation, Some(2));
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    let prog = cond(&st, "Programmed");
    assert_eq!((prog.status.as_str(), prog.reason.as_str()), ("False", "WaitingForNodes"));
    assert!(prog.message.contains("node-b (generation 1, not 2)"), "{}", prog.message);
    assert!(!prog.message.contains("node-a"), "node-a is up to date: {}", prog.message);
    assert_eq!(st.phase, Some(SessionPhase::Pending), "not Active before every node has generation 2");

    // node-b catches up: Programmed, Active.
    c.sessions.get_mut(&key).unwrap().node_reports.insert("node-b".into(), report(Some(2), 1));
    let p = plan(&c, p.accepted, &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    assert_eq!(cond(&st, "Programmed").status, "True");
    assert_eq!(st.phase, Some(SessionPhase::Active));
}

#[test]
fn an_entry_without_a_generation_or_with_an_old_error_is_not_programmed() {
    let mut c = seed_cluster();
    let mut s = session(
        "team",
        "s",
        "t1",
        1,
        1,
        super::tests::by_name("ecs-source"),
        TargetRef::Pod { name: "ecs-target".into() },
    );
    s.generation = 3;
    // An agent that reports no generation (an older agent) never counts.
    s.node_reports.insert("node-a".into(), report(None, 1));
    add(&mut c, s);
    let key = SessionKey::new("team", "s");
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    let prog = cond(&st, "Programmed");
    assert_eq!(prog.status, "False");
    assert!(prog.message.contains("node-a (no generation reported, not 3)"), "{}", prog.message);

    // An error reported for generation 2 is about a state the node is
    // leaving: the session waits for generation 3 instead of going Degraded.
    let r = NodeReport { generation: Some(2), programmed_pods: 0, error: Some("no veth".into()) };
    c.sessions.get_mut(&key).unwrap().node_reports.insert("node-a".into(), r);
    let p = plan(&c, p.accepted, &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    assert_eq!(cond(&st, "Programmed").reason, "WaitingForNodes");
    assert_eq!(st.phase, Some(SessionPhase::Pending));

    // The same error at generation 3 is the node's answer: Degraded, named.
    let r = NodeReport { generation: Some(3), programmed_pods: 0, error: Some("no veth".into()) };
    c.sessions.get_mut(&key).unwrap().node_reports.insert("node-a".into(), r);
    let p = plan(&c, p.accepted, &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    assert_eq!(cond(&st, "Programmed").reason, "NodeError");
    assert!(cond(&st, "Programmed").message.contains("node node-a: no veth"));
    assert_eq!(st.phase, Some(SessionPhase::Degraded));
}
