//! The operator and the agent's Kubernetes mode against a real API server.
//!
//! Runs when `KUBE_APISERVER_BIN` and `ETCD_BIN` name the binaries; otherwise
//! it prints a loud `SKIPPED:` and returns. That skip is allowed under
//! `CI=true` (a missing binary is not a missing privilege); with the binaries
//! present it also needs root (namespaces and eBPF) and fails under `CI=true`
//! without it.
//!
//! Everything happens inside a "node" network namespace this test creates
//! (testbed topology): etcd and kube-apiserver listen on that namespace's
//! loopback, the operator and the agent run on threads inside it, so no
//! packet leaves namespaces the test owns. Steps: apply `crds/`, create
//! namespaces, a ServiceAccount, two Nodes, pods with status IPs patched in,
//! a consenting target Service with an EndpointSlice and a non-consenting
//! one, a filter and three sessions; run the operator (with its Lease) and
//! assert conditions, phase, resolved sources, a quota refusal, a consent
//! refusal and the per-node desired state; then run the agent for `node-a`
//! and assert mirrored VXLAN arrives at the collector and the agent's entry
//! appears on the session, which turns `Programmed`/`Active`. Then the
//! status bookkeeping: the agent's record of its entries on its node's state,
//! the operator removing the entry of a node that does not exist, a stopped
//! agent's stale entry withdrawn by the next agent after the session left the
//! node, the finalizer released on deletion, and the refusal's Event.
//!
//! The operator and the agent authenticate as the chart's ServiceAccounts
//! (static tokens) with exactly the chart's RBAC, rendered by the real helm:
//! any verb the chart forgot fails this test with a 403.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use podmirror_agent::core::Reconciler;
use podmirror_agent::datapath::{Datapath, DatapathConfig};
use podmirror_agent::kube as agent_kube;
use podmirror_agent::metrics::Metrics as AgentMetrics;
use podmirror_crds::api::{MirrorNodeState, MirrorSession};
use podmirror_crds::model::quota::QuotaLimits;
use podmirror_operator::controller::{self, Settings};
use podmirror_operator::leader::Elector;
use podmirror_operator::metrics::Metrics;
use podmirror_testkit::{self as testbed, Capture, PodSpec, Topology, tshark_rows};
use serde_json::{Value, json};

const NODE_IP: &str = "172.31.254.1";
const TOKEN: &str = "pmop-test-token";
const OPERATOR_TOKEN: &str = "pmop-operator-token";
const AGENT_TOKEN: &str = "pmop-agent-token";
/// The chart's release namespace (its Lease lives there).
const RELEASE_NS: &str = "podmirror-system";
const MANAGER: &str = "podmirror-test";

/// A child process killed when the test ends, however it ends.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        // A control-plane process that died on its own explains a timeout.
        if let Ok(Some(status)) = self.0.try_wait() {
            eprintln!("{} had exited early: {status} (see its log in the work dir)", self.1);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the work directory and the datapath even when the test fails.
struct Leftovers {
    dir: PathBuf,
    cfg: DatapathConfig,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = Datapath::remove_all(&self.cfg);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn binaries() -> Option<(String, String)> {
    match (std::env::var("KUBE_APISERVER_BIN"), std::env::var("ETCD_BIN")) {
        (Ok(a), Ok(e)) if Path::new(&a).exists() && Path::new(&e).exists() => Some((a, e)),
        _ => None,
    }
}

#[test]
fn kube_operator_and_agent_against_a_real_api_server() {
    let Some((apiserver, etcd)) = binaries() else {
        testbed::announce_skip(
            "kube_operator_and_agent_against_a_real_api_server",
            "set KUBE_APISERVER_BIN and ETCD_BIN to existing kube-apiserver and etcd binaries \
             (not a privileged test: this skip is allowed under CI=true)",
        );
        return;
    };
    if !testbed::require_root("kube_operator_and_agent_against_a_real_api_server") {
        return;
    }
    let mut topo = Topology::new("pmop").expect("topology");
    topo.add_pod(PodSpec::v4("ecs-test", "192.168.0.161")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-source", "192.168.0.230")).expect("pod");
    topo.add_pod(PodSpec::v4("ecs-target", "192.168.0.164")).expect("pod");
    topo.add_node_address(&format!("{NODE_IP}/32")).expect("node address");
    topo.node.ip(&["link", "set", "lo", "up"]).expect("loopback up");
    let cfg = DatapathConfig {
        pin_dir: format!("/sys/fs/bpf/{}", topo.tag).into(),
        device_prefix: topo.tag.clone(),
        node_ipv4: Some(NODE_IP.parse().expect("literal")),
        node_ipv6: None,
    };
    let dir = std::env::temp_dir().join(format!("{}-apiserver", topo.tag));
    fs::create_dir_all(&dir).expect("work dir");
    let _leftovers = Leftovers { dir: dir.clone(), cfg: cfg.clone() };

    let topo_ref = &topo;
    topo.node
        .run(|| {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(scenario(topo_ref, &apiserver, &etcd, &dir, &cfg));
        })
        .expect("node namespace");
}

/// Starts etcd and kube-apiserver (in the calling thread's network namespace).
fn control_plane(apiserver: &str, etcd: &str, dir: &Path, identities: &Identities) -> (Proc, Proc) {
    let log = |name: &str| fs::File::create(dir.join(name)).expect("log file");
    let etcd = Command::new(etcd)
        .args(["--data-dir", &dir.join("etcd").display().to_string()])
        .args(["--listen-client-urls", "http://127.0.0.1:23790", "--advertise-client-urls", "http://127.0.0.1:23790"])
        .args([
            "--listen-peer-urls",
            "http://127.0.0.1:23800",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:23800",
        ])
        .args(["--initial-cluster", "default=http://127.0.0.1:23800"])
        .stdout(Stdio::null())
        .stderr(log("etcd.log"))
        .spawn()
        .expect("start etcd");
    let etcd = Proc(etcd, "etcd");
    let key = dir.join("sa.key");
    let status = Command::new("openssl")
        .args(["genrsa", "-out", &key.display().to_string(), "2048"])
        .stderr(Stdio::null())
        .status()
        .expect("openssl (service account key)");
    assert!(status.success(), "openssl genrsa failed");
    fs::write(dir.join("tokens.csv"), tokens_csv(identities)).expect("token file");
    let api = Command::new(apiserver)
        .args(["--etcd-servers=http://127.0.0.1:23790", "--bind-address=127.0.0.1", "--secure-port=16443"])
        .arg(format!("--advertise-address={NODE_IP}"))
        .arg(format!("--cert-dir={}", dir.join("certs").display()))
        .arg(format!("--token-auth-file={}", dir.join("tokens.csv").display()))
        .arg(format!("--service-account-key-file={}", key.display()))
        .arg(format!("--service-account-signing-key-file={}", key.display()))
        .args(["--service-account-issuer=https://kubernetes.default.svc", "--service-cluster-ip-range=10.96.0.0/16"])
        .args(["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"])
        .stdout(Stdio::null())
        .stderr(log("apiserver.log"))
        .spawn()
        .expect("start kube-apiserver");
    (etcd, Proc(api, "kube-apiserver"))
}

/// The chart's RBAC, rendered by the real helm for release `podmirror` in
/// `podmirror-system`: the roles and bindings, and the ServiceAccount each
/// component runs as.
struct Identities {
    rbac: Vec<Value>,
    operator: String,
    agent: String,
}

impl Identities {
    fn render() -> Identities {
        let helm = podmirror_e2e::tools::helm().unwrap_or_else(|e| panic!("helm (installed by `make test`): {e}"));
        let chart = podmirror_e2e::chart_dir().display().to_string();
        let text = podmirror_e2e::cmd::run(&helm, &["template", "podmirror", &chart, "--namespace", RELEASE_NS])
            .unwrap_or_else(|e| panic!("helm template: {e}"));
        let objects = podmirror_e2e::manifest::parse_documents(&text).unwrap_or_else(|e| panic!("rendered chart: {e}"));
        let rbac: Vec<Value> = objects
            .iter()
            .filter(|o| ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].contains(&o.kind.as_str()))
            .map(|o| serde_json::to_value(&o.value).unwrap_or_else(|e| panic!("{}: {e}", o.id())))
            .collect();
        let account = |component: &str| {
            let workload = objects
                .iter()
                .find(|o| {
                    ["Deployment", "DaemonSet"].contains(&o.kind.as_str())
                        && o.label("app.kubernetes.io/component") == Some(component)
                })
                .unwrap_or_else(|| panic!("no workload of component {component} rendered"));
            let sa = workload.pod_spec().and_then(|p| p["serviceAccountName"].as_str()).expect("serviceAccountName");
            format!("system:serviceaccount:{RELEASE_NS}:{sa}")
        };
        Identities { operator: account("operator"), agent: account("agent"), rbac }
    }
}

/// Static tokens: an admin for the test's own setup, and the two components
/// authenticated as their ServiceAccounts (so only the chart's RBAC applies).
fn tokens_csv(ids: &Identities) -> String {
    let groups = format!("\"system:serviceaccounts,system:serviceaccounts:{RELEASE_NS}\"");
    format!(
        "{TOKEN},admin,admin,system:masters\n{OPERATOR_TOKEN},{},operator,{groups}\n{AGENT_TOKEN},{},agent,{groups}\n",
        ids.operator, ids.agent
    )
}

async fn client() -> Client {
    client_with(TOKEN).await
}

async fn client_with(token: &str) -> Client {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: 'https://127.0.0.1:16443', insecure-skip-tls-verify: true}}\n\
         users:\n- name: t\n  user: {{token: {token}}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t, namespace: default}}\n\
         current-context: t\n"
    );
    let kc = Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("client config");
    Client::try_from(config).expect("client")
}

async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Server-side applies any object given as JSON (apiVersion/kind/metadata).
async fn apply(client: &Client, obj: Value) {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion").to_owned();
    let kind = obj["kind"].as_str().expect("kind").to_owned();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.expect("discover kind");
    let name = obj["metadata"]["name"].as_str().expect("name").to_owned();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

async fn pod(client: &Client, ns: &str, name: &str, node: &str, ip: &str, labels: Value) {
    apply(
        client,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}),
    )
    .await;
    // No kubelet here: the IPs a kubelet would report are patched in.
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})),
        )
        .await
        .expect("pod status");
}

fn condition<'a>(s: &'a MirrorSession, t: &str) -> Option<(&'a str, &'a str)> {
    s.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

async fn scenario(topo: &Topology, apiserver: &str, etcd: &str, dir: &Path, cfg: &DatapathConfig) {
    let identities = Identities::render();
    let (_etcd, _api) = control_plane(apiserver, etcd, dir, &identities);
    let client = client().await;
    eventually("the API server", 90, async || client.apiserver_version().await.ok()).await;

    // CRDs from crds/*.yaml, as `kubectl apply -f crds/` would.
    let crd_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for entry in fs::read_dir(&crd_dir).expect("crds/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&fs::read_to_string(&path).expect("read")).expect("CRD yaml");
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd)).await.expect("apply CRD");
        eventually(&format!("CRD {name} established"), 30, async || {
            let c = crds.get(&name).await.ok()?;
            let ok = c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(())
        })
        .await;
    }

    for ns in ["team", "obs", RELEASE_NS] {
        apply(&client, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await;
    }
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "team"}}),
    )
    .await;
    // The operator and the agent get exactly the chart's RBAC.
    for obj in &identities.rbac {
        apply(&client, obj.clone()).await;
    }
    let operator_client = client_with(OPERATOR_TOKEN).await;
    // The identities are really restricted: the agent may not read pods.
    let denied = Api::<Pod>::all(client_with(AGENT_TOKEN).await).list(&Default::default()).await;
    assert!(matches!(denied, Err(kube::Error::Api(ref e)) if e.code == 403), "the agent listed pods: {denied:?}");
    for n in ["node-a", "node-b"] {
        apply(&client, json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})).await;
    }
    pod(&client, "team", "ecs-source", "node-a", "192.168.0.230", json!({"app": "source"})).await;
    pod(&client, "team", "ecs-test", "node-a", "192.168.0.161", json!({"app": "client"})).await;
    pod(&client, "team", "far", "node-b", "10.244.9.9", json!({"app": "source"})).await;
    pod(&client, "obs", "collector-0", "node-a", "192.168.0.164", json!({"app": "collector"})).await;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "collector", "namespace": "obs",
        "annotations": {"podmirror.io/allow-mirror-from": "team"}},
        "spec": {"ports": [{"port": 4789, "protocol": "UDP"}], "selector": {"app": "collector"}}}),
    )
    .await;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "private", "namespace": "obs"},
        "spec": {"ports": [{"port": 4789, "protocol": "UDP"}]}}),
    )
    .await;
    let collector_uid =
        Api::<Pod>::namespaced(client.clone(), "obs").get("collector-0").await.expect("pod").metadata.uid;
    apply(
        &client,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "collector-1", "namespace": "obs", "labels": {"kubernetes.io/service-name": "collector"}},
        "addressType": "IPv4", "ports": [{"port": 4789, "protocol": "UDP"}],
        "endpoints": [{"addresses": ["192.168.0.164"], "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": "collector-0", "namespace": "obs", "uid": collector_uid}}]}),
    )
    .await;
    apply(
        &client,
        json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorFilter",
        "metadata": {"name": "mirror-filter-a", "namespace": "team"},
        "spec": {"inboundRules": [{"priority": 1, "action": "Accept", "protocol": "TCP", "ipFamily": "IPv4",
            "sourceCIDR": "192.168.0.161/32", "destinationCIDR": "192.168.0.230/32",
            "destinationPorts": {"from": 1234, "to": 1234}}]}}),
    )
    .await;
    let session = |name: &str, priority: i32, vni: i32, source: Value, target: Value| {
        json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession", "metadata": {"name": name, "namespace": "team"},
            "spec": {"priority": priority, "vni": vni, "packetLength": 96, "filterRef": {"name": "mirror-filter-a"},
                     "sources": [source], "target": target}})
    };
    apply(
        &client,
        session(
            "mirror-session-a",
            1,
            1,
            json!({"podName": "ecs-source"}),
            json!({"service": {"name": "collector", "namespace": "obs"}}),
        ),
    )
    .await;
    // Creation timestamps have a one-second resolution: make "clash" newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(
        &client,
        session("clash", 1, 2, json!({"podSelector": {"matchLabels": {"app": "source"}}}), json!({"ip": "10.99.0.1"})),
    )
    .await;
    apply(
        &client,
        session(
            "no-consent",
            2,
            3,
            json!({"podName": "far"}),
            json!({"service": {"name": "private", "namespace": "obs"}}),
        ),
    )
    .await;

    // The operator, with its Lease.
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let elector = Elector {
        api: Api::<Lease>::namespaced(operator_client.clone(), RELEASE_NS),
        identity: "op-test".into(),
        duration: Duration::from_secs(15),
    };
    let election = tokio::spawn(elector.run(tx));
    let settings = Settings {
        limits: QuotaLimits::default(),
        debounce: Duration::from_millis(100),
        resync: Duration::from_secs(5),
        target_policy: Default::default(),
        clock: Arc::new(podmirror_operator::clock::SystemClock),
    };
    let operator = tokio::spawn(controller::run(
        operator_client,
        settings,
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
        rx,
        None,
    ));

    let sessions: Api<MirrorSession> = Api::namespaced(client.clone(), "team");
    let a = eventually("mirror-session-a resolved", 60, async || {
        let s = sessions.get("mirror-session-a").await.ok()?;
        (condition(&s, "SourcesResolved") == Some(("True", "SourcesResolved"))).then_some(s)
    })
    .await;
    assert_eq!(condition(&a, "Accepted"), Some(("True", "Accepted")));
    assert_eq!(condition(&a, "FilterResolved"), Some(("True", "FilterFound")));
    assert_eq!(condition(&a, "TargetResolved"), Some(("True", "TargetResolved")));
    let st = a.status.clone().expect("status");
    let src = &st.sources.as_ref().expect("sources")[0];
    assert_eq!((src.pod.as_str(), src.node.as_deref()), ("ecs-source", Some("node-a")));
    assert_eq!(src.pod_ips, Some(vec!["192.168.0.230".to_owned()]));
    assert_eq!(st.target.as_ref().and_then(|t| t.addresses.clone()), Some(vec!["192.168.0.164".to_owned()]));
    assert!(a.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == "podmirror.io/cleanup")));

    let clash = eventually("clash refused", 30, async || {
        let s = sessions.get("clash").await.ok()?;
        condition(&s, "Accepted").is_some().then_some(s)
    })
    .await;
    assert_eq!(condition(&clash, "Accepted"), Some(("False", "PriorityClash")));
    assert_eq!(clash.status.as_ref().and_then(|s| s.phase), Some(podmirror_crds::api::SessionPhase::Invalid));
    let nc = eventually("no-consent resolved", 30, async || {
        let s = sessions.get("no-consent").await.ok()?;
        condition(&s, "TargetResolved").is_some().then_some(s)
    })
    .await;
    assert_eq!(condition(&nc, "TargetResolved"), Some(("False", "TargetNotConsented")));

    let states: Api<MirrorNodeState> = Api::all(client.clone());
    let node_a = eventually("MirrorNodeState node-a", 30, async || {
        let s = states.get("node-a").await.ok()?;
        (!s.spec.sessions.is_empty()).then_some(s)
    })
    .await;
    let names: Vec<&str> = node_a.spec.sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["mirror-session-a"], "only the accepted, resolvable session");
    assert_eq!(node_a.spec.sessions[0].targets, vec!["192.168.0.164".to_owned()]);
    assert_eq!(node_a.spec.pods.len(), 1);
    assert_eq!(node_a.spec.pods[0].name, "ecs-source");
    let node_b = states.get("node-b").await.expect("node-b state");
    assert!(node_b.spec.sessions.is_empty(), "no-consent mirrors nothing: {:?}", node_b.spec);
    let lease = Api::<Lease>::namespaced(client.clone(), RELEASE_NS).get("podmirror-operator").await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("op-test"));

    // The agent of node-a, on its own thread in this (node) namespace.
    let agent = start_agent(client_with(AGENT_TOKEN).await, cfg.clone());
    let a = eventually("node-a's entry and Programmed", 60, async || {
        let s = sessions.get("mirror-session-a").await.ok()?;
        let entry = s.status.as_ref()?.nodes.as_ref()?.iter().find(|n| n.node == "node-a")?.clone();
        let programmed = entry.programmed_interfaces.as_ref().is_some_and(|i| !i.is_empty());
        (programmed && condition(&s, "Programmed") == Some(("True", "Programmed"))).then_some(s)
    })
    .await;
    assert_eq!(a.status.as_ref().and_then(|s| s.phase), Some(podmirror_crds::api::SessionPhase::Active));

    // Traffic: ecs-test -> ecs-source:1234; copies reach ecs-target (the collector's IP).
    let client_pod = topo.pod("ecs-test").expect("pod");
    let source = topo.pod("ecs-source").expect("pod");
    let target = topo.pod("ecs-target").expect("pod");
    let cap = Capture::start(&target.netns, "eth0", "udp port 4789").expect("capture");
    let server = source.netns.spawn("exec nc -l 1234").expect("nc -l");
    tokio::time::sleep(Duration::from_millis(300)).await;
    client_pod.netns.sh("(echo hello; sleep 0.3) | nc -N -w 3 192.168.0.230 1234").expect("nc client");
    let out = server.finish(Duration::from_secs(5)).expect("server");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n", "the original is untouched");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pcap = cap.stop().expect("stop capture");
    let rows = tshark_rows(&pcap, "vxlan", &["vxlan.vni", "tcp.dstport"]).expect("tshark");
    assert!(!rows.is_empty(), "no VXLAN copy arrived");
    assert!(rows.iter().all(|r| r.get("vxlan.vni") == "1" && r.get("tcp.dstport") == "1234"), "{rows:?}");

    // The counters reach the status on the interval.
    eventually("mirrored packets on node-a's entry", 30, async || {
        let s = sessions.get("mirror-session-a").await.ok()?;
        let n = s.status.as_ref()?.nodes.as_ref()?.iter().find(|n| n.node == "node-a")?.mirrored_packets?;
        (n > 0).then_some(())
    })
    .await;

    // The agent records which sessions hold its entry (for its next start).
    eventually("node-a's record of its entries", 30, async || {
        let s = states.get("node-a").await.ok()?;
        (s.status?.reported_sessions? == vec!["team/mirror-session-a".to_owned()]).then_some(())
    })
    .await;

    // An entry of a node that does not exist (its agent went with it) is
    // removed by the operator; node-a's stays.
    let ghost = json!({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession",
        "status": {"nodes": [{"node": "node-z", "mirroredPackets": 5}]}});
    sessions
        .patch_status("mirror-session-a", &PatchParams::apply("podmirror-agent/node-z").force(), &Patch::Apply(&ghost))
        .await
        .expect("node-z's entry");
    eventually("node-z's entry removed, node-a's kept", 30, async || {
        let s = sessions.get("mirror-session-a").await.ok()?;
        let nodes: Vec<String> = s.status?.nodes?.iter().map(|n| n.node.clone()).collect();
        (nodes == vec!["node-a".to_owned()]).then_some(())
    })
    .await;

    // The agent stops; meanwhile the session leaves node-a (its source is now
    // a pod of node-b). The entry it left behind is withdrawn by the next agent.
    agent.stop();
    apply(
        &client,
        session(
            "mirror-session-a",
            1,
            1,
            json!({"podName": "far"}),
            json!({"service": {"name": "collector", "namespace": "obs"}}),
        ),
    )
    .await;
    eventually("mirror-session-a gone from node-a's state", 30, async || {
        let s = states.get("node-a").await.ok()?;
        s.spec.sessions.is_empty().then_some(())
    })
    .await;
    let stale = sessions.get("mirror-session-a").await.expect("session");
    assert!(
        stale.status.as_ref().and_then(|s| s.nodes.as_ref()).is_some_and(|n| n.iter().any(|e| e.node == "node-a")),
        "with its agent down, node-a's entry is still there"
    );
    let agent = start_agent(client_with(AGENT_TOKEN).await, cfg.clone());
    eventually("the restarted agent withdraws node-a's entry and its record", 30, async || {
        let s = sessions.get("mirror-session-a").await.ok()?;
        let holds = s.status.as_ref()?.nodes.as_ref().is_some_and(|n| n.iter().any(|e| e.node == "node-a"));
        let state = states.get("node-a").await.ok()?;
        let recorded = state.status.and_then(|s| s.reported_sessions).unwrap_or_default();
        (!holds && recorded.is_empty()).then_some(())
    })
    .await;

    // Deleting the session: the finalizer goes once no node state holds it.
    sessions.delete("mirror-session-a", &Default::default()).await.expect("delete");
    eventually("mirror-session-a deleted", 30, async || {
        let gone = matches!(sessions.get("mirror-session-a").await, Err(kube::Error::Api(e)) if e.code == 404);
        let b = states.get("node-b").await.ok()?;
        (gone && b.spec.sessions.iter().all(|s| s.name != "mirror-session-a")).then_some(())
    })
    .await;

    // The refusal was also told as a Warning Event on the session.
    let events: Api<Event> = Api::namespaced(client.clone(), "team");
    let refused = events.list(&Default::default()).await.expect("events").items.into_iter().find(|e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("clash")
            && e.reason.as_deref() == Some("QuotaRefused")
    });
    let refused = refused.expect("a QuotaRefused Event on clash");
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    assert!(refused.note.as_deref().is_some_and(|n| n.contains("team/mirror-session-a")), "{:?}", refused.note);

    agent.stop();
    operator.abort();
    election.abort();
}

/// A running agent (Kubernetes mode for node-a) on its own thread.
struct Agent {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Agent {
    /// Stops it as SIGTERM would: the datapath stays pinned.
    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("agent thread");
    }
}

/// Starts node-a's agent in the calling thread's network namespace; a second
/// start adopts what the first left pinned.
fn start_agent(client: Client, cfg: DatapathConfig) -> Agent {
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("agent runtime");
        rt.block_on(async move {
            let datapath = Datapath::open(&cfg).expect("datapath");
            let mut reconciler = Reconciler::new(datapath);
            let mut opts = agent_kube::Options::new("node-a", Duration::from_secs(2));
            opts.retry_interval = Duration::from_millis(500);
            let stop = async move {
                let _ = stop_rx.await;
            };
            agent_kube::run(client, &opts, &mut reconciler, &AgentMetrics::default(), stop).await;
        });
    });
    Agent { stop, thread }
}
