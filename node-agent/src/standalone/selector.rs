//! Kubernetes label selectors (`matchLabels` + `matchExpressions`) evaluated
//! against the inventory's pod labels, with the API server's semantics.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Does `selector` select a pod with `labels`? An invalid operator is an
/// error naming `field` (the selector's path).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>, field: &str) -> Result<bool, String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        if labels.get(key) != Some(value) {
            return Ok(false);
        }
    }
    for (index, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let values = expr.values.as_deref().unwrap_or_default();
        let here = || format!("{field}.matchExpressions[{index}]");
        let ok = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(format!("{}.values: must not be empty for {}", here(), expr.operator)),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("{}.values: must be empty for {}", here(), expr.operator));
            }
            "In" => labels.get(&expr.key).is_some_and(|v| values.contains(v)),
            "NotIn" => !labels.get(&expr.key).is_some_and(|v| values.contains(v)),
            "Exists" => labels.contains_key(&expr.key),
            "DoesNotExist" => !labels.contains_key(&expr.key),
            other => return Err(format!("{}.operator: {other:?} is not In, NotIn, Exists or DoesNotExist", here())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sel(yaml: &str) -> LabelSelector {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn match_labels_and_expressions() {
        let labels = BTreeMap::from([("app".to_string(), "shop".to_string()), ("tier".to_string(), "web".to_string())]);
        let f = "spec.sources[0].podSelector";
        assert!(matches(&sel("{matchLabels: {app: shop}}"), &labels, f).unwrap());
        assert!(!matches(&sel("{matchLabels: {app: db}}"), &labels, f).unwrap());
        assert!(matches(&sel("{matchExpressions: [{key: tier, operator: In, values: [web, api]}]}"), &labels, f).unwrap());
        assert!(!matches(&sel("{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}"), &labels, f).unwrap());
        assert!(matches(&sel("{matchExpressions: [{key: x, operator: DoesNotExist}]}"), &labels, f).unwrap());
        assert!(!matches(&sel("{matchExpressions: [{key: x, operator: Exists}]}"), &labels, f).unwrap());
        assert!(matches(&sel("{}"), &labels, f).unwrap(), "an empty selector selects everything");
        let err = matches(&sel("{matchExpressions: [{key: x, operator: Near}]}"), &labels, f).unwrap_err();
        assert!(err.contains("spec.sources[0].podSelector.matchExpressions[0].operator"), "{err}");
    }
}
