//! The chart's capability decision, checked on the real agent with real eBPF:
//! `podmirror-agent` runs as uid 0 with exactly the chart's
//! `agent.capabilities` as its bounding set (and no_new_privs), which is what
//! the DaemonSet's securityContext gives it, inside a "node" network
//! namespace with a "pod" veth. It must load, attach and pin; leave the
//! datapath on SIGTERM (what makes rolling updates seamless); adopt it on
//! restart without attaching twice; and `--cleanup` (the uninstall hook, same
//! capabilities) must leave nothing. Without any one of the capabilities the
//! datapath is not attached, so the set is not larger than it needs to be.
//!
//! Needs root, setpriv, nsenter, bpftool and the agent binary that
//! `cargo test --workspace` builds next to this test; otherwise SKIPPED, or a
//! failure under CI=true.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podmirror_e2e::bpfobj::{self, Pinned};
use podmirror_e2e::{E2eError, chart_dir, cmd, tools};

/// Names unique to this test process (others run namespace tests concurrently).
fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("pmchart{}{tag}{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn prerequisites() -> Result<PathBuf, E2eError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(E2eError::ToolMissing { tool: "root", hint: "loading eBPF needs root".into() });
    }
    for tool in ["setpriv", "nsenter", "bpftool", "ip"] {
        tools::on_path(tool)
            .ok_or(E2eError::ToolMissing { tool: "setpriv/nsenter/bpftool/ip", hint: format!("{tool} not on PATH") })?;
    }
    let agent = std::env::var_os("PODMIRROR_AGENT_BIN").map(PathBuf::from).or_else(|| {
        // target/<profile>/deps/<this test> -> target/<profile>/podmirror-agent
        let exe = std::env::current_exe().ok()?;
        Some(exe.parent()?.parent()?.join("podmirror-agent"))
    });
    match agent {
        Some(path) if path.is_file() => Ok(path),
        other => Err(E2eError::ToolMissing {
            tool: "podmirror-agent",
            hint: format!(
                "not built next to this test ({other:?}); `cargo test --workspace` or \
                 `cargo build -p podmirror-agent` builds it, or set PODMIRROR_AGENT_BIN"
            ),
        }),
    }
}

/// The capabilities the chart gives the agent (values.yaml, the source of the
/// rendered securityContext that tests/chart.rs checks).
fn chart_capabilities() -> Vec<String> {
    let path = chart_dir().join("values.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("values.yaml: {e}"));
    values["agent"]["capabilities"]
        .as_sequence()
        .expect("agent.capabilities")
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_lowercase())
        .collect()
}

/// A node namespace with a pod behind a veth (`hv0`) and a collector behind
/// another (`tv0`), plus the agent's pin dir and config dir; all removed on drop.
struct Node {
    node: String,
    others: Vec<String>,
    pin_dir: PathBuf,
    config_dir: PathBuf,
}

impl Node {
    fn create() -> Node {
        let node = Node {
            node: unique("n"),
            others: vec![unique("p"), unique("t")],
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{}", unique("pins"))),
            config_dir: std::env::temp_dir().join(unique("cfg")),
        };
        let (n, p, t) = (&node.node, &node.others[0], &node.others[1]);
        for ns in [n, p, t] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (host, peer_ns, host_ip, peer_ip) in
            [("hv0", p, "10.201.0.1/24", "10.201.0.2/24"), ("tv0", t, "10.202.0.1/24", "10.202.0.2/24")]
        {
            ip(&["-n", n, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", peer_ns]);
            ip(&["-n", n, "addr", "add", host_ip, "dev", host]);
            ip(&["-n", n, "link", "set", host, "up"]);
            ip(&["-n", peer_ns, "addr", "add", peer_ip, "dev", "eth0"]);
            ip(&["-n", peer_ns, "link", "set", "eth0", "up"]);
        }
        std::fs::create_dir_all(&node.config_dir).expect("config dir");
        std::fs::write(
            node.config_dir.join("standalone.yaml"), // the agent's INVENTORY_FILE
            "pods:\n  - name: src\n    ips: [10.201.0.2]\n    interface: hv0\n",
        )
        .expect("standalone.yaml");
        std::fs::write(
            node.config_dir.join("session.yaml"),
            "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: f}\nspec:\n  inboundRules:\n    - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4}\n  outboundRules:\n    - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4}\n---\napiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {name: s}\nspec:\n  priority: 1\n  vni: 7\n  filterRef: {name: f}\n  sources: [{podName: src}]\n  target: {ip: 10.202.0.2}\n",
        )
        .expect("session.yaml");
        node
    }

    /// The agent (or its cleanup) as the chart runs it: uid 0, bounding set =
    /// `caps`, no_new_privs, in the node's network namespace.
    fn agent(&self, agent: &Path, caps: &[String], extra: &[&str], log: &Path) -> Command {
        let bounding = std::iter::once("-all".to_string())
            .chain(caps.iter().map(|c| format!("+{c}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.node))
            .args(["setpriv", "--no-new-privs", "--inh-caps=-all", &format!("--bounding-set={bounding}"), "--"])
            .arg(agent)
            .arg(format!("--pin-dir={}", self.pin_dir.display()))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        c
    }

    fn start(&self, agent: &Path, caps: &[String], log: &Path) -> Running {
        let dir = self.config_dir.display().to_string();
        let child = self
            .agent(agent, caps, &["--standalone", &dir, "--metrics-addr=127.0.0.1:19090", "--poll-interval=200ms"], log)
            .spawn()
            .expect("the agent starts");
        Running { child, log: log.to_path_buf() }
    }

    /// The links (TCX attachments) and programs pinned under the pin dir.
    fn pinned(&self) -> Pinned {
        let bpftool = tools::on_path("bpftool").expect("bpftool");
        bpfobj::pinned(&[], &bpftool, &self.pin_dir.display().to_string()).expect("read pins")
    }

    /// Pinned links that exist in the kernel (the agent's attachments).
    fn live_links(&self) -> usize {
        let bpftool = tools::on_path("bpftool").expect("bpftool");
        let live = bpfobj::live(&bpftool).expect("bpftool link/prog show");
        self.pinned().links.intersection(&live.links).count()
    }

    fn pins(&self) -> Vec<String> {
        std::fs::read_dir(&self.pin_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    fn agent_devices(&self) -> Vec<String> {
        let out = cmd::run(Path::new("ip"), &["-n", &self.node, "-o", "link", "show"]).expect("ip link");
        podmirror_e2e::node_state::devices_with_prefix(&out, "pm")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.node).chain(&self.others) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.config_dir);
    }
}

fn ip(args: &[&str]) {
    cmd::run(Path::new("ip"), args).unwrap_or_else(|e| panic!("{e}"));
}

/// An agent process, killed on drop if still running.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (at most 10 s) for a clean exit.
    fn terminate(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the agent exited with {status} on SIGTERM:\n{}", self.log());
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent did not exit within 10 s of SIGTERM:\n{}", self.log());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("not true after {}s: {what}", timeout.as_secs());
    false
}

#[test]
fn the_chart_capabilities_run_adopt_and_clean_up_the_real_datapath() {
    let Some(agent) = tools::require("agent capability test (root, eBPF)", prerequisites()) else {
        return;
    };
    let caps = chart_capabilities();
    let node = Node::create();
    let log = node.config_dir.with_extension("log");

    // 1. Load, attach and pin with exactly the chart's capabilities.
    let run = node.start(&agent, &caps, &log);
    let attached = wait_until("links pinned and alive", Duration::from_secs(60), || node.live_links() >= 2);
    assert!(attached, "with {caps:?} the agent attached nothing to the pod's veth:\n{}", run.log());
    let first = node.pinned();
    assert!(!first.progs.is_empty(), "no program pinned: {first:?}");

    // 2. SIGTERM leaves the datapath in the kernel (rolling updates rely on it).
    run.terminate();
    assert_eq!(node.pinned(), first, "SIGTERM must leave the pins");
    assert_eq!(node.live_links(), first.links.len(), "SIGTERM must leave the links attached");

    // 3. A new agent adopts what is pinned: the same links, none added.
    let log2 = node.config_dir.with_extension("2.log");
    let run = node.start(&agent, &caps, &log2);
    let adopted = wait_until("the new agent programmed the pod", Duration::from_secs(60), || {
        run.log().contains("datapath programmed")
    });
    assert!(adopted, "the restarted agent did not program the pod:\n{}", run.log());
    let second = node.pinned();
    assert_eq!(second.links, first.links, "the restarted agent replaced or added attachments:\n{}", run.log());
    run.terminate();

    // 4. The uninstall hook's `--cleanup`, same capabilities, leaves nothing.
    let log3 = node.config_dir.with_extension("3.log");
    let status = node.agent(&agent, &caps, &["--cleanup"], &log3).status().expect("cleanup runs");
    let cleanup_log = std::fs::read_to_string(&log3).unwrap_or_default();
    assert!(status.success(), "--cleanup with {caps:?} failed ({status}):\n{cleanup_log}");
    let bpftool = tools::on_path("bpftool").expect("bpftool");
    let live = bpfobj::live(&bpftool).expect("bpftool link/prog show");
    let everything = Pinned {
        links: first.links.union(&second.links).copied().collect(),
        progs: first.progs.union(&second.progs).copied().collect(),
    };
    let left = bpfobj::survivors(&everything, &live);
    assert!(left.is_empty(), "still in the kernel after --cleanup: {left:?}");
    assert!(node.pins().is_empty(), "pins left after --cleanup: {:?}", node.pins());
    assert!(node.agent_devices().is_empty(), "devices left after --cleanup: {:?}", node.agent_devices());
}

/// Each capability of the set is needed: without it the datapath is not
/// attached (without CAP_BPF nothing loads; without CAP_NET_ADMIN nothing
/// attaches; without CAP_PERFMON the verifier refuses the program's map-value
/// pointer arithmetic, "prohibited for !root").
#[test]
fn each_chart_capability_is_needed() {
    let Some(agent) = tools::require("agent capability test (root, eBPF)", prerequisites()) else {
        return;
    };
    let full = chart_capabilities();
    for missing in &full {
        let caps: Vec<String> = full.iter().filter(|c| *c != missing).cloned().collect();
        let node = Node::create();
        let log = node.config_dir.with_extension("log");
        let mut run = node.start(&agent, &caps, &log);
        // Until the agent gives up (exits) or attaches; one that does neither
        // within a minute (retrying) has not attached either.
        let mut exited = None;
        wait_until("the agent exits or attaches", Duration::from_secs(60), || {
            exited = run.child.try_wait().ok().flatten();
            exited.is_some() || node.live_links() > 0
        });
        let attached = node.live_links() > 0;
        let text = run.log();
        drop(run);
        eprintln!("without CAP_{}: exit {exited:?}, attached {attached}", missing.to_uppercase());
        assert!(
            !attached,
            "the agent attached without CAP_{}: the chart's set is larger than needed:\n{text}",
            missing.to_uppercase()
        );
        // Whatever it managed to pin goes with a cleanup with the full set.
        let log2 = node.config_dir.with_extension("2.log");
        let status = node.agent(&agent, &full, &["--cleanup"], &log2).status().expect("cleanup runs");
        assert!(status.success(), "cleanup failed: {}", std::fs::read_to_string(&log2).unwrap_or_default());
        assert!(node.pins().is_empty(), "pins left: {:?}", node.pins());
    }
}
