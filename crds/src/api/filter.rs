//! `MirrorFilter`: what to copy (SPEC §1), as two ordered rule lists seen
//! from the source pod.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::status::MirrorFilterStatus;
use crate::model::types::{Action, IpFamily};

/// The rules of one filter. An empty list mirrors nothing in that direction.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "podmirror.io",
    version = "v1alpha1",
    kind = "MirrorFilter",
    namespaced,
    shortname = "mf",
    category = "podmirror",
    status = "MirrorFilterStatus",
    printcolumn = r#"{"name":"Inbound","type":"integer","jsonPath":".status.inboundRuleCount","description":"number of inbound rules"}"#,
    printcolumn = r#"{"name":"Outbound","type":"integer","jsonPath":".status.outboundRuleCount","description":"number of outbound rules"}"#,
    printcolumn = r#"{"name":"Sessions","type":"integer","jsonPath":".status.sessions","description":"sessions using this filter"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MirrorFilterSpec {
    /// Rules for packets the source pod receives, evaluated by ascending priority.
    #[serde(default)]
    pub inbound_rules: Vec<FilterRule>,
    /// Rules for packets the source pod sends, evaluated by ascending priority.
    #[serde(default)]
    pub outbound_rules: Vec<FilterRule>,
}

/// One rule (seed 000 table 5, seed 002 table 2). Omitted CIDRs and port
/// ranges match everything of the rule's family.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FilterRule {
    /// Evaluation order within the list, lower first; unique within the list.
    pub priority: i32,
    /// `Accept` mirrors the packet, `Reject` stops the walk without mirroring.
    pub action: Action,
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `All`, or an IP protocol number 0..=255.
    pub protocol: IntOrString,
    /// `IPv4` or `IPv6`; both CIDRs must be of this family.
    pub ip_family: IpFamily,
    /// Source prefix, e.g. `192.168.0.161/32`; omitted = any address of the family.
    #[serde(default, rename = "sourceCIDR", skip_serializing_if = "Option::is_none")]
    pub source_cidr: Option<String>,
    /// Destination prefix; omitted = any address of the family.
    #[serde(default, rename = "destinationCIDR", skip_serializing_if = "Option::is_none")]
    pub destination_cidr: Option<String>,
    /// Source port range; only for TCP, UDP and SCTP. Omitted = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ports: Option<PortRangeSpec>,
    /// Destination port range; only for TCP, UDP and SCTP. Omitted = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ports: Option<PortRangeSpec>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An inclusive port range, `from <= to`, both in 1..=65535.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRangeSpec {
    pub from: i32,
    pub to: i32,
}
