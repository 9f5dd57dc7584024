//! `MirrorNodeState`: the desired mirroring state of one node, written by the
//! operator and watched by that node's agent alone (field selector
//! `metadata.name=<node>`), so an agent never lists cluster-wide pods or
//! sessions. Cluster-scoped; its name is the node's name.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::filter::FilterRule;
use super::shaping::{FlowSampling, RateLimit};
use crate::model::types::Encapsulation;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "podmirror.io",
    version = "v1alpha1",
    kind = "MirrorNodeState",
    doc = "The desired mirroring state of one node, written by podmirror-operator for that node's podmirror-agent.",
    shortname = "mns",
    category = "podmirror",
    status = "MirrorNodeStateStatus",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MirrorNodeStateSpec {
    /// The node this state is for (equal to `metadata.name`).
    pub node: String,
    /// Accepted sessions with at least one source pod on this node.
    #[serde(default)]
    pub sessions: Vec<NodeSession>,
    /// Source pods on this node and the sessions (`namespace/name`) that include each.
    #[serde(default)]
    pub pods: Vec<NodePod>,
}

/// A session as last accepted, with its filter's rules copied in and its
/// target resolved, so the agent needs no other object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeSession {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The session's `metadata.generation` this entry was built from.
    pub generation: i64,
    pub priority: i32,
    pub enabled: bool,
    pub vni: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_length: Option<i32>,
    #[serde(default)]
    pub encapsulation: Encapsulation,
    pub target_port: i32,
    /// `spec.rateLimit` of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "without_cel::<Option<RateLimit>>")]
    pub rate_limit: Option<RateLimit>,
    /// `spec.flowSampling` of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "without_cel::<Option<FlowSampling>>")]
    pub flow_sampling: Option<FlowSampling>,
    /// Resolved target addresses (IPv4 or IPv6 literals).
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    #[schemars(schema_with = "rules_without_cel")]
    pub inbound_rules: Vec<FilterRule>,
    #[serde(default)]
    #[schemars(schema_with = "rules_without_cel")]
    pub outbound_rules: Vec<FilterRule>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodePod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(default)]
    pub ips: Vec<String>,
    /// `namespace/name` of the NodeSessions that include this pod.
    #[serde(default)]
    pub sessions: Vec<String>,
}

/// Written by the node's agent (field manager `podmirror-agent/<node>`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MirrorNodeStateStatus {
    /// The generation the agent last programmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    /// Sessions (`namespace/name`) on whose `status.nodes` the agent holds
    /// this node's entry. Recorded before an entry is written and dropped
    /// after it is withdrawn, so an agent that restarts knows which entries
    /// to withdraw for sessions that left the node while it was down; and
    /// the operator keeps an otherwise empty MirrorNodeState until this is
    /// empty (or the Node is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub reported_sessions: Option<Vec<String>>,
}

/// The schema of a rule list copied from a MirrorFilter, minus its CEL rules.
///
/// The API server already checked those rules on the filter, and the agent
/// compiles every session again before programming it. Repeating the CEL
/// inside the unbounded list of sessions would make the API server estimate
/// its cost over that list, and could make it refuse the whole CRD.
fn rules_without_cel(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<FilterRule>>();
    if let Some(object) = schema.as_object_mut() {
        strip_cel(object);
    }
    schema
}

/// The schema of a field copied from a MirrorSession, minus its CEL rules
/// (checked on the session already; see `rules_without_cel`).
fn without_cel<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<T>();
    if let Some(object) = schema.as_object_mut() {
        strip_cel(object);
    }
    schema
}

fn strip_cel(object: &mut serde_json::Map<String, serde_json::Value>) {
    object.remove("x-kubernetes-validations");
    for value in object.values_mut() {
        if let Some(child) = value.as_object_mut() {
            strip_cel(child);
        }
    }
}
