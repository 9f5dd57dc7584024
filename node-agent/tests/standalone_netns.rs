//! The standalone agent end to end, as root, on network namespaces: the real
//! `podmirror-agent` binary in a "node" namespace, real eBPF on the pod's
//! veth, real copies captured and decoded. Start, apply, update, a bad
//! update (kept out), SIGTERM (the datapath stays pinned and keeps
//! mirroring), `--cleanup` (nothing left). Prints `SKIPPED:` off root and
//! fails under `CI=true` when it cannot run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podmirror_testkit::{self as testbed, Capture, PodSpec, Topology, tshark_rows};

const AGENT: &str = env!("CARGO_BIN_EXE_podmirror-agent");
const NODE_IP: &str = "172.31.255.1";

/// The agent process; killed if the test ends early.
struct AgentProcess(Option<Child>);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `--cleanup` and removes the directories even when the test fails.
struct Leftovers {
    node_netns: String,
    pin_dir: PathBuf,
    prefix: String,
    dir: PathBuf,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = agent_command(
            &self.node_netns,
            &["--cleanup", "--pin-dir", &self.pin_dir.display().to_string(), "--device-prefix", &self.prefix],
        )
        .status();
        let _ = fs::remove_dir_all(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The agent in the node's network namespace, keeping the host's mounts
/// (bpffs): `nsenter --net`, not `ip netns exec`.
fn agent_command(node_netns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{node_netns}")).arg(AGENT).args(args);
    cmd
}

fn filter(dst: &str) -> String {
    format!(
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {{name: mirror-filter-a}}\nspec:\n  inboundRules:\n  \
         - {{priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, sourceCIDR: 192.168.0.161/32, destinationCIDR: {dst}, \
         destinationPorts: {{from: 1234, to: 1234}}}}\n"
    )
}

fn session(vni: u32) -> String {
    format!(
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {{name: mirror-session-a}}\nspec:\n  priority: 1\n  \
         vni: {vni}\n  packetLength: 96\n  filterRef: {{name: mirror-filter-a}}\n  sources: [{{podName: ecs-source}}]\n  \
         target: {{pod: {{name: ecs-target}}}}\n"
    )
}

const INVENTORY: &str = "pods:\n- {name: ecs-test, ips: [192.168.0.161]}\n- {name: ecs-source, ips: [192.168.0.230]}\n\
                         - {name: ecs-target, ips: [192.168.0.164]}\n";

/// GET /metrics from inside the node namespace.
fn scrape(topo: &Topology) -> String {
    topo.node.http_get(([127, 0, 0, 1], 9090).into(), "/metrics").expect("enter node namespace")
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

fn wait_for(topo: &Topology, what: &str, mut ok: impl FnMut(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(topo);
        if ok(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; metrics:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One nc exchange ecs-test -> ecs-source:1234; returns the VNIs of the
/// VXLAN copies ecs-target captured and what ecs-source received.
fn exchange(topo: &Topology, line: &str) -> (Vec<String>, String) {
    let client = topo.pod("ecs-test").expect("pod");
    let source = topo.pod("ecs-source").expect("pod");
    let target = topo.pod("ecs-target").expect("pod");
    let cap = Capture::start(&target.netns, "eth0", "udp port 4789").expect("capture");
    let server = source.netns.spawn("exec nc -l 1234").expect("nc -l");
    std::thread::sleep(Duration::from_millis(300));
    client.netns.sh(&format!("(echo {line}; sleep 0.3) | nc -N -w 3 192.168.0.230 1234")).expect("nc client");
    let out = server.finish(Duration::from_secs(5)).expect("server output");
    std::thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop().expect("stop capture");
    let rows = tshark_rows(&pcap, "vxlan", &["vxlan.vni"]).expect("tshark");
    (rows.iter().map(|r| r.get("vxlan.vni").to_string()).collect(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(dir: &Path, name: &str, text: &str) {
    // Write then rename, as an editor or a config management tool does, so
    // the agent never reads half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).expect("write");
    fs::rename(&tmp, dir.join(name)).expect("rename");
}

#[test]
fn standalone_agent_start_update_sigterm_cleanup() {
    if !testbed::require_root("standalone_agent_start_update_sigterm_cleanup") {
        return;
    }
    let mut topo = Topology::new("pmsa").expect("topology");
    topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-target", "192.168.0.164")).expect("pod");
    topo.add_node_address(&format!("{NODE_IP}/32")).expect("node address");
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", topo.tag));
    let dir = std::env::temp_dir().join(format!("{}-standalone", topo.tag));
    fs::create_dir_all(&dir).expect("config dir");
    let _leftovers = Leftovers {
        node_netns: topo.node.name.clone(),
        pin_dir: pin_dir.clone(),
        prefix: topo.tag.clone(),
        dir: dir.clone(),
    };
    write(&dir, "standalone.yaml", INVENTORY);
    write(&dir, "filter.yaml", &filter("192.168.0.230/32"));
    write(&dir, "session.yaml", &session(1));

    // Start.
    let pin = pin_dir.display().to_string();
    let child = agent_command(
        &topo.node.name,
        &[
            "--standalone",
            &dir.display().to_string(),
            "--pin-dir",
            &pin,
            "--device-prefix",
            &topo.tag,
            "--node-ipv4",
            NODE_IP,
            "--metrics-addr",
            "127.0.0.1:9090",
            "--poll-interval",
            "200ms",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("start the agent");
    let mut agent = AgentProcess(Some(child));
    let programmed = r#"podmirror_programmed_interfaces{namespace="default",session="mirror-session-a"}"#;
    wait_for(&topo, "ecs-source's veth programmed", |m| metric(m, programmed) == Some(1.0));
    assert_eq!(metric(&scrape(&topo), "podmirror_config_valid"), Some(1.0));

    // Apply: the copies arrive with VNI 1, the original is untouched.
    let (vnis, received) = exchange(&topo, "hello");
    assert_eq!(received, "hello\n");
    assert!(!vnis.is_empty(), "no copies captured");
    assert!(vnis.iter().all(|v| v == "1"), "{vnis:?}");
    let decided =
        r#"podmirror_matched_packets_total{namespace="default",session="mirror-session-a",direction="inbound"}"#;
    wait_for(&topo, "counters published", |m| metric(m, decided).unwrap_or(0.0) >= vnis.len() as f64);

    // Update: VNI 2 from now on.
    write(&dir, "session.yaml", &session(2));
    wait_for(&topo, "the update loaded", |m| metric(m, r#"podmirror_config_reloads_total{result="ok"}"#) == Some(2.0));
    std::thread::sleep(Duration::from_millis(500));
    let (vnis, _) = exchange(&topo, "after-update");
    assert!(!vnis.is_empty() && vnis.iter().all(|v| v == "2"), "after the update: {vnis:?}");

    // A bad update is refused; VNI 2 stays in force.
    write(&dir, "filter.yaml", &filter("192.168.0.230/33"));
    wait_for(&topo, "the bad update refused", |m| {
        metric(m, r#"podmirror_config_reloads_total{result="error"}"#) == Some(1.0)
            && metric(m, "podmirror_config_valid") == Some(0.0)
    });
    let (vnis, _) = exchange(&topo, "after-bad-update");
    assert!(!vnis.is_empty() && vnis.iter().all(|v| v == "2"), "a bad update changed the datapath: {vnis:?}");

    // SIGTERM: the agent exits cleanly, the datapath stays pinned and mirrors on.
    let mut child = agent.0.take().expect("agent running");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait for the agent");
    assert!(status.success(), "agent exit on SIGTERM: {status}");
    assert!(pin_dir.exists(), "the datapath must stay pinned after SIGTERM");
    let (vnis, received) = exchange(&topo, "agent-gone");
    assert_eq!(received, "agent-gone\n");
    assert!(!vnis.is_empty() && vnis.iter().all(|v| v == "2"), "mirroring stopped with the agent: {vnis:?}");

    // A restart with a broken directory leaves the pinned datapath alone:
    // what was accepted before keeps mirroring.
    let child = agent_command(
        &topo.node.name,
        &[
            "--standalone",
            &dir.display().to_string(),
            "--pin-dir",
            &pin,
            "--device-prefix",
            &topo.tag,
            "--node-ipv4",
            NODE_IP,
            "--metrics-addr",
            "127.0.0.1:9090",
            "--poll-interval",
            "200ms",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("restart the agent");
    let mut agent = AgentProcess(Some(child));
    wait_for(&topo, "the restart refusing the broken directory", |m| {
        metric(m, r#"podmirror_config_reloads_total{result="error"}"#) == Some(1.0)
    });
    std::thread::sleep(Duration::from_millis(600));
    let (vnis, _) = exchange(&topo, "restart-with-bad-files");
    assert!(
        !vnis.is_empty() && vnis.iter().all(|v| v == "2"),
        "a restart with bad files disturbed mirroring: {vnis:?}"
    );
    let mut child = agent.0.take().expect("agent running");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().expect("wait for the agent").success());

    // --cleanup removes everything: no pins, no copy device, no copies.
    let status = agent_command(&topo.node.name, &["--cleanup", "--pin-dir", &pin, "--device-prefix", &topo.tag])
        .status()
        .expect("run --cleanup");
    assert!(status.success(), "--cleanup: {status}");
    assert!(!pin_dir.exists(), "pins left in {}", pin_dir.display());
    let links = topo.node.sh("ip -o link show").expect("ip link");
    assert!(!links.contains(&format!("{}-cp", topo.tag)), "copy device left:\n{links}");
    // TCX links are not listed by `tc`; that no copy is made any more is
    // what shows the programs are gone from the veth.
    let (vnis, received) = exchange(&topo, "after-cleanup");
    assert_eq!(received, "after-cleanup\n");
    assert!(vnis.is_empty(), "copies after --cleanup: {vnis:?}");
}
