//! How much of a session's traffic is copied: a rate cap per node
//! (`rateLimit`) and flow sampling (`flowSampling`). Shared by
//! `MirrorSession.spec` and the operator's `MirrorNodeState` sessions.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Bounds of `rateLimit`, checked by the schema and by `model::compile`.
pub const PACKETS_PER_SECOND_RANGE: (i64, i64) = (1, 100_000_000);
/// At least 1000 bytes per second (the datapath's fixed-point cost per byte).
pub const BYTES_PER_SECOND_RANGE: (i64, i64) = (1_000, 100_000_000_000);
/// Bounds of `flowSampling.oneIn`.
pub const ONE_IN_RANGE: (i64, i64) = (1, 1_000_000);
/// Bounds of `flowSampling.percent`.
pub const PERCENT_RANGE: (i64, i64) = (1, 100);

/// A cap on the copies of the session on each node: copies over it are
/// skipped (the original traffic is never touched) and counted. At least one
/// of the two.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.packetsPerSecond) || has(self.bytesPerSecond)").message("rateLimit needs packetsPerSecond, bytesPerSecond or both"))]
pub struct RateLimit {
    /// Copies per second on each node (1..=100000000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub packets_per_second: Option<i64>,
    /// Bytes of copied frames (after `packetLength`) per second on each node
    /// (1000..=100000000000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000, max = 100_000_000_000_i64))]
    pub bytes_per_second: Option<i64>,
}

/// Mirror only a share of the flows, chosen by the symmetric hash of the
/// inner flow: a sampled flow is mirrored whole, both directions. Exactly one
/// of `oneIn` and `percent`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.oneIn) != has(self.percent)").message("flowSampling needs exactly one of oneIn or percent"))]
pub struct FlowSampling {
    /// One flow in this many (1..=1000000; 1 = every flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub one_in: Option<i32>,
    /// This percentage of the flows (1..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<i32>,
}
