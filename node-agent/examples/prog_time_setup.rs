//! Program-time setup for BPF_PROG_TEST_RUN measurements of the veth
//! programs: opens the datapath under PIN_DIR (run it inside a scratch
//! network namespace) and gives `ifindexes` (comma list) the benchmark's
//! no-match sessions: RULES (0, 10 or 30) rules per direction in 1 or 3
//! sessions. `--remove PIN_DIR` removes everything again.
//!
//! Then, in the same namespace, `bpftool prog run pinned
//! PIN_DIR/prog-pm_veth_ingress data_in FRAME ctx_in CTX repeat N` with a
//! 68-byte `struct __sk_buff` whose `ifindex` (offset 40) is an existing
//! interface of that namespace programmed here (the test run looks it up), beside
//! the same run of a no-op classifier, in interleaved rounds.
use std::net::{IpAddr, Ipv4Addr};

use podmirror_agent::datapath::{Datapath, DatapathConfig, DatapathSession};
use podmirror_crds::model::{Action, CompiledRule, CompiledSession, Encapsulation, IpFamily, PortRange, SessionKey};

fn rules(index: u32, count: u32) -> Vec<CompiledRule> {
    (0..count)
        .map(|i| CompiledRule {
            priority: (i + 1) as u16,
            action: Action::Accept,
            family: IpFamily::IPv4,
            protocol: Some(6),
            source: "0.0.0.0/0".parse().expect("literal"),
            destination: format!("10.200.{}.0/24", index * 10 + i).parse().expect("literal"),
            source_ports: None,
            destination_ports: Some(PortRange { from: 1000 + i as u16, to: 1000 + i as u16 }),
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let cfg = DatapathConfig {
        pin_dir: args.get(2).ok_or("PIN_DIR")?.into(),
        device_prefix: "pmt".into(),
        ..DatapathConfig::default()
    };
    if args[1] == "--remove" {
        Datapath::remove_all(&cfg)?;
        return Ok(());
    }
    let total: u32 = args[1].parse()?;
    let ifindexes: Vec<u32> = args.get(3).ok_or("IFINDEXES")?.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let mut dp = Datapath::open(&cfg)?;
    let (n, per) = if total <= 10 { (1, total) } else { (3, 10) };
    let sessions: Vec<DatapathSession> = (0..n)
        .map(|s| DatapathSession {
            id: s + 1,
            session: CompiledSession {
                key: SessionKey::new("bench", format!("s{s}")),
                priority: (s + 1) as u16,
                enabled: true,
                vni: s + 1,
                packet_length: None,
                encapsulation: Encapsulation::VXLAN,
                target_port: 4789,
                rate_limit: None,
                flow_sampling: None,
                targets: vec![IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2))],
                inbound: rules(2 * s, per),
                outbound: rules(2 * s + 1, per),
            },
        })
        .collect();
    for i in ifindexes {
        dp.set_sessions(i, &sessions)?;
    }
    Ok(())
}
