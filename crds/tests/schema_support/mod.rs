//! What the API server would say about an object, without an API server.
//!
//! The schemas are read from the CRD YAML checked in under `crds/` (the files
//! `kubectl apply -f crds/` installs; `crd_drift.rs` keeps them equal to the
//! Rust types), so these tests exercise what ships. An object goes through
//! the two stages the API server runs on create:
//! 1. the OpenAPI value validations of a structural schema (type, enum,
//!    required, minimum/maximum, pattern, min/maxLength, min/maxItems, the
//!    date-time format), written here
//!    because they are few and simple;
//! 2. the CEL `x-kubernetes-validations`, evaluated by kube-cel with the
//!    Kubernetes CEL libraries (`isCIDR`, `cidr()`, `isIP`, ...).
//!
//! Defaults are applied first, as the API server does.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::BTreeMap;
use std::path::PathBuf;

use kube::core::cel::{ScopeContext, Validator, WarningKind, analyze_rule, apply_defaults, compile_schema};
use serde_json::Value;

/// The `openAPIV3Schema` of every checked-in CRD, by kind.
pub fn checked_in_schemas() -> BTreeMap<String, Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut schemas = BTreeMap::new();
    for file in
        ["mirrorfilters.podmirror.io.yaml", "mirrorsessions.podmirror.io.yaml", "mirrornodestates.podmirror.io.yaml"]
    {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let crd: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        let kind = crd["spec"]["names"]["kind"].as_str().expect("CRD has spec.names.kind").to_owned();
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        assert!(schema.is_object(), "{file} has no openAPIV3Schema");
        schemas.insert(kind, schema);
    }
    schemas
}

/// Every error the API server would report on creating `object`, as
/// `path: message` lines; empty when it would accept it.
pub fn api_server_errors(schema: &Value, object: &Value) -> Vec<String> {
    let defaulted = apply_defaults(schema, object);
    let mut errors = Vec::new();
    openapi_errors(schema, &defaulted, "", &mut errors);
    if let Err(cel) = Validator::new().validate(schema, &defaulted, None) {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// The OpenAPI value validations the API server applies to a structural schema.
fn openapi_errors(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errors.push(format!("{path}: Invalid value: null: must not be null"));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        _ if int_or_string => value.is_i64() || value.is_u64() || value.is_string(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path}: Invalid value: {value}: must be of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: Unsupported value: {value}: supported values: {}", Value::Array(allowed.clone())));
    }
    if let Some(number) = value.as_f64().filter(|_| value.is_number()) {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && number < min
        {
            errors.push(format!(
                "{path}: Invalid value: {value}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && number > max
        {
            errors
                .push(format!("{path}: Invalid value: {value}: {path} in body should be less than or equal to {max}"));
        }
    }
    if let Some(text) = value.as_str() {
        // The API server checks the formats it knows; date-time is RFC 3339.
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && text.parse::<k8s_openapi::jiff::Timestamp>().is_err()
        {
            errors.push(format!("{path}: Invalid value: {value}: {path} in body must be of type date-time"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let regex = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{path}: bad pattern {pattern}: {e}"));
            if !regex.is_match(text) {
                errors.push(format!("{path}: Invalid value: {value}: {path} in body should match '{pattern}'"));
            }
        }
        let len = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            errors.push(format!("{path}: Invalid value: {value}: {path} in body should be at least {min} chars long"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            errors.push(format!("{path}: Too long: may not be more than {max} bytes"));
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            errors.push(format!("{path}: Invalid value: {len}: {path} in body should have at least {min} items"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            errors.push(format!("{path}: Too many: {len}: must have at most {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                openapi_errors(item_schema, item, &format!("{path}[{index}]"), errors);
            }
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                errors.push(format!("{}: Required value", join(path, key)));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, child) in object {
            // Unknown fields are pruned by the API server, not rejected.
            let child_schema = properties.and_then(|p| p.get(key)).or_else(|| schema.get("additionalProperties"));
            if let Some(child_schema) = child_schema.filter(|s| s.is_object()) {
                openapi_errors(child_schema, child, &join(path, key), errors);
            }
        }
    }
}

/// Every CEL rule in `schema` with the path of the node that carries it.
pub fn cel_rules(schema: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            out.push((path.to_owned(), rule.clone()));
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            cel_rules(child, &join(path, key), out);
        }
    }
    if let Some(items) = schema.get("items") {
        cel_rules(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        cel_rules(additional, &format!("{path}{{}}"), out);
    }
}

/// Rules that do not compile, and rules whose estimated cost exceeds the
/// API server's per-rule budget, each evaluated at the node carrying it.
/// (kube-cel's scope check is left out: it mistakes comprehension variables
/// such as the `r` of `self.all(r, ...)` for free variables.)
pub fn cel_cost_warnings(schema: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    walk_nodes(schema, "", &mut |node, path| {
        let Some(rules) = node.get("x-kubernetes-validations").and_then(Value::as_array) else {
            return;
        };
        let compiled = compile_schema(node);
        for error in compiled.compilation_errors() {
            warnings.push(format!("{path}: does not compile: {error}"));
        }
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default();
            for warning in analyze_rule(text, &compiled, ScopeContext::CrdValidation) {
                if warning.kind == WarningKind::CostExceeded {
                    warnings.push(format!("{path}: {text}: {}", warning.message));
                }
            }
        }
    });
    warnings
}

/// Calls `visit` on every schema node with its path.
pub fn walk_nodes(schema: &Value, path: &str, visit: &mut dyn FnMut(&Value, &str)) {
    visit(schema, path);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            walk_nodes(child, &join(path, key), visit);
        }
    }
    if let Some(items) = schema.get("items") {
        walk_nodes(items, &format!("{path}[]"), visit);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk_nodes(additional, &format!("{path}{{}}"), visit);
    }
}
