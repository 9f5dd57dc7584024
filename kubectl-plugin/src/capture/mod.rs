//! `kubectl podmirror capture`: a pod's packets as a live pcap stream,
//! through a temporary MirrorSession to the podmirror collector.
//!
//! - [`objects`]: the MirrorFilter and MirrorSession to create (pure);
//! - [`cluster`]: the Kubernetes calls, with actionable errors;
//! - [`forward`]: the port-forward to the collector;
//! - [`stream`]: the HTTP client of the collector's `/stream?vni=N`;
//! - [`run`]: the flow, and the cleanup on every way out.

pub mod cluster;
pub mod forward;
pub mod objects;
pub mod run;
pub mod stream;
