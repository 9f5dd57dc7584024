//! A network-namespace test harness: real namespaces, veths, addresses,
//! routes, a "node" namespace, packet capture and decoding, all cleaned up
//! on drop. Shared by the datapath tests, the agent's standalone/demo tests
//! and benchmarks, and the operator's netns scenarios.
//!
//! Everything runs inside namespaces the harness creates; nothing is routed
//! through the machine's own interfaces. Names carry a caller prefix plus the
//! process id and a counter (`unique_name`), so concurrent tests never clash.
//!
//! ```no_run
//! use podmirror_agent::testbed::{self, Topology, PodSpec};
//! if !testbed::require_root("my_test") { return; }
//! let mut topo = Topology::new("pmdp").expect("topology");
//! let client = topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161")).expect("pod");
//! let source = topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230")).expect("pod");
//! let remote = topo.add_remote("collector", "10.77.0.2", "10.77.0.1", 1500).expect("remote");
//! // topo.node.run(|| { /* code in the node namespace, e.g. Datapath::open */ });
//! let cap = testbed::Capture::start(&remote.netns, &remote.ifname, "udp port 4789").expect("tcpdump");
//! // ... traffic: client.netns.sh("echo hello | nc -N 192.168.0.230 1234") ...
//! let pcap = cap.stop().expect("stop");
//! let rows = testbed::tshark_fields(&pcap, "vxlan", &["vxlan.vni", "ip.src"]).expect("tshark");
//! ```
//!
//! Modules: `names` (unique names, root checks), `netns` (a namespace and
//! commands in it), `topology` (node + pods + remote hosts), `capture`
//! (tcpdump/tshark).

mod capture;
mod names;
mod netns;
mod topology;

pub use capture::{Capture, Pcap, tcpdump_text, tshark_fields};
pub use names::{in_ci, require_root, unique_name};
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
