//! `examples/seed-scenario/` (docs/concepts.md) is what a user `kubectl apply`s: it
//! parses into the Rust types, passes the CRD's schema + CEL and the Rust
//! validation, and compiles to a session that mirrors exactly the seed's
//! packets.

mod schema_support;

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use podmirror_crds::api::parse::{ApiObject, parse_yaml_documents};
use podmirror_crds::api::{MirrorFilter, MirrorSession};
use podmirror_crds::model::compile::{compile_filter, compile_session, validate_session_spec};
use podmirror_crds::model::{Direction, Encapsulation, PacketMeta, Verdict, evaluate, ipproto};
use schema_support::{api_server_errors, checked_in_schemas};
use serde::Deserialize;

fn example(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/seed-scenario").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn only<T>(file: &str, pick: impl Fn(ApiObject) -> Option<T>) -> T {
    let mut objects: Vec<T> = parse_yaml_documents(&example(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .filter_map(pick)
        .collect();
    assert_eq!(objects.len(), 1, "{file} holds one object of the expected kind");
    objects.remove(0)
}

fn filter() -> MirrorFilter {
    only("filter.yaml", |o| match o {
        ApiObject::Filter(f) => Some(*f),
        _ => None,
    })
}

fn session() -> MirrorSession {
    only("session.yaml", |o| match o {
        ApiObject::Session(s) => Some(*s),
        _ => None,
    })
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn the_examples_pass_the_api_server_schema_and_cel() {
    let schemas = checked_in_schemas();
    for (file, kind) in [("filter.yaml", "MirrorFilter"), ("session.yaml", "MirrorSession")] {
        let object: serde_json::Value = serde_yaml::from_str(&example(file)).expect("YAML");
        assert_eq!(object["kind"], kind);
        let errors = api_server_errors(&schemas[kind], &object);
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
}

#[test]
fn the_examples_are_the_seed_scenario() {
    let filter = filter();
    let session = session();
    assert_eq!(filter.metadata.name.as_deref(), Some("mirror-filter-a"));
    assert_eq!(session.metadata.name.as_deref(), Some("mirror-session-a"));
    assert_eq!(session.metadata.namespace.as_deref(), Some("default"));
    compile_filter(&filter.spec).expect("the filter is valid");
    validate_session_spec(&session.spec).expect("the session is valid");

    let spec = &session.spec;
    assert_eq!((spec.priority, spec.vni, spec.packet_length, spec.enabled), (1, 1, Some(96), true));
    assert_eq!(spec.filter_ref.name, "mirror-filter-a");
    assert_eq!(spec.sources.len(), 1);
    assert_eq!(spec.sources[0].pod_name.as_deref(), Some("ecs-source"));
    assert_eq!(spec.target.pod.as_ref().map(|p| p.name.as_str()), Some("ecs-target"));
    assert_eq!(spec.encapsulation, Encapsulation::VXLAN);
    assert_eq!(spec.target_port, 4789);

    // Seed 000 table 5, compiled.
    let compiled = compile_session(&session, &filter, &[ip("192.168.0.99")]).expect("compiles");
    assert!(compiled.outbound.is_empty(), "the filter has no outbound rule");
    let [rule] = compiled.inbound.as_slice() else { panic!("one inbound rule, got {:?}", compiled.inbound) };
    assert_eq!(rule.priority, 1);
    assert_eq!(rule.protocol, Some(ipproto::TCP));
    assert_eq!(rule.source, "192.168.0.161/32".parse().expect("net"));
    assert_eq!(rule.destination, "192.168.0.230/32".parse().expect("net"));
    assert_eq!(rule.source_ports, None);
    assert_eq!(rule.destination_ports.map(|p| (p.from, p.to)), Some((1234, 1234)));
    assert_eq!((compiled.vni, compiled.packet_length, compiled.target_port), (1, Some(96), 4789));
}

#[test]
fn the_compiled_example_copies_ecs_test_to_ecs_source_1234_and_nothing_else() {
    let compiled = compile_session(&session(), &filter(), &[ip("192.168.0.99")]).expect("compiles");
    let sessions = [compiled];
    let packet = |src: &str, dst: &str, sport, dport| PacketMeta {
        source: ip(src),
        destination: ip(dst),
        protocol: ipproto::TCP,
        ports: Some((sport, dport)),
    };
    let hello = packet("192.168.0.161", "192.168.0.230", 40000, 1234);
    assert!(matches!(evaluate(&sessions, &hello, Direction::Inbound), Verdict::Copy { rule_priority: 1, .. }));
    let reply = packet("192.168.0.230", "192.168.0.161", 1234, 40000);
    assert_eq!(evaluate(&sessions, &reply, Direction::Outbound), Verdict::NoMatch, "replies are not copied");
    let other_port = packet("192.168.0.161", "192.168.0.230", 40000, 1235);
    assert_eq!(evaluate(&sessions, &other_port, Direction::Inbound), Verdict::NoMatch);
    let other_client = packet("192.168.0.162", "192.168.0.230", 40000, 1234);
    assert_eq!(evaluate(&sessions, &other_client, Direction::Inbound), Verdict::NoMatch);
}

#[test]
fn the_pods_are_the_seed_client_listener_and_collector_without_privilege() {
    let text = example("pods.yaml");
    let pods: Vec<Pod> =
        serde_yaml::Deserializer::from_str(&text).map(|doc| Pod::deserialize(doc).expect("a Pod")).collect();
    let names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    assert_eq!(names, ["ecs-test", "ecs-source", "ecs-target"]);
    let command = |name: &str| -> String {
        let pod = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name)).expect("pod");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        container.command.clone().unwrap_or_default().join(" ")
    };
    assert!(command("ecs-source").starts_with("nc ") && command("ecs-source").contains("1234"));
    assert!(command("ecs-target").starts_with("tcpdump") && command("ecs-target").contains("4789"));
    for pod in &pods {
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        for container in &pod.spec.as_ref().expect("spec").containers {
            let privileged = container.security_context.as_ref().and_then(|s| s.privileged);
            assert_ne!(privileged, Some(true), "no privileged containers");
        }
    }
    // The files hold no podmirror object besides the filter and the session.
    let kinds: Vec<_> = parse_yaml_documents(&text)
        .expect("parses")
        .into_iter()
        .map(|o| match o {
            ApiObject::Other { kind, .. } => kind,
            other => panic!("unexpected podmirror object in pods.yaml: {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["Pod", "Pod", "Pod"]);
}
