//! The CRD's validation (OpenAPI bounds + CEL, read from the checked-in YAML)
//! and the Rust validation (`api::parse` + `model::compile`) agree: each
//! invalid object is rejected by both with an error naming the field, each
//! valid object is accepted by both.

mod schema_support;

use podmirror_crds::api::parse::from_value;
use podmirror_crds::api::{MirrorFilter, MirrorSession};
use podmirror_crds::model::compile::{compile_filter, validate_session_spec};
use schema_support::{api_server_errors, cel_cost_warnings, cel_rules, checked_in_schemas, walk_nodes};
use serde_json::{Value, json};

fn base_filter() -> Value {
    // Seed 002, table 2.
    json!({
        "apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorFilter",
        "metadata": {"name": "f", "namespace": "default"},
        "spec": {
            "inboundRules": [{
                "priority": 1, "action": "Accept", "protocol": "TCP", "ipFamily": "IPv4",
                "sourceCIDR": "172.16.0.0/24", "sourcePorts": {"from": 10000, "to": 10001},
                "destinationCIDR": "10.0.0.3/32", "destinationPorts": {"from": 80, "to": 80}
            }],
            "outboundRules": [{
                "priority": 1, "action": "Reject", "protocol": "All", "ipFamily": "IPv4",
                "sourceCIDR": "192.168.0.0/24", "destinationCIDR": "10.2.0.0/24"
            }]
        }
    })
}

fn base_session() -> Value {
    json!({
        "apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {
            "priority": 1, "vni": 1, "packetLength": 96, "enabled": true,
            "filterRef": {"name": "f"},
            "sources": [{"podName": "ecs-source"}],
            "target": {"pod": {"name": "ecs-target"}}
        }
    })
}

/// `base` with the value at JSON pointer `at` replaced (or removed when `None`).
fn with(mut base: Value, at: &str, value: Option<Value>) -> Value {
    let (parent, key) = at.rsplit_once('/').expect("pointer has a parent");
    let parent = base.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent} in the base object"));
    match (parent, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(list), Some(v)) => match key.parse::<usize>().expect("index") {
            index if index == list.len() => list.push(v),
            index => list[index] = v,
        },
        (other, _) => panic!("cannot set {key} in {other}"),
    }
    base
}

fn set(base: Value, at: &str, value: Value) -> Value {
    with(base, at, Some(value))
}

fn inbound_rule(priority: i64) -> Value {
    json!({"priority": priority, "action": "Accept", "protocol": 6, "ipFamily": "IPv4"})
}

/// What the Rust side says: deserialize (naming the field) then compile/validate.
fn rust_verdict(kind: &str, object: &Value) -> Result<(), String> {
    let yaml = serde_yaml::to_value(object).map_err(|e| e.to_string())?;
    match kind {
        "MirrorFilter" => {
            let filter: MirrorFilter = from_value(yaml, "MirrorFilter").map_err(|e| e.to_string())?;
            compile_filter(&filter.spec).map(|_| ()).map_err(|e| e.to_string())
        }
        "MirrorSession" => {
            let session: MirrorSession = from_value(yaml, "MirrorSession").map_err(|e| e.to_string())?;
            validate_session_spec(&session.spec).map_err(|e| e.to_string())
        }
        other => panic!("no Rust verdict for {other}"),
    }
}

/// `(case, kind, object, substrings every rejection must contain)`.
fn invalid_cases() -> Vec<(&'static str, &'static str, Value, Vec<&'static str>)> {
    let f = base_filter;
    let s = base_session;
    let r0 = "/spec/inboundRules/0";
    vec![
        (
            "rule priority 0",
            "MirrorFilter",
            set(f(), &format!("{r0}/priority"), json!(0)),
            vec!["spec.inboundRules[0].priority"],
        ),
        (
            "rule priority 32767",
            "MirrorFilter",
            set(f(), &format!("{r0}/priority"), json!(32767)),
            vec!["spec.inboundRules[0].priority"],
        ),
        (
            "rule priority missing",
            "MirrorFilter",
            with(f(), &format!("{r0}/priority"), None),
            vec!["spec.inboundRules[0]", "priority"],
        ),
        (
            "protocol name in lower case",
            "MirrorFilter",
            set(f(), &format!("{r0}/protocol"), json!("tcp")),
            vec!["spec.inboundRules[0].protocol"],
        ),
        (
            "protocol number 256",
            "MirrorFilter",
            set(f(), "/spec/outboundRules/0/protocol", json!(256)),
            vec!["spec.outboundRules[0].protocol"],
        ),
        (
            "protocol number -1",
            "MirrorFilter",
            set(f(), "/spec/outboundRules/0/protocol", json!(-1)),
            vec!["spec.outboundRules[0].protocol"],
        ),
        (
            "protocol number written as a string",
            "MirrorFilter",
            set(f(), "/spec/outboundRules/0/protocol", json!("17")),
            vec!["spec.outboundRules[0].protocol"],
        ),
        (
            "action not Accept/Reject",
            "MirrorFilter",
            set(f(), &format!("{r0}/action"), json!("Mirror")),
            vec!["spec.inboundRules[0].action"],
        ),
        (
            "ipFamily IPv5",
            "MirrorFilter",
            set(f(), &format!("{r0}/ipFamily"), json!("IPv5")),
            vec!["spec.inboundRules[0].ipFamily"],
        ),
        (
            "sourceCIDR /33",
            "MirrorFilter",
            set(f(), &format!("{r0}/sourceCIDR"), json!("172.16.0.0/33")),
            vec!["spec.inboundRules[0].sourceCIDR"],
        ),
        (
            "destinationCIDR without a prefix length",
            "MirrorFilter",
            set(f(), &format!("{r0}/destinationCIDR"), json!("10.0.0.3")),
            vec!["spec.inboundRules[0].destinationCIDR"],
        ),
        (
            "destinationCIDR IPv6 in an IPv4 rule",
            "MirrorFilter",
            set(f(), &format!("{r0}/destinationCIDR"), json!("fd00::/64")),
            vec!["spec.inboundRules[0].destinationCIDR"],
        ),
        (
            "sourceCIDR IPv4 in an IPv6 rule",
            "MirrorFilter",
            set(f(), "/spec/outboundRules/0/ipFamily", json!("IPv6")),
            vec!["spec.outboundRules[0].sourceCIDR"],
        ),
        (
            "sourceCIDR with a zone",
            "MirrorFilter",
            set(
                set(
                    set(f(), "/spec/outboundRules/0/ipFamily", json!("IPv6")),
                    "/spec/outboundRules/0/sourceCIDR",
                    json!("fe80::/64%eth0"),
                ),
                "/spec/outboundRules/0/destinationCIDR",
                json!("fd00::/8"),
            ),
            vec!["spec.outboundRules[0].sourceCIDR"],
        ),
        (
            "sourceCIDR IPv4-mapped IPv6",
            "MirrorFilter",
            set(
                set(
                    set(f(), "/spec/outboundRules/0/ipFamily", json!("IPv6")),
                    "/spec/outboundRules/0/sourceCIDR",
                    json!("::ffff:10.0.0.0/104"),
                ),
                "/spec/outboundRules/0/destinationCIDR",
                json!("fd00::/8"),
            ),
            vec!["spec.outboundRules[0].sourceCIDR"],
        ),
        (
            "destinationPorts with All",
            "MirrorFilter",
            set(f(), "/spec/outboundRules/0/destinationPorts", json!({"from": 1, "to": 2})),
            vec!["spec.outboundRules[0].destinationPorts"],
        ),
        (
            "sourcePorts with ICMP",
            "MirrorFilter",
            set(f(), &format!("{r0}/protocol"), json!("ICMP")),
            vec!["spec.inboundRules[0].sourcePorts"],
        ),
        (
            "destinationPorts with protocol number 1",
            "MirrorFilter",
            with(set(f(), &format!("{r0}/protocol"), json!(1)), &format!("{r0}/sourcePorts"), None),
            vec!["spec.inboundRules[0].destinationPorts"],
        ),
        (
            "port range from > to",
            "MirrorFilter",
            set(f(), &format!("{r0}/sourcePorts"), json!({"from": 10001, "to": 10000})),
            vec!["spec.inboundRules[0].sourcePorts"],
        ),
        (
            "port 0",
            "MirrorFilter",
            set(f(), &format!("{r0}/destinationPorts/from"), json!(0)),
            vec!["spec.inboundRules[0].destinationPorts.from"],
        ),
        (
            "port 65536",
            "MirrorFilter",
            set(f(), &format!("{r0}/destinationPorts/to"), json!(65536)),
            vec!["spec.inboundRules[0].destinationPorts.to"],
        ),
        (
            "duplicate rule priority",
            "MirrorFilter",
            set(f(), "/spec/inboundRules/1", inbound_rule(1)),
            vec!["spec.inboundRules"],
        ),
        (
            "11 inbound rules",
            "MirrorFilter",
            set(f(), "/spec/inboundRules", Value::Array((1..=11).map(inbound_rule).collect())),
            vec!["spec.inboundRules"],
        ),
        (
            "description over 256 characters",
            "MirrorFilter",
            set(f(), &format!("{r0}/description"), json!("x".repeat(257))),
            vec!["spec.inboundRules[0].description"],
        ),
        ("session priority 0", "MirrorSession", set(s(), "/spec/priority", json!(0)), vec!["spec.priority"]),
        ("session priority 40000", "MirrorSession", set(s(), "/spec/priority", json!(40000)), vec!["spec.priority"]),
        ("vni 2^24", "MirrorSession", set(s(), "/spec/vni", json!(16_777_216)), vec!["spec.vni"]),
        ("vni -1", "MirrorSession", set(s(), "/spec/vni", json!(-1)), vec!["spec.vni"]),
        ("packetLength 63", "MirrorSession", set(s(), "/spec/packetLength", json!(63)), vec!["spec.packetLength"]),
        ("packetLength 9217", "MirrorSession", set(s(), "/spec/packetLength", json!(9217)), vec!["spec.packetLength"]),
        ("targetPort 0", "MirrorSession", set(s(), "/spec/targetPort", json!(0)), vec!["spec.targetPort"]),
        ("targetPort 70000", "MirrorSession", set(s(), "/spec/targetPort", json!(70000)), vec!["spec.targetPort"]),
        (
            "encapsulation UDP",
            "MirrorSession",
            set(s(), "/spec/encapsulation", json!("UDP")),
            vec!["spec.encapsulation"],
        ),
        ("no sources", "MirrorSession", set(s(), "/spec/sources", json!([])), vec!["spec.sources"]),
        (
            "101 sources",
            "MirrorSession",
            set(s(), "/spec/sources", Value::Array((0..101).map(|i| json!({"podName": format!("p{i}")})).collect())),
            vec!["spec.sources"],
        ),
        (
            "source with podName and podSelector",
            "MirrorSession",
            set(s(), "/spec/sources/0", json!({"podName": "a", "podSelector": {"matchLabels": {"app": "a"}}})),
            vec!["spec.sources[0]"],
        ),
        (
            "source with neither podName nor podSelector",
            "MirrorSession",
            set(s(), "/spec/sources/0", json!({})),
            vec!["spec.sources[0]"],
        ),
        (
            "empty podName",
            "MirrorSession",
            set(s(), "/spec/sources/0", json!({"podName": ""})),
            vec!["spec.sources[0].podName"],
        ),
        (
            "target with pod and ip",
            "MirrorSession",
            set(s(), "/spec/target/ip", json!("10.0.0.9")),
            vec!["spec.target"],
        ),
        ("target with no kind", "MirrorSession", set(s(), "/spec/target", json!({})), vec!["spec.target"]),
        (
            "target ip not an address",
            "MirrorSession",
            set(s(), "/spec/target", json!({"ip": "10.0.0.256"})),
            vec!["spec.target.ip"],
        ),
        (
            "target service without a name",
            "MirrorSession",
            set(s(), "/spec/target", json!({"service": {"name": ""}})),
            vec!["spec.target.service.name"],
        ),
        (
            "schedule stopTime before startTime",
            "MirrorSession",
            set(
                s(),
                "/spec/schedule",
                json!({"startTime": "2026-01-01T02:00:00Z", "stopTime": "2026-01-01T01:00:00Z"}),
            ),
            vec!["spec.schedule.stopTime"],
        ),
        (
            "schedule with both stopTime and duration",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"stopTime": "2026-01-01T01:00:00Z", "duration": "10m"})),
            vec!["spec.schedule.duration"],
        ),
        (
            "schedule duration that does not parse",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"duration": "ten minutes"})),
            vec!["spec.schedule.duration"],
        ),
        (
            "schedule duration of zero",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"duration": "0m"})),
            vec!["spec.schedule.duration"],
        ),
        (
            "schedule duration with units out of order",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"duration": "30m1h"})),
            vec!["spec.schedule.duration"],
        ),
        (
            "schedule startTime not RFC 3339",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"startTime": "tomorrow"})),
            vec!["spec.schedule.startTime"],
        ),
        ("filterRef missing", "MirrorSession", with(s(), "/spec/filterRef", None), vec!["filterRef"]),
        (
            "encapsulation in lower case",
            "MirrorSession",
            set(s(), "/spec/encapsulation", json!("erspan")),
            vec!["spec.encapsulation"],
        ),
        (
            "filterRef with an empty name",
            "MirrorSession",
            set(s(), "/spec/filterRef/name", json!("")),
            vec!["spec.filterRef.name"],
        ),
        (
            "rateLimit with neither rate",
            "MirrorSession",
            set(s(), "/spec/rateLimit", json!({})),
            vec!["spec.rateLimit", "packetsPerSecond"],
        ),
        (
            "rateLimit of 0 packets per second",
            "MirrorSession",
            set(s(), "/spec/rateLimit", json!({"packetsPerSecond": 0})),
            vec!["spec.rateLimit.packetsPerSecond"],
        ),
        (
            "rateLimit of 999 bytes per second",
            "MirrorSession",
            set(s(), "/spec/rateLimit", json!({"bytesPerSecond": 999})),
            vec!["spec.rateLimit.bytesPerSecond"],
        ),
        (
            "flowSampling with both oneIn and percent",
            "MirrorSession",
            set(s(), "/spec/flowSampling", json!({"oneIn": 4, "percent": 25})),
            vec!["spec.flowSampling", "exactly one"],
        ),
        (
            "flowSampling with neither",
            "MirrorSession",
            set(s(), "/spec/flowSampling", json!({})),
            vec!["spec.flowSampling", "exactly one"],
        ),
        (
            "flowSampling of 0 percent",
            "MirrorSession",
            set(s(), "/spec/flowSampling", json!({"percent": 0})),
            vec!["spec.flowSampling.percent"],
        ),
        (
            "flowSampling one in 0",
            "MirrorSession",
            set(s(), "/spec/flowSampling", json!({"oneIn": 0})),
            vec!["spec.flowSampling.oneIn"],
        ),
    ]
}

fn valid_cases() -> Vec<(&'static str, &'static str, Value)> {
    let f = base_filter;
    let s = base_session;
    let r0 = "/spec/inboundRules/0";
    vec![
        ("seed 002 table 2 filter", "MirrorFilter", f()),
        (
            "empty filter",
            "MirrorFilter",
            json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorFilter", "metadata": {"name": "e"}, "spec": {}}),
        ),
        ("protocol as a number", "MirrorFilter", set(f(), &format!("{r0}/protocol"), json!(6))),
        ("protocol 0 without ports", "MirrorFilter", set(f(), "/spec/outboundRules/0/protocol", json!(0))),
        (
            "CIDRs omitted",
            "MirrorFilter",
            with(with(f(), "/spec/outboundRules/0/sourceCIDR", None), "/spec/outboundRules/0/destinationCIDR", None),
        ),
        (
            "IPv6 rule",
            "MirrorFilter",
            set(
                f(),
                "/spec/outboundRules/0",
                json!({"priority": 32766, "action": "Accept", "protocol": "UDP", "ipFamily": "IPv6", "sourceCIDR": "fd00::/8", "destinationCIDR": "2001:db8::1/128", "destinationPorts": {"from": 1, "to": 65535}}),
            ),
        ),
        (
            "10 rules",
            "MirrorFilter",
            set(f(), "/spec/inboundRules", Value::Array((1..=10).map(inbound_rule).collect())),
        ),
        ("seed session", "MirrorSession", s()),
        ("defaults omitted", "MirrorSession", with(with(s(), "/spec/enabled", None), "/spec/packetLength", None)),
        (
            "service target in another namespace, GRE",
            "MirrorSession",
            set(
                set(s(), "/spec/target", json!({"service": {"name": "collector", "namespace": "monitoring"}})),
                "/spec/encapsulation",
                json!("GRE"),
            ),
        ),
        (
            "IPv6 ip target, vni 16777215, port 8472",
            "MirrorSession",
            set(
                set(set(s(), "/spec/target", json!({"ip": "2001:db8::7"})), "/spec/vni", json!(16_777_215)),
                "/spec/targetPort",
                json!(8472),
            ),
        ),
        (
            "schedule: a duration from acceptance",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"duration": "1h30m"})),
        ),
        (
            "schedule: start and stop",
            "MirrorSession",
            set(
                s(),
                "/spec/schedule",
                json!({"startTime": "2026-01-01T01:00:00Z", "stopTime": "2026-01-01T02:10:00+01:00"}),
            ),
        ),
        (
            "schedule: start and duration",
            "MirrorSession",
            set(s(), "/spec/schedule", json!({"startTime": "2026-01-01T01:00:00Z", "duration": "10m"})),
        ),
        ("Geneve", "MirrorSession", set(s(), "/spec/encapsulation", json!("Geneve"))),
        ("ERSPAN", "MirrorSession", set(s(), "/spec/encapsulation", json!("ERSPAN"))),
        (
            "rate caps and flow sampling",
            "MirrorSession",
            set(
                set(s(), "/spec/rateLimit", json!({"packetsPerSecond": 1000, "bytesPerSecond": 1_000_000})),
                "/spec/flowSampling",
                json!({"oneIn": 4}),
            ),
        ),
        (
            "a packet cap alone, sampling by percent",
            "MirrorSession",
            set(
                set(s(), "/spec/rateLimit", json!({"packetsPerSecond": 1})),
                "/spec/flowSampling",
                json!({"percent": 25}),
            ),
        ),
        (
            "selector sources",
            "MirrorSession",
            set(s(), "/spec/sources", json!([{"podSelector": {"matchLabels": {"app": "web"}}}, {"podName": "db-0"}])),
        ),
    ]
}

#[test]
fn each_invalid_object_is_rejected_by_the_schema_and_by_rust_naming_the_field() {
    let schemas = checked_in_schemas();
    let cases = invalid_cases();
    assert!(cases.len() >= 20, "the contract asks for at least 20 invalid objects");
    let mut failures = Vec::new();
    for (case, kind, object, fields) in &cases {
        let server = api_server_errors(&schemas[*kind], object);
        if !server.iter().any(|e| fields.iter().all(|f| e.contains(f))) {
            failures.push(format!("{case}: API server errors {server:?} do not name {fields:?}"));
        }
        match rust_verdict(kind, object) {
            Ok(()) => failures.push(format!("{case}: Rust accepted it")),
            Err(e) if !fields.iter().all(|f| e.contains(f)) => {
                failures.push(format!("{case}: Rust error {e:?} does not name {fields:?}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} cases disagree:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn each_valid_object_is_accepted_by_the_schema_and_by_rust() {
    let schemas = checked_in_schemas();
    let mut failures = Vec::new();
    for (case, kind, object) in valid_cases() {
        let server = api_server_errors(&schemas[kind], &object);
        if !server.is_empty() {
            failures.push(format!("{case}: API server would reject: {server:?}"));
        }
        if let Err(e) = rust_verdict(kind, &object) {
            failures.push(format!("{case}: Rust rejects: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cel_messages_name_the_field_they_are_about() {
    let schemas = checked_in_schemas();
    let mut rules = Vec::new();
    for schema in schemas.values() {
        cel_rules(schema, "", &mut rules);
    }
    assert!(rules.len() >= 10, "expected the CEL rules of filter and session, found {}", rules.len());
    for (path, rule) in &rules {
        let message = rule["message"].as_str().unwrap_or_default();
        let field_path = rule["fieldPath"].as_str().unwrap_or_default();
        let last = path.rsplit('.').next().unwrap_or_default().trim_end_matches("[]");
        let named =
            [last, field_path.trim_start_matches('.')].iter().filter(|f| !f.is_empty()).any(|f| message.contains(f))
                || (last == "to" || message.contains("port range"));
        assert!(named, "CEL rule at {path} ({}) has a message that names no field: {message:?}", rule["rule"]);
    }
}

#[test]
fn cel_rules_compile_and_stay_within_the_cost_budget() {
    for (kind, schema) in checked_in_schemas() {
        let warnings = cel_cost_warnings(&schema);
        assert!(warnings.is_empty(), "{kind}: {warnings:#?}");
    }
}

#[test]
fn every_list_and_string_under_a_cel_rule_is_bounded() {
    // The API server estimates a rule's cost from maxItems/maxLength; an
    // unbounded list or string under a rule can get the CRD refused.
    for (kind, schema) in checked_in_schemas() {
        let mut unbounded = Vec::new();
        walk_nodes(&schema, "", &mut |node, path| {
            if node.get("x-kubernetes-validations").is_none() {
                return;
            }
            walk_nodes(node, path, &mut |inner, inner_path| {
                // A label selector is only ever tested with has(): its size does not count.
                if inner_path.contains("podSelector") {
                    return;
                }
                match inner.get("type").and_then(Value::as_str) {
                    Some("array") if inner.get("maxItems").is_none() => unbounded.push(inner_path.to_owned()),
                    // A date-time is a timestamp to CEL: fixed size.
                    Some("string")
                        if inner.get("maxLength").is_none()
                            && inner.get("enum").is_none()
                            && inner.get("format").and_then(Value::as_str) != Some("date-time") =>
                    {
                        unbounded.push(inner_path.to_owned())
                    }
                    _ => {}
                }
            });
        });
        unbounded.sort();
        unbounded.dedup();
        assert!(unbounded.is_empty(), "{kind}: unbounded under a CEL rule: {unbounded:?}");
    }
}
