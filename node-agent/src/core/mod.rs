//! The agent core: the desired mirroring state of this node in, datapath
//! calls out.
//!
//! Both agent modes feed it the same neutral input (`DesiredState`: local
//! pods with their host interface and the compiled sessions that include
//! them), so the Kubernetes mode (from `MirrorNodeState`) and the standalone
//! mode (from YAML files) share one tested path to the datapath. The core never
//! talks to the kernel itself: it goes through the `DatapathOps` trait, which
//! the real `datapath::Datapath` implements and a fake implements in tests.

pub mod desired;
pub mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod ids;
pub mod node_state;
pub mod ops;
pub mod plan;
pub mod real;
pub mod reconciler;

pub use desired::{DesiredPod, DesiredState, PodKey};
pub use error::AgentError;
pub use ids::SessionIds;
pub use node_state::desired_from_node_state;
pub use ops::{DatapathOps, SessionCounters, SessionSlot};
pub use plan::{Step, plan};
pub use reconciler::{ApplyReport, InterfaceFailure, Reconciler};
