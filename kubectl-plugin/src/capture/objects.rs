//! The MirrorFilter and MirrorSession a capture creates: pure functions
//! from the user's flags and what the cluster already holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use podmirror_crds::model::ipproto;
use serde_json::{Value, json};

use crate::error::PluginError;

/// Capture sessions take VNIs from here up, far from the small numbers
/// people pick by hand, so a capture rarely meets a VNIClash.
pub const CAPTURE_VNI_FIRST: u32 = 16_000_000;
pub const MAX_VNI: u32 = 16_777_215;
/// The lowest precedence a session can have: by default a capture only
/// sees packets no existing session of the pod copies, so it never takes
/// copies away from them (a packet is copied once per pod).
pub const LOWEST_PRIORITY: u16 = 32766;
/// Every object a capture creates carries this label (with the capture's
/// name as value), so leftovers can be found: `kubectl get ms,mf -l podmirror.io/capture`.
pub const CAPTURE_LABEL: &str = "podmirror.io/capture";

/// Which pods to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pods {
    Named(String),
    /// `matchLabels` parsed from `-l a=b,c=d`.
    Selected(BTreeMap<String, String>),
}

/// What a capture copies of its pods' traffic: the filter's rules. Neither
/// direction given means both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    pub inbound: bool,
    pub outbound: bool,
    pub protocol: Option<u8>,
    /// Either side's port (needs a protocol with ports).
    pub port: Option<u16>,
}

/// Everything decided before the first write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturePlan {
    pub name: String,
    pub namespace: String,
    pub pods: Pods,
    pub filter: CaptureFilter,
    pub duration: Duration,
    pub priority: u16,
    pub vni: u32,
    pub snaplen: Option<u16>,
    pub collector_namespace: String,
    pub collector_service: String,
}

/// `-l app=shop,tier=web` (equality only: that is what a session's
/// `matchLabels` can say).
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, PluginError> {
    let mut labels = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once("==")
            .or_else(|| part.split_once('='))
            .filter(|(k, _)| !k.is_empty() && !k.ends_with('!'))
            .ok_or_else(|| {
                PluginError::bad(
                    "-l",
                    format!("{part:?}: only key=value terms are supported (a session's matchLabels)"),
                )
            })?;
        labels.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    if labels.is_empty() {
        return Err(PluginError::bad("-l", "the selector is empty"));
    }
    Ok(labels)
}

/// `90s`, `5m`, `1h`, `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, PluginError> {
    let bad = || PluginError::bad("--duration", format!("{text:?} is not a duration like 90s, 5m or 1h"));
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        total = total.saturating_add(digits.parse::<u64>().map_err(|_| bad())?);
    }
    if total == 0 {
        return Err(PluginError::bad("--duration", "must be longer than 0s"));
    }
    Ok(Duration::from_secs(total))
}

/// The lowest VNI from [`CAPTURE_VNI_FIRST`] that no session uses.
pub fn free_vni(used: &BTreeSet<i64>) -> Result<u32, PluginError> {
    (CAPTURE_VNI_FIRST..=MAX_VNI)
        .find(|v| !used.contains(&i64::from(*v)))
        .ok_or_else(|| PluginError::bad("VNI", "every capture VNI is in use"))
}

/// The requested priority, or the lowest precedence free among the
/// sessions of the pod (equal priorities on one pod are refused).
pub fn free_priority(requested: Option<u16>, used: &BTreeSet<i64>) -> Result<u16, PluginError> {
    if let Some(p) = requested {
        if !(1..=LOWEST_PRIORITY).contains(&p) {
            return Err(PluginError::bad("--priority", format!("{p} is out of range 1..=32766")));
        }
        if used.contains(&i64::from(p)) {
            return Err(PluginError::bad(
                "--priority",
                format!("{p} is already used by a session of this pod; priorities must differ"),
            ));
        }
        return Ok(p);
    }
    (1..=LOWEST_PRIORITY)
        .rev()
        .find(|p| !used.contains(&i64::from(*p)))
        .ok_or_else(|| PluginError::bad("--priority", "no free priority"))
}

/// The filter's rules of one direction: both IP families, and with
/// `--port` one rule for each side of the connection.
fn rules(filter: &CaptureFilter) -> Result<Vec<Value>, PluginError> {
    let protocol = match filter.protocol {
        None => json!("All"),
        Some(p) => json!(p),
    };
    if filter.port.is_some() && !filter.protocol.is_some_and(ipproto::has_ports) {
        return Err(PluginError::bad("--port", "needs --proto tcp, udp or sctp"));
    }
    let sides: &[Option<&str>] = match filter.port {
        Some(_) => &[Some("sourcePorts"), Some("destinationPorts")],
        None => &[None],
    };
    let mut out = Vec::new();
    for family in ["IPv4", "IPv6"] {
        for side in sides {
            let mut rule = json!({
                "priority": out.len() + 1,
                "action": "Accept",
                "protocol": protocol,
                "ipFamily": family,
                "description": "kubectl podmirror capture",
            });
            if let (Some(side), Some(port)) = (side, filter.port) {
                rule[*side] = json!({"from": port, "to": port});
            }
            out.push(rule);
        }
    }
    Ok(out)
}

fn metadata(plan: &CapturePlan) -> Value {
    json!({
        "name": plan.name,
        "namespace": plan.namespace,
        "labels": {
            "app.kubernetes.io/managed-by": "kubectl-podmirror",
            CAPTURE_LABEL: plan.name,
        },
    })
}

pub fn filter_object(plan: &CapturePlan) -> Result<Value, PluginError> {
    let both = !plan.filter.inbound && !plan.filter.outbound;
    let list = rules(&plan.filter)?;
    let pick = |on: bool| if on || both { list.clone() } else { Vec::new() };
    Ok(json!({
        "apiVersion": "podmirror.io/v1alpha1",
        "kind": "MirrorFilter",
        "metadata": metadata(plan),
        "spec": {"inboundRules": pick(plan.filter.inbound), "outboundRules": pick(plan.filter.outbound)},
    }))
}

pub fn session_object(plan: &CapturePlan) -> Value {
    let source = match &plan.pods {
        Pods::Named(name) => json!({"podName": name}),
        Pods::Selected(labels) => json!({"podSelector": {"matchLabels": labels}}),
    };
    let mut spec = json!({
        "priority": plan.priority,
        "vni": plan.vni,
        "enabled": true,
        "filterRef": {"name": plan.name},
        "sources": [source],
        "target": {"service": {"name": plan.collector_service, "namespace": plan.collector_namespace}},
        "encapsulation": "VXLAN",
        "targetPort": 4789,
    });
    if let Some(n) = plan.snaplen {
        spec["packetLength"] = json!(n);
    }
    with_schedule(&mut spec, plan.duration);
    json!({
        "apiVersion": "podmirror.io/v1alpha1",
        "kind": "MirrorSession",
        "metadata": metadata(plan),
        "spec": spec,
    })
}

/// `spec.schedule.duration`: the operator stops the session on its own
/// even if this plugin is killed before it can delete it. The field is new
/// (`spec.schedule: {startTime, stopTime, duration}`); this is the one place
/// that writes it, to switch to the typed field once it exists.
pub fn with_schedule(spec: &mut Value, duration: Duration) {
    // Whole seconds, rounded up: a sub-second capture must not become "0s".
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    spec["schedule"] = json!({"duration": format!("{}s", seconds.max(1))});
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CapturePlan {
        CapturePlan {
            name: "podmirror-capture-16000000".into(),
            namespace: "shop".into(),
            pods: Pods::Selected(parse_selector("app=shop, tier==web").expect("selector")),
            filter: CaptureFilter { outbound: true, ..CaptureFilter::default() },
            duration: Duration::from_secs(90),
            priority: 32766,
            vni: CAPTURE_VNI_FIRST,
            snaplen: Some(128),
            collector_namespace: "podmirror-system".into(),
            collector_service: "podmirror-collector".into(),
        }
    }

    #[test]
    fn selectors_durations_and_free_numbers() {
        let labels = parse_selector("app=shop,tier==web").expect("valid");
        assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
        for bad in ["app!=shop", "app in (a)", "", "=x"] {
            let err = parse_selector(bad).expect_err(bad).to_string();
            assert!(err.starts_with("-l: "), "{bad}: {err}");
        }
        assert_eq!(parse_duration("5m").expect("5m"), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").expect("1h30m"), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").expect("45"), Duration::from_secs(45));
        for bad in ["0s", "5d", "m", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let used: BTreeSet<i64> = [16_000_000, 16_000_001, 5].into();
        assert_eq!(free_vni(&used).expect("free"), 16_000_002);
        let taken: BTreeSet<i64> = [32766, 32765, 1].into();
        assert_eq!(free_priority(None, &taken).expect("free"), 32764);
        assert_eq!(free_priority(Some(2), &taken).expect("asked"), 2);
        assert!(free_priority(Some(1), &taken).is_err(), "clash");
        assert!(free_priority(Some(0), &taken).is_err(), "range");
    }

    #[test]
    fn out_only_all_protocols_by_selector_with_snaplen() {
        let p = plan();
        let filter = filter_object(&p).expect("filter");
        assert_eq!(filter["spec"]["inboundRules"], json!([]));
        let rules = filter["spec"]["outboundRules"].as_array().expect("rules");
        assert_eq!(rules.len(), 2, "one rule per family");
        assert_eq!(rules[0]["protocol"], "All");
        assert_eq!(rules[1]["ipFamily"], "IPv6");
        let session = session_object(&p);
        assert_eq!(
            session["spec"]["sources"],
            json!([{"podSelector": {"matchLabels": {"app": "shop", "tier": "web"}}}])
        );
        assert_eq!(session["spec"]["packetLength"], 128);
        assert_eq!(session["spec"]["schedule"], json!({"duration": "90s"}));
        // The model accepts what we build (the API server's rules, client side).
        let typed: podmirror_crds::api::MirrorFilter = serde_json::from_value(filter).expect("a MirrorFilter");
        podmirror_crds::model::compile::compile_filter(&typed.spec).expect("valid rules");
        let mut spec = session["spec"].clone();
        spec.as_object_mut().expect("object").remove("schedule");
        let spec: podmirror_crds::api::MirrorSessionSpec = serde_json::from_value(spec).expect("a MirrorSessionSpec");
        podmirror_crds::model::compile::validate_session_spec(&spec).expect("valid session");
    }

    #[test]
    fn a_port_needs_a_protocol_with_ports() {
        let mut p = plan();
        p.filter.port = Some(53);
        let err = filter_object(&p).expect_err("no protocol").to_string();
        assert_eq!(err, "--port: needs --proto tcp, udp or sctp");
        p.filter.protocol = Some(ipproto::UDP);
        let filter = filter_object(&p).expect("udp");
        let rules = filter["spec"]["outboundRules"].as_array().expect("rules");
        assert_eq!(rules.len(), 4);
        let typed: podmirror_crds::api::MirrorFilter = serde_json::from_value(filter).expect("a MirrorFilter");
        podmirror_crds::model::compile::compile_filter(&typed.spec).expect("valid rules");
    }
}
