//! What the datapath tests share: a datapath configuration private to one
//! test's topology, and the guard that removes that datapath however the
//! test ends. (A module of the test crates, not testkit: testkit cannot
//! depend on the agent whose tests depend on it.)

use podmirror_agent::datapath::{Datapath, DatapathConfig};
use podmirror_testkit::Topology;

/// The datapath of `topo`: pins under `/sys/fs/bpf/<tag>`, devices named
/// `<tag>-...`, no node IPs (the defaults otherwise).
pub fn config(topo: &Topology) -> DatapathConfig {
    DatapathConfig {
        pin_dir: format!("/sys/fs/bpf/{}", topo.tag).into(),
        device_prefix: topo.tag.clone(),
        ..DatapathConfig::default()
    }
}

/// Removes the datapath of its configuration when dropped (a failed
/// assertion included), before the topology's namespaces go.
pub struct Cleanup(pub DatapathConfig);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Datapath::remove_all(&self.0);
    }
}
