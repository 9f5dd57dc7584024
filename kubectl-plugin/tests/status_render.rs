//! `status` rendering on recorded objects built with the API types, and the
//! skip reasons `explain` reads from a live session's status.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kubectl_podmirror::explain::{Decision, PodInfo, SkipReason, Snapshot, explain};
use kubectl_podmirror::packet::packet;
use kubectl_podmirror::status::{Output, StatusRow, render};
use podmirror_crds::api::*;
use podmirror_crds::model::Direction::Inbound;
use podmirror_crds::model::quota::Quota;
use podmirror_testkit::objects::{self, accept};
use serde_json::json;

fn time() -> Time {
    Time("2026-01-01T00:00:00Z".parse().unwrap())
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: time(),
        observed_generation: Some(1),
    }
}

fn session(name: &str, priority: i32, status: Option<MirrorSessionStatus>) -> MirrorSession {
    let s = objects::session(name).priority(priority).vni(priority).packet_length(96);
    match status {
        Some(status) => s.status(status).build(),
        None => s.build(),
    }
}

fn active_status() -> MirrorSessionStatus {
    MirrorSessionStatus {
        phase: Some(SessionPhase::Active),
        conditions: Some(vec![
            condition("Accepted", true, "Accepted", "generation 1 passed validation and quotas"),
            condition("Programmed", true, "Programmed", "programmed on every source node"),
        ]),
        source_count: Some(1),
        mirrored_packets: Some(42),
        target: Some(TargetStatus {
            kind: TargetKind::Pod,
            name: "ecs-target".into(),
            addresses: Some(vec!["10.244.1.7".into()]),
        }),
        nodes: Some(vec![NodeMirrorStatus {
            node: "node-a".into(),
            programmed_generation: None,
            skipped: None,
            programmed_interfaces: Some(vec!["veth1a2b".into(), "veth3c4d".into()]),
            mirrored_packets: Some(42),
            mirrored_bytes: Some(4032),
            dropped: Some(0),
            truncated: Some(3),
            last_update: Some(time()),
            error: None,
        }]),
        ..MirrorSessionStatus::default()
    }
}

/// A recorded object as the API server sends it, with a `skipped` counter
/// newer than the typed API.
fn recorded(s: &MirrorSession, skipped: Option<i64>) -> StatusRow {
    let mut raw = serde_json::to_value(s).unwrap();
    if let Some(n) = skipped {
        raw["status"]["nodes"][0]["skipped"] = json!(n);
    }
    StatusRow::from_value(raw).unwrap()
}

#[test]
fn one_block_per_session_with_conditions_and_node_counters() {
    let rows = [
        recorded(&session("mirror-session-a", 1, Some(active_status())), Some(5)),
        recorded(&session("fresh", 2, None), None),
    ];
    let text = render(&rows, Output::Table).unwrap();
    let expected = "\
MirrorSession default/mirror-session-a
  Phase:     Active
  Mirrors:   priority 1, VXLAN VNI 1, first 96 bytes, filter mirror-filter-a, enabled
  Target:    Pod ecs-target -> 10.244.1.7 (UDP 4789)
  Sources:   1 pod(s), 42 packet(s) mirrored on all nodes
  Conditions:
    TYPE        STATUS  REASON      MESSAGE
    Accepted    True    Accepted    generation 1 passed validation and quotas
    Programmed  True    Programmed  programmed on every source node
  Nodes:
    NODE    INTERFACES         MIRRORED  BYTES  TRUNCATED  DROPPED  SKIPPED  ERROR
    node-a  veth1a2b,veth3c4d  42        4032   3          0        5        -

MirrorSession default/fresh
  Phase:     (none yet: is podmirror-operator running?)
  Mirrors:   priority 2, VXLAN VNI 2, first 96 bytes, filter mirror-filter-a, enabled
  Target:    not resolved
  Sources:   - pod(s), - packet(s) mirrored on all nodes
  Conditions:
    (none)
  Nodes:
    (no node has reported)
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn json_and_yaml_are_the_objects_as_recorded() {
    let one = [recorded(&session("a", 1, Some(active_status())), Some(5))];
    let json: serde_json::Value = serde_json::from_str(&render(&one, Output::Json).unwrap()).unwrap();
    assert_eq!(json["kind"], "MirrorSession", "a single session is the object itself");
    assert_eq!(json["status"]["nodes"][0]["skipped"], 5, "fields newer than the plugin are kept");
    let two = [one[0].clone(), recorded(&session("b", 2, None), None)];
    let yaml: serde_json::Value = serde_yaml::from_str(&render(&two, Output::Yaml).unwrap()).unwrap();
    assert_eq!(yaml["kind"], "List");
    assert_eq!(yaml["items"][1]["metadata"]["name"], "b");
    assert_eq!(render(&[], Output::Table).unwrap(), "No MirrorSessions found.\n");
}

fn live_snapshot(sessions: Vec<MirrorSession>) -> Snapshot {
    let filter = objects::filter("mirror-filter-a").inbound(accept(1)).build();
    Snapshot {
        pods: vec![PodInfo { namespace: "default".into(), name: "ecs-source".into(), ..PodInfo::default() }],
        sessions,
        filters: vec![filter],
        live: true,
    }
}

#[test]
fn live_sessions_are_skipped_when_refused_pending_or_excluding_the_pod() {
    let refused = MirrorSessionStatus {
        conditions: Some(vec![condition(
            "Accepted",
            false,
            "SessionsPerSourcePod",
            "quota SessionsPerSourcePod exceeded (4 > 3)",
        )]),
        ..MirrorSessionStatus::default()
    };
    let excluded = MirrorSessionStatus {
        conditions: Some(vec![condition("Accepted", true, "Accepted", "ok")]),
        sources: Some(vec![SourceStatus {
            pod: "ecs-source".into(),
            node: None,
            pod_ips: None,
            state: SourceState::Excluded,
            message: Some("also a target".into()),
        }]),
        ..MirrorSessionStatus::default()
    };
    let mut changed = active_status();
    changed.conditions = Some(vec![condition("Accepted", false, "VNIClash", "VNI 7 is taken")]);
    changed.accepted_generation = Some(3);
    let snapshot = live_snapshot(vec![
        session("a-refused", 1, Some(refused)),
        session("b-pending", 2, None),
        session("c-excluded", 3, Some(excluded)),
        session("d-changed", 4, Some(changed)),
    ]);
    let p = packet("udp", "10.0.0.1:53", "10.0.0.2:53").unwrap();
    let e = explain(&snapshot, "default", "ecs-source", Inbound, p).unwrap();
    let skipped: Vec<_> = e.skipped.iter().map(|s| (s.key.name.as_str(), s.reason.clone())).collect();
    assert_eq!(
        skipped,
        [
            (
                "a-refused",
                SkipReason::Refused {
                    reason: ConditionReason::Quota(Quota::SessionsPerSourcePod),
                    message: "quota SessionsPerSourcePod exceeded (4 > 3)".into()
                }
            ),
            ("b-pending", SkipReason::NotYetAccepted),
            ("c-excluded", SkipReason::Excluded("also a target".into())),
        ]
    );
    // A refused change keeps the last accepted generation mirroring.
    assert!(matches!(&e.decision, Decision::Copied { session, .. } if session.name == "d-changed"));
    let note = e.sessions[0].note.clone().unwrap();
    assert!(note.contains("still runs generation 3"), "{note}");
}
