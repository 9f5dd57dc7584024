//! Tenant safety of `ip` targets: another namespace's pod or ClusterIP needs
//! its consent, and the cluster admin's CIDRs bound every `ip` target.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use podmirror_crds::api::SessionPhase;
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::quota::QuotaLimits as Limits;

use super::cluster::{Cluster, Consent, ServiceInfo, TargetPolicy, TargetRef};
use super::status::session_status;
use super::tests::{add, by_name, cond, ip, now, pod, seed_cluster, session};
use super::{AcceptedSet, plan};

fn with_ip_target(c: &mut Cluster, target: &str) -> SessionKey {
    add(c, session("team", "s", "t1", 1, 1, by_name("ecs-source"), TargetRef::Ip(target.into())));
    SessionKey::new("team", "s")
}

/// The TargetResolved condition and whether anything reached a node.
fn outcome(c: &Cluster, key: &SessionKey) -> (String, String, String, bool) {
    let p = plan(c, AcceptedSet::new(), &Limits::default());
    let st = session_status(&c.sessions[key], &p.sessions[key], &[], &now());
    let t = cond(&st, "TargetResolved");
    let programmed = p.nodes.values().any(|n| !n.sessions.is_empty());
    (t.status.clone(), t.reason.clone(), t.message.clone(), programmed)
}

#[test]
fn a_pod_ip_of_another_namespace_needs_the_pods_consent() {
    let mut c = seed_cluster();
    c.add_pod(pod("obs", "collector-0", "node-b", "10.8.0.5", "collector"));
    let key = with_ip_target(&mut c, "10.8.0.5");
    let (status, reason, message, programmed) = outcome(&c, &key);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "TargetNotConsented"));
    for part in
        ["spec.target.ip", "10.8.0.5", "pod obs/collector-0", "namespace obs", "from namespace team", "on the pod"]
    {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    assert!(!programmed, "nothing may be sent to an unconsenting pod");
    let p = plan(&c, AcceptedSet::new(), &Limits::default());
    let st = session_status(&c.sessions[&key], &p.sessions[&key], &[], &now());
    assert_eq!(st.phase, Some(SessionPhase::Degraded));

    // The pod's annotation names the namespace: allowed.
    c.pods.get_mut("obs").unwrap().get_mut("collector-0").unwrap().consent = Consent::parse(Some("team"));
    let (status, _, _, programmed) = outcome(&c, &key);
    assert_eq!(status, "True");
    assert!(programmed);
}

#[test]
fn own_namespace_and_host_network_and_outside_addresses_need_no_consent() {
    let mut c = seed_cluster();
    // A pod of the session's own namespace (ecs-target, 192.168.0.12).
    let key = with_ip_target(&mut c, "192.168.0.12");
    assert_eq!(outcome(&c, &key).0, "True");
    // A host-network pod of another namespace: its address is its node's.
    let mut hn = pod("kube-system", "proxy", "node-b", "172.18.0.3", "proxy");
    hn.host_network = true;
    c.add_pod(hn);
    c.sessions.clear();
    let key = with_ip_target(&mut c, "172.18.0.3");
    assert_eq!(outcome(&c, &key).0, "True");
}

#[test]
fn a_cluster_ip_of_another_namespace_needs_the_services_consent() {
    let mut c = seed_cluster();
    c.add_service(ServiceInfo {
        namespace: "obs".into(),
        name: "collector".into(),
        consent: Consent::OwnNamespace,
        cluster_ips: vec![ip("10.96.0.40"), ip("fd00:96::40")],
    });
    let key = with_ip_target(&mut c, "fd00:96::40");
    let (status, reason, message, programmed) = outcome(&c, &key);
    assert_eq!((status.as_str(), reason.as_str(), programmed), ("False", "TargetNotConsented", false));
    for part in
        ["fd00:96::40", "ClusterIP of service obs/collector", "namespace obs", "from namespace team", "on the service"]
    {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    c.services.get_mut(&super::cluster::ObjKey::new("obs", "collector")).unwrap().consent = Consent::Any;
    assert_eq!(outcome(&c, &key).0, "True");
}

#[test]
fn the_admins_cidrs_bound_every_ip_target_and_the_refusal_names_them() {
    let mut c = seed_cluster();
    c.target_policy = TargetPolicy::parse("10.0.0.0/8, fd00::/8").unwrap();
    let key = with_ip_target(&mut c, "203.0.113.9");
    let (status, reason, message, programmed) = outcome(&c, &key);
    assert_eq!((status.as_str(), reason.as_str(), programmed), ("False", "TargetIPNotAllowed", false));
    for part in
        ["spec.target.ip", "203.0.113.9", "session namespace team", "10.0.0.0/8, fd00::/8", "--allowed-target-cidrs"]
    {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    // Even the session's own pods are bound by the CIDRs (ecs-target is 192.168.0.12).
    c.sessions.clear();
    let key = with_ip_target(&mut c, "192.168.0.12");
    assert_eq!(outcome(&c, &key).1, "TargetIPNotAllowed");
    c.sessions.clear();
    let key = with_ip_target(&mut c, "10.1.2.3");
    assert_eq!(outcome(&c, &key).0, "True");
    // Empty: any address.
    c.target_policy = TargetPolicy::default();
    c.sessions.clear();
    let key = with_ip_target(&mut c, "203.0.113.9");
    assert_eq!(outcome(&c, &key).0, "True");
}
