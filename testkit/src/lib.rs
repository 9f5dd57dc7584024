//! podmirror's dev-only test harness (never linked into a shipped binary):
//! a network-namespace test bed: real namespaces, veths, addresses,
//! routes, a "node" namespace, packet capture and decoding, all cleaned up
//! on drop. Shared by the datapath tests, the agent's standalone/demo tests
//! and benchmarks, and the operator's netns scenarios.
//!
//! Everything runs inside namespaces the harness creates; nothing is routed
//! through the machine's own interfaces. Names carry a caller prefix plus the
//! process id and a counter (`unique_name`), so concurrent tests never clash.
//!
//! ```no_run
//! use podmirror_testkit::{self as testbed, Capture, PodSpec, Topology, tshark_fields};
//! if !testbed::require_root("my_test") { return; }
//! let mut topo = Topology::new("pmdp").expect("topology");
//! topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161")).expect("pod");
//! topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230")).expect("pod");
//! topo.add_remote("collector", "10.77.0.2", "10.77.0.1", 1500).expect("remote");
//! let source = topo.pod("ecs-source").expect("pod");
//! let remote = topo.remote("collector").expect("remote");
//! // Code that works on "the current namespace" (Datapath::open, attach(source.host_ifindex)):
//! topo.node.run(|| { /* ... */ }).expect("enter the node");
//! let cap = Capture::start(&remote.netns, &remote.ifname, "udp port 4789").expect("tcpdump");
//! topo.pod("ecs-test").expect("pod").netns.sh("echo hello | nc -N -w 2 192.168.0.230 1234").ok();
//! let pcap = cap.stop().expect("stop");
//! let rows = tshark_fields(&pcap, "vxlan", &["vxlan.vni", "ip.src"]).expect("tshark");
//! # let _ = (rows, source);
//! ```
//!
//! Modules: `names` (unique names, root checks), `netns` (a namespace and
//! commands in it), `topology` (node + pods + remote hosts), `capture`
//! (tcpdump/tshark), `fixtures` (the agent's node-state sessions) and
//! `objects` (builders of the API objects: `session("a").vni(10)...`) and
//! `probe` (UDP counters of a namespace, an HTTP GET such as a /metrics scrape).

mod agent;
mod capture;
pub mod fixtures;
pub mod gso;
mod names;
mod netns;
pub mod objects;
pub mod probe;
mod topology;

pub use agent::{StandaloneAgent, agent_command};
pub use capture::{Capture, Pcap, Row, tcpdump_text, tshark_fields, tshark_rows};
pub use names::{announce_skip, in_ci, require_root, unique_name};
pub use netns::{Netns, Process};
pub use topology::{Pod, PodSpec, Remote, Topology};

/// Testbed failures carry the command that failed and its output.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

pub type Result<T> = std::result::Result<T, TestbedError>;
