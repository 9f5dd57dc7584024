//! Rendered Kubernetes manifests (`helm template` output) as objects, and the
//! questions the chart tests ask of them: which pod specs and containers exist,
//! and what each may do to its node.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_yaml::Value;

use crate::E2eError;

/// One object of a multi-document YAML stream.
#[derive(Debug, Clone)]
pub struct Object {
    /// Position in the stream (0-based, empty documents counted), for messages.
    pub index: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub value: Value,
}

impl Object {
    /// `Kind/name`, for messages.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// A label of the object's metadata.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.value.get("metadata")?.get("labels")?.get(key)?.as_str()
    }

    /// An annotation of the object's metadata.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value.get("metadata")?.get("annotations")?.get(key)?.as_str()
    }

    /// The pod spec this object runs, for the workload kinds.
    pub fn pod_spec(&self) -> Option<&Value> {
        match self.kind.as_str() {
            "Pod" => self.value.get("spec"),
            "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" => {
                self.value.get("spec")?.get("template")?.get("spec")
            }
            "CronJob" => self.value.get("spec")?.get("jobTemplate")?.get("spec")?.get("template")?.get("spec"),
            _ => None,
        }
    }

    /// Every container (init containers included) of the object's pod spec.
    pub fn containers(&self) -> Vec<Container<'_>> {
        let Some(spec) = self.pod_spec() else {
            return Vec::new();
        };
        ["initContainers", "containers"]
            .iter()
            .filter_map(|list| spec.get(*list)?.as_sequence())
            .flatten()
            .map(|value| Container { value })
            .collect()
    }
}

/// A view on one container of a pod spec.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    pub value: &'a Value,
}

impl<'a> Container<'a> {
    pub fn name(&self) -> &'a str {
        self.value.get("name").and_then(Value::as_str).unwrap_or("<unnamed>")
    }

    pub fn image(&self) -> Option<&'a str> {
        self.value.get("image").and_then(Value::as_str)
    }

    /// A field of the container's securityContext.
    pub fn security(&self, key: &str) -> Option<&'a Value> {
        self.value.get("securityContext")?.get(key)
    }

    /// Capabilities added to the container.
    pub fn added_capabilities(&self) -> BTreeSet<String> {
        string_set(self.security("capabilities").and_then(|c| c.get("add")))
    }

    /// Capabilities dropped from the container.
    pub fn dropped_capabilities(&self) -> BTreeSet<String> {
        string_set(self.security("capabilities").and_then(|c| c.get("drop")))
    }

    /// The container's arguments (command and args together).
    pub fn command_line(&self) -> Vec<&'a str> {
        ["command", "args"]
            .iter()
            .filter_map(|k| self.value.get(*k)?.as_sequence())
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    /// The value of an environment variable set from the downward API.
    pub fn env_field_ref(&self, name: &str) -> Option<&'a str> {
        self.value
            .get("env")?
            .as_sequence()?
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
            .get("valueFrom")?
            .get("fieldRef")?
            .get("fieldPath")?
            .as_str()
    }
}

fn string_set(list: Option<&Value>) -> BTreeSet<String> {
    list.and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

fn field<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// Splits a multi-document YAML stream into objects. Every non-empty document
/// must be a mapping with `apiVersion`, `kind` and `metadata.name`.
pub fn parse_documents(text: &str) -> Result<Vec<Object>, E2eError> {
    let mut objects = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| E2eError::Manifest {
            index,
            what: "YAML".into(),
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document between two `---`
        }
        let text_at = |path: &[&str]| field(&value, path).and_then(Value::as_str).map(String::from);
        let missing =
            |what: &str| E2eError::Manifest { index, what: what.into(), reason: "missing or not a string".into() };
        let api_version = text_at(&["apiVersion"]).ok_or_else(|| missing("apiVersion"))?;
        let kind = text_at(&["kind"]).ok_or_else(|| missing("kind"))?;
        let name = text_at(&["metadata", "name"]).ok_or_else(|| missing("metadata.name"))?;
        let namespace = text_at(&["metadata", "namespace"]);
        objects.push(Object { index, api_version, kind, name, namespace, value });
    }
    Ok(objects)
}

/// Deserializes the object into its typed Kubernetes API struct
/// (k8s-openapi), so a wrong type or shape anywhere in a known kind is caught.
/// Kinds served by a CRD that the chart only optionally uses (Prometheus
/// Operator) are checked for their basic shape only.
pub fn check_typed(obj: &Object) -> Result<(), E2eError> {
    use k8s_openapi::api::{apps, batch, core, policy, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    /// Deserialize, then serialize again: a field the API type does not
    /// know (a typo such as `mountPropogation`) is dropped on the way, and
    /// shows up as a path of the original that the round trip lacks.
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Object) -> Result<(), E2eError> {
        let err = |reason: String| E2eError::Manifest { index: obj.index, what: obj.id(), reason };
        let parsed = serde_yaml::from_value::<T>(obj.value.clone()).map_err(|e| err(e.to_string()))?;
        let original = serde_json::to_value(&obj.value).map_err(|e| err(e.to_string()))?;
        let round_trip = serde_json::to_value(&parsed).map_err(|e| err(e.to_string()))?;
        let mut unknown = Vec::new();
        unknown_fields(&original, &round_trip, String::new(), &mut unknown);
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(err(format!("fields unknown to the API type: {}", unknown.join(", "))))
        }
    }
    match (obj.api_version.as_str(), obj.kind.as_str()) {
        ("apps/v1", "Deployment") => typed::<apps::v1::Deployment>(obj),
        ("apps/v1", "DaemonSet") => typed::<apps::v1::DaemonSet>(obj),
        ("batch/v1", "Job") => typed::<batch::v1::Job>(obj),
        ("v1", "ServiceAccount") => typed::<core::v1::ServiceAccount>(obj),
        ("v1", "Service") => typed::<core::v1::Service>(obj),
        ("v1", "ConfigMap") => typed::<core::v1::ConfigMap>(obj),
        ("policy/v1", "PodDisruptionBudget") => typed::<policy::v1::PodDisruptionBudget>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => typed::<rbac::v1::ClusterRoleBinding>(obj),
        ("rbac.authorization.k8s.io/v1", "Role") => typed::<rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed::<rbac::v1::RoleBinding>(obj),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => typed::<CustomResourceDefinition>(obj),
        ("monitoring.coreos.com/v1", "ServiceMonitor" | "PodMonitor") => {
            if obj.value.get("spec").is_some_and(Value::is_mapping) {
                Ok(())
            } else {
                Err(E2eError::Manifest { index: obj.index, what: obj.id(), reason: "spec is missing".into() })
            }
        }
        (api, kind) => Err(E2eError::Manifest {
            index: obj.index,
            what: obj.id(),
            reason: format!("{api} {kind} is not a kind this chart is expected to render"),
        }),
    }
}

/// Paths of `original` (JSON) that `round_trip` lacks. Lists are compared
/// element by element; scalars are not compared (a Quantity or IntOrString
/// may be written differently).
pub fn unknown_fields(original: &serde_json::Value, round_trip: &serde_json::Value, at: String, out: &mut Vec<String>) {
    use serde_json::Value as J;
    match (original, round_trip) {
        (J::Object(a), J::Object(b)) => {
            for (key, value) in a {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                match b.get(key) {
                    Some(other) => unknown_fields(value, other, path, out),
                    // An empty map or list may be omitted on the way back.
                    None if value.is_null()
                        || value.as_object().is_some_and(|m| m.is_empty())
                        || value.as_array().is_some_and(|l| l.is_empty()) => {}
                    None => out.push(path),
                }
            }
        }
        (J::Array(a), J::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Everything in the objects that would let a container escape its limits:
/// `privileged: true` anywhere, privilege escalation not explicitly off,
/// capabilities not dropped, a writable root filesystem, host PID/IPC.
pub fn hardening_violations(objects: &[Object]) -> Vec<String> {
    let mut found = Vec::new();
    for obj in objects {
        find_privileged(&obj.value, &obj.id(), &mut found);
        let Some(spec) = obj.pod_spec() else { continue };
        for host_ns in ["hostPID", "hostIPC"] {
            if spec.get(host_ns).and_then(Value::as_bool) == Some(true) {
                found.push(format!("{}: {host_ns}: true", obj.id()));
            }
        }
        for c in obj.containers() {
            let at = format!("{} container {}", obj.id(), c.name());
            if c.security("allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
                found.push(format!("{at}: allowPrivilegeEscalation is not false"));
            }
            if c.security("readOnlyRootFilesystem").and_then(Value::as_bool) != Some(true) {
                found.push(format!("{at}: readOnlyRootFilesystem is not true"));
            }
            if !c.dropped_capabilities().contains("ALL") {
                found.push(format!("{at}: capabilities.drop lacks ALL"));
            }
        }
    }
    found
}

fn find_privileged(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some("privileged") && v.as_bool() != Some(false) {
                    found.push(format!("{at}: privileged: {v:?}"));
                }
                find_privileged(v, at, found);
            }
        }
        Value::Sequence(list) => list.iter().for_each(|v| find_privileged(v, at, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  namespace: ns\n---\n# only a comment\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: d\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n        - name: c\n          image: i:1\n          securityContext:\n            privileged: true\n            capabilities: {add: [BPF], drop: [ALL]}\n";

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let objs = parse_documents(TWO).expect("parses");
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].id(), "ServiceAccount/a");
        assert_eq!(objs[0].namespace.as_deref(), Some("ns"));
        assert_eq!(objs[1].containers().len(), 1);
        assert_eq!(objs[1].containers()[0].image(), Some("i:1"));
        assert!(objs[1].containers()[0].added_capabilities().contains("BPF"));
    }

    #[test]
    fn a_document_without_kind_is_an_error_naming_the_field() {
        let err = parse_documents("apiVersion: v1\nmetadata: {name: x}\n").expect_err("no kind");
        assert!(err.to_string().contains("kind"), "{err}");
    }

    #[test]
    fn privileged_and_missing_hardening_are_reported() {
        let objs = parse_documents(TWO).expect("parses");
        let found = hardening_violations(&objs);
        assert!(found.iter().any(|f| f.contains("privileged")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("allowPrivilegeEscalation")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("readOnlyRootFilesystem")), "{found:?}");
    }

    #[test]
    fn typed_check_rejects_a_misspelt_field() {
        let typo = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\nautomountServiceAcountToken: false\n";
        let objs = parse_documents(typo).expect("parses as YAML");
        let err = check_typed(&objs[0]).expect_err("misspelt field");
        assert!(err.to_string().contains("automountServiceAcountToken"), "{err}");
        let good = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x, labels: {}}\nautomountServiceAccountToken: false\n";
        check_typed(&parse_documents(good).expect("parses")[0]).expect("a correct object passes");
    }

    #[test]
    fn typed_check_rejects_a_wrong_field_type() {
        let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: two\n  selector: {}\n  template: {}\n";
        let objs = parse_documents(bad).expect("parses as YAML");
        assert!(check_typed(&objs[0]).is_err());
        let unknown = parse_documents("apiVersion: v9\nkind: Gadget\nmetadata: {name: g}\n").expect("parses as YAML");
        assert!(check_typed(&unknown[0]).is_err());
    }
}
