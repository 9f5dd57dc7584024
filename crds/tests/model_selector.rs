//! Label selectors (`model::selector`), the one implementation the operator
//! and the standalone agent share: every operator, matchLabels AND
//! matchExpressions, the empty selector, and every invalid form the API
//! server refuses for built-in objects, each refused with the field named.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use podmirror_crds::model::selector::{Selector, SelectorExpr};

const FIELD: &str = "spec.sources[2].podSelector";

fn parse(yaml: &str) -> Result<Selector, String> {
    let raw: LabelSelector = serde_yaml::from_str(yaml).unwrap();
    Selector::parse(&raw, FIELD).map_err(|e| e.to_string())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Which of three pods `yaml` selects: shop/web, shop/db, and one unlabelled.
fn selects(yaml: &str) -> [bool; 3] {
    let s = parse(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    let pods = [labels(&[("app", "shop"), ("tier", "web")]), labels(&[("app", "shop"), ("tier", "db")]), labels(&[])];
    pods.map(|l| s.matches(&l))
}

#[test]
fn the_empty_selector_selects_every_pod() {
    assert_eq!(selects("{}"), [true; 3]);
    assert_eq!(selects("{matchLabels: {}, matchExpressions: []}"), [true; 3]);
}

#[test]
fn match_labels_needs_every_pair() {
    assert_eq!(selects("{matchLabels: {app: shop}}"), [true, true, false]);
    assert_eq!(selects("{matchLabels: {app: shop, tier: db}}"), [false, true, false]);
    assert_eq!(selects("{matchLabels: {app: other}}"), [false, false, false]);
}

#[test]
fn in_needs_the_key_with_one_of_the_values() {
    assert_eq!(selects("{matchExpressions: [{key: tier, operator: In, values: [web, api]}]}"), [true, false, false]);
}

#[test]
fn not_in_selects_pods_without_the_key_or_with_another_value() {
    assert_eq!(selects("{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}"), [false, true, true]);
}

#[test]
fn exists_and_does_not_exist_look_at_the_key_only() {
    assert_eq!(selects("{matchExpressions: [{key: tier, operator: Exists}]}"), [true, true, false]);
    assert_eq!(selects("{matchExpressions: [{key: tier, operator: DoesNotExist}]}"), [false, false, true]);
    assert_eq!(selects("{matchExpressions: [{key: tier, operator: Exists, values: []}]}"), [true, true, false]);
}

#[test]
fn match_labels_and_expressions_must_all_hold() {
    let yaml = "{matchLabels: {app: shop}, matchExpressions: [{key: tier, operator: NotIn, values: [web]}, {key: app, operator: Exists}]}";
    assert_eq!(selects(yaml), [false, true, false]);
}

/// The API server's rules for a built-in selector; before the shared
/// implementation the operator accepted the first three and an empty
/// `NotIn` selected every pod of the namespace.
#[test]
fn invalid_selectors_are_refused_with_the_field_and_the_reason() {
    let cases = [
        (
            "{matchExpressions: [{key: tier, operator: NotIn, values: []}]}",
            "spec.sources[2].podSelector.matchExpressions[0].values: must not be empty when the operator is NotIn",
        ),
        (
            "{matchExpressions: [{key: tier, operator: In}]}",
            "spec.sources[2].podSelector.matchExpressions[0].values: must not be empty when the operator is In",
        ),
        (
            "{matchExpressions: [{key: a, operator: Exists}, {key: tier, operator: Exists, values: [web]}]}",
            "spec.sources[2].podSelector.matchExpressions[1].values: must be empty when the operator is Exists",
        ),
        (
            "{matchExpressions: [{key: tier, operator: DoesNotExist, values: [web]}]}",
            "spec.sources[2].podSelector.matchExpressions[0].values: must be empty when the operator is DoesNotExist",
        ),
        (
            "{matchExpressions: [{key: tier, operator: Near, values: [web]}]}",
            "spec.sources[2].podSelector.matchExpressions[0].operator: \"Near\" is not one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            "{matchExpressions: [{key: tier, operator: in, values: [web]}]}",
            "matchExpressions[0].operator: \"in\" is not one of",
        ),
        (
            "{matchExpressions: [{key: '', operator: Exists}]}",
            "spec.sources[2].podSelector.matchExpressions[0].key: key \"\"",
        ),
        (
            "{matchExpressions: [{key: 'Bad_Prefix/x', operator: Exists}]}",
            "matchExpressions[0].key: key \"Bad_Prefix/x\": the prefix must be a DNS subdomain",
        ),
        (
            "{matchExpressions: [{key: tier, operator: In, values: ['not a value']}]}",
            "matchExpressions[0].values: value \"not a value\"",
        ),
        ("{matchLabels: {'-app': shop}}", "spec.sources[2].podSelector.matchLabels[\"-app\"]: key \"-app\""),
        ("{matchLabels: {app: 'shop!'}}", "spec.sources[2].podSelector.matchLabels[\"app\"]: value \"shop!\""),
    ];
    for (yaml, wanted) in cases {
        let err = parse(yaml).expect_err(yaml);
        assert!(err.contains(wanted), "{yaml}\n  got:    {err}\n  wanted: {wanted}");
    }
}

#[test]
fn qualified_keys_and_empty_values_are_valid() {
    assert_eq!(selects("{matchLabels: {app.kubernetes.io/name: shop}}"), [false, false, false]);
    let s = parse("{matchLabels: {example.com/role: ''}}").unwrap();
    assert!(s.matches(&labels(&[("example.com/role", "")])));
    assert!(!s.matches(&labels(&[])));
    let long = "x".repeat(64);
    assert!(parse(&format!("{{matchLabels: {{{long}: a}}}}")).is_err(), "a 64-character name is too long");
}

/// The assertions of the two implementations this one replaces (the
/// operator's `plan::cluster` and the standalone agent's `selector`), kept.
#[test]
fn the_replaced_implementations_assertions_still_hold() {
    // operator: plan::cluster::tests::selector_evaluates_labels_and_expressions
    let labels = labels(&[("app", "web"), ("tier", "front")]);
    let mut s = Selector::default();
    s.match_labels.insert("app".into(), "web".into());
    assert!(s.matches(&labels));
    s.expressions.push(SelectorExpr::NotIn("tier".into(), ["back".into()].into()));
    assert!(s.matches(&labels));
    s.expressions.push(SelectorExpr::DoesNotExist("tier".into()));
    assert!(!s.matches(&labels));
    let only_in = Selector {
        match_labels: BTreeMap::new(),
        expressions: vec![SelectorExpr::In("app".into(), ["db".into()].into())],
    };
    assert!(!only_in.matches(&labels));

    // standalone: selector::tests::match_labels_and_expressions
    let labels = self::labels(&[("app", "shop"), ("tier", "web")]);
    let m = |yaml: &str| parse(yaml).map(|s| s.matches(&labels));
    assert!(m("{matchLabels: {app: shop}}").unwrap());
    assert!(!m("{matchLabels: {app: db}}").unwrap());
    assert!(m("{matchExpressions: [{key: tier, operator: In, values: [web, api]}]}").unwrap());
    assert!(!m("{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}").unwrap());
    assert!(m("{matchExpressions: [{key: x, operator: DoesNotExist}]}").unwrap());
    assert!(!m("{matchExpressions: [{key: x, operator: Exists}]}").unwrap());
    assert!(m("{}").unwrap(), "an empty selector selects everything");
    let err = m("{matchExpressions: [{key: x, operator: Near}]}").unwrap_err();
    assert!(err.contains("spec.sources[2].podSelector.matchExpressions[0].operator"), "{err}");
}
