//! The agent as installed: the chart rendered by the real helm, its agent
//! container run by a real OCI runtime (runc) with exactly that container's
//! securityContext (capabilities after dropping ALL, uid, no_new_privs,
//! read-only root, the runtime's default seccomp profile), host network,
//! the bpffs hostPath mount with its propagation, and the runtime's
//! read-only `/proc/sys`. The node is a network namespace laid out like a
//! bridge CNI (the bridge plugin, flannel): the seed scenario's three pods
//! on one bridge, none of which has sent anything when the agent starts,
//! and IP forwarding off on the node. The agent must start, find
//! ecs-source's bridge port, and mirror `hello` and `12345` to ecs-target
//! as VXLAN VNI 1 cut to 96 bytes, with the node's IP (from the Downward
//! API's `status.hostIPs`) as outer source. Then the uninstall hook's
//! cleanup container, also under runc, leaves nothing behind.
//!
//! Needs root, runc, helm, tcpdump, tshark, nc and the containers-common
//! seccomp profile (`make test` installs them); otherwise SKIPPED, or a
//! failure under CI=true.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podmirror_e2e::manifest::{Object, parse_documents};
use podmirror_e2e::oci::{self, Launch, RuncContainer as Container, cap_number};
use podmirror_e2e::{chart_dir, cmd, repo_root};
use podmirror_testkit::{self as testbed, Capture, PodSpec, Topology, tshark_rows};

const AGENT: &str = env!("CARGO_BIN_EXE_podmirror-agent");
const NODE_IP: &str = "172.31.240.7";
const TEST: &str = "agent_in_container";

fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    if !testbed::require_root(TEST) {
        return None;
    }
    oci::runtime_tools(TEST)
}

/// The chart as `helm install` would create it, with the default values
/// but the pin dir (bpffs is shared with concurrent tests; the devices live
/// in the test's own node namespace).
fn rendered(helm: &Path, pin_dir: &str) -> Vec<Object> {
    let chart = chart_dir();
    let pin = format!("agent.pinDir={pin_dir}");
    let args = ["template", "pm", chart.to_str().unwrap(), "--namespace", "podmirror-system", "--set", &pin];
    parse_documents(&cmd::run(helm, &args).unwrap()).unwrap()
}

fn daemonset<'a>(objects: &'a [Object], component: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind == "DaemonSet" && o.label("app.kubernetes.io/component") == Some(component))
        .unwrap_or_else(|| panic!("no {component} DaemonSet in the chart"))
}

/// The seed scenario on a bridge, as the bridge CNI lays it out.
fn bridge_node() -> Topology {
    let mut topo = Topology::new("pmoci").unwrap();
    for (name, ip) in [("ecs-test", "192.168.0.161"), ("ecs-source", "192.168.0.230"), ("ecs-target", "192.168.0.164")]
    {
        topo.add_bridged_pod(PodSpec::v4(name, ip), "192.168.0.1/24").unwrap();
    }
    topo.add_node_address(&format!("{NODE_IP}/32")).unwrap();
    // Nothing forwarded by the node: the pods talk over the bridge, and the
    // agent may not rely on forwarding it cannot switch on through /proc/sys.
    topo.node.sysctl("net.ipv4.ip_forward=0").unwrap();
    topo
}

fn wait_for_metric(topo: &Topology, line: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = topo.node.http_get(([127, 0, 0, 1], 9090).into(), "/metrics").unwrap();
        if text.lines().any(|l| l == line) {
            return;
        }
        let agent_log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < deadline, "timed out waiting for `{line}`\nmetrics:\n{text}\nagent log:\n{agent_log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agent_runs_in_a_container_as_the_chart_renders_it_and_mirrors_a_bridged_pod() {
    let Some((runc, helm)) = prerequisites() else { return };
    let topo = bridge_node();
    let pin_dir = format!("/sys/fs/bpf/{}", topo.tag);
    let objects = rendered(&helm, &pin_dir);
    let agent_ds = daemonset(&objects, "agent");
    let agent_container = agent_ds.containers().into_iter().find(|c| c.name() == "agent").unwrap();
    assert_eq!(agent_ds.pod_spec().unwrap()["hostNetwork"].as_bool(), Some(true));
    let caps = oci::effective_capabilities(&agent_container).unwrap();

    let work = std::env::temp_dir().join(&topo.tag);
    let config_dir = work.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    for f in ["filter.yaml", "session.yaml", "standalone.yaml", "pods.yaml"] {
        std::fs::copy(repo_root().join("examples/seed-scenario").join(f), config_dir.join(f)).unwrap();
    }
    let launch = |extra: Vec<String>| Launch {
        netns_path: PathBuf::from(format!("/run/netns/{}", topo.node.name)),
        binary_dir: Path::new(AGENT).parent().unwrap().to_path_buf(),
        field_values: vec![("spec.nodeName".into(), "node-1".into()), ("status.hostIPs".into(), NODE_IP.into())],
        extra_args: extra,
        extra_mounts: vec![(config_dir.clone(), "/config".into())],
    };
    // The chart's command and args, in standalone mode on the seed example's files.
    let agent_args = vec!["--standalone=/config".into(), "--poll-interval=200ms".into()];
    let bundle = work.join("agent");
    oci::write_bundle(&runc, &bundle, agent_ds.pod_spec().unwrap(), &agent_container, &launch(agent_args)).unwrap();
    let log = work.join("agent.log");
    let container = Container::start(&runc, &format!("{}-agent", topo.tag), &bundle, &log).unwrap();

    let programmed = r#"podmirror_programmed_interfaces{namespace="default",session="mirror-session-a"} 1"#;
    wait_for_metric(&topo, programmed, &log);

    // The conditions are those of a pod: /proc/sys read-only, only the chart's capabilities.
    let (wrote, text) = container.exec("echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert!(!wrote && text.contains("Read-only file system"), "/proc/sys must be read-only: {text}");
    let (mask, seccomp) = container.cap_eff_and_seccomp().unwrap();
    let wanted: u64 = caps.iter().map(|c| 1u64 << cap_number(c).unwrap()).sum();
    assert_eq!(mask, wanted, "effective capabilities {mask:x} are not the chart's {caps:?}");
    assert_eq!(seccomp, "2", "seccomp filter mode");

    let client = topo.pod("ecs-test").unwrap();
    let source = topo.pod("ecs-source").unwrap();
    let target = topo.pod("ecs-target").unwrap();
    let capture = Capture::start(&target.netns, "eth0", "udp port 4789").unwrap();
    let server = source.netns.spawn("exec nc -l 1234").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    client.netns.sh("(echo hello; sleep 0.3; echo 12345; sleep 0.3) | nc -N -w 3 192.168.0.230 1234").unwrap();
    let received = server.finish(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pcap = capture.stop().unwrap();
    assert_eq!(String::from_utf8_lossy(&received.stdout), "hello\n12345\n", "the original stream is untouched");

    let fields = ["vxlan.vni", "ip.src", "tcp.dstport", "tcp.payload", "frame.len"];
    let rows = tshark_rows(&pcap, "vxlan && tcp.len > 0", &fields).expect("tshark reads the capture");
    let payloads: Vec<&str> = rows.iter().map(|r| r.get("tcp.payload")).collect();
    assert_eq!(payloads, vec!["68656c6c6f0a", "31323334350a"], "hello and 12345, once each: {rows:?}");
    for row in &rows {
        assert_eq!(row.get("vxlan.vni"), "1", "VNI: {row:?}");
        let sources = format!("{NODE_IP},192.168.0.161");
        assert_eq!(row.get("ip.src"), sources, "outer source is the node IP, inner the client: {row:?}");
        assert_eq!(row.get("tcp.dstport"), "1234", "{row:?}");
    }
    let outbound =
        tshark_rows(&pcap, "vxlan && tcp.srcport == 1234", &["frame.number"]).expect("tshark reads the capture");
    assert!(outbound.is_empty(), "ecs-source's replies are not mirrored: {outbound:?}");
    drop(container);

    // The uninstall hook's cleanup, as the chart renders it, under runc too.
    let cleanup_ds = daemonset(&objects, "cleanup");
    let cleanup = cleanup_ds.containers().into_iter().find(|c| c.name() == "cleanup").unwrap();
    let bundle = work.join("cleanup");
    oci::write_bundle(&runc, &bundle, cleanup_ds.pod_spec().unwrap(), &cleanup, &launch(Vec::new())).unwrap();
    let cleanup_log = work.join("cleanup.log");
    let done = Container::start(&runc, &format!("{}-cleanup", topo.tag), &bundle, &cleanup_log).unwrap();
    let ok = done.wait(Duration::from_secs(30));
    assert!(ok, "cleanup failed:\n{}", std::fs::read_to_string(&cleanup_log).unwrap_or_default());
    assert!(!Path::new(&pin_dir).exists(), "{pin_dir} left behind");
    let links = topo.node.ip(&["-o", "link", "show"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains("pm-cp") && !links.contains("pm-cq"), "copy device left behind:\n{links}");
    let _ = std::fs::remove_dir_all(&work);
}
