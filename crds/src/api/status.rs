//! Status of MirrorSession and MirrorFilter (docs/api.md).
//!
//! Every field is optional and skipped when unset: the operator
//! (`podmirror-operator`) and each agent (`podmirror-agent/<node>`) apply
//! status with server-side apply, and a field a manager does not send is a
//! field it does not claim. `conditions` and `nodes` are list-maps so that
//! several managers can own separate entries.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The session's overall state, summarised from its conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SessionPhase {
    /// Accepted, but not yet programmed on every node hosting a source.
    Pending,
    /// Programmed everywhere it should be.
    Active,
    /// Accepted, but some part fails (a node, the target, some sources).
    Degraded,
    /// Refused by validation or a quota; see the `Accepted` condition.
    Invalid,
    /// `spec.enabled` is false.
    Disabled,
    /// Accepted, waiting for `spec.schedule.startTime`; nothing is programmed.
    Scheduled,
    /// `spec.schedule` has ended; nothing is programmed any more.
    Completed,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSessionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SessionPhase>,
    /// `Accepted`, `FilterResolved`, `TargetResolved`, `SourcesResolved`,
    /// `Programmed`, and `Completed` for a session with `spec.schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    /// The generation the operator last looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The generation last accepted by the quota checks: what keeps mirroring
    /// while a newer change is refused (docs/quotas.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_generation: Option<i64>,
    /// When the operator first accepted the session: where a
    /// `spec.schedule.duration` without `startTime` counts from. Kept across
    /// operator restarts and spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_time: Option<Time>,
    /// The resolved source pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceStatus>>,
    /// How many source pods resolved (the `Sources` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_count: Option<i32>,
    /// The resolved target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetStatus>,
    /// Sum of `nodes[*].mirroredPackets`, kept by the operator (the `Mirrored` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_packets: Option<i64>,
    /// One entry per node hosting a source, each owned by that node's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["node".into()]))]
    pub nodes: Option<Vec<NodeMirrorStatus>>,
}

/// Where a resolved source stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SourceState {
    /// Running with an IP on a known node: handed to that node's agent.
    Resolved,
    /// Not yet scheduled, not running, or without an IP.
    Pending,
    /// Left out (a quota, or the pod is also a target); `message` says why.
    Excluded,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
    pub state: SourceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What kind of target a session has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    Service,
    Pod,
    IP,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub kind: TargetKind,
    /// `namespace/name` of a Service, the pod's name, or the IP.
    pub name: String,
    /// The addresses copies are sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
}

/// One node's report, written by `podmirror-agent/<node>` only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeMirrorStatus {
    pub node: String,
    /// The session generation (`metadata.generation`, as last accepted by the
    /// operator) this node has in its datapath. `Programmed` is True only when
    /// every node hosting a source reports the accepted generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_generation: Option<i64>,
    /// Host-side veths the session's program is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_interfaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_packets: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_bytes: Option<i64>,
    /// Copies that could not be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<i64>,
    /// Copies cut to fit the path MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<i64>,
    /// Copies skipped on purpose because they were over `spec.rateLimit`
    /// (flows left out by `flowSampling` are not counted here; the agent's
    /// `podmirror_skipped_packets_total{reason="flow_sampling"}` has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MirrorFilterStatus {
    /// How many sessions reference this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<i32>,
    /// The `Inbound` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_rule_count: Option<i32>,
    /// The `Outbound` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_rule_count: Option<i32>,
    /// `Valid` (rules compile) and the like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
