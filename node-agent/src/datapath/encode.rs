//! Pure conversion of the model's sessions into the map values the eBPF
//! programs read (`abi::PmIface`): sessions in evaluation order with disabled
//! ones left out, rules sorted, CIDRs as (network, mask); and each session's
//! endpoints with their Maglev table (`abi::PmLb`, see `maglev`).
//! No I/O: unit-tested without root.

use std::net::IpAddr;

use ipnet::IpNet;
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Direction, Encapsulation, GENEVE_PORT, IpFamily, RateCap,
};

use super::DatapathSession;
use super::abi::*;
use super::error::DatapathError;
use super::maglev::{self, EndpointTable};

/// The address words of `addr` as the C side stores them (network order).
pub fn addr_words(addr: &IpAddr) -> PmAddr {
    match addr {
        IpAddr::V4(a) => PmAddr { w: [u32::from_ne_bytes(a.octets()), 0, 0, 0] },
        IpAddr::V6(a) => {
            let o = a.octets();
            let mut w = [0u32; 4];
            for (i, word) in w.iter_mut().enumerate() {
                *word = u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
            }
            PmAddr { w }
        }
    }
}

fn family_code(family: IpFamily) -> u8 {
    match family {
        IpFamily::IPv4 => PM_FAMILY_IPV4,
        IpFamily::IPv6 => PM_FAMILY_IPV6,
    }
}

/// Source and destination words interleaved as `pm_rule` holds them:
/// word k of the source at 2k, of the destination at 2k + 1.
pub fn pair_words(src: &PmAddr, dst: &PmAddr) -> [u32; 8] {
    let mut out = [0u32; 8];
    for k in 0..4 {
        out[2 * k] = src.w[k];
        out[2 * k + 1] = dst.w[k];
    }
    out
}

/// A rule as the datapath compares it; `slot` and `index` are set by
/// `encode_iface`, which places it.
pub fn encode_rule(rule: &CompiledRule) -> PmRule {
    let words = |f: fn(&IpNet) -> IpAddr| pair_words(&addr_words(&f(&rule.source)), &addr_words(&f(&rule.destination)));
    let mut flags = 0u8;
    if rule.protocol.is_none() {
        flags |= PM_RULE_ANY_PROTO;
    }
    let (sport_lo, sport_hi) = match rule.source_ports {
        Some(r) => {
            flags |= PM_RULE_SPORTS;
            (r.from, r.to)
        }
        None => (0, u16::MAX),
    };
    let (dport_lo, dport_hi) = match rule.destination_ports {
        Some(r) => {
            flags |= PM_RULE_DPORTS;
            (r.from, r.to)
        }
        None => (0, u16::MAX),
    };
    PmRule {
        net: words(IpNet::network),
        mask: words(IpNet::netmask),
        sport_lo,
        sport_hi,
        dport_lo,
        dport_hi,
        action: match rule.action {
            Action::Accept => PM_ACTION_ACCEPT,
            Action::Reject => PM_ACTION_REJECT,
        },
        protocol: rule.protocol.unwrap_or(0),
        flags,
        ..PmRule::default()
    }
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Inbound => PM_DIR_INBOUND as usize,
        Direction::Outbound => PM_DIR_OUTBOUND as usize,
    }
}

/// The targets of a session in the order the datapath indexes them.
pub fn ordered_targets(session: &CompiledSession) -> Vec<IpAddr> {
    maglev::ordered(&session.targets)
}

/// The `pm_lbs` value of a session: its endpoints and Maglev table.
pub fn encode_lb(session: &CompiledSession) -> Result<Box<PmLb>, DatapathError> {
    let field = format!("session {}: targets", session.key);
    let table = EndpointTable::new(&session.targets)
        .map_err(|e| DatapathError::Invalid { field: field.clone(), reason: e.to_string() })?
        .ok_or_else(|| DatapathError::Invalid { field, reason: "no target address".into() })?;
    let mut lb = PmLb::boxed();
    for (slot, addr) in lb.endpoints.iter_mut().zip(table.endpoints()) {
        *slot = PmEndpoint { addr: addr_words(addr), family: family_code(IpFamily::of(addr)) as u32 };
    }
    lb.n_endpoints = table.endpoints().len() as u32;
    lb.lut.copy_from_slice(table.lut());
    lb.lut_size = PM_LUT_SIZE as u32;
    Ok(lb)
}

pub fn encode_session(ds: &DatapathSession) -> Result<PmSession, DatapathError> {
    let s = &ds.session;
    let field = |what: &str| format!("session {}: {what}", s.key);
    let mut out = PmSession { id: ds.id, vni: s.vni, target_port: s.target_port, ..PmSession::default() };
    if s.vni > 0x00ff_ffff {
        return Err(DatapathError::Invalid { field: field("vni"), reason: format!("{} exceeds 24 bits", s.vni) });
    }
    out.cut_len = match s.packet_length {
        Some(n) if n < 64 => {
            return Err(DatapathError::Invalid {
                field: field("packetLength"),
                reason: format!("{n} is below the minimum of 64"),
            });
        }
        Some(n) => n,
        None => 0,
    };
    if let Some(share) = s.flow_sampling {
        out.flags |= PM_SESS_SAMPLE;
        out.sample_below = share.threshold();
    }
    if s.rate_limit.is_some() {
        out.flags |= PM_SESS_RATE;
    }
    out.encap = match s.encapsulation {
        Encapsulation::VXLAN => PM_ENCAP_VXLAN,
        Encapsulation::GRE => PM_ENCAP_GRE,
        Encapsulation::ERSPAN => PM_ENCAP_ERSPAN,
        Encapsulation::Geneve => {
            out.target_port = GENEVE_PORT;
            PM_ENCAP_GENEVE
        }
    };
    for direction in Direction::ALL {
        if s.rules(direction).len() > PM_MAX_RULES {
            return Err(DatapathError::Invalid {
                field: field(match direction {
                    Direction::Inbound => "inboundRules",
                    Direction::Outbound => "outboundRules",
                }),
                reason: format!("{} rules exceed the quota of {PM_MAX_RULES}", s.rules(direction).len()),
            });
        }
    }
    Ok(out)
}

/// The rules of one session and direction in evaluation order.
fn sorted_rules(s: &CompiledSession, direction: Direction) -> Vec<&CompiledRule> {
    let mut rules: Vec<&CompiledRule> = s.rules(direction).iter().collect();
    rules.sort_by_key(|r| r.priority);
    rules
}

/// One direction's table of `PmIface`: the walk of docs/matching.md
/// (sessions in slot order, rules by priority), IPv4 rules first, then IPv6,
/// each family in walk order. Returns (table, IPv4 count, IPv6 count).
fn direction_table(ordered: &[&DatapathSession], direction: Direction) -> ([PmRule; PM_MAX_IFACE_RULES], u8, u8) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (slot, ds) in ordered.iter().enumerate() {
        for (index, r) in sorted_rules(&ds.session, direction).into_iter().enumerate() {
            let rule = PmRule { slot: slot as u8, index: index as u8, ..encode_rule(r) };
            match r.family {
                IpFamily::IPv4 => v4.push(rule),
                IpFamily::IPv6 => v6.push(rule),
            }
        }
    }
    let mut table = [PmRule::default(); PM_MAX_IFACE_RULES];
    // Quotas (checked by encode_session) bound the sum to the table's size.
    for (dst, rule) in table.iter_mut().zip(v4.iter().chain(&v6)) {
        *dst = *rule;
    }
    (table, v4.len() as u8, v6.len() as u8)
}

/// Ticks (the C side's time unit, 1/64 ns) per second.
const TICKS_PER_SECOND: u64 = 64_000_000_000;
/// How far a bucket may run ahead: 50 ms of the cap, so that a short burst
/// under the cap is not cut, while a sustained overload gets the cap
/// (plus at most 5% of one second's budget, once).
const RATE_BURST_TICKS: u64 = TICKS_PER_SECOND / 20;

/// The `pm_rates` value of a rate cap (buckets empty).
pub fn encode_rate(cap: &RateCap) -> PmRate {
    PmRate {
        pkt_cost: cap.packets_per_second.filter(|r| *r > 0).map_or(0, |r| TICKS_PER_SECOND / r),
        // << 16 keeps the fraction of a tick per byte; the model bounds the
        // rate to >= 1000 B/s so that len * cost stays far from overflow.
        byte_cost: cap.bytes_per_second.filter(|r| *r > 0).map_or(0, |r| (TICKS_PER_SECOND << 16) / r),
        burst: RATE_BURST_TICKS,
        ..PmRate::default()
    }
}

/// The sessions of one interface, in the order docs/matching.md walks them: enabled
/// only, by priority then key (as `model::evaluate`). Returns the map value and
/// the ids in slot order.
pub fn encode_iface(sessions: &[DatapathSession], generation: u32) -> Result<(PmIface, Vec<u32>), DatapathError> {
    let mut ordered: Vec<&DatapathSession> = sessions.iter().filter(|s| s.session.enabled).collect();
    ordered.sort_by(|a, b| a.session.priority.cmp(&b.session.priority).then_with(|| a.session.key.cmp(&b.session.key)));
    if sessions.len() > PM_MAX_SESSIONS {
        return Err(DatapathError::Invalid {
            field: "sessions".into(),
            reason: format!("{} sessions on one pod exceed the quota of {PM_MAX_SESSIONS}", sessions.len()),
        });
    }
    let mut iface = PmIface { n_sessions: ordered.len() as u8, generation, ..PmIface::default() };
    let mut ids = Vec::with_capacity(ordered.len());
    for (slot, ds) in ordered.iter().enumerate() {
        iface.sessions[slot] = encode_session(ds)?;
        ids.push(ds.id);
    }
    for direction in Direction::ALL {
        let d = dir_index(direction);
        (iface.rules[d], iface.n4[d], iface.n6[d]) = direction_table(&ordered, direction);
    }
    Ok((iface, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmirror_crds::model::{PortRange, SessionKey};
    use std::net::Ipv4Addr;

    fn rule(priority: u16, action: Action) -> CompiledRule {
        CompiledRule {
            priority,
            action,
            family: IpFamily::IPv4,
            protocol: Some(6),
            source: "192.168.0.161/32".parse().expect("literal"),
            destination: "192.168.0.0/24".parse().expect("literal"),
            source_ports: None,
            destination_ports: Some(PortRange { from: 1234, to: 1234 }),
        }
    }

    fn session(name: &str, priority: u16, enabled: bool) -> DatapathSession {
        DatapathSession {
            id: priority as u32 * 10,
            session: CompiledSession {
                key: SessionKey::new("ns", name),
                priority,
                enabled,
                vni: 7,
                packet_length: Some(96),
                encapsulation: Encapsulation::VXLAN,
                target_port: 4789,
                rate_limit: None,
                flow_sampling: None,
                targets: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
                inbound: vec![rule(5, Action::Accept), rule(1, Action::Reject)],
                outbound: vec![],
            },
        }
    }

    #[test]
    fn rule_carries_masked_network_ports_and_flags() {
        let r = encode_rule(&rule(1, Action::Accept));
        assert_eq!(r.net[..2], [u32::from_ne_bytes([192, 168, 0, 161]), u32::from_ne_bytes([192, 168, 0, 0])]);
        assert_eq!(r.mask[..2], [u32::MAX, u32::from_ne_bytes([255, 255, 255, 0])]);
        assert_eq!(r.net[2..], [0; 6], "IPv4: the other words zero");
        assert_eq!((r.dport_lo, r.dport_hi), (1234, 1234));
        assert_eq!(r.flags, PM_RULE_DPORTS);
        assert_eq!((r.action, r.protocol), (PM_ACTION_ACCEPT, 6));
    }

    #[test]
    fn iface_orders_sessions_rules_and_targets_and_skips_disabled() {
        let (iface, ids) =
            encode_iface(&[session("b", 2, true), session("off", 1, false), session("a", 1, true)], 9).expect("valid");
        assert_eq!(iface.n_sessions, 2);
        assert_eq!(iface.generation, 9);
        assert_eq!(ids, vec![10, 20]);
        let s = &iface.sessions[0];
        assert_eq!((iface.n4, iface.n6), ([4, 0], [0, 0]), "both sessions' inbound rules, IPv4");
        let walk: Vec<_> = iface.rules[0][..4].iter().map(|r| (r.slot, r.index, r.action)).collect();
        assert_eq!(
            walk,
            vec![
                (0, 0, PM_ACTION_REJECT),
                (0, 1, PM_ACTION_ACCEPT),
                (1, 0, PM_ACTION_REJECT),
                (1, 1, PM_ACTION_ACCEPT)
            ],
            "sessions in priority order, each one's rules by priority"
        );
        assert_eq!((s.cut_len, s.vni, s.target_port), (96, 7, 4789));
    }

    #[test]
    fn tables_put_ipv4_before_ipv6_keeping_the_walk_order_of_each() {
        let v6 = |priority: u16| CompiledRule {
            family: IpFamily::IPv6,
            source: "fd00::/64".parse().expect("literal"),
            destination: "::/0".parse().expect("literal"),
            ..rule(priority, Action::Accept)
        };
        let mut a = session("a", 1, true);
        a.session.outbound = vec![v6(1), rule(2, Action::Reject), v6(3)];
        let mut b = session("b", 2, true);
        b.session.outbound = vec![rule(1, Action::Accept), v6(2)];
        let (iface, _) = encode_iface(&[b, a], 1).expect("valid");
        let d = PM_DIR_OUTBOUND as usize;
        assert_eq!((iface.n4[d], iface.n6[d]), (2, 3));
        let walk: Vec<_> = iface.rules[d][..5].iter().map(|r| (r.slot, r.index)).collect();
        assert_eq!(walk, vec![(0, 1), (1, 0), (0, 0), (0, 2), (1, 1)]);
        let m = iface.rules[d][2].mask;
        assert_eq!((m[2], m[3], m[4]), (u32::MAX, 0, 0), "source /64, destination /0, interleaved");
    }

    #[test]
    fn sampling_and_rate_caps_set_flags_and_costs() {
        let mut s = session("a", 1, true);
        assert_eq!(encode_session(&s).expect("valid").flags, 0);
        s.session.flow_sampling = Some(podmirror_crds::model::FlowShare { numerator: 1, denominator: 4 });
        s.session.rate_limit = Some(RateCap { packets_per_second: Some(1000), bytes_per_second: None });
        let e = encode_session(&s).expect("valid");
        assert_eq!(e.flags, PM_SESS_SAMPLE | PM_SESS_RATE);
        assert_eq!(e.sample_below, 1 << 30);
        let r = encode_rate(&RateCap { packets_per_second: Some(1000), bytes_per_second: Some(1_000_000) });
        assert_eq!(r.pkt_cost, 64_000_000, "1 ms per packet");
        assert_eq!((1500 * r.byte_cost) >> 16, 1500 * 64_000, "1.5 ms per 1500 bytes");
        assert_eq!(encode_rate(&RateCap { packets_per_second: None, bytes_per_second: Some(1000) }).pkt_cost, 0);
    }

    #[test]
    fn lb_holds_sorted_endpoints_and_a_full_table() {
        let s = session("a", 1, true);
        let lb = encode_lb(&s.session).expect("valid");
        assert_eq!(lb.n_endpoints, 2);
        assert_eq!(lb.lut_size as usize, PM_LUT_SIZE);
        assert_eq!(lb.endpoints[0].addr.w[0], u32::from_ne_bytes([10, 0, 0, 1]), "targets sorted");
        assert_eq!(lb.endpoints[1].family, PM_FAMILY_IPV4 as u32);
        assert!(lb.lut.iter().all(|e| *e < 2));
        let mut s = s.session;
        s.targets = (0..2000u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))).collect();
        let err = encode_lb(&s).expect_err("over the bound").to_string();
        assert!(err.contains("ns/a: targets") && err.contains("2000 endpoints exceed"), "{err}");
    }

    #[test]
    fn bad_sessions_are_refused_naming_the_field() {
        let mut s = session("a", 1, true);
        s.session.targets.clear();
        let err = encode_lb(&s.session).expect_err("no target").to_string();
        assert!(err.contains("ns/a") && err.contains("targets"), "{err}");
        let mut s = session("a", 1, true);
        s.session.vni = 1 << 24;
        assert!(encode_iface(&[s], 0).expect_err("vni").to_string().contains("vni"));
        let four: Vec<_> = (1..=4).map(|p| session(&format!("s{p}"), p, true)).collect();
        assert!(encode_iface(&four, 0).expect_err("quota").to_string().contains("exceed"));
    }
}
