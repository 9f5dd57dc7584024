//! The generated schemas are structural (the API server refuses a CRD whose
//! schema is not) and carry the names and shapes the other components rely
//! on: scopes, short names, status subresources, printer columns, list-maps.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use podmirror_crds::api::generate::all_crds;
use serde_json::Value;

fn crd(kind: &str) -> CustomResourceDefinition {
    all_crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn schema(kind: &str) -> Value {
    let crd = crd(kind);
    let version = &crd.spec.versions[0];
    serde_json::to_value(version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("a schema"))
        .expect("serializes")
}

/// Structural-schema violations (apiextensions' rules that a derive can break).
fn structural_violations(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        return;
    };
    for forbidden in ["$ref", "definitions", "$defs", "oneOf", "anyOf", "allOf", "not", "additionalItems"] {
        if object.contains_key(forbidden) {
            out.push(format!("{path}: has {forbidden}"));
        }
    }
    let int_or_string = object.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let preserves = object.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    if !object.contains_key("type") && !int_or_string && !preserves {
        out.push(format!("{path}: has no type"));
    }
    if object.get("type").and_then(Value::as_str) == Some("array") && !object.contains_key("items") {
        out.push(format!("{path}: array without items"));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            structural_violations(child, &format!("{path}.{key}"), out);
        }
    }
    if let Some(items) = object.get("items") {
        structural_violations(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = object.get("additionalProperties").filter(|a| a.is_object()) {
        structural_violations(additional, &format!("{path}{{}}"), out);
    }
}

#[test]
fn schemas_are_structural() {
    for kind in ["MirrorFilter", "MirrorSession", "MirrorNodeState"] {
        let mut violations = Vec::new();
        structural_violations(&schema(kind), kind, &mut violations);
        assert!(violations.is_empty(), "{kind}: {violations:#?}");
    }
}

#[test]
fn names_scopes_and_subresources_follow_the_contract() {
    for (kind, plural, short, scope) in [
        ("MirrorFilter", "mirrorfilters", "mf", "Namespaced"),
        ("MirrorSession", "mirrorsessions", "ms", "Namespaced"),
        ("MirrorNodeState", "mirrornodestates", "mns", "Cluster"),
    ] {
        let crd = crd(kind);
        assert_eq!(crd.spec.group, "podmirror.io");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_owned()][..]), "{kind}");
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["podmirror".to_owned()][..]), "{kind}");
        assert_eq!(crd.spec.scope, scope, "{kind}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(
            version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{kind} has a status subresource"
        );
    }
}

#[test]
fn printer_columns_show_what_spec_section_1_lists() {
    let columns = |kind: &str| -> Vec<(String, String)> {
        crd(kind).spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.name, c.json_path))
            .collect()
    };
    let session = columns("MirrorSession");
    for name in ["Phase", "VNI", "Target", "Sources", "Mirrored", "Age"] {
        assert!(session.iter().any(|(n, _)| n == name), "MirrorSession lacks column {name}: {session:?}");
    }
    let filter = columns("MirrorFilter");
    for name in ["Inbound", "Outbound", "Sessions"] {
        assert!(filter.iter().any(|(n, _)| n == name), "MirrorFilter lacks column {name}: {filter:?}");
    }
    // Every column reads a field the schema has.
    for kind in ["MirrorFilter", "MirrorSession"] {
        let schema = schema(kind);
        for (name, path) in columns(kind) {
            if path.starts_with(".metadata") {
                continue;
            }
            let mut node = &schema;
            for segment in path.trim_start_matches('.').split('.') {
                node = &node["properties"][segment];
            }
            assert!(node.is_object(), "{kind} column {name} reads {path}, which the schema does not have");
        }
    }
}

#[test]
fn status_lists_are_list_maps_so_several_managers_can_share_them() {
    let session = schema("MirrorSession");
    let status = &session["properties"]["status"]["properties"];
    for (field, key) in [("conditions", "type"), ("nodes", "node")] {
        assert_eq!(status[field]["x-kubernetes-list-type"], "map", "status.{field}");
        assert_eq!(status[field]["x-kubernetes-list-map-keys"], serde_json::json!([key]), "status.{field}");
        let required = status[field]["items"]["required"].as_array().cloned().unwrap_or_default();
        assert!(required.contains(&Value::from(key)), "status.{field}: a list-map key must be required");
    }
    // Nothing in status is required: each manager applies only what it owns.
    assert!(session["properties"]["status"].get("required").is_none());
    let filter = schema("MirrorFilter");
    assert_eq!(filter["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-type"], "map");
}

#[test]
fn node_state_rule_lists_carry_no_cel() {
    // The operator copies already-validated rules; CEL inside the unbounded
    // list of sessions would blow the API server's cost estimate.
    let text = serde_json::to_string(&schema("MirrorNodeState")).expect("json");
    assert!(!text.contains("x-kubernetes-validations"));
    let filter = serde_json::to_string(&schema("MirrorFilter")).expect("json");
    assert!(filter.contains("x-kubernetes-validations"), "but the MirrorFilter keeps them");
}
