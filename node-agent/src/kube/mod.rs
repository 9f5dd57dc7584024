//! The agent's Kubernetes mode.
//!
//! It watches one object only, this node's cluster-scoped `MirrorNodeState`
//! (field selector `metadata.name=<node>`), written by the operator; turns it
//! into the core's desired state (finding each local pod's host veth with
//! `ifdiscovery`); programs the datapath through the core; and reports its
//! node's entry on each session's status (`report`, server-side apply as
//! `podmirror-agent/<node>`): at once on a change, counters every
//! `--status-interval`.
//!
//! A pod whose veth is not there yet (the pod object and its status IP come
//! before the CNI finishes) is retried every `retry_interval` until it
//! appears; a pod that goes away leaves the node state and is detached.
//! SIGTERM leaves the datapath pinned (mirroring goes on); a new agent adopts it.

pub mod entry;
pub mod reloads;
pub mod report;
pub mod run;
pub mod status;

pub use entry::serve;
pub use run::{Options, run};
