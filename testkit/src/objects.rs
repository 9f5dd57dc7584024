//! Builders for the API objects the operator's and the plugin's tests read,
//! so a test states only what it is about:
//! `session("a").vni(10).filter("f").target_ip("10.9.0.1").build()`.
//!
//! Each starts from the seed scenario (docs/concepts.md): namespace
//! `default`, a session of priority 1 and VNI 1 mirroring pod `ecs-source`
//! to pod `ecs-target` through filter `mirror-filter-a`. Fields not set stay
//! as the API's defaults, exactly as a YAML object that omits them reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podmirror_crds::api::session::DEFAULT_TARGET_PORT;
use podmirror_crds::api::{
    FilterRef, FilterRule, MirrorFilter, MirrorFilterSpec, MirrorSession, MirrorSessionSpec, MirrorSessionStatus,
    PodTarget, PortRangeSpec, ServiceTarget, SessionSchedule, SessionSource, SessionTarget,
};
use podmirror_crds::model::{Action, Encapsulation, IpFamily};

/// An RFC 3339 timestamp of a fixture (a literal: a bad one is a bug of the test).
fn time(rfc3339: &str) -> Time {
    match rfc3339.parse() {
        Ok(t) => Time(t),
        Err(e) => panic!("fixture timestamp {rfc3339:?}: {e}"),
    }
}

/// Metadata setters shared by every builder: `self.meta()` is the object's.
pub trait Meta: Sized {
    fn meta(&mut self) -> &mut ObjectMeta;

    fn namespace(mut self, namespace: &str) -> Self {
        self.meta().namespace = Some(namespace.into());
        self
    }
    fn uid(mut self, uid: &str) -> Self {
        self.meta().uid = Some(uid.into());
        self
    }
    fn generation(mut self, generation: i64) -> Self {
        self.meta().generation = Some(generation);
        self
    }
    fn resource_version(mut self, version: &str) -> Self {
        self.meta().resource_version = Some(version.into());
        self
    }
    fn created(mut self, rfc3339: &str) -> Self {
        self.meta().creation_timestamp = Some(time(rfc3339));
        self
    }
    fn deleting(mut self, rfc3339: &str) -> Self {
        self.meta().deletion_timestamp = Some(time(rfc3339));
        self
    }
    fn finalizer(mut self, finalizer: &str) -> Self {
        self.meta().finalizers.get_or_insert_with(Vec::new).push(finalizer.into());
        self
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.meta().labels.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
        self
    }
    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.meta().annotations.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
        self
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: namespace.map(Into::into), ..ObjectMeta::default() }
}

/// A MirrorSession under construction; see [`session`].
pub struct SessionBuilder(MirrorSession);

/// The seed session named `name` (see the module's documentation).
pub fn session(name: &str) -> SessionBuilder {
    SessionBuilder(MirrorSession {
        metadata: meta(name, Some("default")),
        spec: MirrorSessionSpec {
            priority: 1,
            vni: 1,
            packet_length: None,
            enabled: true,
            filter_ref: FilterRef { name: "mirror-filter-a".into() },
            sources: vec![SessionSource { pod_name: Some("ecs-source".into()), pod_selector: None }],
            target: SessionTarget { pod: Some(PodTarget { name: "ecs-target".into() }), ..SessionTarget::default() },
            encapsulation: Encapsulation::default(),
            target_port: DEFAULT_TARGET_PORT,
            rate_limit: None,
            flow_sampling: None,
            schedule: None,
        },
        status: None,
    })
}

impl Meta for SessionBuilder {
    fn meta(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl SessionBuilder {
    pub fn priority(mut self, priority: i32) -> Self {
        self.0.spec.priority = priority;
        self
    }
    pub fn vni(mut self, vni: i32) -> Self {
        self.0.spec.vni = vni;
        self
    }
    pub fn packet_length(mut self, bytes: i32) -> Self {
        self.0.spec.packet_length = Some(bytes);
        self
    }
    pub fn filter(mut self, name: &str) -> Self {
        self.0.spec.filter_ref = FilterRef { name: name.into() };
        self
    }
    /// The one source: the pod `name`.
    pub fn source_pod(mut self, name: &str) -> Self {
        self.0.spec.sources = vec![SessionSource { pod_name: Some(name.into()), pod_selector: None }];
        self
    }
    pub fn target_pod(mut self, name: &str) -> Self {
        self.0.spec.target = SessionTarget { pod: Some(PodTarget { name: name.into() }), ..SessionTarget::default() };
        self
    }
    pub fn target_ip(mut self, ip: &str) -> Self {
        self.0.spec.target = SessionTarget { ip: Some(ip.into()), ..SessionTarget::default() };
        self
    }
    /// A Service target; `namespace` `None` is the session's own.
    pub fn target_service(mut self, name: &str, namespace: Option<&str>) -> Self {
        let service = ServiceTarget { name: name.into(), namespace: namespace.map(Into::into) };
        self.0.spec.target = SessionTarget { service: Some(service), ..SessionTarget::default() };
        self
    }
    /// `spec.schedule`: a start time (RFC 3339) and a duration (`10m`).
    pub fn schedule(mut self, start: Option<&str>, duration: Option<&str>) -> Self {
        self.0.spec.schedule =
            Some(SessionSchedule { start_time: start.map(time), stop_time: None, duration: duration.map(Into::into) });
        self
    }
    pub fn status(mut self, status: MirrorSessionStatus) -> Self {
        self.0.status = Some(status);
        self
    }
    pub fn build(self) -> MirrorSession {
        self.0
    }
    pub fn arc(self) -> Arc<MirrorSession> {
        Arc::new(self.0)
    }
}

/// A MirrorFilter under construction; see [`filter`].
pub struct FilterBuilder(MirrorFilter);

/// A filter named `name` in `default`, with no rules yet.
pub fn filter(name: &str) -> FilterBuilder {
    FilterBuilder(MirrorFilter {
        metadata: meta(name, Some("default")),
        spec: MirrorFilterSpec { inbound_rules: vec![], outbound_rules: vec![] },
        status: None,
    })
}

impl Meta for FilterBuilder {
    fn meta(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl FilterBuilder {
    pub fn inbound(mut self, rule: RuleBuilder) -> Self {
        self.0.spec.inbound_rules.push(rule.0);
        self
    }
    pub fn outbound(mut self, rule: RuleBuilder) -> Self {
        self.0.spec.outbound_rules.push(rule.0);
        self
    }
    pub fn build(self) -> MirrorFilter {
        self.0
    }
    pub fn arc(self) -> Arc<MirrorFilter> {
        Arc::new(self.0)
    }
}

/// A filter rule under construction; see [`accept`].
pub struct RuleBuilder(FilterRule);

/// A rule accepting every IPv4 packet, at `priority`.
pub fn accept(priority: i32) -> RuleBuilder {
    RuleBuilder(FilterRule {
        priority,
        action: Action::Accept,
        protocol: IntOrString::String("All".into()),
        ip_family: IpFamily::IPv4,
        source_cidr: None,
        destination_cidr: None,
        source_ports: None,
        destination_ports: None,
        description: None,
    })
}

impl RuleBuilder {
    pub fn reject(mut self) -> Self {
        self.0.action = Action::Reject;
        self
    }
    /// `TCP`, `UDP`, ... as the API spells them.
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.0.protocol = IntOrString::String(protocol.into());
        self
    }
    pub fn from_cidr(mut self, cidr: &str) -> Self {
        self.0.source_cidr = Some(cidr.into());
        self
    }
    pub fn to_cidr(mut self, cidr: &str) -> Self {
        self.0.destination_cidr = Some(cidr.into());
        self
    }
    pub fn to_port(mut self, port: i32) -> Self {
        self.0.destination_ports = Some(PortRangeSpec { from: port, to: port });
        self
    }
}

/// A Pod under construction; see [`pod`].
pub struct PodBuilder(Pod);

/// A pod named `name` in `default` with an empty spec and no status.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(Pod { metadata: meta(name, Some("default")), spec: Some(PodSpec::default()), status: None })
}

impl Meta for PodBuilder {
    fn meta(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl PodBuilder {
    pub fn node(mut self, node: &str) -> Self {
        self.0.spec.get_or_insert_with(PodSpec::default).node_name = Some(node.into());
        self
    }
    /// Running with `ip` as its `status.podIP`, as a kubelet reports it.
    pub fn running(mut self, ip: &str) -> Self {
        self.0.status =
            Some(PodStatus { phase: Some("Running".into()), pod_ip: Some(ip.into()), ..PodStatus::default() });
        self
    }
    pub fn build(self) -> Pod {
        self.0
    }
    pub fn arc(self) -> Arc<Pod> {
        Arc::new(self.0)
    }
}

/// A Node named `name`.
pub fn node(name: &str) -> Arc<Node> {
    Arc::new(Node { metadata: meta(name, None), ..Node::default() })
}
