#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use crate::plan::cluster::TargetRef;

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).unwrap()
}

#[test]
fn pod_reads_node_ips_and_terminal_phases() {
    let p: Pod = yaml(
        r#"
metadata: {name: ecs-source, namespace: team, uid: u1, labels: {app: src}}
spec: {nodeName: node-a, containers: []}
status: {phase: Running, podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]}
"#,
    );
    let info = pod(&p).unwrap();
    assert_eq!(info.node.as_deref(), Some("node-a"));
    assert_eq!(info.ips.len(), 2);
    assert!(!info.deleting);
    let done: Pod = yaml("metadata: {name: j, namespace: team, uid: u2}\nstatus: {phase: Succeeded, podIP: 10.0.0.6}");
    let info = pod(&done).unwrap();
    assert!(info.deleting, "a finished pod is not mirrored");
    assert_eq!(info.ips, vec!["10.0.0.6".parse::<IpAddr>().unwrap()]);
    let nameless: Pod = yaml("metadata: {namespace: team}");
    assert!(pod(&nameless).unwrap_err().to_string().contains("metadata.name"));
}

#[test]
fn endpoint_slice_keeps_ready_endpoints_and_their_pods() {
    let e: EndpointSlice = yaml(
        r#"
metadata: {name: collector-abc, namespace: obs, labels: {kubernetes.io/service-name: collector}}
addressType: IPv4
endpoints:
- addresses: [10.9.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: c-0, namespace: obs, uid: pu0}
- addresses: [10.9.0.2]
  conditions: {ready: false}
- addresses: [10.9.0.3]
"#,
    );
    let (svc, slice, eps) = endpoint_slice(&e).unwrap().unwrap();
    assert_eq!(svc, ObjKey::new("obs", "collector"));
    assert_eq!(slice, "collector-abc");
    let ips: Vec<String> = eps.iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(ips, vec!["10.9.0.1", "10.9.0.3"]);
    assert_eq!(eps[0].pod.as_ref().map(|p| p.uid()), Some("pu0"));
}

#[test]
fn service_consent_annotation() {
    let s: Service =
        yaml("metadata: {name: collector, namespace: obs, annotations: {podmirror.io/allow-mirror-from: 'team, qa'}}");
    let info = service(&s).unwrap();
    assert!(info.consent.allows("obs", "qa"));
    assert!(!info.consent.allows("obs", "other"));
}

#[test]
fn session_reads_spec_target_default_namespace_and_bad_selector() {
    let s: MirrorSession = yaml(
        r#"
metadata: {name: s, namespace: team, uid: su, generation: 3, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  priority: 1
  vni: 1
  filterRef: {name: f}
  sources:
  - podName: ecs-source
  - podSelector: {matchExpressions: [{key: app, operator: Near, values: [x]}]}
  target: {service: {name: collector}}
status:
  nodes: [{node: node-a, programmedInterfaces: [pmv1, pmv2]}]
"#,
    );
    let info = session(&s).unwrap();
    assert_eq!(info.generation, 3);
    assert_eq!(info.target, Some(TargetRef::Service { namespace: "team".into(), name: "collector".into() }));
    assert_eq!(info.target_port, 4789);
    assert!(info.enabled);
    assert_eq!(info.node_reports["node-a"].programmed_pods, 2);
    let why = info.invalid.unwrap();
    assert!(why.contains("spec.sources[1].podSelector.matchExpressions[0].operator"), "{why}");
}

/// Selectors the API server refuses for built-in objects refuse the session,
/// with the field and the reason; none becomes a source (an empty `NotIn`
/// used to select every pod of the namespace).
#[test]
fn a_selector_kubernetes_refuses_refuses_the_session() {
    let cases = [
        (
            "{key: app, operator: NotIn, values: []}",
            "spec.sources[0].podSelector.matchExpressions[0].values: must not be empty when the operator is NotIn",
        ),
        (
            "{key: app, operator: In}",
            "spec.sources[0].podSelector.matchExpressions[0].values: must not be empty when the operator is In",
        ),
        (
            "{key: app, operator: Exists, values: [x]}",
            "spec.sources[0].podSelector.matchExpressions[0].values: must be empty when the operator is Exists",
        ),
    ];
    for (expr, wanted) in cases {
        let s: MirrorSession = yaml(&format!(
            "metadata: {{name: s, namespace: team, uid: su}}\nspec: {{priority: 1, vni: 1, filterRef: {{name: f}}, \
             sources: [{{podSelector: {{matchExpressions: [{expr}]}}}}], target: {{ip: 10.0.0.1}}}}"
        ));
        let info = session(&s).unwrap();
        let why = info.invalid.unwrap_or_default();
        assert!(why.contains(wanted), "{expr}: {why}");
        assert!(info.sources.is_empty(), "{expr}: an invalid selector must select nothing: {:?}", info.sources);
    }
}

#[test]
fn filter_carries_the_models_compile_error() {
    let f: MirrorFilter = yaml(
        r#"
metadata: {name: f, namespace: team}
spec:
  inboundRules:
  - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, destinationCIDR: 10.0.0.0/33}
"#,
    );
    let info = filter(&f).unwrap();
    let why = info.invalid.unwrap();
    assert!(why.contains("spec.inboundRules[0].destinationCIDR"), "{why}");
}
