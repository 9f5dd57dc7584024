//! Kubernetes label selectors (`matchLabels` + `matchExpressions`) with the
//! API server's semantics, shared by the operator and the standalone agent so
//! that one `podSelector` selects the same pods in both.
//!
//! The API server does not validate a `LabelSelector` inside a custom
//! resource, so the rules it applies to built-in objects are applied here,
//! when the selector is read ([`Selector::parse`]): `In`/`NotIn` need at
//! least one value, `Exists`/`DoesNotExist` take none, no other operator
//! exists, keys are qualified names and values are label values. An invalid
//! selector is an error naming the field; it never falls back to selecting
//! everything. A valid selector matches when every `matchLabels` entry and
//! every expression holds; the empty selector matches every pod.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::ModelError;

/// A label selector that passed [`Selector::parse`], so always decidable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<SelectorExpr>,
}

/// One `matchExpressions` entry. `In` and `NotIn` hold a non-empty set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorExpr {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Reads `selector`, found at `field` (e.g. `spec.sources[0].podSelector`),
    /// with the API server's rules; the error names the offending sub-field.
    pub fn parse(selector: &LabelSelector, field: &str) -> Result<Selector, ModelError> {
        let mut match_labels = BTreeMap::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let here = format!("{field}.matchLabels[{key:?}]");
            check_key(key, &here)?;
            check_value(value, &here)?;
            match_labels.insert(key.clone(), value.clone());
        }
        let mut expressions = Vec::new();
        for (index, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let here = format!("{field}.matchExpressions[{index}]");
            check_key(&expr.key, &format!("{here}.key"))?;
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            for value in &values {
                check_value(value, &format!("{here}.values"))?;
            }
            let key = expr.key.clone();
            let op = expr.operator.as_str();
            expressions.push(match op {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(ModelError::invalid(
                        format!("{here}.values"),
                        format!("must not be empty when the operator is {op}"),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(ModelError::invalid(
                        format!("{here}.values"),
                        format!("must be empty when the operator is {op}"),
                    ));
                }
                "In" => SelectorExpr::In(key, values),
                "NotIn" => SelectorExpr::NotIn(key, values),
                "Exists" => SelectorExpr::Exists(key),
                "DoesNotExist" => SelectorExpr::DoesNotExist(key),
                other => {
                    return Err(ModelError::invalid(
                        format!("{here}.operator"),
                        format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                    ));
                }
            });
        }
        Ok(Selector { match_labels, expressions })
    }

    /// Does the selector select a pod with `labels`? All of `matchLabels`
    /// and all expressions must hold (the empty selector selects all).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| match e {
                SelectorExpr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                SelectorExpr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                SelectorExpr::Exists(k) => labels.contains_key(k),
                SelectorExpr::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

/// A label key: a qualified name, `[prefix/]name` (Kubernetes
/// `IsQualifiedName`).
fn check_key(key: &str, field: &str) -> Result<(), ModelError> {
    let bad = |why: String| Err(ModelError::invalid(field, format!("key {key:?}: {why}")));
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || prefix.len() > 253 || !is_dns_subdomain(prefix))
    {
        return bad("the prefix must be a DNS subdomain (lowercase, at most 253 characters)".into());
    }
    if name.is_empty() {
        return bad("the name part must not be empty".into());
    }
    if !is_label_name(name) {
        return bad(NAME_RULE.into());
    }
    Ok(())
}

/// A label value: empty, or a name of at most 63 characters.
fn check_value(value: &str, field: &str) -> Result<(), ModelError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(ModelError::invalid(field, format!("value {value:?}: {NAME_RULE}")))
    }
}

const NAME_RULE: &str = "at most 63 characters, alphanumeric at both ends, '-', '_' or '.' between";

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(inner)
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty() && ok(&b[0]) && ok(&b[b.len() - 1]) && b.iter().all(|c| ok(c) || *c == b'-')
    })
}
