//! Order beside a CNI's own TCX program (docs/operations.md, "Attach mode"):
//! a program already on the pod veth that ends the chain (here: drops every
//! packet, as a CNI's redirect would take it away) must not hide the pod's
//! traffic from podmirror, so the agent's TCX links go first. Real eBPF on
//! veths of network namespaces; needs root (prints `SKIPPED:` otherwise and
//! fails under `CI=true`).

mod support;
use support::Cleanup;

use std::path::Path;
use std::process::Command;

use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use podmirror_agent::datapath::{AttachMode, Datapath, DatapathSession};
use podmirror_crds::model::{CompiledSession, Direction, ipproto};
use podmirror_testkit::fixtures::{accept_ipv4, compiled_session};
use podmirror_testkit::{self as testbed, Topology};

/// The stand-in CNI program: TCX_DROP (2) for every packet.
const CNI_C: &str = r#"
__attribute__((section("classifier"), used)) int cni_drop(void *skb) { return 2; }
char LICENSE[] __attribute__((section("license"), used)) = "Dual BSD/GPL";
"#;

fn build_cni_object(dir: &Path) -> Vec<u8> {
    let (src, obj) = (dir.join("cni.c"), dir.join("cni.o"));
    std::fs::write(&src, CNI_C).expect("write cni.c");
    let status = Command::new("clang-19")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang-19 (scripts/install-deps.sh installs it)");
    assert!(status.success(), "clang-19 failed on the stand-in CNI program");
    std::fs::read(&obj).expect("read cni.o")
}

/// A session of pod traffic leaving the pod (outbound): every UDP packet.
fn udp_outbound_session() -> DatapathSession {
    let outbound = vec![accept_ipv4(Some(ipproto::UDP), None)];
    DatapathSession {
        id: 1,
        session: CompiledSession { vni: 7, outbound, ..compiled_session("behind-cni", "10.77.0.2") },
    }
}

/// UDP datagrams the namespace's stack received (delivered or not).
fn udp_received(ns: &testbed::Netns) -> u64 {
    let udp = ns.udp_counters().expect("snmp");
    ["InDatagrams", "NoPorts"].iter().filter_map(|n| udp.get(*n)).sum()
}

#[test]
fn tcx_links_go_before_a_cni_program_that_ends_the_chain() {
    if !testbed::require_root("tcx_links_go_before_a_cni_program_that_ends_the_chain") {
        return;
    }
    let topo = Topology::client_source_collector("pmord", 1500).expect("topology");
    let cfg = support::config(&topo);
    let _cleanup = Cleanup(cfg.clone());
    let dir = std::env::temp_dir().join(format!("{}-cni", topo.tag));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let object = build_cni_object(&dir);
    let (source, client) = (topo.pod("source").expect("pod"), topo.pod("client").expect("pod"));
    // The CNI program drops ARP too: the pod knows its next hop statically.
    let host_mac = topo.node.sh(&format!("cat /sys/class/net/{}/address", source.host_ifname)).expect("host MAC");
    let neigh = format!("ip neigh replace 192.168.0.161 lladdr {} dev eth0 nud permanent", host_mac.trim());
    source.netns.sh(&neigh).expect("static neighbour");
    let before = udp_received(&client.netns);
    let (copied, matched) = topo
        .node
        .run(|| {
            // The CNI came first: its program is on the veth before the agent's.
            let mut cni = aya::Ebpf::load(&object).expect("load the stand-in CNI object");
            let prog: &mut SchedClassifier =
                cni.program_mut("cni_drop").expect("cni_drop").try_into().expect("classifier");
            prog.load().expect("load cni_drop");
            let order = TcAttachOptions::TcxOrder(LinkOrder::default());
            prog.attach_with_options(&source.host_ifname, TcAttachType::Ingress, order).expect("attach cni_drop");

            let mut dp = Datapath::open(&cfg).expect("open datapath");
            dp.set_attach_mode(AttachMode::Tcx);
            dp.attach(source.host_ifindex).expect("attach");
            dp.set_sessions(source.host_ifindex, &[udp_outbound_session()]).expect("sessions");
            source
                .netns
                .sh("python3 -c \"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(5):\n  s.sendto(b'x',('192.168.0.161',9000))\n  time.sleep(0.002)\"")
                .expect("udp send");
            let c = dp.counters().expect("counters").get(&(1, Direction::Outbound)).cloned().unwrap_or_default();
            drop(dp);
            drop(cni);
            (c.copied_packets, c.matched)
        })
        .expect("node namespace");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(udp_received(&client.netns), before, "the stand-in CNI program did not drop the pod's packets");
    assert_eq!((matched, copied), (5, 5), "podmirror ran after the CNI program and saw nothing");
}
