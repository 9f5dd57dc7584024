//! Time-bounded sessions: programmed only inside `spec.schedule`, with the
//! pass's "now" given as data (the controller's clock), so every boundary is
//! tested exactly.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use podmirror_crds::api::{MirrorSessionStatus, SessionPhase, SessionSchedule};
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::quota::QuotaLimits as Limits;

use super::cluster::{Cluster, NodeReport, TargetRef};
use super::status::session_status;
use super::tests::{add, by_name, cond, seed_cluster, session};
use super::{AcceptedSet, Admission, Plan, plan};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn scheduled(c: &mut Cluster, name: &str, schedule: SessionSchedule) -> SessionKey {
    let mut s = session("team", name, "t1", 1, 1, by_name("ecs-source"), TargetRef::Pod { name: "ecs-target".into() });
    s.schedule = Some(schedule);
    add(c, s);
    SessionKey::new("team", name)
}

fn pass(c: &mut Cluster, at: &str, previous: AcceptedSet, limits: &Limits) -> Plan {
    c.now = t(at);
    plan(c, previous, limits)
}

fn status(c: &Cluster, p: &Plan, key: &SessionKey) -> MirrorSessionStatus {
    session_status(&c.sessions[key], &p.sessions[key], &[], &Time(c.now))
}

fn on_node_a(p: &Plan) -> bool {
    !p.nodes["node-a"].sessions.is_empty()
}

#[test]
fn a_session_is_programmed_only_between_start_and_stop() {
    let mut c = seed_cluster();
    let key = scheduled(
        &mut c,
        "s",
        SessionSchedule {
            start_time: Some(Time(t("2026-01-01T10:00:00Z"))),
            stop_time: Some(Time(t("2026-01-01T10:30:00Z"))),
            duration: None,
        },
    );
    let limits = Limits::default();

    // Before the start: accepted (it holds its place), not programmed.
    let p = pass(&mut c, "2026-01-01T09:00:00Z", AcceptedSet::new(), &limits);
    assert!(!on_node_a(&p));
    assert_eq!(p.next_wakeup, Some(t("2026-01-01T10:00:00Z")), "wake at the start, with no object change");
    assert!(p.accepted.contains_key(&key));
    let st = status(&c, &p, &key);
    assert_eq!(st.phase, Some(SessionPhase::Scheduled));
    assert_eq!(cond(&st, "Programmed").reason, "NotStarted");
    assert!(
        cond(&st, "Programmed").message.contains("starts at 2026-01-01T10:00:00Z"),
        "{:?}",
        cond(&st, "Programmed")
    );
    assert_eq!(
        (cond(&st, "Completed").status.as_str(), cond(&st, "Completed").reason.as_str()),
        ("False", "NotStarted")
    );

    // At the start: on the node; Pending until node-a reports, then Active.
    let p = pass(&mut c, "2026-01-01T10:00:00Z", p.accepted, &limits);
    assert!(on_node_a(&p));
    assert_eq!(p.next_wakeup, Some(t("2026-01-01T10:30:00Z")));
    assert_eq!(status(&c, &p, &key).phase, Some(SessionPhase::Pending));
    c.sessions
        .get_mut(&key)
        .unwrap()
        .node_reports
        .insert("node-a".into(), NodeReport { generation: Some(1), programmed_pods: 1, error: None });
    let p = pass(&mut c, "2026-01-01T10:29:59Z", p.accepted, &limits);
    let st = status(&c, &p, &key);
    assert_eq!(st.phase, Some(SessionPhase::Active));
    assert!(cond(&st, "Completed").message.contains("until 2026-01-01T10:30:00Z"));

    // At the stop: off every node, Completed, out of the quotas.
    let p = pass(&mut c, "2026-01-01T10:30:00Z", p.accepted, &limits);
    assert!(!on_node_a(&p));
    assert_eq!(p.next_wakeup, None, "nothing left to wake up for");
    assert!(!p.accepted.contains_key(&key), "a completed session holds no quota place");
    assert!(matches!(p.sessions[&key].admission, Admission::Ended { .. }));
    let st = status(&c, &p, &key);
    assert_eq!(st.phase, Some(SessionPhase::Completed));
    let done = cond(&st, "Completed");
    assert_eq!((done.status.as_str(), done.reason.as_str()), ("True", "StopTimeReached"));
    assert!(done.message.contains("2026-01-01T10:30:00Z"));
    assert_eq!(cond(&st, "Programmed").reason, "Completed");
}

#[test]
fn a_duration_counts_from_the_first_acceptance_across_passes_and_restarts() {
    let mut c = seed_cluster();
    let key = scheduled(&mut c, "s", SessionSchedule { duration: Some("10m".into()), ..Default::default() });
    let limits = Limits::default();
    let p = pass(&mut c, "2026-01-01T12:00:00Z", AcceptedSet::new(), &limits);
    assert!(on_node_a(&p));
    let st = status(&c, &p, &key);
    assert_eq!(st.accepted_time, Some(Time(t("2026-01-01T12:00:00Z"))), "recorded for restarts");
    assert_eq!(p.next_wakeup, Some(t("2026-01-01T12:10:00Z")));

    // The next pass runs before the watch shows the status write: the
    // acceptance time is carried by the accepted set, not taken anew.
    let p = pass(&mut c, "2026-01-01T12:00:01Z", p.accepted, &limits);
    assert_eq!(status(&c, &p, &key).accepted_time, Some(Time(t("2026-01-01T12:00:00Z"))));

    // An operator restart: no accepted set, the time comes from the status.
    c.sessions.get_mut(&key).unwrap().accepted_time = st.accepted_time.map(|t| t.0);
    let p = pass(&mut c, "2026-01-01T12:05:00Z", AcceptedSet::new(), &limits);
    assert!(on_node_a(&p));
    assert_eq!(p.next_wakeup, Some(t("2026-01-01T12:10:00Z")), "not 10 minutes from the restart");
    let p = pass(&mut c, "2026-01-01T12:10:00Z", p.accepted, &limits);
    assert!(!on_node_a(&p));
    let st = status(&c, &p, &key);
    assert_eq!(st.phase, Some(SessionPhase::Completed));
    assert_eq!(cond(&st, "Completed").reason, "DurationElapsed");
    assert_eq!(st.accepted_time, Some(Time(t("2026-01-01T12:00:00Z"))), "kept after completion");
}

#[test]
fn a_completed_session_frees_its_quota_place_for_a_new_one() {
    let mut c = seed_cluster();
    let limits = Limits { sessions_per_cluster: 1, ..Limits::default() };
    let old = scheduled(
        &mut c,
        "old",
        SessionSchedule { stop_time: Some(Time(t("2026-01-01T08:00:00Z"))), ..Default::default() },
    );
    let mut s = session("team", "new", "t2", 2, 2, by_name("ecs-source"), TargetRef::Pod { name: "ecs-target".into() });
    s.schedule = None;
    add(&mut c, s);
    let new = SessionKey::new("team", "new");
    let p = pass(&mut c, "2026-01-01T07:00:00Z", AcceptedSet::new(), &limits);
    assert_eq!(p.sessions[&old].admission, Admission::Accepted);
    assert!(matches!(p.sessions[&new].admission, Admission::Refused { .. }), "one session allowed");

    let p = pass(&mut c, "2026-01-01T08:00:00Z", p.accepted, &limits);
    assert!(matches!(p.sessions[&old].admission, Admission::Ended { .. }));
    assert_eq!(p.sessions[&new].admission, Admission::Accepted, "the completed session's place is free");
    assert_eq!(p.nodes["node-a"].sessions.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["new"]);
}

#[test]
fn a_session_without_schedule_has_no_completed_condition_and_no_wakeup() {
    let mut c = seed_cluster();
    add(&mut c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Pod { name: "ecs-target".into() }));
    let key = SessionKey::new("team", "s");
    let p = pass(&mut c, "2026-01-01T07:00:00Z", AcceptedSet::new(), &Limits::default());
    assert_eq!(p.next_wakeup, None);
    let st = status(&c, &p, &key);
    assert!(st.conditions.as_ref().unwrap().iter().all(|c| c.type_ != "Completed"));
    assert_eq!(st.accepted_time, Some(Time(t("2026-01-01T07:00:00Z"))));
}
