//! `explain -f DIR` on the repository's seed scenario and on the model's own
//! seed tables (crds/tests/model_evaluate.rs), written as the YAML a user
//! would apply.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

use kubectl_podmirror::cli::{ExplainArgs, KubeFlags};
use kubectl_podmirror::commands::explain_text;
use kubectl_podmirror::explain::{Decision, RuleOutcome, SkipReason, explain, offline};
use kubectl_podmirror::packet::packet;
use podmirror_crds::model::Direction::{Inbound, Outbound};

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed-scenario")
}

/// A fresh directory holding `files`, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str, files: &[(&str, String)]) -> Dir {
        let path = std::env::temp_dir().join(format!("pm-explain-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        for (file, text) in files {
            std::fs::write(path.join(file), text).unwrap();
        }
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(pod: &str, dir: &Path, inbound: bool, src: &str, dst: &str) -> ExplainArgs {
    ExplainArgs {
        pod: pod.into(),
        inbound,
        outbound: !inbound,
        proto: "tcp".into(),
        src: src.into(),
        dst: dst.into(),
        dir: Some(dir.to_path_buf()),
    }
}

#[tokio::test]
async fn the_readme_example_names_mirror_session_a_and_its_priority_1_rule() {
    let a = args("ecs-source", &seed_dir(), true, "192.168.0.161:40000", "192.168.0.230:1234");
    let text = explain_text(&KubeFlags::default(), &a).await.unwrap();
    let decision = text.lines().nth(1).unwrap();
    assert_eq!(
        decision,
        "Decision: COPIED by session mirror-session-a (inbound rule priority 1, Accept): VXLAN vni 1, cut to 96 bytes"
    );
    assert!(text.contains("1. mirror-session-a (priority 1, filter mirror-filter-a)"), "{text}");
    assert!(text.contains("rule 1     Accept TCP 192.168.0.161/32 -> 192.168.0.230/32 port 1234"), "{text}");
}

#[test]
fn the_seed_reply_is_not_copied_and_other_pods_are_not_selected() {
    let snapshot = offline::load_dir(&seed_dir()).unwrap();
    assert_eq!(snapshot.pods.len(), 3, "pods.yaml and standalone.yaml name the same three pods");
    let ecs_source = snapshot.pods.iter().find(|p| p.name == "ecs-source").unwrap();
    assert_eq!(ecs_source.ips, ["192.168.0.230".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(ecs_source.labels["app.kubernetes.io/name"], "ecs-source");

    let reply = packet("tcp", "192.168.0.230:1234", "192.168.0.161:40000").unwrap();
    let e = explain(&snapshot, "default", "ecs-source", Outbound, reply).unwrap();
    assert_eq!(e.decision, Decision::NoMatch);
    assert_eq!(e.sessions.len(), 1);
    assert!(e.sessions[0].rules.is_empty(), "the filter has no outbound rule");

    let other_port = packet("tcp", "192.168.0.161:40000", "192.168.0.230:1235").unwrap();
    let e = explain(&snapshot, "default", "ecs-source", Inbound, other_port).unwrap();
    assert_eq!(e.decision, Decision::NoMatch);
    assert_eq!(e.sessions[0].rules[0].outcome, RuleOutcome::Missed("destination port 1235 is not in 1234".into()));

    let request = packet("tcp", "192.168.0.161:40000", "192.168.0.230:1234").unwrap();
    let e = explain(&snapshot, "default", "ecs-test", Inbound, request).unwrap();
    assert_eq!(e.decision, Decision::NoMatch);
    assert_eq!(e.skipped.len(), 1);
    assert_eq!(e.skipped[0].reason, SkipReason::NotSelecting);

    let err = explain(&snapshot, "default", "nope", Inbound, request).unwrap_err();
    assert_eq!(err.to_string(), "pod default/nope not found (kubectl get pods -n default)");
}

fn filter(name: &str, inbound: &str) -> String {
    format!(
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  inboundRules:\n{inbound}---\n"
    )
}

fn session(name: &str, priority: u16, filter: &str, extra: &str) -> String {
    format!(
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  priority: {priority}\n  vni: {priority}\n  filterRef: {{name: {filter}}}\n  sources:\n  - podSelector: {{matchLabels: {{app: shop}}}}\n\
         {extra}  target: {{ip: 10.9.9.9}}\n---\n"
    )
}

const INVENTORY: &str = "pods:\n- {name: shop-0, ips: [10.0.0.2], labels: {app: shop}}\n";

#[test]
fn seed_002_table_3_a_reject_first_beats_an_accept_with_the_same_match() {
    let rules = "  - {priority: 2, action: Accept, protocol: TCP, ipFamily: IPv4, destinationCIDR: 10.0.0.0/24}\n\
                 \x20 - {priority: 1, action: Reject, protocol: TCP, ipFamily: IPv4, destinationCIDR: 10.0.0.0/24}\n";
    let dir = Dir::new(
        "reject",
        &[("objects.yaml", filter("f", rules) + &session("a", 1, "f", "")), ("standalone.yaml", INVENTORY.into())],
    );
    let snapshot = offline::load_dir(&dir.0).unwrap();
    let p = packet("tcp", "10.1.0.1:1000", "10.0.0.2:80").unwrap();
    let e = explain(&snapshot, "default", "shop-0", Inbound, p).unwrap();
    assert_eq!(e.decision, Decision::Rejected { session: key("a"), rule: 1 });
    let outcomes: Vec<_> = e.sessions[0].rules.iter().map(|r| (r.priority, r.outcome.clone())).collect();
    assert_eq!(outcomes, [(1, RuleOutcome::Matched), (2, RuleOutcome::NotReached)]);
    assert_eq!(e.sessions[0].rules[0].summary, "TCP any IPv4 -> 10.0.0.0/24");
}

#[test]
fn seed_002_table_3_the_session_with_the_lower_priority_number_wins() {
    let all = "  - {priority: 1, action: Accept, protocol: All, ipFamily: IPv4}\n";
    // b is written first: the order of the files must not matter.
    let dir = Dir::new(
        "priority",
        &[
            ("a.yaml", filter("fa", all) + &session("b", 2, "fb", "")),
            ("b.yaml", filter("fb", all) + &session("a", 1, "fa", "")),
            ("c.yaml", session("c-off", 3, "fa", "  enabled: false\n") + &session("d-nofilter", 4, "gone", "")),
            ("standalone.yaml", INVENTORY.into()),
        ],
    );
    let snapshot = offline::load_dir(&dir.0).unwrap();
    let p = packet("tcp", "10.0.0.1:1000", "10.0.0.2:80").unwrap();
    let e = explain(&snapshot, "default", "shop-0", Inbound, p).unwrap();
    match &e.decision {
        Decision::Copied { session, rule, vni, targets, .. } => {
            assert_eq!((session.name.as_str(), *rule, *vni), ("a", 1, 1));
            assert_eq!(targets, &["10.9.9.9".parse::<std::net::IpAddr>().unwrap()], "an IP target needs no status");
        }
        other => panic!("session a must copy, got {other:?}"),
    }
    let order: Vec<_> = e.sessions.iter().map(|s| s.key.name.as_str()).collect();
    assert_eq!(order, ["a", "b"]);
    assert_eq!(e.sessions[1].rules[0].outcome, RuleOutcome::NotReached);
    let skipped: Vec<_> = e.skipped.iter().map(|s| (s.key.name.as_str(), s.reason.clone())).collect();
    assert_eq!(skipped, [("c-off", SkipReason::Disabled), ("d-nofilter", SkipReason::FilterMissing("gone".into()))]);
}

#[test]
fn a_broken_file_is_named_with_the_field() {
    let dir = Dir::new(
        "broken",
        &[(
            "bad.yaml",
            "apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {name: s}\nspec: {priority: one}\n"
                .into(),
        )],
    );
    let err = offline::load_dir(&dir.0).unwrap_err().to_string();
    assert!(err.ends_with("bad.yaml: document 1: spec.priority: invalid type: string \"one\", expected i32"), "{err}");
}

fn key(name: &str) -> podmirror_crds::model::SessionKey {
    podmirror_crds::model::SessionKey::new("default", name)
}
