//! Standalone mode, file handling (no root needed): the example directory
//! loads, every kind of bad file is refused with the file and field named,
//! a bad update keeps the configuration in force, quotas refuse only what is
//! new, and changes are noticed.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use podmirror_agent::standalone::files::load_dir;
use podmirror_agent::standalone::resolve::resolve;
use podmirror_agent::standalone::run::{Config, Options};
use podmirror_crds::model::quota::QuotaLimits;

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("pmsa-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, text: &str) {
        fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed-scenario")
}

const INVENTORY: &str = "pods:\n- {name: ecs-test, ips: [192.168.0.161]}\n- {name: ecs-source, ips: [192.168.0.230]}\n\
                         - {name: ecs-target, ips: [192.168.0.164]}\n- {name: other, ips: [192.168.0.231], labels: {app: web}}\n";

fn filter(name: &str, dst_cidr: &str) -> String {
    format!(
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {{name: {name}}}\nspec:\n  inboundRules:\n  \
         - {{priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, destinationCIDR: {dst_cidr}}}\n"
    )
}

fn session(name: &str, priority: i32, vni: i32, source: &str) -> String {
    format!(
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {{name: {name}}}\nspec:\n  priority: {priority}\n  \
         vni: {vni}\n  packetLength: 96\n  filterRef: {{name: f}}\n  sources: [{{podName: {source}}}]\n  \
         target: {{pod: {{name: ecs-target}}}}\n"
    )
}

fn options(dir: &Path) -> Options {
    Options {
        dir: dir.to_path_buf(),
        node_name: "node-a".into(),
        poll_interval: Duration::from_secs(1),
        limits: QuotaLimits::default(),
    }
}

#[test]
fn example_seed_scenario_resolves_to_the_seed_session() {
    let loaded = load_dir(&example_dir()).unwrap();
    assert_eq!(loaded.filters.len(), 1);
    assert_eq!(loaded.sessions.len(), 1);
    assert!(loaded.skipped.iter().any(|s| s.starts_with("Pod ecs-source")), "{:?}", loaded.skipped);
    let resolution = resolve(&loaded, &BTreeMap::new(), "node-a", QuotaLimits::default()).unwrap();
    assert!(resolution.refusals.is_empty(), "{:?}", resolution.refusals);
    let state = &resolution.node_state;
    assert_eq!(state.node, "node-a");
    assert_eq!(state.sessions.len(), 1);
    let s = &state.sessions[0];
    assert_eq!((s.name.as_str(), s.vni, s.packet_length, s.priority), ("mirror-session-a", 1, Some(96), 1));
    assert_eq!(s.targets, vec!["192.168.0.164".to_string()]);
    assert_eq!(s.inbound_rules.len(), 1);
    assert!(s.outbound_rules.is_empty());
    assert_eq!(state.pods.len(), 1);
    assert_eq!(state.pods[0].name, "ecs-source");
    assert_eq!(state.pods[0].ips, vec!["192.168.0.230".to_string()]);
    assert_eq!(state.pods[0].sessions, vec!["default/mirror-session-a".to_string()]);
}

/// The standalone files accept rateLimit, flowSampling and the new
/// encapsulations, and hand them to the datapath like the operator does.
#[test]
fn rate_limit_flow_sampling_and_erspan_reach_the_node_state() {
    let dir = TempDir::new("shaping");
    dir.write("standalone.yaml", INVENTORY);
    dir.write("f0.yaml", &filter("f", "192.168.0.230/32"));
    let extra = "  encapsulation: ERSPAN\n  rateLimit: {packetsPerSecond: 1000, bytesPerSecond: 2000000}\n  flowSampling: {percent: 25}\n";
    dir.write("s.yaml", &format!("{}{extra}", session("s", 1, 7, "ecs-source")));
    let loaded = load_dir(&dir.0).unwrap();
    let resolution = resolve(&loaded, &BTreeMap::new(), "node-a", QuotaLimits::default()).unwrap();
    assert!(resolution.refusals.is_empty(), "{:?}", resolution.refusals);
    let s = &resolution.node_state.sessions[0];
    let compiled = podmirror_crds::model::compile::compile_node_session(s).unwrap();
    assert_eq!(compiled.encapsulation, podmirror_crds::model::Encapsulation::ERSPAN);
    assert_eq!(
        compiled.rate_limit,
        Some(podmirror_crds::model::RateCap { packets_per_second: Some(1000), bytes_per_second: Some(2_000_000) })
    );
    assert_eq!(compiled.flow_sampling.map(|f| f.threshold()), Some(1 << 30));
}

#[test]
fn bad_files_name_the_file_the_object_and_the_field() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("f.yaml", filter("f", "10.0.0.0/33"), "f.yaml: MirrorFilter f: spec.inboundRules[0].destinationCIDR: "),
        ("s.yaml", session("s", 0, 1, "ecs-source"), "s.yaml: MirrorSession s: spec.priority: "),
        ("s.yaml", session("s", 1, 16_777_216, "ecs-source"), "s.yaml: MirrorSession s: spec.vni: "),
        (
            "s.yaml",
            session("s", 1, 1, "ecs-source").replace("packetLength: 96", "packetLength: 10"),
            "spec.packetLength: ",
        ),
        (
            "s.yaml",
            session("s", 1, 1, "ecs-source").replace("vni: 1", "vni: one"),
            "s.yaml: MirrorSession s: spec.vni: ",
        ),
        (
            "s.yaml",
            format!("{}---\n{}", session("s", 1, 1, "ecs-source"), session("s", 2, 2, "ecs-source")),
            "document 2: MirrorSession s: metadata.name: ",
        ),
        (
            "standalone.yaml",
            "pods:\n- {name: a, ips: [1.2.3]}\n".into(),
            "standalone.yaml: inventory: pods[0].ips[0]: ",
        ),
        (
            "s.yaml",
            format!("{}  schedule: {{duration: 10 minutes}}\n", session("s", 1, 1, "ecs-source")),
            "s.yaml: MirrorSession s: spec.schedule.duration: ",
        ),
        (
            "s.yaml",
            format!(
                "{}  schedule: {{stopTime: '2026-01-01T00:00:00Z', duration: 10m}}\n",
                session("s", 1, 1, "ecs-source")
            ),
            "s.yaml: MirrorSession s: spec.schedule.duration: ",
        ),
        (
            "s.yaml",
            format!("{}  schedule: {{startTime: tomorrow}}\n", session("s", 1, 1, "ecs-source")),
            "s.yaml: MirrorSession s: spec.schedule.startTime: ",
        ),
        (
            "s.yaml",
            format!("{}  rateLimit: {{}}\n", session("s", 1, 1, "ecs-source")),
            "s.yaml: MirrorSession s: spec.rateLimit: ",
        ),
        (
            "s.yaml",
            format!("{}  flowSampling: {{oneIn: 4, percent: 25}}\n", session("s", 1, 1, "ecs-source")),
            "s.yaml: MirrorSession s: spec.flowSampling: ",
        ),
    ];
    for (file, text, expected) in cases {
        let dir = TempDir::new("badfile");
        dir.write("standalone.yaml", INVENTORY);
        dir.write("f0.yaml", &filter("f", "192.168.0.230/32"));
        dir.write(file, &text);
        let outcome = load_dir(&dir.0).and_then(|l| resolve(&l, &BTreeMap::new(), "n", QuotaLimits::default()));
        let message = outcome.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(expected), "{file}: expected {expected:?} in {message:?}");
        assert!(message.contains(&dir.0.display().to_string()), "the full path is named: {message}");
    }
}

#[test]
fn a_bad_update_keeps_the_configuration_in_force() {
    let dir = TempDir::new("update");
    dir.write("standalone.yaml", INVENTORY);
    dir.write("f.yaml", &filter("f", "192.168.0.230/32"));
    dir.write("s.yaml", &session("s", 1, 7, "ecs-source"));
    let opts = options(&dir.0);
    let mut config = Config::default();
    assert!(matches!(config.reload_if_changed(&opts), Some(Ok(()))));
    assert!(config.reload_if_changed(&opts).is_none(), "nothing changed, nothing reloaded");

    // Break the filter: the load fails, the session stays as it was.
    dir.write("f.yaml", &filter("f", "not-a-cidr"));
    config.reload(&opts).unwrap_err();
    assert_eq!(config.reloads_failed, 1);
    assert!(config.last_error.as_deref().unwrap_or_default().contains("spec.inboundRules[0].destinationCIDR"));
    let state = &config.current.as_ref().unwrap().node_state;
    assert_eq!(state.sessions[0].vni, 7, "previous config in force");
    assert_eq!(state.sessions[0].inbound_rules[0].destination_cidr.as_deref(), Some("192.168.0.230/32"));

    // Fix it with a change: the change is taken.
    dir.write("f.yaml", &filter("f", "192.168.0.0/24"));
    config.reload(&opts).unwrap();
    let state = &config.current.as_ref().unwrap().node_state;
    assert_eq!(state.sessions[0].inbound_rules[0].destination_cidr.as_deref(), Some("192.168.0.0/24"));
    assert!(config.last_error.is_none());
}

#[test]
fn a_session_whose_schedule_has_ended_is_loaded_but_not_programmed() {
    let dir = TempDir::new("schedule");
    // `lo` as the source's interface: found by name, no network needed.
    dir.write("standalone.yaml", &INVENTORY.replace("ips: [192.168.0.230]}", "ips: [192.168.0.230], interface: lo}"));
    dir.write("f.yaml", &filter("f", "192.168.0.230/32"));
    let ended = "  schedule: {startTime: '2020-01-01T00:00:00Z', duration: 1h}\n";
    dir.write("s.yaml", &format!("{}{ended}", session("s", 1, 7, "ecs-source")));
    dir.write("t.yaml", &session("t", 2, 8, "ecs-source"));
    let opts = options(&dir.0);
    let mut config = Config::default();
    config.reload(&opts).unwrap();
    let resolution = config.current.as_ref().unwrap();
    assert_eq!(resolution.node_state.sessions.len(), 2, "both are accepted");
    assert!(resolution.schedules.contains_key(&podmirror_crds::model::SessionKey::new("default", "s")));
    let mut known = podmirror_agent::standalone::run::KnownInterfaces::new();
    // The desired state is what the datapath gets: the ended session is not in it.
    let (desired, errors) = podmirror_agent::standalone::run::desired(&config, &mut known).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(desired.pods.len(), 1);
    let names: Vec<String> = desired.pods[0].sessions.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(names, ["default/t"], "{desired:?}");
}

#[test]
fn quota_and_reference_refusals_touch_only_the_new_session() {
    let dir = TempDir::new("quota");
    dir.write("standalone.yaml", INVENTORY);
    dir.write("f.yaml", &filter("f", "192.168.0.230/32"));
    dir.write("a.yaml", &session("a", 1, 1, "ecs-source"));
    let opts = options(&dir.0);
    let mut config = Config::default();
    config.reload(&opts).unwrap();

    // A newer session with the same VNI to the same target, one with the
    // same priority on the same source, one whose source does not exist.
    dir.write("b.yaml", &session("b", 2, 1, "other"));
    dir.write("c.yaml", &session("c", 1, 3, "ecs-source"));
    dir.write("d.yaml", &session("d", 3, 4, "ghost"));
    config.reload(&opts).unwrap();
    let resolution = config.current.as_ref().unwrap();
    let names: Vec<&str> = resolution.node_state.sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["a"], "only the accepted session runs");
    let refusals: Vec<String> = resolution.refusals.iter().map(ToString::to_string).collect();
    assert!(refusals.iter().any(|r| r.contains("MirrorSession default/b") && r.contains("VNIClash")), "{refusals:?}");
    assert!(
        refusals.iter().any(|r| r.contains("MirrorSession default/c") && r.contains("PriorityClash")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|r| r.contains("default/d: spec.sources[0].podName") && r.contains("ghost")),
        "{refusals:?}"
    );

    // Changing the accepted session into a clash is refused; it keeps its VNI.
    dir.write("b.yaml", &session("b", 2, 2, "other"));
    config.reload(&opts).unwrap();
    dir.write("a.yaml", &session("a", 1, 2, "ecs-source"));
    config.reload(&opts).unwrap();
    let resolution = config.current.as_ref().unwrap();
    let a = resolution.node_state.sessions.iter().find(|s| s.name == "a").unwrap();
    assert_eq!(a.vni, 1, "the refused change leaves a as last accepted");
    assert!(resolution.node_state.sessions.iter().any(|s| s.name == "b" && s.vni == 2));
    assert!(resolution.refusals.iter().any(|r| r.to_string().contains("keeps mirroring as last accepted")));
}

#[test]
fn cross_namespace_service_needs_consent() {
    let dir = TempDir::new("consent");
    dir.write(
        "standalone.yaml",
        &format!("{INVENTORY}services:\n- {{name: col, namespace: mon, addresses: [10.0.0.9]}}\n"),
    );
    dir.write("f.yaml", &filter("f", "192.168.0.230/32"));
    dir.write(
        "s.yaml",
        &session("s", 1, 1, "ecs-source")
            .replace("{pod: {name: ecs-target}}", "{service: {name: col, namespace: mon}}"),
    );
    let opts = options(&dir.0);
    let mut config = Config::default();
    config.reload(&opts).unwrap();
    let resolution = config.current.as_ref().unwrap();
    assert!(resolution.node_state.sessions.is_empty());
    assert!(resolution.refusals[0].to_string().contains("podmirror.io/allow-mirror-from"), "{:?}", resolution.refusals);

    dir.write(
        "standalone.yaml",
        &format!(
            "{INVENTORY}services:\n- {{name: col, namespace: mon, addresses: [10.0.0.9], \
             annotations: {{podmirror.io/allow-mirror-from: 'kube-system, default'}}}}\n"
        ),
    );
    config.reload(&opts).unwrap();
    let resolution = config.current.as_ref().unwrap();
    assert_eq!(resolution.node_state.sessions.len(), 1, "{:?}", resolution.refusals);
    assert_eq!(resolution.node_state.sessions[0].targets, vec!["10.0.0.9".to_string()]);
}

#[test]
fn pod_selector_sources_use_inventory_labels() {
    let dir = TempDir::new("selector");
    dir.write("standalone.yaml", INVENTORY);
    dir.write("f.yaml", &filter("f", "192.168.0.0/24"));
    dir.write(
        "s.yaml",
        &session("s", 1, 1, "x").replace("[{podName: x}]", "[{podSelector: {matchLabels: {app: web}}}]"),
    );
    let loaded = load_dir(&dir.0).unwrap();
    let resolution = resolve(&loaded, &BTreeMap::new(), "n", QuotaLimits::default()).unwrap();
    let pods: Vec<&str> = resolution.node_state.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods, vec!["other"]);
}

/// An invalid selector refuses its session with the field and the reason,
/// also where no pod could be matched against it (a namespace without
/// pods), and never selects anything.
#[test]
fn an_invalid_pod_selector_refuses_the_session_with_the_reason() {
    let dir = TempDir::new("badselector");
    dir.write("standalone.yaml", INVENTORY);
    dir.write("f.yaml", &filter("f", "192.168.0.0/24"));
    dir.write("g.yaml", &filter("f", "192.168.0.0/24").replace("{name: f}", "{name: f, namespace: quiet}"));
    let not_in = "[{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: []}]}}]";
    dir.write("s.yaml", &session("s", 1, 1, "x").replace("[{podName: x}]", not_in));
    let exists = "[{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [web]}]}}]";
    let quiet =
        session("q", 1, 2, "x").replace("[{podName: x}]", exists).replace("{name: q}", "{name: q, namespace: quiet}");
    dir.write("q.yaml", &quiet);
    let loaded = load_dir(&dir.0).unwrap();
    let resolution = resolve(&loaded, &BTreeMap::new(), "n", QuotaLimits::default()).unwrap();
    assert!(
        resolution.node_state.sessions.is_empty() && resolution.node_state.pods.is_empty(),
        "{:?}",
        resolution.node_state
    );
    let refusals: Vec<String> = resolution.refusals.iter().map(ToString::to_string).collect();
    let wanted = [
        (
            "default/s",
            "spec.sources[0].podSelector.matchExpressions[0].values: must not be empty when the operator is NotIn",
        ),
        (
            "quiet/q",
            "spec.sources[0].podSelector.matchExpressions[0].values: must be empty when the operator is Exists",
        ),
    ];
    for (session, why) in wanted {
        assert!(refusals.iter().any(|r| r.contains(session) && r.contains(why)), "{session}: {why}\n{refusals:#?}");
    }
}

#[test]
fn missing_inventory_is_an_error_naming_it() {
    let dir = TempDir::new("noinv");
    dir.write("f.yaml", &filter("f", "192.168.0.230/32"));
    dir.write("s.yaml", &session("s", 1, 1, "ecs-source"));
    let message = load_dir(&dir.0).unwrap_err().to_string();
    assert!(message.contains("standalone.yaml") && message.contains("missing"), "{message}");
}
