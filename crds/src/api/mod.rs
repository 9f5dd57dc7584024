//! The Kubernetes API of podmirror, group `podmirror.io`, version `v1alpha1`.
//!
//! - [`MirrorFilter`] (`mf`): what to copy, as two ordered rule lists.
//! - [`MirrorSession`] (`ms`): from which pods to where, with which filter.
//! - [`MirrorNodeState`] (`mns`, cluster-scoped): the operator's desired
//!   mirroring state for one node, read by that node's agent alone.
//!
//! Integers are `i32`/`i64` as the Kubernetes API conventions ask: any number
//! the API server could store deserializes, and the bounds are enforced by the
//! schema (server side) and by `model::compile` (client side) with the same
//! field-naming messages.

pub mod filter;
pub mod generate;
pub mod node_state;
pub mod parse;
pub mod reason;
pub mod session;
pub mod shaping;
pub mod status;

pub use filter::{FilterRule, MirrorFilter, MirrorFilterSpec, PortRangeSpec};
pub use node_state::{MirrorNodeState, MirrorNodeStateSpec, MirrorNodeStateStatus, NodePod, NodeSession};
pub use reason::ConditionReason;
pub use session::{
    FilterRef, MirrorSession, MirrorSessionSpec, PodTarget, ServiceTarget, SessionSchedule, SessionSource,
    SessionTarget,
};
pub use shaping::{FlowSampling, RateLimit};
pub use status::{
    MirrorFilterStatus, MirrorSessionStatus, NodeMirrorStatus, SessionPhase, SourceState, SourceStatus, TargetKind,
    TargetStatus,
};

/// The API group of every podmirror resource.
pub const GROUP: &str = "podmirror.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
