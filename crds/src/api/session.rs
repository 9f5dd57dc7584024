//! `MirrorSession`: from which pods to where, through which filter (docs/api.md).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::shaping::{FlowSampling, RateLimit};
use super::status::MirrorSessionStatus;
use crate::model::types::Encapsulation;

/// The VXLAN port IANA assigned (RFC 7348), the default `targetPort`.
pub const DEFAULT_TARGET_PORT: i32 = 4789;

fn default_enabled() -> bool {
    true
}

fn default_target_port() -> i32 {
    DEFAULT_TARGET_PORT
}

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "podmirror.io",
    version = "v1alpha1",
    kind = "MirrorSession",
    doc = "Mirrors the traffic of source pods that matches a MirrorFilter to a target, wrapped in VXLAN, GRE, Geneve or ERSPAN.",
    namespaced,
    shortname = "ms",
    category = "podmirror",
    status = "MirrorSessionStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"VNI","type":"integer","jsonPath":".spec.vni"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.target.name","description":"resolved target"}"#,
    printcolumn = r#"{"name":"Sources","type":"integer","jsonPath":".status.sourceCount","description":"resolved source pods"}"#,
    printcolumn = r#"{"name":"Mirrored","type":"integer","jsonPath":".status.mirroredPackets","description":"packets mirrored, all nodes"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSessionSpec {
    /// Order among the sessions that share a source pod, lower first (1..=32766).
    #[schemars(range(min = 1, max = 32766))]
    pub priority: i32,
    /// VXLAN network identifier (or GRE key) written into every copy (0..=16777215).
    #[schemars(range(min = 0, max = 16777215))]
    pub vni: i32,
    /// Bytes of each original frame kept in the copy (64..=9216); omitted = whole frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 64, max = 9216))]
    pub packet_length: Option<i32>,
    /// Mirroring runs only while true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The MirrorFilter, in this session's namespace, that says what to copy.
    pub filter_ref: FilterRef,
    /// The pods to mirror, in this session's namespace (1 to 100 entries).
    #[schemars(length(min = 1, max = 100))]
    pub sources: Vec<SessionSource>,
    /// Where the copies go: exactly one of `service`, `pod`, `ip`.
    pub target: SessionTarget,
    /// `VXLAN` (default), `GRE`, `Geneve` (UDP 6081) or `ERSPAN` (type II,
    /// session ID = the VNI's low 10 bits).
    #[serde(default)]
    pub encapsulation: Encapsulation,
    /// Outer UDP destination port for VXLAN (1..=65535); Geneve always uses 6081.
    #[serde(default = "default_target_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: i32,
    /// A cap on the copies per second on each node; copies over it are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Mirror only a share of the flows (whole flows, both directions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_sampling: Option<FlowSampling>,
    /// When mirroring runs; omitted = from acceptance until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<SessionSchedule>,
}

/// A time-bounded session: it is programmed only from `startTime` (or its
/// acceptance) until `stopTime`, or for `duration`; then its phase turns
/// `Completed` and it is never programmed again unless the schedule changes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.stopTime) && has(self.duration))").field_path(".duration").message("schedule: stopTime and duration are mutually exclusive"),
    validation = Rule::new("!has(self.startTime) || !has(self.stopTime) || self.stopTime > self.startTime").field_path(".stopTime").message("schedule.stopTime must be after schedule.startTime"),
)]
pub struct SessionSchedule {
    /// RFC 3339; omitted = at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// RFC 3339, after `startTime`; exclusive with `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<Time>,
    /// How long mirroring runs, in hours, minutes and seconds (`10m`,
    /// `1h30m`), counted from `startTime` or else from the session's first
    /// acceptance (`status.acceptedTime`); exclusive with `stopTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = Rule::new(r"self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') && self.matches('[1-9]')").message("schedule.duration must be a positive duration in hours, minutes and seconds, such as 10m or 1h30m"))]
    pub duration: Option<String>,
}

/// A reference to a MirrorFilter in the session's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FilterRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One entry of `sources`: exactly one of `podName`, `podSelector`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.podName) != has(self.podSelector)").message("sources: each entry needs exactly one of podName or podSelector"))]
pub struct SessionSource {
    /// One pod, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub pod_name: Option<String>,
    /// Every pod whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// The collector: exactly one of `service`, `pod`, `ip`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("[has(self.service), has(self.pod), has(self.ip)].filter(k, k).size() == 1").message("target needs exactly one of service, pod or ip"))]
pub struct SessionTarget {
    /// A Service; its ready endpoints share the flows (one flow, one endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,
    /// One pod in the session's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodTarget>,
    /// An address outside the cluster (IPv4 or IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("target.ip must be an IPv4 or IPv6 address"))]
    pub ip: Option<String>,
}

/// A Service target. Another namespace must consent with the annotation
/// `podmirror.io/allow-mirror-from`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceTarget {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Defaults to the session's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// A pod target in the session's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PodTarget {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
