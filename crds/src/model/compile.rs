//! From API objects to the model's [`CompiledSession`]/[`CompiledRule`].
//!
//! Compilation is also validation: it refuses, naming the field, exactly what
//! the CRD's schema and CEL rules refuse in the API server (the schema tests
//! feed the same invalid objects to both), so an object that reached the
//! operator or the agent without an API server (the standalone mode, a
//! MirrorNodeState written by hand) is held to the same contract. On success
//! every omission is made explicit: an omitted CIDR is the family's /0,
//! protocol names are numbers (`All` is `None`), rules are sorted by priority.

use super::shaping::{check_flow_sampling, check_rate_limit};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    FilterRule, MirrorFilter, MirrorFilterSpec, MirrorSession, MirrorSessionSpec, NodeSession, PortRangeSpec,
    SessionTarget,
};
use crate::error::ModelError;
use crate::model::types::{CompiledRule, CompiledSession, IpFamily, PortRange, SessionKey, ipproto};

/// Rules per direction of one filter (docs/quotas.md, not raisable); the
/// one number lives with the other quotas.
pub const MAX_RULES_PER_DIRECTION: usize = crate::model::quota::RULES_PER_DIRECTION;
/// Entries of `spec.sources` (each a name or a selector; the quota on
/// resolved pods is the operator's business).
pub const MAX_SOURCE_ENTRIES: usize = 100;
pub const PRIORITY_RANGE: (i64, i64) = (1, 32766);
pub const VNI_RANGE: (i64, i64) = (0, 16_777_215);
pub const PACKET_LENGTH_RANGE: (i64, i64) = (64, 9216);
pub const PORT_RANGE: (i64, i64) = (1, 65535);
/// The longest `description` the schema allows.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// The longest CIDR string the schema allows (a valid one is at most 49).
pub const MAX_CIDR_LEN: usize = 64;

/// The protocol names a rule may use, and their numbers (`None` = any).
pub const PROTOCOL_NAMES: [(&str, Option<u8>); 6] = [
    ("TCP", Some(ipproto::TCP)),
    ("UDP", Some(ipproto::UDP)),
    ("ICMP", Some(ipproto::ICMP)),
    ("ICMPv6", Some(ipproto::ICMPV6)),
    ("SCTP", Some(ipproto::SCTP)),
    ("All", None),
];

/// Compile one rule list (`inboundRules` or `outboundRules`).
///
/// `field_prefix` is the list's path, e.g. `spec.inboundRules`; errors name
/// `<field_prefix>[i].<field>`. The result is sorted by priority.
pub fn compile_rules(list: &[FilterRule], field_prefix: &str) -> Result<Vec<CompiledRule>, ModelError> {
    if list.len() > MAX_RULES_PER_DIRECTION {
        return Err(ModelError::invalid(
            field_prefix,
            format!("{} rules, at most {MAX_RULES_PER_DIRECTION} are allowed", list.len()),
        ));
    }
    let mut compiled = Vec::with_capacity(list.len());
    for (index, rule) in list.iter().enumerate() {
        let field = format!("{field_prefix}[{index}]");
        let rule = compile_rule(rule, &field)?;
        if let Some(first) = compiled.iter().position(|c: &CompiledRule| c.priority == rule.priority) {
            return Err(ModelError::invalid(
                format!("{field}.priority"),
                format!(
                    "{} is already used by {field_prefix}[{first}]; priorities must be unique within the list",
                    rule.priority
                ),
            ));
        }
        compiled.push(rule);
    }
    compiled.sort_by_key(|r| r.priority);
    Ok(compiled)
}

/// Compile one rule; `field` is its path, e.g. `spec.inboundRules[2]`.
pub fn compile_rule(rule: &FilterRule, field: &str) -> Result<CompiledRule, ModelError> {
    let priority = ranged(rule.priority.into(), PRIORITY_RANGE, &format!("{field}.priority"))?;
    let protocol = parse_protocol(&rule.protocol, &format!("{field}.protocol"))?;
    let family = rule.ip_family;
    let source = parse_cidr(rule.source_cidr.as_deref(), family, &format!("{field}.sourceCIDR"))?;
    let destination = parse_cidr(rule.destination_cidr.as_deref(), family, &format!("{field}.destinationCIDR"))?;
    let source_ports = port_range(rule.source_ports.as_ref(), protocol, &format!("{field}.sourcePorts"))?;
    let destination_ports =
        port_range(rule.destination_ports.as_ref(), protocol, &format!("{field}.destinationPorts"))?;
    if let Some(description) = &rule.description
        && description.chars().count() > MAX_DESCRIPTION_LEN
    {
        return Err(ModelError::invalid(
            format!("{field}.description"),
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(CompiledRule {
        priority,
        action: rule.action,
        family,
        protocol,
        source,
        destination,
        source_ports,
        destination_ports,
    })
}

/// Both rule lists of a filter, checked and compiled: `(inbound, outbound)`.
pub fn compile_filter(spec: &MirrorFilterSpec) -> Result<(Vec<CompiledRule>, Vec<CompiledRule>), ModelError> {
    Ok((
        compile_rules(&spec.inbound_rules, "spec.inboundRules")?,
        compile_rules(&spec.outbound_rules, "spec.outboundRules")?,
    ))
}

/// A protocol name or number; `None` = any protocol (`All`).
///
/// Accepts what the CRD's schema accepts: one of the names (exact case), or
/// an integer 0..=255. A number written as a string (`"6"`) is refused, as
/// the schema's `pattern` refuses it.
pub fn parse_protocol(protocol: &IntOrString, field: &str) -> Result<Option<u8>, ModelError> {
    let bad = |shown: String| {
        ModelError::invalid(
            field,
            format!("{shown} is not TCP, UDP, ICMP, ICMPv6, SCTP, All or an IP protocol number 0..=255"),
        )
    };
    match protocol {
        IntOrString::Int(number) => u8::try_from(*number).map(Some).map_err(|_| bad(number.to_string())),
        IntOrString::String(text) => PROTOCOL_NAMES
            .iter()
            .find(|(name, _)| name == text)
            .map(|(_, number)| *number)
            .ok_or_else(|| bad(format!("{text:?}"))),
    }
}

/// A rule's CIDR, or the family's /0 when omitted; host bits are cleared.
///
/// Refuses what the Kubernetes CEL `isCIDR` refuses (zones, IPv4-mapped
/// IPv6), and a prefix of the other family.
fn parse_cidr(text: Option<&str>, family: IpFamily, field: &str) -> Result<IpNet, ModelError> {
    let Some(text) = text else {
        return Ok(family.any_net());
    };
    let net = match IpNet::from_str(text) {
        Ok(net) if text.len() <= MAX_CIDR_LEN && !text.contains('%') && !is_v4_mapped(&net.addr()) => net,
        _ => {
            return Err(ModelError::invalid(field, format!("{text} is not a valid {} prefix", family_name(family))));
        }
    };
    let actual = IpFamily::of(&net.addr());
    if actual != family {
        return Err(ModelError::invalid(
            field,
            format!("{text} is an {} prefix but the rule's ipFamily is {}", family_name(actual), family_name(family)),
        ));
    }
    Ok(net.trunc())
}

fn port_range(
    spec: Option<&PortRangeSpec>,
    protocol: Option<u8>,
    field: &str,
) -> Result<Option<PortRange>, ModelError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    if !protocol.is_some_and(ipproto::has_ports) {
        return Err(ModelError::invalid(
            field,
            "port ranges are only allowed with protocol TCP, UDP or SCTP (6, 17, 132)",
        ));
    }
    let from = ranged(spec.from.into(), PORT_RANGE, &format!("{field}.from"))?;
    let to = ranged(spec.to.into(), PORT_RANGE, &format!("{field}.to"))?;
    if from > to {
        return Err(ModelError::invalid(field, format!("from {from} is greater than to {to}")));
    }
    Ok(Some(PortRange { from, to }))
}

/// The checks of a MirrorSession spec that need no other object.
pub fn validate_session_spec(spec: &MirrorSessionSpec) -> Result<(), ModelError> {
    SessionParams::of_spec(spec).check("spec")?;
    check_rate_limit(spec.rate_limit.as_ref(), "spec")?;
    check_flow_sampling(spec.flow_sampling.as_ref(), "spec")?;
    non_empty_name(&spec.filter_ref.name, 253, "spec.filterRef.name")?;
    if spec.sources.is_empty() {
        return Err(ModelError::invalid("spec.sources", "at least one source (podName or podSelector) is required"));
    }
    if spec.sources.len() > MAX_SOURCE_ENTRIES {
        return Err(ModelError::invalid(
            "spec.sources",
            format!("{} entries, at most {MAX_SOURCE_ENTRIES} are allowed", spec.sources.len()),
        ));
    }
    for (index, source) in spec.sources.iter().enumerate() {
        let field = format!("spec.sources[{index}]");
        match (&source.pod_name, &source.pod_selector) {
            (Some(name), None) => non_empty_name(name, 253, &format!("{field}.podName"))?,
            (None, Some(_)) => {}
            _ => {
                return Err(ModelError::invalid(field, "needs exactly one of podName or podSelector"));
            }
        }
    }
    validate_target(&spec.target)?;
    match &spec.schedule {
        Some(schedule) => super::schedule::validate_schedule(schedule, "spec.schedule"),
        None => Ok(()),
    }
}

fn validate_target(target: &SessionTarget) -> Result<(), ModelError> {
    match (&target.service, &target.pod, &target.ip) {
        (Some(service), None, None) => {
            non_empty_name(&service.name, 63, "spec.target.service.name")?;
            match &service.namespace {
                Some(namespace) => non_empty_name(namespace, 63, "spec.target.service.namespace"),
                None => Ok(()),
            }
        }
        (None, Some(pod), None) => non_empty_name(&pod.name, 253, "spec.target.pod.name"),
        (None, None, Some(ip)) => parse_ip(ip, "spec.target.ip").map(|_| ()),
        _ => Err(ModelError::invalid("spec.target", "needs exactly one of service, pod or ip")),
    }
}

/// A MirrorSession with its MirrorFilter and its resolved target addresses,
/// as one source pod's datapath needs it.
///
/// A session without `metadata.namespace` (a file in the standalone mode) is
/// taken to be in `default`, as kubectl would.
pub fn compile_session(
    session: &MirrorSession,
    filter: &MirrorFilter,
    targets: &[IpAddr],
) -> Result<CompiledSession, ModelError> {
    validate_session_spec(&session.spec)?;
    let name = session
        .metadata
        .name
        .clone()
        .ok_or_else(|| ModelError::invalid("metadata.name", "a MirrorSession needs a name"))?;
    let namespace = session.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
    let filter_name = filter.metadata.name.as_deref().unwrap_or_default();
    if filter_name != session.spec.filter_ref.name {
        return Err(ModelError::invalid(
            "spec.filterRef.name",
            format!("refers to filter {:?}, but filter {filter_name:?} was given", session.spec.filter_ref.name),
        ));
    }
    let (inbound, outbound) = compile_filter(&filter.spec)?;
    let params = SessionParams::of_spec(&session.spec).check("spec")?;
    Ok(CompiledSession {
        key: SessionKey::new(namespace, name),
        priority: params.priority,
        enabled: session.spec.enabled,
        vni: params.vni,
        packet_length: params.packet_length,
        encapsulation: session.spec.encapsulation,
        target_port: params.target_port,
        targets: targets.to_vec(),
        rate_limit: check_rate_limit(session.spec.rate_limit.as_ref(), "spec")?,
        flow_sampling: check_flow_sampling(session.spec.flow_sampling.as_ref(), "spec")?,
        inbound,
        outbound,
    })
}

/// One session of a MirrorNodeState, as the agent programs it.
///
/// Errors name `sessions[<namespace>/<name>].<field>`.
pub fn compile_node_session(node_session: &NodeSession) -> Result<CompiledSession, ModelError> {
    let prefix = format!("sessions[{}/{}]", node_session.namespace, node_session.name);
    let params = SessionParams {
        priority: node_session.priority,
        vni: node_session.vni,
        packet_length: node_session.packet_length,
        target_port: node_session.target_port,
    }
    .check(&prefix)?;
    let targets = node_session
        .targets
        .iter()
        .enumerate()
        .map(|(index, target)| parse_ip(target, &format!("{prefix}.targets[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledSession {
        key: SessionKey::new(node_session.namespace.clone(), node_session.name.clone()),
        priority: params.priority,
        enabled: node_session.enabled,
        vni: params.vni,
        packet_length: params.packet_length,
        encapsulation: node_session.encapsulation,
        target_port: params.target_port,
        targets,
        rate_limit: check_rate_limit(node_session.rate_limit.as_ref(), &prefix)?,
        flow_sampling: check_flow_sampling(node_session.flow_sampling.as_ref(), &prefix)?,
        inbound: compile_rules(&node_session.inbound_rules, &format!("{prefix}.inboundRules"))?,
        outbound: compile_rules(&node_session.outbound_rules, &format!("{prefix}.outboundRules"))?,
    })
}

/// The numeric session fields shared by MirrorSession and NodeSession.
struct SessionParams {
    priority: i32,
    vni: i32,
    packet_length: Option<i32>,
    target_port: i32,
}

/// The same fields, checked and narrowed.
struct CheckedParams {
    priority: u16,
    vni: u32,
    packet_length: Option<u16>,
    target_port: u16,
}

impl SessionParams {
    fn of_spec(spec: &MirrorSessionSpec) -> Self {
        SessionParams {
            priority: spec.priority,
            vni: spec.vni,
            packet_length: spec.packet_length,
            target_port: spec.target_port,
        }
    }

    fn check(&self, prefix: &str) -> Result<CheckedParams, ModelError> {
        Ok(CheckedParams {
            priority: ranged(self.priority.into(), PRIORITY_RANGE, &format!("{prefix}.priority"))?,
            vni: ranged(self.vni.into(), VNI_RANGE, &format!("{prefix}.vni"))?,
            packet_length: self
                .packet_length
                .map(|len| ranged(len.into(), PACKET_LENGTH_RANGE, &format!("{prefix}.packetLength")))
                .transpose()?,
            target_port: ranged(self.target_port.into(), PORT_RANGE, &format!("{prefix}.targetPort"))?,
        })
    }
}

/// `value` if it lies in the inclusive `range`, narrowed to `T`.
fn ranged<T: TryFrom<i64>>(value: i64, (low, high): (i64, i64), field: &str) -> Result<T, ModelError> {
    let out_of_range = || ModelError::invalid(field, format!("{value} is out of range {low}..={high}"));
    if !(low..=high).contains(&value) {
        return Err(out_of_range());
    }
    T::try_from(value).map_err(|_| out_of_range())
}

fn non_empty_name(name: &str, max_len: usize, field: &str) -> Result<(), ModelError> {
    if name.is_empty() {
        return Err(ModelError::invalid(field, "must not be empty"));
    }
    if name.len() > max_len {
        return Err(ModelError::invalid(field, format!("at most {max_len} characters")));
    }
    Ok(())
}

/// An address as the Kubernetes CEL `isIP` accepts it (no zone, no IPv4-mapped IPv6).
fn parse_ip(text: &str, field: &str) -> Result<IpAddr, ModelError> {
    match IpAddr::from_str(text) {
        Ok(addr) if !is_v4_mapped(&addr) => Ok(addr),
        _ => Err(ModelError::invalid(field, format!("{text:?} is not an IPv4 or IPv6 address"))),
    }
}

fn is_v4_mapped(addr: &IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::IPv4 => "IPv4",
        IpFamily::IPv6 => "IPv6",
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
