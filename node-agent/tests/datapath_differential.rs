//! Differential test: the eBPF decision (BPF_PROG_TEST_RUN of the veth
//! programs' code path, `pm_test_decide`) against the Rust reference
//! `podmirror_crds::model::evaluate`, on random packets, rule sets and
//! session mixes. Verdict, deciding session, VNI, cut length, encapsulation,
//! target endpoint and outer source port must agree on every packet.
//!
//! Seeded: a fixed seed by default, `PODMIRROR_DIFF_SEED=<u64>` to explore or
//! replay another run; the seed is printed on failure. `PODMIRROR_DIFF_PACKETS`
//! changes the packet count (default 100000).

mod support;
use support::Cleanup;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use podmirror_agent::datapath::abi::*;
use std::collections::BTreeMap;

use podmirror_agent::datapath::flow::{flow_hash, outer_source_port};
use podmirror_agent::datapath::maglev::EndpointTable;
use podmirror_agent::datapath::{Datapath, DatapathSession};
use podmirror_crds::model::{
    Action, CompiledRule, CompiledSession, Direction, Encapsulation, IpFamily, PacketMeta, PortRange, SessionKey,
    Verdict, evaluate, ipproto,
};
use podmirror_testkit::{self as testbed, Topology};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FAKE_IFINDEX: u32 = 4242;
/// TCX_NEXT (-1) as BPF_PROG_TEST_RUN reports it.
const TCX_NEXT: u32 = u32::MAX;

/// Small address pools so that random packets hit random rules often.
fn pool_v4(rng: &mut StdRng) -> Ipv4Addr {
    let base = [[10, 0, 0, 0], [10, 0, 1, 0], [192, 168, 0, 0], [172, 16, 5, 0]][rng.random_range(0..4)];
    Ipv4Addr::new(base[0], base[1], base[2], rng.random_range(0..8) * 32 + rng.random_range(0..3))
}

fn pool_v6(rng: &mut StdRng) -> Ipv6Addr {
    let hi = [0xfd00u16, 0xfd01, 0x2001][rng.random_range(0..3)];
    Ipv6Addr::new(hi, 0, 0, rng.random_range(0..3), 0, 0, 0, rng.random_range(0..4) * 0x40 + rng.random_range(0..2))
}

fn addr(rng: &mut StdRng, family: IpFamily) -> IpAddr {
    match family {
        IpFamily::IPv4 => IpAddr::V4(pool_v4(rng)),
        IpFamily::IPv6 => IpAddr::V6(pool_v6(rng)),
    }
}

fn cidr(rng: &mut StdRng, family: IpFamily) -> IpNet {
    if rng.random_bool(0.25) {
        return family.any_net();
    }
    let a = addr(rng, family);
    let max = if family == IpFamily::IPv4 { 32 } else { 128 };
    let len = match rng.random_range(0..4) {
        0 => max,
        1 => max - rng.random_range(1..8),
        2 => rng.random_range(1..=max),
        _ => max / 4 * rng.random_range(1..4),
    };
    IpNet::new(a, len).expect("prefix within bounds").trunc()
}

const PROTOS: [u8; 7] = [ipproto::TCP, ipproto::UDP, ipproto::SCTP, ipproto::ICMP, ipproto::ICMPV6, 47, 50];

fn port_pool(rng: &mut StdRng) -> u16 {
    [80, 443, 1234, 4789, 10000, 10001, 53, 1, 65535, 30000][rng.random_range(0..10)]
}

fn port_range(rng: &mut StdRng) -> Option<PortRange> {
    if rng.random_bool(0.5) {
        return None;
    }
    let a = port_pool(rng);
    let b = if rng.random_bool(0.5) { a } else { a.saturating_add(rng.random_range(0..2000)) };
    Some(PortRange { from: a.min(b), to: a.max(b) })
}

fn rule(rng: &mut StdRng, priority: u16) -> CompiledRule {
    let family = if rng.random_bool(0.7) { IpFamily::IPv4 } else { IpFamily::IPv6 };
    let protocol = if rng.random_bool(0.3) { None } else { Some(PROTOS[rng.random_range(0..PROTOS.len())]) };
    let ported = protocol.is_some_and(ipproto::has_ports);
    CompiledRule {
        priority,
        action: if rng.random_bool(0.7) { Action::Accept } else { Action::Reject },
        family,
        protocol,
        source: cidr(rng, family),
        destination: cidr(rng, family),
        source_ports: if ported { port_range(rng) } else { None },
        destination_ports: if ported { port_range(rng) } else { None },
    }
}

fn rules(rng: &mut StdRng) -> Vec<CompiledRule> {
    let n = rng.random_range(0..=10);
    let mut prios: Vec<u16> = Vec::new();
    while prios.len() < n {
        let p = rng.random_range(1..=32766);
        if !prios.contains(&p) {
            prios.push(p);
        }
    }
    prios.into_iter().map(|p| rule(rng, p)).collect()
}

fn session_mix(rng: &mut StdRng, round: usize) -> Vec<DatapathSession> {
    let n = rng.random_range(1..=3);
    (0..n)
        .map(|i| {
            // Up to 40 endpoints: a scaled collector Service (Maglev table).
            let count = if rng.random_bool(0.2) { rng.random_range(5..=40) } else { rng.random_range(1..=4) };
            let targets = (0..count)
                .map(|_| if rng.random_bool(0.8) { IpAddr::V4(pool_v4(rng)) } else { IpAddr::V6(pool_v6(rng)) })
                .collect();
            DatapathSession {
                id: (round * 10 + i) as u32,
                session: CompiledSession {
                    key: SessionKey::new("ns", format!("s{round}-{i}")),
                    // Unique per pod (docs/quotas.md); small range so ties in order matter less.
                    priority: (i as u16 + 1) * rng.random_range(1..4) + i as u16,
                    enabled: rng.random_bool(0.85),
                    vni: rng.random_range(0..=0x00ff_ffff),
                    packet_length: if rng.random_bool(0.5) { Some(rng.random_range(64..=9216)) } else { None },
                    encapsulation: [
                        Encapsulation::VXLAN,
                        Encapsulation::VXLAN,
                        Encapsulation::GRE,
                        Encapsulation::Geneve,
                        Encapsulation::ERSPAN,
                    ][rng.random_range(0..5)],
                    target_port: if rng.random_bool(0.8) { 4789 } else { rng.random_range(1..=65535) },
                    rate_limit: None,
                    flow_sampling: None,
                    targets,
                    inbound: rules(rng),
                    outbound: rules(rng),
                },
            }
        })
        .collect()
}

/// A random frame and what the reference should see in it (`None`: not IP).
fn frame(rng: &mut StdRng, sessions: &[DatapathSession]) -> (Vec<u8>, Option<PacketMeta>) {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    let vlans = [0usize, 0, 0, 1, 2][rng.random_range(0..5)];
    let kind = rng.random_range(0..100);
    let family = if kind < 60 { IpFamily::IPv4 } else { IpFamily::IPv6 };
    for _ in 0..vlans {
        f.extend_from_slice(&[0x81, 0x00, 0x00, rng.random_range(1..100)]);
    }
    if kind >= 95 {
        f.extend_from_slice(&[0x08, 0x06]); // ARP: not IP
        f.extend((0..28).map(|_| rng.random::<u8>()));
        return (f, None);
    }
    // Addresses: often from a rule of the mix, so that rules match.
    let all: Vec<&CompiledRule> =
        sessions.iter().flat_map(|s| s.session.inbound.iter().chain(&s.session.outbound)).collect();
    let pick = |rng: &mut StdRng, net: Option<IpNet>| -> IpAddr {
        match net {
            Some(n) if rng.random_bool(0.7) => match n {
                IpNet::V4(n) => {
                    let host =
                        if n.prefix_len() == 32 { 0 } else { rng.random::<u32>() & (u32::MAX >> n.prefix_len()) };
                    IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
                }
                IpNet::V6(n) => {
                    let host =
                        if n.prefix_len() == 128 { 0 } else { rng.random::<u128>() & (u128::MAX >> n.prefix_len()) };
                    IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
                }
            },
            _ => addr(rng, family),
        }
    };
    let fam_rules: Vec<&&CompiledRule> = all.iter().filter(|r| r.family == family).collect();
    let base = if fam_rules.is_empty() { None } else { Some(fam_rules[rng.random_range(0..fam_rules.len())]) };
    let src = pick(rng, base.map(|r| r.source));
    let dst = pick(rng, base.map(|r| r.destination));
    let protocol = match base.and_then(|r| r.protocol) {
        Some(p) if rng.random_bool(0.7) => p,
        _ => PROTOS[rng.random_range(0..PROTOS.len())],
    };
    let sport = match base.and_then(|r| r.source_ports) {
        Some(r) if rng.random_bool(0.7) => rng.random_range(r.from..=r.to),
        _ => port_pool(rng),
    };
    let dport = match base.and_then(|r| r.destination_ports) {
        Some(r) if rng.random_bool(0.7) => rng.random_range(r.from..=r.to),
        _ => port_pool(rng),
    };

    // L4: ports first (all of TCP/UDP/SCTP start with them), padding after.
    let truncated_l4 = rng.random_bool(0.03);
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend((0..rng.random_range(16..64)).map(|_| rng.random::<u8>()));
    if truncated_l4 {
        l4.truncate(rng.random_range(0..4));
    }
    let mut non_first_fragment = false;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let opt_words = if rng.random_bool(0.2) { rng.random_range(1..=10) } else { 0 };
            let frag = rng.random_range(0..10);
            // 0: non-first fragment, 1: first fragment (MF), else whole.
            let frag_field: u16 = match frag {
                0 => {
                    non_first_fragment = true;
                    rng.random_range(1..0x1fff) | if rng.random_bool(0.5) { 0x2000 } else { 0 }
                }
                1 => 0x2000,
                _ => 0x4000,
            };
            let total = 20 + 4 * opt_words + l4.len();
            f.push(0x40 | (5 + opt_words as u8));
            f.push(0);
            f.extend_from_slice(&(total as u16).to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]);
            f.extend_from_slice(&frag_field.to_be_bytes());
            f.push(64);
            f.push(protocol);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend(std::iter::repeat_n(1u8, 4 * opt_words)); // NOP options
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            // Extension headers: (type, bytes) chains ending in `protocol`.
            let n_ext = [0usize, 0, 1, 2, 3, 4][rng.random_range(0..6)];
            let mut exts: Vec<(u8, Vec<u8>)> = Vec::new();
            for _ in 0..n_ext {
                let t = [0u8, 43, 60, 44, 51][rng.random_range(0..5)];
                let body = match t {
                    44 => {
                        let off: u16 = if rng.random_bool(0.4) {
                            non_first_fragment = true;
                            rng.random_range(1..0x1fff) << 3
                        } else {
                            1 // first fragment, M flag
                        };
                        let mut b = vec![0, 0];
                        b.extend_from_slice(&off.to_be_bytes());
                        b.extend_from_slice(&[0, 0, 0, 7]);
                        b
                    }
                    51 => {
                        // AH: length in 4-byte words minus 2.
                        let words = rng.random_range(3..6);
                        let mut b = vec![0, (words - 2) as u8];
                        b.extend(std::iter::repeat_n(0u8, words * 4 - 2));
                        b
                    }
                    _ => {
                        let units = rng.random_range(0..3);
                        let mut b = vec![0, units as u8];
                        b.extend(std::iter::repeat_n(0u8, (units + 1) * 8 - 2));
                        b
                    }
                };
                exts.push((t, body));
                if non_first_fragment {
                    break; // nothing is parsed after a non-first fragment header
                }
            }
            // Chain the next-header fields.
            let first = exts.first().map_or(protocol, |e| e.0);
            for i in 0..exts.len() {
                exts[i].1[0] = exts.get(i + 1).map_or(protocol, |e| e.0);
            }
            let ext_len: usize = exts.iter().map(|e| e.1.len()).sum();
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
            f.push(first);
            f.push(64);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            for e in &exts {
                f.extend_from_slice(&e.1);
            }
        }
        _ => unreachable!("one family"),
    }
    f.extend_from_slice(&l4);
    let ports = (ipproto::has_ports(protocol) && !non_first_fragment && !truncated_l4).then_some((sport, dport));
    (f, Some(PacketMeta { source: src, destination: dst, protocol, ports }))
}

fn check(
    dp: &mut Datapath,
    sessions: &[DatapathSession],
    tables: &BTreeMap<SessionKey, EndpointTable>,
    frame: &[u8],
    meta: Option<PacketMeta>,
    direction: Direction,
) -> Result<(), String> {
    let d = dp.test_decide(FAKE_IFINDEX, direction, frame).map_err(|e| e.to_string())?;
    let Some(meta) = meta else {
        return if d.verdict == PM_VERDICT_NOT_IP {
            Ok(())
        } else {
            Err(format!("non-IP frame got verdict {}", d.verdict))
        };
    };
    let parsed = format!(
        "datapath parsed family {} proto {} ports {}:{}:{}; expected {meta:?}",
        d.family, d.protocol, d.has_ports, d.sport, d.dport
    );
    let compiled: Vec<CompiledSession> = sessions.iter().map(|s| s.session.clone()).collect();
    let mut ordered: Vec<&DatapathSession> = sessions.iter().filter(|s| s.session.enabled).collect();
    ordered.sort_by(|a, b| a.session.priority.cmp(&b.session.priority).then_with(|| a.session.key.cmp(&b.session.key)));
    let slot_key = |slot: u32| ordered.get(slot as usize).map(|s| s.session.key.clone());
    match evaluate(&compiled, &meta, direction) {
        Verdict::NoMatch if d.verdict == PM_VERDICT_NO_MATCH => Ok(()),
        Verdict::Rejected { session, .. } if d.verdict == PM_VERDICT_REJECT => (slot_key(d.slot)
            == Some(session.key.clone()))
        .then_some(())
        .ok_or(format!("reject by slot {} not {}; {parsed}", d.slot, session.key)),
        Verdict::Copy { session, .. } if d.verdict == PM_VERDICT_COPY => {
            let x = d.xfer;
            let ds = sessions.iter().find(|s| s.session.key == session.key).ok_or("session vanished")?;
            let hash = flow_hash(&meta);
            let target = tables.get(&session.key).ok_or("no endpoint table")?.pick(hash);
            let want_target = podmirror_agent::datapath::encode::addr_words(&target);
            let (want_encap, want_port) = match session.encapsulation {
                Encapsulation::VXLAN => (PM_ENCAP_VXLAN, session.target_port),
                Encapsulation::GRE => (PM_ENCAP_GRE, session.target_port),
                Encapsulation::Geneve => (PM_ENCAP_GENEVE, podmirror_crds::model::GENEVE_PORT),
                Encapsulation::ERSPAN => (PM_ENCAP_ERSPAN, session.target_port),
            };
            let problems: Vec<String> = [
                (slot_key(d.slot) != Some(session.key.clone()))
                    .then(|| format!("slot {} is not {}", d.slot, session.key)),
                (x.session_id != ds.id).then(|| format!("session id {} != {}", x.session_id, ds.id)),
                (x.vni != session.vni).then(|| format!("vni {} != {}", x.vni, session.vni)),
                (x.cut_len != session.packet_length.unwrap_or(0))
                    .then(|| format!("cut {} != {:?}", x.cut_len, session.packet_length)),
                (x.encap != want_encap).then(|| format!("encap {} != {want_encap}", x.encap)),
                (x.target != want_target).then(|| format!("target {:?} != {target}", x.target)),
                (x.flow_hash != hash).then(|| format!("flow hash {:#x} != {hash:#x}", x.flow_hash)),
                (x.sport != outer_source_port(hash))
                    .then(|| format!("sport {} != {}", x.sport, outer_source_port(hash))),
                (x.target_port != want_port).then(|| format!("port {} != {want_port}", x.target_port)),
            ]
            .into_iter()
            .flatten()
            .collect();
            if problems.is_empty() { Ok(()) } else { Err(format!("{}; {parsed}", problems.join(", "))) }
        }
        want => Err(format!(
            "reference {want:?} but datapath verdict {} slot {} rule {}; {parsed}",
            d.verdict, d.slot, d.rule
        )),
    }
}

/// The seed when `PODMIRROR_DIFF_SEED` is not set.
const DEFAULT_SEED: u64 = 0x706f_646d_6469_6666;

#[test]
fn datapath_decides_like_the_reference_model() {
    if !testbed::require_root("datapath_decides_like_the_reference_model") {
        return;
    }
    let seed: u64 = std::env::var("PODMIRROR_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        // A fixed default: CI checks the same packets every run (a red CI is
        // a real defect, never luck); set the variable to explore others.
        .unwrap_or(DEFAULT_SEED);
    let packets: usize = std::env::var("PODMIRROR_DIFF_PACKETS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let topo = Topology::new("pmdp").expect("node namespace");
    let cfg = support::config(&topo);
    let guard = Cleanup(cfg.clone());
    let result = topo
        .node
        .run(|| -> Result<(usize, [usize; 4]), String> {
            let mut dp = Datapath::open(&cfg).map_err(|e| format!("open: {e}"))?;
            let mut rng = StdRng::seed_from_u64(seed);
            let per_mix = 500;
            let mut done = 0;
            let mut verdicts = [0usize; 4];
            let mut production_runs = 0usize;
            let mut round = 0;
            while done < packets {
                let sessions = session_mix(&mut rng, round);
                // Maglev tables are built once per mix (a build is ~a millisecond).
                let mut tables = BTreeMap::new();
                for s in &sessions {
                    let t = EndpointTable::new(&s.session.targets).map_err(|e| e.to_string())?.ok_or("no target")?;
                    tables.insert(s.session.key.clone(), t);
                }
                dp.set_sessions(FAKE_IFINDEX, &sessions).map_err(|e| format!("set_sessions: {e}"))?;
                // The production programs see the test run's loopback (ifindex 1).
                dp.set_sessions(1, &sessions).map_err(|e| format!("set_sessions: {e}"))?;
                for _ in 0..per_mix.min(packets - done) {
                    let (f, meta) = frame(&mut rng, &sessions);
                    let direction = if rng.random_bool(0.5) { Direction::Inbound } else { Direction::Outbound };
                    check(&mut dp, &sessions, &tables, &f, meta, direction)
                        .map_err(|e| format!("packet {done} (round {round}, {direction:?}): {e}\nframe {f:02x?}\nsessions {sessions:#?}"))?;
                    let d = dp.test_decide(FAKE_IFINDEX, direction, &f).map_err(|e| e.to_string())?;
                    verdicts[d.verdict as usize & 3] += 1;
                    // Every 10th packet also through the production program:
                    // the original goes on (TCX_NEXT) byte for byte, copy or not.
                    if done % 10 == 0 {
                        let (ret, out) = dp.test_run_veth(direction, &f).map_err(|e| e.to_string())?;
                        if ret != TCX_NEXT || out != f {
                            return Err(format!("packet {done}: the veth program returned {ret:#x} or changed the original\nin  {f:02x?}\nout {out:02x?}"));
                        }
                        production_runs += 1;
                    }
                    done += 1;
                }
                round += 1;
            }
            // Copies attempted by the production runs are all accounted for
            // (this namespace has no route, so they fail at the FIB, counted).
            let counters = dp.counters().map_err(|e| e.to_string())?;
            let unaccounted: Vec<_> =
                counters.iter().filter(|(_, c)| c.copied_packets + c.failed() + c.skipped.values().sum::<u64>() != c.matched).collect();
            if !unaccounted.is_empty() {
                return Err(format!("copies not accounted for: {unaccounted:?}"));
            }
            if production_runs == 0 || counters.values().map(|c| c.matched).sum::<u64>() == 0 {
                return Err("the production programs were never exercised".into());
            }
            Ok((done, verdicts))
        })
        .expect("enter node namespace");
    drop(guard);
    match result {
        Ok((done, verdicts)) => {
            eprintln!(
                "differential: seed {seed}: {done} packets, verdicts [not-ip, no-match, copy, reject] = {verdicts:?}"
            );
            assert_eq!(done, packets);
            // The generator must exercise every outcome, or the test proves little.
            assert!(verdicts.iter().all(|&n| n > packets / 100), "too few of some verdict: {verdicts:?} (seed {seed})");
        }
        Err(e) => panic!("differential mismatch with PODMIRROR_DIFF_SEED={seed}: {e}"),
    }
}
