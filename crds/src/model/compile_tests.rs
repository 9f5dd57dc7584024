//! Unit tests of `compile.rs`: defaults made explicit, protocols, sessions, and errors that name their field.

use super::*;
use crate::api::{FilterRef, MirrorFilterSpec, PodTarget, SessionSource};
use crate::model::types::{Action, Encapsulation};

fn rule(priority: i32, protocol: IntOrString) -> FilterRule {
    FilterRule {
        priority,
        action: Action::Accept,
        protocol,
        ip_family: IpFamily::IPv4,
        source_cidr: None,
        destination_cidr: None,
        source_ports: None,
        destination_ports: None,
        description: None,
    }
}

fn name(text: &str) -> IntOrString {
    IntOrString::String(text.to_owned())
}

#[test]
fn omissions_become_explicit_and_rules_are_sorted() {
    let mut late = rule(7, name("All"));
    late.ip_family = IpFamily::IPv6;
    let mut early = rule(2, name("UDP"));
    early.source_cidr = Some("10.1.2.3/8".to_owned());
    early.destination_ports = Some(PortRangeSpec { from: 53, to: 53 });
    let compiled = compile_rules(&[late, early], "spec.inboundRules").expect("valid");
    assert_eq!(compiled.iter().map(|r| r.priority).collect::<Vec<_>>(), [2, 7]);
    let (udp, all) = (&compiled[0], &compiled[1]);
    assert_eq!(udp.protocol, Some(ipproto::UDP));
    assert_eq!(udp.source, "10.0.0.0/8".parse::<IpNet>().expect("net"), "host bits cleared");
    assert_eq!(udp.destination, "0.0.0.0/0".parse::<IpNet>().expect("net"), "omitted = family's /0");
    assert_eq!(udp.source_ports, None);
    assert_eq!(udp.destination_ports, Some(PortRange { from: 53, to: 53 }));
    assert_eq!(all.protocol, None, "All = any protocol");
    assert_eq!(all.source, "::/0".parse::<IpNet>().expect("net"));
}

#[test]
fn protocols_by_name_or_number() {
    let field = "p";
    for (input, expected) in [
        (name("TCP"), Some(6)),
        (name("UDP"), Some(17)),
        (name("ICMP"), Some(1)),
        (name("ICMPv6"), Some(58)),
        (name("SCTP"), Some(132)),
        (name("All"), None),
        (IntOrString::Int(0), Some(0)),
        (IntOrString::Int(255), Some(255)),
    ] {
        assert_eq!(parse_protocol(&input, field), Ok(expected), "{input:?}");
    }
    for bad in [
        name("tcp"),
        name(""),
        name("256"),
        name("047"),
        name("6"),
        name("0"),
        name("+6"),
        name(" 6"),
        IntOrString::Int(-1),
        IntOrString::Int(256),
    ] {
        let err = parse_protocol(&bad, "spec.inboundRules[3].protocol").expect_err("invalid");
        assert_eq!(err.field(), "spec.inboundRules[3].protocol", "{bad:?}");
    }
}

#[test]
fn errors_name_the_exact_field() {
    let mut bad_cidr = rule(1, name("TCP"));
    bad_cidr.destination_cidr = Some("10.0.0.0/33".to_owned());
    let err = compile_rules(&[rule(2, name("TCP")), rule(3, name("TCP")), bad_cidr], "spec.inboundRules")
        .expect_err("bad CIDR");
    assert_eq!(err.to_string(), "spec.inboundRules[2].destinationCIDR: 10.0.0.0/33 is not a valid IPv4 prefix");

    let mut icmp_ports = rule(1, name("ICMP"));
    icmp_ports.source_ports = Some(PortRangeSpec { from: 1, to: 2 });
    let err = compile_rules(&[icmp_ports], "spec.outboundRules").expect_err("ports on ICMP");
    assert_eq!(err.field(), "spec.outboundRules[0].sourcePorts");

    let err = compile_rules(&[rule(4, name("TCP")), rule(4, name("UDP"))], "x").expect_err("duplicate");
    assert_eq!(err.field(), "x[1].priority");
    assert!(err.to_string().contains("already used by x[0]"), "{err}");

    let eleven: Vec<_> = (1..=11).map(|p| rule(p, name("TCP"))).collect();
    assert_eq!(compile_rules(&eleven, "spec.inboundRules").expect_err("too many").field(), "spec.inboundRules");
    assert_eq!(compile_rules(&eleven[..10], "spec.inboundRules").map(|r| r.len()), Ok(10));
}

fn node_session() -> NodeSession {
    NodeSession {
        namespace: "default".into(),
        name: "mirror-session-a".into(),
        uid: "u-1".into(),
        generation: 3,
        priority: 1,
        enabled: true,
        vni: 1,
        packet_length: Some(96),
        encapsulation: Encapsulation::VXLAN,
        target_port: 4789,
        rate_limit: None,
        flow_sampling: None,
        targets: vec!["10.244.1.7".into(), "fd00::7".into()],
        inbound_rules: vec![rule(1, name("TCP"))],
        outbound_rules: vec![],
    }
}

#[test]
fn node_sessions_compile_with_their_key_and_targets() {
    let compiled = compile_node_session(&node_session()).expect("valid");
    assert_eq!(compiled.key, SessionKey::new("default", "mirror-session-a"));
    assert_eq!((compiled.priority, compiled.vni, compiled.packet_length, compiled.target_port), (1, 1, Some(96), 4789));
    assert_eq!(compiled.targets, vec![IpAddr::from([10, 244, 1, 7]), "fd00::7".parse::<IpAddr>().expect("ip")]);
    assert_eq!(compiled.inbound.len(), 1);
    assert!(compiled.outbound.is_empty());
}

#[test]
fn node_session_errors_name_the_session_and_field() {
    let mut bad = node_session();
    bad.targets[1] = "collector.local".into();
    assert_eq!(
        compile_node_session(&bad).expect_err("bad target").field(),
        "sessions[default/mirror-session-a].targets[1]"
    );
    let mut bad = node_session();
    bad.vni = 1 << 24;
    assert_eq!(compile_node_session(&bad).expect_err("bad vni").field(), "sessions[default/mirror-session-a].vni");
    let mut bad = node_session();
    bad.packet_length = Some(10_000);
    assert_eq!(
        compile_node_session(&bad).expect_err("bad length").field(),
        "sessions[default/mirror-session-a].packetLength"
    );
    let mut bad = node_session();
    bad.outbound_rules = vec![rule(0, name("TCP"))];
    assert_eq!(
        compile_node_session(&bad).expect_err("bad rule").field(),
        "sessions[default/mirror-session-a].outboundRules[0].priority"
    );
}

fn session(filter_name: &str) -> MirrorSession {
    let mut session = MirrorSession::new(
        "mirror-session-a",
        MirrorSessionSpec {
            priority: 5,
            vni: 77,
            packet_length: None,
            enabled: false,
            filter_ref: FilterRef { name: filter_name.into() },
            sources: vec![SessionSource { pod_name: Some("ecs-source".into()), pod_selector: None }],
            target: SessionTarget { pod: Some(PodTarget { name: "ecs-target".into() }), ..Default::default() },
            encapsulation: Encapsulation::GRE,
            target_port: 4789,
            schedule: None,
            rate_limit: None,
            flow_sampling: None,
        },
    );
    session.metadata.namespace = Some("team-a".into());
    session
}

#[test]
fn sessions_compile_with_their_filter_and_targets() {
    let filter = MirrorFilter::new(
        "f",
        MirrorFilterSpec { inbound_rules: vec![], outbound_rules: vec![rule(3, name("UDP")), rule(1, name("TCP"))] },
    );
    let targets = [IpAddr::from([10, 0, 0, 9])];
    let compiled = compile_session(&session("f"), &filter, &targets).expect("valid");
    assert_eq!(compiled.key, SessionKey::new("team-a", "mirror-session-a"));
    assert_eq!((compiled.priority, compiled.vni, compiled.enabled), (5, 77, false));
    assert_eq!(compiled.encapsulation, Encapsulation::GRE);
    assert_eq!(compiled.packet_length, None);
    assert_eq!(compiled.targets, targets);
    assert_eq!(compiled.outbound.iter().map(|r| r.priority).collect::<Vec<_>>(), [1, 3]);

    let err = compile_session(&session("other"), &filter, &targets).expect_err("wrong filter");
    assert_eq!(err.field(), "spec.filterRef.name");
}
