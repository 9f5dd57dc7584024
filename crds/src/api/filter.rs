//! `MirrorFilter`: what to copy (docs/api.md), as two ordered rule lists seen
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
    doc = "What to mirror: ordered inbound and outbound rules, seen from the source pod (docs/api.md).",
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
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new(UNIQUE_PRIORITIES).message("inboundRules: priorities must be unique within the list"))]
    pub inbound_rules: Vec<FilterRule>,
    /// Rules for packets the source pod sends, evaluated by ascending priority.
    #[serde(default)]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new(UNIQUE_PRIORITIES).message("outboundRules: priorities must be unique within the list"))]
    pub outbound_rules: Vec<FilterRule>,
}

/// The names `protocol` accepts as a string (an integer is a protocol number).
pub const PROTOCOL_NAME_PATTERN: &str = "^(TCP|UDP|ICMP|ICMPv6|SCTP|All)$";

/// `protocol` is checked by OpenAPI alone, no CEL: `pattern` applies to the
/// string form only and `minimum`/`maximum` to the integer form only. (CEL
/// on an int-or-string would be costed by the API server as a string of the
/// maximum request size, and a regex over it blows the cost budget.)
fn protocol_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `All`, or an IP protocol number 0..=255.",
        "x-kubernetes-int-or-string": true,
        "pattern": PROTOCOL_NAME_PATTERN,
        "minimum": 0,
        "maximum": 255,
    })
}

/// CEL: a well-formed CIDR must be of the rule's `ipFamily`. An omitted one
/// means "any of the family"; a malformed one is reported by its own rule.
macro_rules! cidr_family_rule {
    ($field:literal) => {
        concat!(
            "!has(self.",
            $field,
            ") || !isCIDR(self.",
            $field,
            ") || cidr(self.",
            $field,
            ").ip().family() == (self.ipFamily == 'IPv4' ? 4 : 6)"
        )
    };
}

/// CEL: port ranges only make sense for protocols whose packets carry ports.
/// Two homogeneous lists, because `protocol` is either kind and a mixed list
/// literal is a type error under strict CEL type checking.
macro_rules! ports_rule {
    ($field:literal) => {
        concat!("!has(self.", $field, ") || self.protocol in ['TCP', 'UDP', 'SCTP'] || self.protocol in [6, 17, 132]")
    };
}

/// At most 10 rules per list (docs/quotas.md) keep this O(n²) walk far inside the
/// API server's CEL cost budget.
const UNIQUE_PRIORITIES: &str = "self.all(r, self.exists_one(o, o.priority == r.priority))";

/// One rule (seed 000 table 5, seed 002 table 2). Omitted CIDRs and port
/// ranges match everything of the rule's family.
///
/// The rules that tie two fields together live here, each reported at the
/// field the user has to change (`fieldPath`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(cidr_family_rule!("sourceCIDR")).field_path(".sourceCIDR").message("sourceCIDR must be of the rule's ipFamily"),
    validation = Rule::new(cidr_family_rule!("destinationCIDR")).field_path(".destinationCIDR").message("destinationCIDR must be of the rule's ipFamily"),
    validation = Rule::new(ports_rule!("sourcePorts")).field_path(".sourcePorts").message("sourcePorts are only allowed with protocol TCP, UDP or SCTP (6, 17, 132)"),
    validation = Rule::new(ports_rule!("destinationPorts")).field_path(".destinationPorts").message("destinationPorts are only allowed with protocol TCP, UDP or SCTP (6, 17, 132)"),
)]
pub struct FilterRule {
    /// Evaluation order within the list, lower first; unique within the list (1..=32766).
    #[schemars(range(min = 1, max = 32766))]
    pub priority: i32,
    /// `Accept` mirrors the packet, `Reject` stops the walk without mirroring.
    pub action: Action,
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `All`, or an IP protocol number 0..=255.
    #[schemars(schema_with = "protocol_schema")]
    pub protocol: IntOrString,
    /// `IPv4` or `IPv6`; both CIDRs must be of this family.
    pub ip_family: IpFamily,
    /// Source prefix, e.g. `192.168.0.161/32`; omitted = any address of the family.
    #[serde(default, rename = "sourceCIDR", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("sourceCIDR must be an IP prefix such as 10.0.0.0/24 or fd00::/64"))]
    pub source_cidr: Option<String>,
    /// Destination prefix; omitted = any address of the family.
    #[serde(default, rename = "destinationCIDR", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("destinationCIDR must be an IP prefix such as 10.0.0.0/24 or fd00::/64"))]
    pub destination_cidr: Option<String>,
    /// Source port range; only for TCP, UDP and SCTP. Omitted = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ports: Option<PortRangeSpec>,
    /// Destination port range; only for TCP, UDP and SCTP. Omitted = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ports: Option<PortRangeSpec>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
}

/// An inclusive port range, `from <= to`, both in 1..=65535.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.from <= self.to").message("port range: from must not be greater than to"))]
pub struct PortRangeSpec {
    #[schemars(range(min = 1, max = 65535))]
    pub from: i32,
    #[schemars(range(min = 1, max = 65535))]
    pub to: i32,
}
