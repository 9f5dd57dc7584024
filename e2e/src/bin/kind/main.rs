//! `make e2e`: the kind end-to-end run (charts/podmirror/README.md, "End-to-end
//! on kind"). Exits non-zero with a clear message on the first failure, and
//! at once where Docker, kind or root are missing: it never passes vacuously.
//!
//! The run is [`STEPS`], in order, on a [`Run`] made by `setup`; the
//! scenarios themselves are in `scenarios`.

mod scenarios;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, ensure};
use podmirror_crds::api::ConditionReason;
use podmirror_e2e::kind::{Cluster, Kubectl};
use podmirror_e2e::node_state::{self, NodeState};
use podmirror_e2e::scenario::Ctx;
use podmirror_e2e::{bpfobj, chart_dir, cmd, tools};

const IMAGE: &str = "podmirror:e2e";
const SYSTEM_NS: &str = "podmirror-system";
const TEST_NS: &str = "podmirror-e2e";
const PIN_DIR: &str = "/sys/fs/bpf/podmirror";
const DEVICE_PREFIX: &str = "pm";
const PACKET_LENGTH: usize = 96;
const TCPDUMP: &[&str] = &["tcpdump", "-nne", "-l", "-A", "-p", "-i", "eth0", "udp", "port", "4789"];

/// One step of the run: a title, and what it does (failing the run on `Err`).
type Step = (&'static str, fn(&Run) -> Result<()>);

/// The run, in order.
const STEPS: &[Step] = &[
    ("install the chart", install),
    (
        "seed scenario (docs/concepts.md) from examples/seed-scenario/: ecs-test -> ecs-source:1234, copies to ecs-target, vni 1",
        |r| scenarios::seed_from_examples(&r.ctx("default")),
    ),
    ("source and target on the same node, vni 4", |r| {
        scenarios::seed(&r.ctx(TEST_NS), "y", "mirror-session-y", "mirror-filter-y", 4, (r.w1(), r.w1()))
    }),
    ("source and target on different nodes, vni 2", |r| {
        scenarios::seed(&r.ctx(TEST_NS), "x", "mirror-session-x", "mirror-filter-x", 2, (r.w1(), r.w2()))
    }),
    ("Service target with two collector replicas, vni 3", |r| {
        scenarios::service_target(&r.ctx(TEST_NS), r.w1(), r.w2())
    }),
    ("a refused session (3 sessions per source pod)", |r| scenarios::quota(&r.ctx(TEST_NS), r.w2())),
    ("uninstall leaves nothing on any node", uninstall),
];

/// What the steps share: the tools, the cluster and what its nodes held
/// before the install.
struct Run {
    tools: setup::Tools,
    kubectl: Kubectl,
    kubeconfig: PathBuf,
    /// The chart's `--set`s naming the image.
    image_sets: Vec<String>,
    nodes: Vec<String>,
    workers: Vec<String>,
    /// Each node's state before the install (kind only: read through Docker).
    baseline: Vec<(String, NodeState)>,
    tools_image: String,
    /// Deleted when the run ends.
    _cluster: Option<Cluster>,
}

impl Run {
    fn ctx(&self, namespace: &str) -> Ctx<'_> {
        Ctx { kubectl: &self.kubectl, namespace: namespace.into(), tools_image: self.tools_image.clone() }
    }

    fn w1(&self) -> &str {
        &self.workers[0]
    }

    /// The second worker, or the first where there is one only.
    fn w2(&self) -> &str {
        self.workers.get(1).unwrap_or(&self.workers[0])
    }
}

fn step(title: &str) {
    eprintln!("\n=== e2e: {title}");
}

fn main() -> ExitCode {
    match prepare().and_then(|run| {
        STEPS.iter().try_for_each(|(title, f)| {
            step(title);
            f(&run).with_context(|| format!("step `{title}`"))
        })
    }) {
        Ok(()) => {
            eprintln!("\ne2e: PASSED (seed scenario, cross-node, Service target, quota refusal, clean uninstall)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ne2e: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn prepare() -> Result<Run> {
    let target =
        setup::target(std::env::var("PODMIRROR_E2E_IMAGE").ok(), std::env::var_os("KUBECONFIG").map(PathBuf::from))?;
    let tools = setup::preflight(&target)?;
    let (cluster, kubeconfig, image_sets) = setup::cluster(&target, &tools)?;
    let kubectl = Kubectl { bin: tools.kubectl.clone(), kubeconfig: kubeconfig.clone() };
    let (nodes, workers) = setup::nodes(cluster.as_ref(), &kubectl)?;
    let baseline = match &tools.docker {
        Some(docker) => nodes
            .iter()
            .map(|n| Ok((n.clone(), node_state::node_state(docker, n, PIN_DIR, DEVICE_PREFIX)?)))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let tools_image = std::env::var("PODMIRROR_E2E_TOOLS_IMAGE").unwrap_or_else(|_| "nicolaka/netshoot:v0.13".into());
    Ok(Run { tools, kubectl, kubeconfig, image_sets, nodes, workers, baseline, tools_image, _cluster: cluster })
}

fn kubeconfig_flag(r: &Run) -> String {
    format!("--kubeconfig={}", r.kubeconfig.display())
}

/// Installs the chart: an agent ready on every node, unprivileged.
fn install(r: &Run) -> Result<()> {
    let kubeconfig = kubeconfig_flag(r);
    let chart = chart_dir().display().to_string();
    let mut install: Vec<&str> =
        vec!["install", "podmirror", &chart, "-n", SYSTEM_NS, "--create-namespace", &kubeconfig];
    for set in &r.image_sets {
        install.extend(["--set", set.as_str()]);
    }
    install.extend(["--wait", "--timeout", "5m"]);
    cmd::run_visible(&r.tools.helm, &install)?;
    let agents = r.kubectl.jsonpath(SYSTEM_NS, "daemonset/podmirror-agent", "{.status.numberReady}")?;
    ensure!(
        agents == r.nodes.len().to_string(),
        "{agents} agents ready on {} nodes (control plane included)",
        r.nodes.len()
    );
    let privileged = r.kubectl.jsonpath(
        SYSTEM_NS,
        "daemonset/podmirror-agent",
        "{.spec.template.spec.containers[0].securityContext.privileged}",
    )?;
    ensure!(privileged != "true", "the agent must run unprivileged, it runs privileged: {privileged}");
    r.kubectl.run(&["create", "namespace", TEST_NS])?;
    Ok(())
}

/// `helm uninstall` leaves no pin, device or program on any node (kind
/// only), no hook object, and every session says `Uninstalled`.
fn uninstall(r: &Run) -> Result<()> {
    let mut pre_uninstall = Vec::new();
    if let Some(docker) = &r.tools.docker {
        for node in &r.nodes {
            pre_uninstall.push((node.clone(), node_state::node_state(docker, node, PIN_DIR, DEVICE_PREFIX)?));
        }
        let on_w1 = &pre_uninstall.iter().find(|(n, _)| n == r.w1()).context("state of w1")?.1;
        ensure!(
            !on_w1.pins.is_empty() && !on_w1.pinned.links.is_empty(),
            "before the uninstall {} shows no podmirror datapath ({on_w1:?}): the cleanup check would prove nothing",
            r.w1()
        );
    }
    let kubeconfig = kubeconfig_flag(r);
    cmd::run_visible(
        &r.tools.helm,
        &["uninstall", "podmirror", "-n", SYSTEM_NS, &kubeconfig, "--wait", "--timeout", "5m"],
    )?;
    if let Some(docker) = &r.tools.docker {
        let bpftool = tools::on_path("bpftool").context("bpftool")?;
        let live = bpfobj::live(&bpftool)?;
        let mut dirty = Vec::new();
        for ((node, base), (_, pre)) in r.baseline.iter().zip(&pre_uninstall) {
            let after = node_state::node_state(docker, node, PIN_DIR, DEVICE_PREFIX)?;
            dirty.extend(node_state::leftovers(base, &after).into_iter().map(|l| format!("{node}: {l}")));
            dirty.extend(
                bpfobj::survivors(&pre.pinned, &live).into_iter().map(|l| format!("{node}: {l} still in the kernel")),
            );
        }
        ensure!(dirty.is_empty(), "left behind after helm uninstall:\n{}", dirty.join("\n"));
    } else {
        eprintln!(
            "e2e: not a kind cluster: the nodes' kernels are not inspected; the cleanup hook's success is what Helm reported"
        );
    }
    let hooks = r.kubectl.run(&["get", "daemonsets,jobs", "-n", SYSTEM_NS, "-o", "name"])?;
    ensure!(hooks.trim().is_empty(), "uninstall hook objects left: {hooks}");
    let reasons = r.kubectl.run(&[
        "get",
        "mirrorsessions",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Programmed\")].reason}{\"\\n\"}{end}",
    ])?;
    ensure!(
        !reasons.trim().is_empty()
            && reasons.lines().all(|r| ConditionReason::parse(r) == ConditionReason::Uninstalled),
        "after the uninstall every session must say Programmed=False/Uninstalled, got:\n{reasons}"
    );
    Ok(())
}
