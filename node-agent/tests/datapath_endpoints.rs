//! Service targets with many endpoints on the real eBPF programs
//! (BPF_PROG_TEST_RUN): the C side picks, for every flow, the endpoint the
//! agent's Maglev table (`datapath::maglev`) says, both directions of a flow
//! go to the same endpoint, and a change of the endpoint set moves about 1/n
//! of the flows in the datapath too. Needs root; prints `SKIPPED:` off root
//! and fails under `CI=true` when it cannot run.

mod support;
use support::Cleanup;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use podmirror_agent::datapath::abi::{PM_VERDICT_COPY, PmDecision};
use podmirror_agent::datapath::flow::flow_hash;
use podmirror_agent::datapath::maglev::EndpointTable;
use podmirror_agent::datapath::{Datapath, DatapathSession};
use podmirror_crds::model::{CompiledSession, Direction, PacketMeta, ipproto};
use podmirror_testkit::fixtures::{accept_ipv4, compiled_session};
use podmirror_testkit::{self as testbed, Topology};

const FAKE_IFINDEX: u32 = 4243;

/// The endpoint chosen for each flow, in flow order.
type Picks = Vec<IpAddr>;

fn endpoints(n: u8) -> Vec<IpAddr> {
    (0..n).map(|i| IpAddr::V4(Ipv4Addr::new(10, 77, i / 16, 10 + i))).collect()
}

fn session(targets: Vec<IpAddr>) -> DatapathSession {
    let rule = accept_ipv4(Some(ipproto::UDP), None);
    let (inbound, outbound) = (vec![rule.clone()], vec![rule]);
    DatapathSession {
        id: 7,
        session: CompiledSession { vni: 9, targets, inbound, outbound, ..compiled_session("svc", "10.77.0.2") },
    }
}

/// An Ethernet/IPv4/UDP frame of flow `i` (distinct client address and port).
fn flow(i: u32, reply: bool) -> (Vec<u8>, PacketMeta) {
    let client = Ipv4Addr::from(0xc0a8_0000 + (i % 200) + 1);
    let server = Ipv4Addr::new(192, 168, 1, 230);
    let (cport, sport) = (20_000 + (i / 200) as u16, 8000u16);
    let (src, dst, sp, dp) = if reply { (server, client, sport, cport) } else { (client, server, cport, sport) };
    let mut f = vec![0u8; 14 + 20 + 8 + 16];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20u16 + 8 + 16).to_be_bytes());
    ip[8] = 64;
    ip[9] = ipproto::UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    f[38..40].copy_from_slice(&(8u16 + 16).to_be_bytes());
    let meta =
        PacketMeta { source: src.into(), destination: dst.into(), protocol: ipproto::UDP, ports: Some((sp, dp)) };
    (f, meta)
}

fn target_of(d: &PmDecision) -> Result<IpAddr, String> {
    if d.verdict != PM_VERDICT_COPY {
        return Err(format!("verdict {} instead of a copy", d.verdict));
    }
    Ok(IpAddr::V4(Ipv4Addr::from(d.xfer.target.w[0].to_ne_bytes())))
}

/// The endpoint the datapath picks for each of `flows` flows (both
/// directions checked against each other and against the Rust table).
fn picks(dp: &mut Datapath, table: &EndpointTable, flows: u32) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for i in 0..flows {
        let (request, meta) = flow(i, false);
        let (reply, _) = flow(i, true);
        let there =
            target_of(&dp.test_decide(FAKE_IFINDEX, Direction::Outbound, &request).map_err(|e| e.to_string())?)?;
        let back = target_of(&dp.test_decide(FAKE_IFINDEX, Direction::Inbound, &reply).map_err(|e| e.to_string())?)?;
        let want = table.pick(flow_hash(&meta));
        if there != want || back != want {
            return Err(format!("flow {i}: datapath picked {there} / {back} (reply), the Maglev table says {want}"));
        }
        out.push(there);
    }
    Ok(out)
}

#[test]
fn forty_endpoints_the_datapath_follows_the_maglev_table() {
    if !testbed::require_root("forty_endpoints_the_datapath_follows_the_maglev_table") {
        return;
    }
    let topo = Topology::new("pmlb").expect("node namespace");
    let cfg = support::config(&topo);
    let _guard = Cleanup(cfg.clone());
    let flows = 4000;
    let result = topo
        .node
        .run(|| -> Result<[Picks; 3], String> {
            let mut dp = Datapath::open(&cfg).map_err(|e| format!("open: {e}"))?;
            let mut run = |n: u8| -> Result<Vec<IpAddr>, String> {
                let s = session(endpoints(n));
                let table = EndpointTable::new(&s.session.targets).map_err(|e| e.to_string())?.ok_or("no endpoint")?;
                dp.set_sessions(FAKE_IFINDEX, &[s]).map_err(|e| format!("set_sessions: {e}"))?;
                picks(&mut dp, &table, flows)
            };
            Ok([run(40)?, run(41)?, run(40)?])
        })
        .expect("enter node namespace");
    let [forty, forty_one, again] = result.unwrap_or_else(|e| panic!("{e}"));
    let mut per_endpoint: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for e in &forty {
        *per_endpoint.entry(*e).or_default() += 1;
    }
    assert_eq!(per_endpoint.len(), 40, "every endpoint gets flows: {per_endpoint:?}");
    // 100 flows expected per endpoint; a binomial spread stays well inside this.
    assert!(per_endpoint.values().all(|n| (50..=160).contains(n)), "unbalanced: {per_endpoint:?}");
    let moved = forty.iter().zip(&forty_one).filter(|(a, b)| a != b).count();
    // About flows/41 = 98 move to the new endpoint; a modulo choice would move ~97%.
    assert!((40..=200).contains(&moved), "{moved} of {flows} flows moved when one endpoint was added");
    assert_eq!(forty, again, "the same endpoint set gives the same choice");
}
