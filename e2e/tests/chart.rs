//! Chart tests with a real helm binary (scripts/install-deps.sh installs
//! helm 3.19 into .tools/bin). Without helm: loud SKIPPED, or a failure under
//! CI=true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use podmirror_e2e::manifest::{Object, check_typed, hardening_violations, parse_documents};
use podmirror_e2e::{chart_dir, cmd, rbac, readme, repo_root, tools};

const RELEASE: &str = "t";
const NAMESPACE: &str = "podmirror-system";

/// Value sets every structural test is run with: defaults, everything
/// optional switched on, everything optional off, and custom sizes.
const VALUE_SETS: &[&[&str]] = &[
    &[],
    &[
        "metrics.serviceMonitor.enabled=true",
        "metrics.podMonitor.enabled=true",
        "dashboard.enabled=true",
        "agent.capabilities={BPF,NET_ADMIN,PERFMON,SYS_RESOURCE}",
        "collector.enabled=true",
        "collector.files.enabled=true",
        "collector.replay.to=http://test.shop:8080",
        "collector.allowMirrorFrom=*",
    ],
    &["cleanup.enabled=false", "operator.podDisruptionBudget.enabled=false", "operator.replicas=1"],
    &["operator.replicas=3", "agent.pinDir=/sys/fs/bpf/pm-test", "fullnameOverride=mirror"],
];

fn helm() -> Option<PathBuf> {
    tools::require("chart tests need a real helm binary", tools::helm())
}

fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter().flat_map(|s| ["--set".to_string(), s.to_string()]).collect()
}

/// `helm template` output, or helm's error output when it refused.
fn template(helm: &Path, sets: &[&str]) -> Result<String, String> {
    let mut args = vec![
        "template".to_string(),
        RELEASE.to_string(),
        chart_dir().display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
        "--include-crds".into(),
    ];
    args.extend(set_args(sets));
    let out = cmd::run_any(helm, &args).map_err(|e| e.to_string())?;
    if out.success { Ok(out.stdout) } else { Err(out.stderr) }
}

fn render(helm: &Path, sets: &[&str]) -> Vec<Object> {
    let text = template(helm, sets).unwrap_or_else(|e| panic!("helm template {sets:?} failed:\n{e}"));
    parse_documents(&text).unwrap_or_else(|e| panic!("helm template {sets:?}: {e}"))
}

fn find<'a>(objects: &'a [Object], kind: &str, component: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind == kind && o.label("app.kubernetes.io/component") == Some(component))
        .unwrap_or_else(|| panic!("no {kind} of component {component} rendered"))
}

fn chart_readme() -> (PathBuf, String) {
    let path = chart_dir().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// The value of `key: "..."` in Chart.yaml.
fn chart_yaml_field(key: &str) -> String {
    let path = chart_dir().join("Chart.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("Chart.yaml: {e}"));
    value
        .get(key)
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or_else(|| panic!("Chart.yaml has no string {key}"))
        .to_string()
}

#[test]
fn lint_is_clean_for_every_value_set() {
    let Some(helm) = helm() else { return };
    for sets in VALUE_SETS {
        let mut args = vec!["lint".to_string(), "--strict".into(), chart_dir().display().to_string()];
        args.extend(set_args(sets));
        let out = cmd::run_any(&helm, &args).expect("helm runs");
        assert!(out.success, "helm lint --strict {sets:?}:\n{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("0 chart(s) failed"), "{}", out.stdout);
    }
}

#[test]
fn every_rendered_object_parses_into_its_api_type() {
    let Some(helm) = helm() else { return };
    for sets in VALUE_SETS {
        let objects = render(&helm, sets);
        assert!(objects.len() >= 10, "{sets:?}: only {} objects", objects.len());
        for obj in &objects {
            check_typed(obj).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
            if obj.kind != "CustomResourceDefinition" && !obj.kind.starts_with("Cluster") {
                assert_eq!(obj.namespace.as_deref(), Some(NAMESPACE), "{sets:?}: {} has no namespace", obj.id());
            }
        }
        let ids: BTreeSet<String> = objects.iter().map(Object::id).collect();
        assert_eq!(ids.len(), objects.len(), "{sets:?}: two objects share a kind and name");
    }
}

#[test]
fn no_container_is_privileged_or_may_escalate() {
    let Some(helm) = helm() else { return };
    for sets in VALUE_SETS {
        let objects = render(&helm, sets);
        let found = hardening_violations(&objects);
        assert!(found.is_empty(), "{sets:?}:\n{}", found.join("\n"));
        let containers: usize = objects.iter().map(|o| o.containers().len()).sum();
        assert!(containers >= 2, "{sets:?}: the hardening check saw {containers} containers");
    }
}

#[test]
fn capabilities_are_exactly_the_documented_set() {
    let Some(helm) = helm() else { return };
    let (path, text) = chart_readme();
    let documented = readme::documented_capabilities(&path, &text).expect("README capability table");
    assert!(
        documented.contains("BPF") && documented.contains("NET_ADMIN") && !documented.contains("SYS_ADMIN"),
        "documented: {documented:?}"
    );
    let objects = render(&helm, &[]);
    let agent = find(&objects, "DaemonSet", "agent");
    let cleanup = find(&objects, "DaemonSet", "cleanup");
    for (obj, container) in [(agent, "agent"), (cleanup, "cleanup")] {
        let c = obj
            .containers()
            .into_iter()
            .find(|c| c.name() == container)
            .unwrap_or_else(|| panic!("{} has no container {container}", obj.id()));
        assert_eq!(c.added_capabilities(), documented, "{} container {container}", obj.id());
    }
    // Everything else (operator, waiter, the cleanup's idle container) adds none.
    for obj in &objects {
        for c in obj.containers() {
            let is_agentlike =
                (obj.name == agent.name && c.name() == "agent") || (obj.name == cleanup.name && c.name() == "cleanup");
            if !is_agentlike {
                assert!(c.added_capabilities().is_empty(), "{} container {} adds capabilities", obj.id(), c.name());
            }
        }
    }
    // The values are the source: a changed list is what gets rendered.
    let extended = render(&helm, &["agent.capabilities={BPF,NET_ADMIN,PERFMON,SYS_RESOURCE}"]);
    let caps = find(&extended, "DaemonSet", "agent").containers()[0].added_capabilities();
    assert!(caps.contains("SYS_RESOURCE"), "{caps:?}");
}

#[test]
fn images_and_tags_come_from_values() {
    let Some(helm) = helm() else { return };
    let app_version = chart_yaml_field("appVersion");
    let podmirror_images = |objects: &[Object]| -> BTreeSet<String> {
        objects
            .iter()
            .filter(|o| o.label("app.kubernetes.io/component") != Some("cleanup") || o.kind == "DaemonSet")
            .flat_map(|o| o.containers().into_iter().filter_map(|c| c.image().map(String::from)))
            .collect()
    };
    let default = render(&helm, &[]);
    assert_eq!(
        podmirror_images(&default),
        BTreeSet::from([format!("ghcr.io/podmirror/podmirror:{app_version}")]),
        "default image is the repository at the chart's appVersion"
    );
    let custom = render(&helm, &["image.repository=registry.example/pm", "image.tag=v9.9.9"]);
    assert_eq!(podmirror_images(&custom), BTreeSet::from(["registry.example/pm:v9.9.9".to_string()]));
    let waiter = custom.iter().find(|o| o.kind == "Job").expect("the cleanup waiter Job");
    assert_eq!(
        waiter.containers()[0].image(),
        Some("registry.example/pm:v9.9.9"),
        "the uninstall waiter runs podmirror's own image: no third-party image to mirror"
    );
    let all: usize = custom.iter().map(|o| o.containers().len()).sum();
    let counted = custom
        .iter()
        .flat_map(|o| o.containers())
        .filter(|c| c.image().is_some_and(|i| i.starts_with("registry.example/")))
        .count();
    assert_eq!(counted, all, "every container's image follows the values");
}

/// A rendered grant with the release-specific object name made generic, as
/// the README writes it.
fn generic(mut g: rbac::Grant) -> rbac::Grant {
    let prefix = format!("{RELEASE}-podmirror");
    g.resource_name = g.resource_name.map(|n| n.replace(&prefix, "<release>-podmirror"));
    g
}

#[test]
fn rbac_is_exactly_the_documented_minimal_set() {
    let Some(helm) = helm() else { return };
    let (path, text) = chart_readme();
    let documented = readme::documented_grants(&path, &text).expect("README RBAC table");
    let objects = render(&helm, &[]);
    let rendered: BTreeSet<rbac::Grant> = rbac::grants(&objects).into_iter().map(generic).collect();
    assert!(rbac::wildcards(&rendered).is_empty(), "wildcards: {:?}", rbac::wildcards(&rendered));
    let undocumented: Vec<_> = rendered.difference(&documented).collect();
    let unrendered: Vec<_> = documented.difference(&rendered).collect();
    assert!(
        undocumented.is_empty() && unrendered.is_empty(),
        "granted but not in README: {undocumented:#?}\nin README but not granted: {unrendered:#?}"
    );
    // The agent can write nothing but status: its entry on sessions and its
    // record on its node's state.
    let agent_writes: Vec<_> = rendered
        .iter()
        .filter(|g| g.component == "agent" && !["get", "list", "watch"].contains(&g.verb.as_str()))
        .collect();
    assert!(
        agent_writes.iter().all(|g| {
            ["mirrorsessions/status", "mirrornodestates/status"].contains(&g.resource.as_str()) && g.verb == "patch"
        }),
        "{agent_writes:#?}"
    );
    // Each binding gives its component's role to its component's account only.
    for b in objects.iter().filter(|o| o.kind.ends_with("Binding")) {
        let component = b.label("app.kubernetes.io/component").expect("binding component label");
        let role = b.value["roleRef"]["name"].as_str().expect("roleRef.name");
        let role_obj = objects
            .iter()
            .find(|o| o.name == role && o.kind.ends_with("Role"))
            .unwrap_or_else(|| panic!("{} refers to missing role {role}", b.id()));
        assert_eq!(role_obj.label("app.kubernetes.io/component"), Some(component), "{}", b.id());
        let subjects = b.value["subjects"].as_sequence().expect("subjects");
        assert_eq!(subjects.len(), 1, "{}", b.id());
        let sa = subjects[0]["name"].as_str().expect("subject name");
        let sa_obj = objects
            .iter()
            .find(|o| o.kind == "ServiceAccount" && o.name == sa)
            .unwrap_or_else(|| panic!("{} binds missing ServiceAccount {sa}", b.id()));
        assert_eq!(sa_obj.label("app.kubernetes.io/component"), Some(component), "{}", b.id());
    }
}

#[test]
fn chart_crds_are_the_generated_crds() {
    // Needs no helm: a plain comparison of files.
    let generated_dir = repo_root().join("crds");
    let chart_crds = chart_dir().join("crds");
    let yaml_files = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect()
    };
    let generated = yaml_files(&generated_dir);
    assert!(
        generated.len() >= 3,
        "crds/*.yaml (MirrorFilter, MirrorSession, MirrorNodeState) are missing: run `make crds`"
    );
    assert_eq!(
        yaml_files(&chart_crds),
        generated,
        "chart CRDs differ from crds/: run `cp crds/*.yaml charts/podmirror/crds/`"
    );
    for name in &generated {
        let a = std::fs::read(generated_dir.join(name)).expect("read generated CRD");
        let b = std::fs::read(chart_crds.join(name)).expect("read chart CRD");
        assert!(
            a == b,
            "charts/podmirror/crds/{name} drifted from crds/{name}: run `cp crds/*.yaml charts/podmirror/crds/`"
        );
    }
}

#[test]
fn the_values_schema_rejects_bad_values_naming_the_field() {
    let Some(helm) = helm() else { return };
    let cases: &[(&str, &str)] = &[
        ("operator.replicas=0", "/operator/replicas"),
        ("agent.capabilities={SYS_ADMIN,BPF,NET_ADMIN}", "/agent/capabilities"),
        ("agent.capabilities={PERFMON,SYS_RESOURCE}", "/agent/capabilities"),
        ("agent.pinDir=/tmp/podmirror", "/agent/pinDir"),
        ("agent.metricsPort=70000", "/agent/metricsPort"),
        ("image.repository=", "/image/repository"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("agent.statusInterval=soon", "/agent/statusInterval"),
        ("agent.attachMode=fast", "/agent/attachMode"),
        // The agent parses ms, s and m only, and refuses zero.
        ("agent.statusInterval=1h", "/agent/statusInterval"),
        ("agent.statusInterval=0s", "/agent/statusInterval"),
        ("operator.privileged=true", "privileged"),
        ("operator.allowedTargetCIDRs={everywhere}", "/operator/allowedTargetCIDRs"),
        ("collector.replay.samplePercent=101", "/collector/replay/samplePercent"),
        ("collector.replay.to=https://test:443", "/collector/replay/to"),
        ("collector.vniAllow={16777216}", "/collector/vniAllow"),
        ("collector.xdp.mode=fast", "/collector/xdp/mode"),
        ("collector.xdp.interface=eth0/x", "/collector/xdp/interface"),
        ("collector.ring.bytes=3000", "/collector/ring/bytes"),
        ("collector.ring.interface=eth0/x", "/collector/ring/interface"),
    ];
    for (set, field) in cases {
        match template(&helm, &[set]) {
            Ok(_) => panic!("helm template accepted the bad value {set}"),
            Err(stderr) => assert!(
                stderr.contains("schema") && stderr.contains(field),
                "{set}: the error does not name {field}:\n{stderr}"
            ),
        }
    }
    // The same keys with good values pass, so the failures above are the values'.
    template(&helm, &["operator.replicas=1", "agent.pinDir=/sys/fs/bpf/x", "agent.metricsPort=9191"])
        .expect("good values render");
}

#[test]
fn the_agent_runs_on_every_node_with_its_node_and_bpffs() {
    let Some(helm) = helm() else { return };
    let objects = render(&helm, &[]);
    for component in ["agent", "cleanup"] {
        let ds = find(&objects, "DaemonSet", component);
        let spec = ds.pod_spec().expect("pod spec");
        let tolerations = spec["tolerations"].as_sequence().expect("tolerations");
        assert!(
            tolerations.iter().any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
            "{}: must tolerate every taint (control planes included): {tolerations:?}",
            ds.id()
        );
        assert_eq!(spec["hostNetwork"].as_bool(), Some(true), "{}", ds.id());
        let volume = spec["volumes"]
            .as_sequence()
            .and_then(|v| v.iter().find(|v| v["name"] == "bpffs"))
            .unwrap_or_else(|| panic!("{}: no bpffs volume", ds.id()));
        assert_eq!(volume["hostPath"]["path"].as_str(), Some("/sys/fs/bpf"));
        let c = ds.containers()[0];
        assert_eq!(c.env_field_ref("NODE_NAME"), Some("spec.nodeName"), "{}", ds.id());
        let mount = c.value["volumeMounts"]
            .as_sequence()
            .and_then(|m| m.iter().find(|m| m["name"] == "bpffs"))
            .unwrap_or_else(|| panic!("{}: no bpffs mount", ds.id()));
        assert_eq!(mount["mountPropagation"].as_str(), Some("HostToContainer"));
        assert!(c.command_line().contains(&"--pin-dir=/sys/fs/bpf/podmirror"), "{:?}", c.command_line());
        assert!(c.command_line().contains(&"--device-prefix=pm"), "{:?}", c.command_line());
    }
    let agent = find(&objects, "DaemonSet", "agent");
    let update = &agent.value["spec"]["updateStrategy"];
    assert_eq!(update["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(update["rollingUpdate"]["maxUnavailable"].as_u64(), Some(1));
    let c = agent.containers()[0];
    assert_eq!(c.command_line()[0], "/usr/local/bin/podmirror-agent");
    assert!(!c.command_line().contains(&"--cleanup"), "the running agent must not clean up");
    assert_eq!(c.value["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(c.value["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert!(c.command_line().contains(&"--attach-mode=auto"), "{:?}", c.command_line());
    let clsact = render(&helm, &["agent.attachMode=clsact"]);
    let line = find(&clsact, "DaemonSet", "agent").containers()[0].command_line();
    assert!(line.contains(&"--attach-mode=clsact"), "{line:?}");
    // A changed pin dir reaches both the agent and the cleanup.
    let moved = render(&helm, &["agent.pinDir=/sys/fs/bpf/elsewhere"]);
    for component in ["agent", "cleanup"] {
        let c = find(&moved, "DaemonSet", component).containers()[0].command_line();
        assert!(c.contains(&"--pin-dir=/sys/fs/bpf/elsewhere"), "{component}: {c:?}");
    }
}

#[test]
fn the_operator_is_replicated_non_root_and_probed() {
    let Some(helm) = helm() else { return };
    for (sets, replicas) in [(&[][..], 2), (&["operator.replicas=3"][..], 3)] {
        let objects = render(&helm, sets);
        let dep = find(&objects, "Deployment", "operator");
        assert_eq!(dep.value["spec"]["replicas"].as_u64(), Some(replicas), "{sets:?}");
        let spec = dep.pod_spec().expect("pod spec");
        assert_eq!(spec["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert_ne!(spec["securityContext"]["runAsUser"].as_u64(), Some(0));
        assert_ne!(spec["hostNetwork"].as_bool(), Some(true));
        let c = dep.containers()[0];
        assert_eq!(c.command_line()[0], "/usr/local/bin/podmirror-operator");
        assert!(c.command_line().contains(&"--max-sources-per-session=10"), "{:?}", c.command_line());
        assert!(c.command_line().contains(&"--max-sessions-per-cluster=20000"), "{:?}", c.command_line());
        assert!(
            !c.command_line().iter().any(|a| a.starts_with("--allowed-target-cidrs")),
            "no CIDR restriction unless asked: {:?}",
            c.command_line()
        );
        assert_eq!(c.env_field_ref("POD_NAME"), Some("metadata.name"));
        assert_eq!(c.env_field_ref("POD_NAMESPACE"), Some("metadata.namespace"));
        assert_eq!(c.value["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
        assert_eq!(c.value["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
        assert!(c.value["resources"]["limits"]["memory"].as_str().is_some(), "memory limit");
        let sa = spec["serviceAccountName"].as_str().expect("service account");
        let agent_sa = find(&objects, "DaemonSet", "agent").pod_spec().expect("agent spec")["serviceAccountName"]
            .as_str()
            .expect("agent service account")
            .to_string();
        assert_ne!(sa, agent_sa, "operator and agent need separate service accounts");
    }
}

#[test]
fn allowed_target_cidrs_reach_the_operator_as_one_flag() {
    let Some(helm) = helm() else { return };
    let objects = render(&helm, &["operator.allowedTargetCIDRs={10.0.0.0/8,fd00::/8}"]);
    let line = find(&objects, "Deployment", "operator").containers()[0].command_line();
    let flags: Vec<&&str> = line.iter().filter(|a| a.starts_with("--allowed-target-cidrs")).collect();
    assert_eq!(flags, [&"--allowed-target-cidrs=10.0.0.0/8,fd00::/8"], "{line:?}");
}

#[test]
fn uninstall_hook_cleans_every_node_and_is_waited_for() {
    let Some(helm) = helm() else { return };
    let objects = render(&helm, &[]);
    let hooks: Vec<&Object> = objects.iter().filter(|o| o.annotation("helm.sh/hook").is_some()).collect();
    assert!(hooks.len() >= 5, "{} hook objects", hooks.len());
    for h in &hooks {
        assert_eq!(h.annotation("helm.sh/hook"), Some("post-delete"), "{}", h.id());
        let policy = h.annotation("helm.sh/hook-delete-policy").unwrap_or_default();
        assert!(policy.contains("hook-succeeded") && policy.contains("before-hook-creation"), "{}: {policy}", h.id());
    }
    let weight = |o: &Object| -> i64 {
        o.annotation("helm.sh/hook-weight")
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("{} has no numeric hook weight", o.id()))
    };
    let ds = find(&objects, "DaemonSet", "cleanup");
    let job = objects.iter().find(|o| o.kind == "Job").expect("waiter Job");
    assert!(weight(ds) < weight(job), "the DaemonSet must exist before the Job waits for it");
    let init = ds.pod_spec().expect("spec")["initContainers"].as_sequence().expect("init containers");
    assert_eq!(init.len(), 1);
    let cleanup = ds.containers()[0];
    assert!(cleanup.command_line().contains(&"--cleanup"), "{:?}", cleanup.command_line());
    let wait = job.containers()[0].command_line();
    let target = format!("--daemonset={}", ds.name);
    assert!(
        wait.starts_with(&["/usr/local/bin/podmirror-operator", "uninstall-wait"]) && wait.contains(&target.as_str()),
        "{wait:?}"
    );
    assert_eq!(ds.pod_spec().expect("spec")["automountServiceAccountToken"].as_bool(), Some(false));

    let off = render(&helm, &["cleanup.enabled=false"]);
    assert!(off.iter().all(|o| o.annotation("helm.sh/hook").is_none()), "cleanup.enabled=false renders no hook");
}

/// Metric names the agent exports, from the string literals of its metrics
/// module (counters get `_total` when exposed).
fn exported_metrics() -> BTreeSet<String> {
    let path = repo_root().join("node-agent").join("src").join("metrics.rs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("podmirror_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(String::from)
        .collect()
}

#[test]
fn the_dashboard_uses_only_metrics_the_agent_exports() {
    let path = chart_dir().join("dashboards").join("podmirror-agent.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let exported = exported_metrics();
    assert!(exported.len() >= 5, "metrics.rs exports {exported:?}");
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 6, "{} panel queries", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("podmirror_") {
                used.insert(word.to_string());
            }
        }
    }
    for metric in &used {
        let base = metric.strip_suffix("_total").unwrap_or(metric);
        assert!(exported.contains(base), "dashboard uses {metric}, which the agent does not export ({exported:?})");
    }
    for key in ["podmirror_mirrored_packets", "podmirror_mirrored_bytes", "podmirror_mirror_failures"] {
        assert!(used.iter().any(|u| u.starts_with(key)), "dashboard lacks {key}");
    }
    // And it is shipped when asked for.
    let Some(helm) = helm() else { return };
    let objects = render(&helm, &["dashboard.enabled=true"]);
    let cm = objects.iter().find(|o| o.kind == "ConfigMap").expect("dashboard ConfigMap");
    assert_eq!(cm.label("grafana_dashboard"), Some("1"));
    let shipped = cm.value["data"]["podmirror-agent.json"].as_str().expect("dashboard data");
    let parsed: serde_json::Value = serde_json::from_str(shipped).expect("shipped dashboard is JSON");
    assert_eq!(parsed, dash);
}

/// The long flags a clap `#[derive(Parser)]` in `file` declares: each
/// `#[arg(long ...)]` names the field on the next field line.
fn clap_flags(file: &str) -> BTreeSet<String> {
    let path = repo_root().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut flags = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        if !(l.starts_with("#[arg(") && l.contains("long")) {
            continue;
        }
        let field = lines[i + 1..]
            .iter()
            .map(|l| l.trim().trim_start_matches("pub "))
            .find(|l| !l.starts_with("#[") && !l.starts_with("///") && l.contains(':'));
        if let Some(field) = field {
            let name = field.split(':').next().unwrap_or_default().trim();
            flags.insert(format!("--{}", name.replace('_', "-")));
        }
    }
    flags
}

#[test]
fn every_flag_the_chart_passes_exists_in_the_binaries() {
    let Some(helm) = helm() else { return };
    let binaries = [
        ("/usr/local/bin/podmirror-operator", "operator/src/main.rs"),
        ("/usr/local/bin/podmirror-agent", "node-agent/src/main.rs"),
        ("/usr/local/bin/podmirror-collector", "collector/src/config.rs"),
    ];
    // Optional flags rendered too, so each is checked against the binary.
    let mut sets = COLLECTOR_ON.to_vec();
    sets.push("operator.allowedTargetCIDRs={10.0.0.0/8}");
    let objects = render(&helm, &sets);
    let mut checked = 0;
    for (binary, source) in binaries {
        let known = clap_flags(source);
        assert!(known.len() >= 3, "{source}: found only {known:?}");
        for c in objects.iter().flat_map(|o| o.containers()) {
            let line = c.command_line();
            if line.first() != Some(&binary) {
                continue;
            }
            for arg in line.iter().skip(1).filter(|a| a.starts_with("--")) {
                let flag = arg.split('=').next().unwrap_or(arg);
                assert!(known.contains(flag), "{binary} has no {flag} ({source} declares {known:?})");
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "only {checked} flags checked");
}

/// The YAML between `<<'YAML'` and `YAML` in NOTES.txt (the first-session
/// example), without its two-space indent. No template expressions inside.
fn notes_example() -> String {
    let path = chart_dir().join("templates").join("NOTES.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body: Vec<&str> =
        text.lines().skip_while(|l| !l.contains("<<'YAML'")).skip(1).take_while(|l| l.trim() != "YAML").collect();
    assert!(body.len() > 10, "NOTES.txt has no `<<'YAML'` example");
    assert!(!body.iter().any(|l| l.contains("{{")), "the example must be plain YAML");
    body.iter().map(|l| l.strip_prefix("  ").unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_notes_first_session_is_valid_for_the_api() {
    use podmirror_crds::model::compile::{compile_filter, validate_session_spec};
    use podmirror_crds::{MirrorFilter, MirrorSession};

    let yaml = notes_example();
    let objects = parse_documents(&yaml).expect("the NOTES example parses");
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["MirrorFilter", "MirrorSession"]);
    let filter: MirrorFilter = serde_yaml::from_value(objects[0].value.clone()).expect("a MirrorFilter");
    let session: MirrorSession = serde_yaml::from_value(objects[1].value.clone()).expect("a MirrorSession");
    let (inbound, _) = compile_filter(&filter.spec).expect("the example filter compiles");
    assert_eq!(inbound.len(), 1);
    validate_session_spec(&session.spec).expect("the example session is valid");
    assert_eq!(session.spec.filter_ref.name, objects[0].name, "the session uses the example filter");
}

/// The collector with every option its template has.
const COLLECTOR_ON: &[&str] = &[
    "collector.enabled=true",
    "collector.files.enabled=true",
    "collector.replay.to=http://test.shop:8080",
    "collector.replay.rewriteHost=true",
    "collector.vniAllow={1,7}",
    "collector.allowMirrorFrom=shop",
];

#[test]
fn the_collector_is_optional_and_serves_vxlan_and_http() {
    let Some(helm) = helm() else { return };
    let off = render(&helm, &[]);
    assert!(
        !off.iter().any(|o| o.label("app.kubernetes.io/component") == Some("collector")),
        "collector.enabled defaults to false"
    );
    let on = render(&helm, COLLECTOR_ON);
    let dep = find(&on, "Deployment", "collector");
    let c = &dep.containers()[0];
    assert_eq!(c.command_line()[0], "/usr/local/bin/podmirror-collector");
    assert!(c.command_line().contains(&"--replay-to=http://test.shop:8080"));
    assert!(c.command_line().contains(&"--files-dir=/var/lib/podmirror-collector"));
    assert!(c.added_capabilities().is_empty());
    let svc = find(&on, "Service", "collector");
    assert_eq!(svc.annotation("podmirror.io/allow-mirror-from"), Some("shop"));
    let ports: Vec<(String, i64, String)> = svc.value["spec"]["ports"]
        .as_sequence()
        .expect("service ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["port"].as_i64().unwrap_or_default(),
                p["protocol"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(ports, [("vxlan".to_string(), 4789, "UDP".to_string()), ("http".to_string(), 8080, "TCP".to_string())]);
    assert!(!c.command_line().iter().any(|a| a.starts_with("--xdp")), "the AF_XDP input is opt-in");
    assert!(!c.command_line().iter().any(|a| a.starts_with("--ring")), "the ring input is opt-in");
    assert_eq!(c.security("runAsUser").and_then(serde_yaml::Value::as_i64), Some(65532));
}

#[test]
fn the_collectors_af_xdp_input_runs_as_root_with_exactly_its_capabilities() {
    let Some(helm) = helm() else { return };
    let on = render(&helm, &[COLLECTOR_ON, &["collector.xdp.enabled=true", "collector.xdp.mode=generic"]].concat());
    let dep = find(&on, "Deployment", "collector");
    let c = &dep.containers()[0];
    assert!(c.command_line().contains(&"--xdp-iface=eth0"));
    assert!(c.command_line().contains(&"--xdp-mode=generic"));
    let want: BTreeSet<String> = ["BPF", "NET_ADMIN", "NET_RAW", "IPC_LOCK"].iter().map(|c| c.to_string()).collect();
    assert_eq!(c.added_capabilities(), want, "what collector/src/xdp/mod.rs says it needs, no more");
    assert!(c.dropped_capabilities().contains("ALL"));
    // Kubernetes makes added capabilities effective for uid 0 only.
    assert_eq!(c.security("runAsUser").and_then(serde_yaml::Value::as_i64), Some(0));
    assert!(hardening_violations(&on).is_empty(), "{:?}", hardening_violations(&on));
}

#[test]
fn the_collectors_ring_input_runs_as_root_with_exactly_its_capabilities() {
    let Some(helm) = helm() else { return };
    let on = render(&helm, &[COLLECTOR_ON, &["collector.ring.enabled=true", "collector.ring.bytes=8388608"]].concat());
    let dep = find(&on, "Deployment", "collector");
    let c = &dep.containers()[0];
    assert!(c.command_line().contains(&"--ring-iface=eth0"));
    assert!(c.command_line().contains(&"--ring-bytes=8388608"));
    let want: BTreeSet<String> = ["BPF", "NET_ADMIN"].iter().map(|c| c.to_string()).collect();
    assert_eq!(c.added_capabilities(), want, "what collector/src/tcring/mod.rs says it needs, no more");
    assert!(c.dropped_capabilities().contains("ALL"));
    assert_eq!(c.security("runAsUser").and_then(serde_yaml::Value::as_i64), Some(0));
    assert!(hardening_violations(&on).is_empty(), "{:?}", hardening_violations(&on));
    // One kernel input at a time: both is refused, naming both values.
    let both = [COLLECTOR_ON, &["collector.ring.enabled=true", "collector.xdp.enabled=true"]].concat();
    let err = template(&helm, &both).expect_err("both kernel inputs refused");
    assert!(err.contains("collector.xdp.enabled and collector.ring.enabled"), "{err}");
}
