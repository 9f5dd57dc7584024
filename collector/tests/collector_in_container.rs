//! The collector as installed with each of its kernel inputs: the chart
//! rendered by the real helm with `collector.xdp.enabled=true` or
//! `collector.ring.enabled=true`, its container run by runc with exactly
//! that securityContext (root, the listed capabilities after dropping ALL,
//! no_new_privs, read-only root, the runtime's default seccomp profile) in a
//! pod network namespace whose eth0 is one end of a veth, as a CNI makes it.
//! The collector must attach its program to eth0, count every copy sent
//! from the node side, with none of them going through the pod's UDP layer,
//! serve /metrics to the node, and leave eth0 without a program when the
//! container is killed.
//!
//! Needs root, runc, helm and the containers-common seccomp profile
//! (`make test` installs them); otherwise SKIPPED, or a failure under CI=true.

#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podmirror_collector::decode::vxlan_header;
use podmirror_e2e::manifest::parse_documents;
use podmirror_e2e::oci::{self, Launch, RuncContainer, cap_number};
use podmirror_e2e::{chart_dir, cmd};
use podmirror_testkit::{self as testbed, Netns, unique_name};

mod common;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_podmirror-collector");
const TEST: &str = "collector_in_container";

fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    if !testbed::require_root(TEST) {
        return None;
    }
    oci::runtime_tools(TEST)
}

/// `GET /metrics` of the collector from the node's side.
fn metrics(node: &Netns) -> String {
    node.http_get(([10, 79, 0, 2], 8080).into(), "/metrics").unwrap()
}

fn xdp_on_eth0(pod: &Netns) -> bool {
    pod.sh("ip link show eth0").unwrap().contains("prog/xdp")
}

#[test]
fn the_collector_runs_its_af_xdp_input_in_a_container_as_the_chart_renders_it() {
    if let Some((runc, helm)) = prerequisites() {
        in_container(&runc, &helm, "collector.xdp.enabled=true", "AF_XDP input attached", xdp_on_eth0);
    }
}

#[test]
fn the_collector_runs_its_ring_input_in_a_container_as_the_chart_renders_it() {
    if let Some((runc, helm)) = prerequisites() {
        in_container(&runc, &helm, "collector.ring.enabled=true", "ring input attached", common::ring_on_eth0);
    }
}

/// Renders the chart with `input` set, runs the collector's container and
/// checks that it logs `attached`, that `on_eth0` sees its program, and the
/// rest (see the top of this file).
fn in_container(runc: &Path, helm: &Path, input: &str, attached: &str, on_eth0: fn(&Netns) -> bool) {
    let chart = chart_dir();
    let args = ["template", "pm", chart.to_str().unwrap(), "--namespace", "podmirror-system"];
    let sets = ["--set", "collector.enabled=true", "--set", input];
    let objects = parse_documents(&cmd::run(helm, &[&args[..], &sets[..]].concat()).unwrap()).unwrap();
    let deployment = objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.label("app.kubernetes.io/component") == Some("collector"))
        .expect("the collector Deployment");
    let container = deployment.containers().into_iter().find(|c| c.name() == "collector").unwrap();
    let caps = oci::effective_capabilities(&container).unwrap();

    let node = Netns::create(&unique_name("pmcn")).unwrap();
    let pod = Netns::create(&unique_name("pmcp")).unwrap();
    let veth = unique_name("pmcv");
    let made = std::process::Command::new("ip")
        .args(["link", "add", &veth, "netns", &node.name, "type", "veth", "peer", "name", "eth0", "netns", &pod.name])
        .status()
        .unwrap();
    assert!(made.success(), "veth pair");
    node.ip(&["addr", "add", "10.79.0.1/24", "dev", &veth]).unwrap();
    pod.ip(&["addr", "add", "10.79.0.2/24", "dev", "eth0"]).unwrap();
    node.ip(&["link", "set", &veth, "up"]).unwrap();
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();

    let work = std::env::temp_dir().join(format!("{}-{}", TEST, pod.name));
    let launch = Launch {
        netns_path: PathBuf::from(format!("/run/netns/{}", pod.name)),
        binary_dir: Path::new(COLLECTOR).parent().unwrap().to_path_buf(),
        ..Launch::default()
    };
    let bundle = work.join("collector");
    oci::write_bundle(runc, &bundle, deployment.pod_spec().unwrap(), &container, &launch).unwrap();
    let log = work.join("collector.log");
    let running = RuncContainer::start(runc, &format!("{}-collector", pod.name), &bundle, &log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // "collector started" is logged once every input is on.
    let mut text = String::new();
    while !(text.contains("collector started") && metrics(&node).contains("podmirror_collector_")) {
        assert!(Instant::now() < deadline, "the collector did not come up:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    assert!(text.contains(attached), "the input is on ({attached}):\n{text}");
    assert!(on_eth0(&pod), "the program is on the pod's eth0");
    let (mask, seccomp) = running.cap_eff_and_seccomp().unwrap();
    let wanted: u64 = caps.iter().map(|c| 1u64 << cap_number(c).unwrap()).sum();
    assert_eq!(mask, wanted, "effective capabilities {mask:x} are not the chart's {caps:?}");
    assert_eq!(seccomp, "2", "seccomp filter mode");

    let before = common::udp_in_datagrams(&pod);
    let frame = [&[0x02u8, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00][..], &[0x45; 100][..]].concat();
    node.run(|| {
        let sock = UdpSocket::bind("10.79.0.1:0").unwrap();
        for i in 0..200 {
            sock.send_to(&[&vxlan_header(5)[..], &frame].concat(), "10.79.0.2:4789").unwrap();
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .unwrap();
    let counted = r#"podmirror_collector_received_packets_total{vni="5",input="vxlan"} 200"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics(&node).lines().any(|l| l == counted) {
        assert!(Instant::now() < deadline, "200 copies not counted:\n{}", metrics(&node));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(common::udp_in_datagrams(&pod) - before, 0, "no copy went through the pod's UDP layer");
    drop(running);
    let deadline = Instant::now() + Duration::from_secs(5);
    while on_eth0(&pod) {
        assert!(Instant::now() < deadline, "the program outlived the collector");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&work);
}
