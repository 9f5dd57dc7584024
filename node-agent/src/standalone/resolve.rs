//! From the objects of the standalone directory to this node's desired
//! state (a `MirrorNodeStateSpec`, the same shape the operator publishes).
//!
//! Two kinds of trouble, two answers, as in the cluster:
//! - what the API server would refuse (syntax, schema bounds, CEL rules,
//!   duplicates) makes the whole load fail: the caller keeps the
//!   configuration in force;
//! - what the operator would refuse for one session (a missing filter, pod or
//!   Service, no consent, a quota) refuses that session only; if it was
//!   accepted before, it keeps mirroring as it was accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use podmirror_crds::ModelError;
use podmirror_crds::api::{MirrorFilter, MirrorNodeStateSpec, MirrorSession, NodePod, NodeSession, SessionSchedule};
use podmirror_crds::model::SessionKey;
use podmirror_crds::model::compile::{compile_filter, compile_node_session, validate_session_spec};
use podmirror_crds::model::quota::{
    FilterKey, PodId, QuotaInput, QuotaLimits, QuotaVerdict, ResolvedTarget, RuleCounts, SessionQuotaFacts,
    SessionQuotaInput, evaluate_quotas,
};
use podmirror_crds::model::selector::Selector;

use super::files::{Loaded, Sourced};
use super::inventory::CheckedInventory;
use crate::core::{AgentError, PodKey};

/// The annotation by which a Service consents to copies from other namespaces.
pub const ALLOW_MIRROR_FROM: &str = "podmirror.io/allow-mirror-from";

/// A session as last accepted: what it mirrors and its quota facts.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub facts: SessionQuotaFacts,
    pub node_session: NodeSession,
    pub sources: Vec<PodKey>,
}

/// The outcome of one successful load.
#[derive(Debug, Default)]
pub struct Resolution {
    pub node_state: MirrorNodeStateSpec,
    /// Explicit host interfaces from the inventory (`interface:`), by pod.
    pub interfaces: BTreeMap<PodKey, String>,
    /// The sessions in force after this load (pass back in next time).
    pub accepted: BTreeMap<SessionKey, Accepted>,
    /// Sessions refused (new ones) or whose change was refused (kept as before).
    pub refusals: Vec<AgentError>,
    /// `spec.schedule` of the sessions that have one: the loop programs a
    /// session only inside its window (`standalone::schedule`).
    pub schedules: BTreeMap<SessionKey, SessionSchedule>,
}

fn namespace_of(meta_ns: &Option<String>) -> String {
    meta_ns.clone().unwrap_or_else(|| "default".to_string())
}

fn object_error<T>(sourced: &Sourced<T>, kind: &str, name: &str, error: ModelError) -> AgentError {
    let ModelError::Invalid { field, reason } = error;
    AgentError::Invalid {
        path: sourced.path.clone(),
        object: if sourced.document == 0 {
            format!("{kind} {name}")
        } else {
            format!("document {}: {kind} {name}", sourced.document + 1)
        },
        field,
        message: reason,
    }
}

fn refusal(key: &SessionKey, field: &str, message: impl Into<String>) -> AgentError {
    AgentError::Config { object: format!("MirrorSession {key}"), field: field.to_string(), message: message.into() }
}

/// Resolve a load against the sessions accepted before it.
pub fn resolve(
    loaded: &Loaded,
    previous: &BTreeMap<SessionKey, Accepted>,
    node: &str,
    limits: QuotaLimits,
) -> Result<Resolution, AgentError> {
    // 1. What the API server would refuse: the whole load fails.
    let mut filters: BTreeMap<FilterKey, &MirrorFilter> = BTreeMap::new();
    let mut rule_counts: BTreeMap<FilterKey, RuleCounts> = BTreeMap::new();
    for sourced in &loaded.filters {
        let filter = &sourced.object;
        let name = filter.metadata.name.clone().unwrap_or_default();
        compile_filter(&filter.spec).map_err(|e| object_error(sourced, "MirrorFilter", &name, e))?;
        let key = FilterKey::new(namespace_of(&filter.metadata.namespace), name.clone());
        rule_counts.insert(
            key.clone(),
            RuleCounts { inbound: filter.spec.inbound_rules.len(), outbound: filter.spec.outbound_rules.len() },
        );
        if filters.insert(key.clone(), filter).is_some() {
            return Err(object_error(
                sourced,
                "MirrorFilter",
                &name,
                ModelError::invalid("metadata.name", format!("{}/{} is defined twice", key.namespace, key.name)),
            ));
        }
    }
    let mut sessions: Vec<(SessionKey, &Sourced<MirrorSession>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for sourced in &loaded.sessions {
        let session = &sourced.object;
        let name = session.metadata.name.clone().unwrap_or_default();
        validate_session_spec(&session.spec).map_err(|e| object_error(sourced, "MirrorSession", &name, e))?;
        let key = SessionKey::new(namespace_of(&session.metadata.namespace), name.clone());
        if !seen.insert(key.clone()) {
            return Err(object_error(
                sourced,
                "MirrorSession",
                &name,
                ModelError::invalid("metadata.name", format!("{key} is defined twice")),
            ));
        }
        sessions.push((key, sourced));
    }

    // 2. What the operator would refuse for one session.
    let mut candidates: BTreeMap<SessionKey, Accepted> = BTreeMap::new();
    let mut refusals = Vec::new();
    for (key, sourced) in &sessions {
        match candidate(key, &sourced.object, &filters, &loaded.inventory) {
            Ok(accepted) => {
                candidates.insert(key.clone(), accepted);
            }
            Err(error) => refusals.push(error),
        }
    }

    // 3. Quotas, with the previously accepted sessions as incumbents.
    let order: BTreeMap<&SessionKey, i64> =
        sessions.iter().enumerate().map(|(i, (k, _))| (k, i64::try_from(i).unwrap_or(i64::MAX))).collect();
    let mut input = QuotaInput { sessions: Vec::new(), filter_rules: rule_counts, limits };
    let mut in_force: BTreeMap<SessionKey, Accepted> = BTreeMap::new();
    for (key, _) in &sessions {
        let last = previous.get(key);
        let current = match (candidates.get(key), last) {
            (Some(c), _) => c.facts.clone(),
            // Unresolvable now but accepted before: it keeps its old facts.
            (None, Some(last)) => last.facts.clone(),
            (None, None) => continue,
        };
        input.sessions.push(SessionQuotaInput {
            key: key.clone(),
            created: order.get(key).copied().unwrap_or(i64::MAX),
            current,
            last_accepted: last.map(|l| l.facts.clone()),
        });
    }
    let report = evaluate_quotas(&input);
    for quota_input in &input.sessions {
        let key = &quota_input.key;
        let verdict = report.verdict(key).cloned().unwrap_or(QuotaVerdict::Accepted);
        let chosen = match (&verdict, candidates.get(key), previous.get(key)) {
            (QuotaVerdict::Accepted, Some(c), _) => Some(c.clone()),
            (QuotaVerdict::Accepted, None, Some(last)) => Some(last.clone()),
            (QuotaVerdict::RefusedChange(_), _, Some(last)) => Some(last.clone()),
            _ => None,
        };
        if let Some(r) = verdict.refusal() {
            let kept = if chosen.is_some() { " (keeps mirroring as last accepted)" } else { "" };
            refusals.push(refusal(key, "spec", format!("quota {}: {}{kept}", r.quota, r.message)));
        }
        if let Some(chosen) = chosen {
            in_force.insert(key.clone(), chosen);
        }
    }

    // 4. The node state of what is in force; pods come from the current inventory.
    let mut pod_sessions: BTreeMap<PodKey, Vec<String>> = BTreeMap::new();
    for (key, accepted) in &in_force {
        for pod in &accepted.sources {
            pod_sessions.entry(pod.clone()).or_default().push(key.to_string());
        }
    }
    let mut pods = Vec::new();
    let mut interfaces = BTreeMap::new();
    for (pod, names) in pod_sessions {
        let Some(entry) = loaded.inventory.pods.get(&pod) else { continue };
        if let Some(interface) = &entry.interface {
            interfaces.insert(pod.clone(), interface.clone());
        }
        pods.push(NodePod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: String::new(),
            ips: entry.ips.iter().map(IpAddr::to_string).collect(),
            sessions: names,
        });
    }
    let node_state = MirrorNodeStateSpec {
        node: node.to_string(),
        sessions: in_force.values().map(|a| a.node_session.clone()).collect(),
        pods,
    };
    let schedules = sessions
        .iter()
        .filter_map(|(key, sourced)| sourced.object.spec.schedule.clone().map(|s| (key.clone(), s)))
        .collect();
    Ok(Resolution { node_state, interfaces, accepted: in_force, refusals, schedules })
}

/// Resolves one session's references; an error refuses this session only.
fn candidate(
    key: &SessionKey,
    session: &MirrorSession,
    filters: &BTreeMap<FilterKey, &MirrorFilter>,
    inventory: &CheckedInventory,
) -> Result<Accepted, AgentError> {
    let spec = &session.spec;
    let filter_key = FilterKey::new(key.namespace.clone(), spec.filter_ref.name.clone());
    let filter = filters.get(&filter_key).ok_or_else(|| {
        refusal(
            key,
            "spec.filterRef.name",
            format!("no MirrorFilter {}/{} in the directory", key.namespace, spec.filter_ref.name),
        )
    })?;

    let mut sources: BTreeSet<PodKey> = BTreeSet::new();
    for (index, source) in spec.sources.iter().enumerate() {
        if let Some(name) = &source.pod_name {
            let pod = PodKey::new(key.namespace.clone(), name.clone());
            if !inventory.pods.contains_key(&pod) {
                return Err(refusal(
                    key,
                    &format!("spec.sources[{index}].podName"),
                    format!("no pod {pod} in standalone.yaml"),
                ));
            }
            sources.insert(pod);
        } else if let Some(selector) = &source.pod_selector {
            // Checked before any pod is looked at: an invalid selector refuses
            // the session even where no pod could be matched against it.
            let field = format!("spec.sources[{index}].podSelector");
            let selector = Selector::parse(selector, &field).map_err(|e| {
                let ModelError::Invalid { field, reason } = e;
                refusal(key, &field, reason)
            })?;
            for entry in inventory.pods.values().filter(|p| p.key.namespace == key.namespace) {
                if selector.matches(&entry.labels) {
                    sources.insert(entry.key.clone());
                }
            }
        }
    }
    if sources.is_empty() {
        return Err(refusal(key, "spec.sources", "selects no pod of standalone.yaml"));
    }

    let (target, targets) = resolve_target(key, session, inventory)?;
    let pod_id = |p: &PodKey| PodId::new(p.to_string(), p.namespace.clone(), p.name.clone());
    let facts = SessionQuotaFacts {
        filters: vec![spec.filter_ref.name.clone()],
        priority: u16::try_from(spec.priority).unwrap_or(u16::MAX),
        vni: u32::try_from(spec.vni).unwrap_or(u32::MAX),
        sources: sources.iter().map(pod_id).collect(),
        targets: vec![target],
    };
    let node_session = NodeSession {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        uid: session.metadata.uid.clone().unwrap_or_default(),
        generation: session.metadata.generation.unwrap_or(0),
        priority: spec.priority,
        enabled: spec.enabled,
        vni: spec.vni,
        packet_length: spec.packet_length,
        encapsulation: spec.encapsulation,
        target_port: spec.target_port,
        rate_limit: spec.rate_limit,
        flow_sampling: spec.flow_sampling,
        targets: targets.iter().map(IpAddr::to_string).collect(),
        inbound_rules: filter.spec.inbound_rules.clone(),
        outbound_rules: filter.spec.outbound_rules.clone(),
    };
    // The node state must compile as the agent will compile it.
    compile_node_session(&node_session).map_err(|e| refusal(key, e.field(), e.to_string()))?;
    Ok(Accepted { facts, node_session, sources: sources.into_iter().collect() })
}

fn resolve_target(
    key: &SessionKey,
    session: &MirrorSession,
    inventory: &CheckedInventory,
) -> Result<(ResolvedTarget, Vec<IpAddr>), AgentError> {
    let target = &session.spec.target;
    let pod_id = |p: &PodKey| PodId::new(p.to_string(), p.namespace.clone(), p.name.clone());
    if let Some(service) = &target.service {
        let namespace = service.namespace.clone().unwrap_or_else(|| key.namespace.clone());
        let entry = inventory.services.get(&(namespace.clone(), service.name.clone())).ok_or_else(|| {
            refusal(
                key,
                "spec.target.service.name",
                format!("no service {namespace}/{} in standalone.yaml", service.name),
            )
        })?;
        if namespace != key.namespace {
            let allowed = entry
                .annotations
                .get(ALLOW_MIRROR_FROM)
                .is_some_and(|list| list.split(',').map(str::trim).any(|ns| ns == "*" || ns == key.namespace));
            if !allowed {
                return Err(refusal(
                    key,
                    "spec.target.service",
                    format!(
                        "service {namespace}/{} does not allow copies from namespace {} (annotation {ALLOW_MIRROR_FROM})",
                        service.name, key.namespace
                    ),
                ));
            }
        }
        if entry.addresses.is_empty() {
            return Err(refusal(
                key,
                "spec.target.service",
                format!("service {namespace}/{} has no addresses", service.name),
            ));
        }
        let endpoint_pods = entry.endpoints.iter().map(|n| pod_id(&PodKey::new(namespace.clone(), n.clone())));
        return Ok((
            ResolvedTarget::service(namespace.clone(), service.name.clone(), endpoint_pods),
            entry.addresses.clone(),
        ));
    }
    if let Some(pod) = &target.pod {
        let pod_key = PodKey::new(key.namespace.clone(), pod.name.clone());
        let entry = inventory
            .pods
            .get(&pod_key)
            .ok_or_else(|| refusal(key, "spec.target.pod.name", format!("no pod {pod_key} in standalone.yaml")))?;
        let ip = entry.ips.first().copied().ok_or_else(|| {
            refusal(key, "spec.target.pod.name", format!("pod {pod_key} has no IP in standalone.yaml"))
        })?;
        return Ok((ResolvedTarget::pod(pod_id(&pod_key)), vec![ip]));
    }
    if let Some(ip) = &target.ip {
        let ip: IpAddr =
            ip.parse().map_err(|_| refusal(key, "spec.target.ip", format!("{ip:?} is not an IP address")))?;
        // A collector IP that is one of our pods is that pod, for the
        // "a source may not be a target" rule.
        let owner = inventory.pods.values().find(|p| p.ips.contains(&ip)).map(|p| pod_id(&p.key));
        let mut resolved = ResolvedTarget::ip(ip);
        resolved.pods.extend(owner);
        return Ok((resolved, vec![ip]));
    }
    Err(refusal(key, "spec.target", "needs exactly one of service, pod or ip"))
}
