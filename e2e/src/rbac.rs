//! The permissions a set of rendered RBAC objects grants, flattened to one
//! grant per (component, scope, group, resource, verb, name) so that two sets
//! compare exactly.

use std::collections::BTreeSet;

use serde_yaml::Value;

use crate::manifest::Object;

/// Where a grant applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// ClusterRole: every namespace.
    Cluster,
    /// Role: the release namespace.
    Namespace,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text.trim() {
            "cluster" => Some(Scope::Cluster),
            "namespace" => Some(Scope::Namespace),
            _ => None,
        }
    }
}

/// One verb on one resource, held by one component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// `app.kubernetes.io/component` of the role (operator, agent, cleanup).
    pub component: String,
    pub scope: Scope,
    /// The API group; the core group is written `core`.
    pub api_group: String,
    pub resource: String,
    pub verb: String,
    /// `None`: any object of the resource.
    pub resource_name: Option<String>,
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value.and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

/// The grants of every Role and ClusterRole among `objects`.
pub fn grants(objects: &[Object]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for obj in objects {
        let scope = match obj.kind.as_str() {
            "ClusterRole" => Scope::Cluster,
            "Role" => Scope::Namespace,
            _ => continue,
        };
        let component = obj.label("app.kubernetes.io/component").unwrap_or("<none>");
        let rules = obj.value.get("rules").and_then(Value::as_sequence);
        for rule in rules.into_iter().flatten() {
            let names = strings(rule.get("resourceNames"));
            let names: Vec<Option<String>> =
                if names.is_empty() { vec![None] } else { names.into_iter().map(Some).collect() };
            for group in strings(rule.get("apiGroups")) {
                for resource in strings(rule.get("resources")) {
                    for verb in strings(rule.get("verbs")) {
                        for name in &names {
                            out.insert(Grant {
                                component: component.to_string(),
                                scope: scope.clone(),
                                api_group: if group.is_empty() { "core".into() } else { group.clone() },
                                resource: resource.clone(),
                                verb: verb.clone(),
                                resource_name: name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// Grants that use a wildcard (`*`) anywhere: never acceptable.
pub fn wildcards(grants: &BTreeSet<Grant>) -> Vec<&Grant> {
    grants
        .iter()
        .filter(|g| g.api_group == "*" || g.resource == "*" || g.verb == "*" || g.resource.ends_with("/*"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_documents;

    #[test]
    fn rules_flatten_to_one_grant_per_verb_and_name() {
        let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: r\n  labels: {app.kubernetes.io/component: operator}\nrules:\n  - apiGroups: [\"\", apps]\n    resources: [pods]\n    verbs: [get, list]\n  - apiGroups: [coordination.k8s.io]\n    resources: [leases]\n    resourceNames: [a, b]\n    verbs: [update]\n";
        let objs = parse_documents(yaml).expect("parses");
        let g = grants(&objs);
        assert_eq!(g.len(), 6, "{g:#?}");
        assert!(g.iter().any(|g| g.api_group == "core" && g.verb == "list"));
        assert!(g.iter().all(|g| g.scope == Scope::Namespace && g.component == "operator"));
        assert_eq!(g.iter().filter(|g| g.resource_name.is_some()).count(), 2);
        assert!(wildcards(&g).is_empty());
    }

    #[test]
    fn wildcards_are_found() {
        let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n  - apiGroups: [\"*\"]\n    resources: [pods]\n    verbs: [get]\n";
        let g = grants(&parse_documents(yaml).expect("parses"));
        assert_eq!(wildcards(&g).len(), 1);
    }
}
