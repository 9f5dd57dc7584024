//! The AF_XDP input (`--xdp-iface`), on a veth pair between two network
//! namespaces with the collector running as its own process in one of them:
//! copies that fit a frame arrive through AF_XDP (the kernel's UDP layer
//! never sees them), larger ones (9000-byte frames) through the UDP socket,
//! every copy is recorded byte for byte, other traffic still flows, and the
//! program is gone when the collector stops. Root.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use podmirror_collector::decode::vxlan_header;
use podmirror_testkit::{Netns, unique_name};

/// The UDP datagrams the kernel delivered in `ns` (`Udp: InDatagrams`).
fn udp_in_datagrams(ns: &Netns) -> u64 {
    *ns.udp_counters().expect("read /proc/net/snmp").get("InDatagrams").expect("an InDatagrams counter")
}

/// The frames of the pcap records in `dir` (one VNI, so one series).
fn recorded_frames(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir).expect("files dir").filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let mut frames = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("read a capture file");
        frames.extend(podmirror_collector::pcap::frames(&bytes).map(<[u8]>::to_vec));
    }
    frames
}

#[test]
fn copies_arrive_through_af_xdp_and_jumbo_copies_through_the_socket() {
    if require_root("copies_arrive_through_af_xdp_and_jumbo_copies_through_the_socket") {
        // auto: the veth driver runs the program.
        af_xdp_scenario("", "native", 1);
    }
}

#[test]
fn generic_mode_and_several_queues_work_the_same() {
    if require_root("generic_mode_and_several_queues_work_the_same") {
        af_xdp_scenario("--xdp-mode generic", "generic", 4);
    }
}

/// Runs the collector with `--xdp-iface eth0 {flags}` on a veth with
/// `queues` receive queues and checks that it attached in `mode` with a
/// socket per queue and recorded every copy, only the jumbo ones through
/// the UDP socket.
fn af_xdp_scenario(flags: &str, mode: &str, queues: u32) {
    let node = Netns::create(&unique_name("pmxn")).expect("sender namespace");
    let pod = Netns::create(&unique_name("pmxp")).expect("collector namespace");
    let veth = unique_name("pmxv");
    let made = std::process::Command::new("ip")
        .args(["link", "add", &veth, "netns", &node.name, "numtxqueues", &queues.to_string()])
        .args(["numrxqueues", &queues.to_string(), "type", "veth", "peer", "name", "eth0", "netns", &pod.name])
        .args(["numtxqueues", &queues.to_string(), "numrxqueues", &queues.to_string()])
        .status()
        .expect("run ip");
    assert!(made.success(), "veth pair");
    node.ip(&["addr", "add", "10.77.0.1/24", "dev", &veth]).expect("address");
    pod.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]).expect("address");
    for (ns, dev) in [(&node, veth.as_str()), (&pod, "eth0")] {
        ns.ip(&["link", "set", dev, "mtu", "9100", "up"]).expect("link up");
    }
    let dir = temp_dir(&format!("xdp-{mode}"));
    let bin = env!("CARGO_BIN_EXE_podmirror-collector");
    let mut collector = pod
        .spawn(&format!(
            "NO_COLOR=1 exec {bin} --vxlan-listen 10.77.0.2:4789 --http-addr 127.0.0.1:0 --files-dir {} --xdp-iface eth0 {flags}",
            dir.display()
        ))
        .expect("collector runs");
    let mut lines = BufReader::new(collector.child().stdout.take().expect("stdout")).lines();
    let mut said = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        said.push(line.clone());
        if line.contains("collector started") {
            break;
        }
    }
    let attached = said.iter().find(|l| l.contains("AF_XDP input attached")).cloned();
    let wanted = [format!("mode=\"{mode}\""), format!("queues={queues}")];
    assert!(
        attached.as_deref().is_some_and(|l| wanted.iter().all(|w| l.contains(w.as_str()))),
        "attached in {mode} mode with {queues} sockets: {said:?}"
    );
    assert!(pod.sh("ip link show eth0").expect("link").contains("prog/xdp"), "the program is on eth0");

    // 300 full-size copies and 4 copies of 9000-byte frames.
    let mut frames = traffic(40400, 300, 20_000);
    let head = frames[0][..54].to_vec();
    frames.extend((0..4u8).map(|i| [&head[..], &vec![i; 8946][..]].concat()));
    let other = pod.run(|| UdpSocket::bind("10.77.0.2:9999").expect("bind in the pod")).expect("enter the pod");
    other.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let before = udp_in_datagrams(&pod);
    node.run(|| {
        let sock = UdpSocket::bind("10.77.0.1:0").expect("bind in the sender namespace");
        for (i, f) in frames.iter().enumerate() {
            let d = [&vxlan_header(3)[..], f].concat();
            sock.send_to(&d, SocketAddr::from(([10, 77, 0, 2], 4789))).expect("send a copy");
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sock.send_to(b"not a copy", SocketAddr::from(([10, 77, 0, 2], 9999))).expect("send other traffic");
    })
    .expect("send from the sender namespace");
    let mut buf = [0u8; 64];
    let n = other.recv(&mut buf).expect("other traffic still passes the program");
    assert_eq!(&buf[..n], b"not a copy");

    // Stop the collector the way Kubernetes does (SIGTERM) once its files
    // hold everything, then compare.
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorded_frames(&dir).len() < frames.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered = udp_in_datagrams(&pod) - before;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(collector.child().id() as i32, libc::SIGTERM) };
    let _ = collector.child().wait();
    assert_eq!(delivered, 4 + 1, "only the 4 jumbo copies (and the other datagram) went through UDP");
    let mut got = recorded_frames(&dir);
    let mut want = frames.clone();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "every copy recorded once");
    assert!(got == want, "recorded frames equal the copies' inner frames");
    assert!(!pod.sh("ip link show eth0").expect("link").contains("prog/xdp"), "the program left with the collector");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The capabilities the chart gives the collector with its AF_XDP input
/// (values.yaml; tests/chart.rs in e2e checks the rendered securityContext).
fn chart_capabilities() -> Vec<String> {
    let path = podmirror_e2e::chart_dir().join("values.yaml");
    let text = std::fs::read_to_string(&path).expect("values.yaml");
    let values: serde_yaml::Value = serde_yaml::from_str(&text).expect("values.yaml parses");
    values["collector"]["xdp"]["capabilities"]
        .as_sequence()
        .expect("collector.xdp.capabilities")
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_lowercase())
        .collect()
}

/// Whether the collector starts its AF_XDP input on `eth0` of `pod` as root
/// with exactly `caps` as its bounding set (and no_new_privs), as a
/// container with those capabilities would; returns its output too.
fn starts_with(pod: &Netns, caps: &[String]) -> (bool, String) {
    let bounding = std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>();
    let bin = env!("CARGO_BIN_EXE_podmirror-collector");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.name, "setpriv", "--no-new-privs", "--inh-caps=-all"])
        .arg(format!("--bounding-set={}", bounding.join(",")))
        .args(["--", "timeout", "-s", "INT", "3", bin, "--vxlan-listen", "10.77.1.2:4789"])
        .args(["--http-addr", "127.0.0.1:0", "--xdp-iface", "eth0"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run the collector under setpriv");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text.contains("collector started") && text.contains("AF_XDP input attached"), text)
}

#[test]
fn the_charts_capabilities_are_enough_and_each_is_needed() {
    if !require_root("the_charts_capabilities_are_enough_and_each_is_needed") {
        return;
    }
    let pod = Netns::create(&unique_name("pmxc")).expect("namespace");
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]).expect("veth");
    pod.ip(&["addr", "add", "10.77.1.2/24", "dev", "eth0"]).expect("address");
    pod.ip(&["link", "set", "eth0", "up"]).expect("up");
    pod.ip(&["link", "set", "peer0", "up"]).expect("up");
    let full = chart_capabilities();
    let (ok, text) = starts_with(&pod, &full);
    assert!(ok, "the chart's capabilities {full:?} do not start the AF_XDP input:\n{text}");
    for missing in &full {
        let fewer: Vec<String> = full.iter().filter(|c| *c != missing).cloned().collect();
        let (ok, text) = starts_with(&pod, &fewer);
        assert!(
            !ok,
            "the AF_XDP input started without CAP_{}: the chart asks for more than it needs:\n{text}",
            missing.to_uppercase()
        );
        assert!(text.contains("--xdp-iface eth0"), "the refusal names the flag:\n{text}");
    }
}
