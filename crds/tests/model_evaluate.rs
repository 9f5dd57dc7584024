//! docs/matching.md, the reference matcher `model::evaluate`, on the seeds' examples
//! taken literally and on the edges of every field a rule matches on.

mod model_support;

use model_support::*;
use podmirror_crds::model::{
    Action::{Accept, Reject},
    Direction::{Inbound, Outbound},
    IpFamily::{IPv4, IPv6},
    Verdict, evaluate, ipproto,
};

// ---- the seeds, literally --------------------------------------------------

/// Seed 000/001 table 5 with the session of the walkthrough (priority 1,
/// VNI 1, packet length 96): `nc` from ecs-test to ecs-source:1234.
fn seed_000_session() -> podmirror_crds::model::CompiledSession {
    let mut s = session(
        "mirror-session-a",
        1,
        vec![
            rule(1, Accept, IPv4)
                .proto(ipproto::TCP)
                .src("192.168.0.161/32")
                .dst("192.168.0.230/32")
                .dports(1234, 1234),
        ],
        vec![],
    );
    s.vni = 1;
    s.packet_length = Some(96);
    s
}

#[test]
fn seed_000_table_5_the_request_is_copied_with_vni_1_cut_to_96() {
    let sessions = [seed_000_session()];
    let request = tcp("192.168.0.161", 38944, "192.168.0.230", 1234);
    match evaluate(&sessions, &request, Inbound) {
        Verdict::Copy { session, rule_priority } => {
            assert_eq!(session.key.name, "mirror-session-a");
            assert_eq!(rule_priority, 1);
            assert_eq!(session.vni, 1);
            assert_eq!(session.packet_length, Some(96));
        }
        other => panic!("the seed request must be copied, got {other:?}"),
    }
}

#[test]
fn seed_000_table_5_the_reply_is_not_copied() {
    let sessions = [seed_000_session()];
    let reply = tcp("192.168.0.230", 1234, "192.168.0.161", 38944);
    // The reply leaves ecs-source: outbound, and the filter has no outbound rule.
    assert_eq!(outcome(evaluate(&sessions, &reply, Outbound)), Outcome::NoMatch);
    // Even seen as inbound it matches neither CIDR nor the port.
    assert_eq!(outcome(evaluate(&sessions, &reply, Inbound)), Outcome::NoMatch);
    // Another source port of the same client still matches ("any port").
    let other = tcp("192.168.0.161", 1, "192.168.0.230", 1234);
    assert_eq!(outcome(evaluate(&sessions, &other, Inbound)), Outcome::Copy("mirror-session-a".into(), 1));
    // UDP to the same port is not TCP.
    let udp = l4(ipproto::UDP, "192.168.0.161", 38944, "192.168.0.230", 1234);
    assert_eq!(outcome(evaluate(&sessions, &udp, Inbound)), Outcome::NoMatch);
}

/// Seed 002 table 2, both directions in one filter.
fn seed_002_table_2() -> Vec<podmirror_crds::model::CompiledSession> {
    vec![session(
        "table-2",
        1,
        vec![
            rule(1, Accept, IPv4)
                .proto(ipproto::TCP)
                .src("172.16.0.0/24")
                .sports(10000, 10001)
                .dst("10.0.0.3/32")
                .dports(80, 80),
        ],
        vec![rule(1, Reject, IPv4).src("192.168.0.0/24").dst("10.2.0.0/24")],
    )]
}

#[test]
fn seed_002_table_2_inbound_accept() {
    let s = seed_002_table_2();
    let copy = Outcome::Copy("table-2".into(), 1);
    assert_eq!(outcome(evaluate(&s, &tcp("172.16.0.7", 10000, "10.0.0.3", 80), Inbound)), copy);
    assert_eq!(outcome(evaluate(&s, &tcp("172.16.0.255", 10001, "10.0.0.3", 80), Inbound)), copy);
    for miss in [
        tcp("172.16.1.7", 10000, "10.0.0.3", 80),              // source outside /24
        tcp("172.16.0.7", 10000, "10.0.0.4", 80),              // destination outside /32
        tcp("172.16.0.7", 10002, "10.0.0.3", 80),              // source port outside
        tcp("172.16.0.7", 10000, "10.0.0.3", 81),              // destination port outside
        l4(ipproto::UDP, "172.16.0.7", 10000, "10.0.0.3", 80), // not TCP
    ] {
        assert_eq!(outcome(evaluate(&s, &miss, Inbound)), Outcome::NoMatch, "{miss:?}");
    }
    // The inbound rule says nothing about the same packet leaving the pod.
    assert_eq!(outcome(evaluate(&s, &tcp("172.16.0.7", 10000, "10.0.0.3", 80), Outbound)), Outcome::NoMatch);
}

#[test]
fn seed_002_table_2_outbound_reject_all_protocols() {
    let s = seed_002_table_2();
    let rejected = Outcome::Rejected("table-2".into(), 1);
    for p in [
        tcp("192.168.0.10", 5555, "10.2.0.9", 443),
        l4(ipproto::UDP, "192.168.0.10", 53, "10.2.0.9", 53),
        portless(ipproto::ICMP, "192.168.0.255", "10.2.0.0"),
        portless(47, "192.168.0.0", "10.2.0.255"),
    ] {
        assert_eq!(outcome(evaluate(&s, &p, Outbound)), rejected, "{p:?}");
    }
    assert_eq!(outcome(evaluate(&s, &tcp("192.168.1.10", 5555, "10.2.0.9", 443), Outbound)), Outcome::NoMatch);
    assert_eq!(outcome(evaluate(&s, &tcp("192.168.0.10", 5555, "10.2.1.9", 443), Outbound)), Outcome::NoMatch);
}

#[test]
fn seed_002_table_3_the_session_with_the_lower_priority_number_wins() {
    let a = session("a", 1, vec![rule(1, Accept, IPv4)], vec![]);
    let b = session("b", 2, vec![rule(1, Accept, IPv4)], vec![]);
    let p = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    let expected = Outcome::Copy("a".into(), 1);
    assert_eq!(outcome(evaluate(&[a.clone(), b.clone()], &p, Inbound)), expected);
    assert_eq!(outcome(evaluate(&[b, a], &p, Inbound)), expected);
}

#[test]
fn seed_002_table_3_a_reject_first_beats_an_accept_with_the_same_match() {
    let reject = rule(1, Reject, IPv4).proto(ipproto::TCP).dst("10.0.0.0/24");
    let accept = rule(2, Accept, IPv4).proto(ipproto::TCP).dst("10.0.0.0/24");
    let p = tcp("10.1.0.1", 1000, "10.0.0.2", 80);
    for rules in [vec![reject.clone(), accept.clone()], vec![accept, reject]] {
        let s = [session("a", 1, rules, vec![])];
        assert_eq!(outcome(evaluate(&s, &p, Inbound)), Outcome::Rejected("a".into(), 1));
    }
}

#[test]
fn a_reject_in_the_first_session_stops_later_sessions_too() {
    // First match decides for the packet as a whole (docs/matching.md, step 3).
    let a = session("a", 1, vec![rule(1, Reject, IPv4)], vec![]);
    let b = session("b", 2, vec![rule(1, Accept, IPv4)], vec![]);
    let p = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    assert_eq!(outcome(evaluate(&[b, a], &p, Inbound)), Outcome::Rejected("a".into(), 1));
}

// ---- boundaries ------------------------------------------------------------

#[test]
fn port_range_edges() {
    let s = [session(
        "s",
        1,
        vec![rule(1, Accept, IPv4).proto(ipproto::TCP).dports(10000, 10001)],
        vec![rule(1, Accept, IPv4).proto(ipproto::UDP).sports(10000, 10001)],
    )];
    for (port, copied) in [(9999, false), (10000, true), (10001, true), (10002, false)] {
        let inbound = tcp("10.0.0.1", 40000, "10.0.0.2", port);
        let outbound = l4(ipproto::UDP, "10.0.0.2", port, "10.0.0.1", 40000);
        let expect = |rule| {
            if copied { Outcome::Copy("s".into(), rule) } else { Outcome::NoMatch }
        };
        assert_eq!(outcome(evaluate(&s, &inbound, Inbound)), expect(1), "dport {port}");
        assert_eq!(outcome(evaluate(&s, &outbound, Outbound)), expect(1), "sport {port}");
    }
}

#[test]
fn full_port_range_and_extreme_ports() {
    let s = [session("s", 1, vec![rule(1, Accept, IPv4).proto(ipproto::SCTP).dports(1, 65535)], vec![])];
    for port in [1, 65535] {
        let p = l4(ipproto::SCTP, "10.0.0.1", 0, "10.0.0.2", port);
        assert_eq!(outcome(evaluate(&s, &p, Inbound)), Outcome::Copy("s".into(), 1));
    }
    // Port 0 is outside 1..=65535.
    let p = l4(ipproto::SCTP, "10.0.0.1", 5, "10.0.0.2", 0);
    assert_eq!(outcome(evaluate(&s, &p, Inbound)), Outcome::NoMatch);
}

#[test]
fn prefix_edges_slash_32_and_slash_24() {
    let s = [session("s", 1, vec![rule(1, Accept, IPv4).src("10.1.2.3/32").dst("172.16.5.0/24")], vec![])];
    let cases = [
        ("10.1.2.3", "172.16.5.0", true),    // first address of the /24
        ("10.1.2.3", "172.16.5.255", true),  // last address of the /24
        ("10.1.2.3", "172.16.4.255", false), // one below
        ("10.1.2.3", "172.16.6.0", false),   // one above
        ("10.1.2.2", "172.16.5.1", false),   // /32 neighbours
        ("10.1.2.4", "172.16.5.1", false),
    ];
    for (src, dst, copied) in cases {
        let p = portless(ipproto::ICMP, src, dst);
        let expected = if copied { Outcome::Copy("s".into(), 1) } else { Outcome::NoMatch };
        assert_eq!(outcome(evaluate(&s, &p, Inbound)), expected, "{src} -> {dst}");
    }
}

#[test]
fn ipv6_rules_match_ipv6_packets_with_prefix_edges() {
    let s = [session(
        "v6",
        1,
        vec![
            rule(1, Accept, IPv6).proto(ipproto::TCP).src("2001:db8:1::/48").dst("2001:db8:2::5/128").dports(443, 443),
        ],
        vec![],
    )];
    let copy = Outcome::Copy("v6".into(), 1);
    let p = |src, dst| tcp(src, 50000, dst, 443);
    assert_eq!(outcome(evaluate(&s, &p("2001:db8:1::", "2001:db8:2::5"), Inbound)), copy);
    assert_eq!(outcome(evaluate(&s, &p("2001:db8:1:ffff:ffff:ffff:ffff:ffff", "2001:db8:2::5"), Inbound)), copy);
    assert_eq!(outcome(evaluate(&s, &p("2001:db8:2::", "2001:db8:2::5"), Inbound)), Outcome::NoMatch);
    assert_eq!(outcome(evaluate(&s, &p("2001:db8:1::1", "2001:db8:2::6"), Inbound)), Outcome::NoMatch);
    // ICMPv6 by number.
    let icmp6 = [session("v6", 1, vec![rule(1, Accept, IPv6).proto(ipproto::ICMPV6)], vec![])];
    assert_eq!(outcome(evaluate(&icmp6, &portless(ipproto::ICMPV6, "fe80::1", "ff02::1"), Inbound)), copy);
    assert_eq!(outcome(evaluate(&icmp6, &portless(ipproto::ICMP, "10.0.0.1", "10.0.0.2"), Inbound)), Outcome::NoMatch);
}

#[test]
fn a_rule_never_matches_the_other_family() {
    // The widest rules of each family: All protocols, any address.
    let v4_only = [session("v4", 1, vec![rule(1, Accept, IPv4)], vec![rule(1, Accept, IPv4)])];
    let v6_only = [session("v6", 1, vec![rule(1, Accept, IPv6)], vec![rule(1, Accept, IPv6)])];
    let v6_packet = tcp("2001:db8::1", 1000, "2001:db8::2", 80);
    let v4_packet = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    // An IPv4-mapped IPv6 address is still an IPv6 packet.
    let mapped = tcp("::ffff:10.0.0.1", 1000, "::ffff:10.0.0.2", 80);
    for dir in [Inbound, Outbound] {
        assert_eq!(outcome(evaluate(&v4_only, &v6_packet, dir)), Outcome::NoMatch);
        assert_eq!(outcome(evaluate(&v4_only, &mapped, dir)), Outcome::NoMatch);
        assert_eq!(outcome(evaluate(&v6_only, &v4_packet, dir)), Outcome::NoMatch);
        assert_eq!(outcome(evaluate(&v4_only, &v4_packet, dir)), Outcome::Copy("v4".into(), 1));
        assert_eq!(outcome(evaluate(&v6_only, &v6_packet, dir)), Outcome::Copy("v6".into(), 1));
    }
}

#[test]
fn all_protocols_versus_a_protocol_number() {
    let s = [session("s", 1, vec![rule(1, Accept, IPv4).proto(ipproto::UDP), rule(2, Reject, IPv4)], vec![])];
    let udp = l4(ipproto::UDP, "10.0.0.1", 53, "10.0.0.2", 53);
    assert_eq!(outcome(evaluate(&s, &udp, Inbound)), Outcome::Copy("s".into(), 1));
    // Every other protocol falls to the All rule.
    for proto in [0, ipproto::ICMP, ipproto::TCP, 47, ipproto::SCTP, 255] {
        let p = portless(proto, "10.0.0.1", "10.0.0.2");
        assert_eq!(outcome(evaluate(&s, &p, Inbound)), Outcome::Rejected("s".into(), 2), "proto {proto}");
    }
    // A protocol number the model has no name for works like any other.
    let gre = [session("gre", 1, vec![rule(1, Accept, IPv4).proto(47)], vec![])];
    assert_eq!(outcome(evaluate(&gre, &portless(47, "10.0.0.1", "10.0.0.2"), Inbound)), Outcome::Copy("gre".into(), 1));
    assert_eq!(outcome(evaluate(&gre, &portless(46, "10.0.0.1", "10.0.0.2"), Inbound)), Outcome::NoMatch);
}

#[test]
fn icmp_never_matches_a_tcp_rule_with_ports_but_matches_all() {
    let s = [session(
        "s",
        1,
        vec![rule(1, Accept, IPv4).proto(ipproto::TCP).dports(1, 65535), rule(2, Reject, IPv4).proto(ipproto::ICMP)],
        vec![],
    )];
    let ping = portless(ipproto::ICMP, "10.0.0.1", "10.0.0.2");
    assert_eq!(outcome(evaluate(&s, &ping, Inbound)), Outcome::Rejected("s".into(), 2));
    let only_tcp = [session("t", 1, vec![rule(1, Accept, IPv4).proto(ipproto::TCP).dports(1, 65535)], vec![])];
    assert_eq!(outcome(evaluate(&only_tcp, &ping, Inbound)), Outcome::NoMatch);
}

#[test]
fn a_non_first_fragment_matches_only_rules_without_port_ranges() {
    // A later fragment of a TCP segment: protocol TCP, no L4 header.
    let fragment = portless(ipproto::TCP, "10.0.0.1", "10.0.0.2");
    let with_dports = [session("p", 1, vec![rule(1, Accept, IPv4).proto(ipproto::TCP).dports(1, 65535)], vec![])];
    let with_sports = [session("p", 1, vec![rule(1, Accept, IPv4).proto(ipproto::TCP).sports(1, 65535)], vec![])];
    let tcp_no_ports = [session("n", 1, vec![rule(1, Accept, IPv4).proto(ipproto::TCP)], vec![])];
    let all = [session("a", 1, vec![rule(1, Accept, IPv4)], vec![])];
    assert_eq!(outcome(evaluate(&with_dports, &fragment, Inbound)), Outcome::NoMatch);
    assert_eq!(outcome(evaluate(&with_sports, &fragment, Inbound)), Outcome::NoMatch);
    assert_eq!(outcome(evaluate(&tcp_no_ports, &fragment, Inbound)), Outcome::Copy("n".into(), 1));
    assert_eq!(outcome(evaluate(&all, &fragment, Inbound)), Outcome::Copy("a".into(), 1));
    // The first fragment carries the ports and matches the ranged rule.
    let first = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    assert_eq!(outcome(evaluate(&with_dports, &first, Inbound)), Outcome::Copy("p".into(), 1));
}

#[test]
fn a_session_without_rules_for_the_direction_falls_through_to_the_next() {
    let inbound_only = session("inbound-only", 1, vec![rule(1, Accept, IPv4)], vec![]);
    let both = session("both", 2, vec![rule(1, Accept, IPv4)], vec![rule(7, Accept, IPv4)]);
    let sessions = [inbound_only, both];
    let p = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    assert_eq!(outcome(evaluate(&sessions, &p, Outbound)), Outcome::Copy("both".into(), 7));
    assert_eq!(outcome(evaluate(&sessions, &p, Inbound)), Outcome::Copy("inbound-only".into(), 1));
    // A session whose rules do not match falls through the same way.
    let narrow = session("narrow", 1, vec![rule(1, Accept, IPv4).dst("10.7.0.0/16")], vec![]);
    let wide = session("wide", 2, vec![rule(3, Accept, IPv4)], vec![]);
    assert_eq!(outcome(evaluate(&[narrow, wide], &p, Inbound)), Outcome::Copy("wide".into(), 3));
}

#[test]
fn disabled_sessions_never_match() {
    let mut off = session("off", 1, vec![rule(1, Reject, IPv4)], vec![rule(1, Accept, IPv4)]);
    off.enabled = false;
    let on = session("on", 2, vec![rule(4, Accept, IPv4)], vec![]);
    let p = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    // Its Reject does not stop the next session, its Accept copies nothing.
    assert_eq!(outcome(evaluate(&[off.clone(), on], &p, Inbound)), Outcome::Copy("on".into(), 4));
    assert_eq!(outcome(evaluate(std::slice::from_ref(&off), &p, Outbound)), Outcome::NoMatch);
    assert_eq!(outcome(evaluate(&[], &p, Inbound)), Outcome::NoMatch);
}

#[test]
fn equal_session_priorities_are_ordered_by_key() {
    // The quota refuses such a pair on one pod; the matcher still must not
    // depend on list order if it ever sees one.
    let b = session("b", 3, vec![rule(1, Accept, IPv4)], vec![]);
    let a = session("a", 3, vec![rule(1, Accept, IPv4)], vec![]);
    let p = tcp("10.0.0.1", 1000, "10.0.0.2", 80);
    assert_eq!(outcome(evaluate(&[b.clone(), a.clone()], &p, Inbound)), Outcome::Copy("a".into(), 1));
    assert_eq!(outcome(evaluate(&[a, b], &p, Inbound)), Outcome::Copy("a".into(), 1));
}
