//! `make e2e`: the kind end-to-end run (charts/podmirror/README.md, "End-to-end
//! on kind"). Exits non-zero with a clear message on the first failure, and
//! at once where Docker, kind or root are missing: it never passes vacuously.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use podmirror_e2e::kind::{Cluster, Kubectl, eventually};
use podmirror_e2e::scenario::{self, Ctx, NodeState, SessionParams};
use podmirror_e2e::{bpfobj, chart_dir, cmd, repo_root, tcpdump, tools};

const IMAGE: &str = "podmirror:e2e";
const SYSTEM_NS: &str = "podmirror-system";
const TEST_NS: &str = "podmirror-e2e";
const PIN_DIR: &str = "/sys/fs/bpf/podmirror";
const DEVICE_PREFIX: &str = "pm";
const PACKET_LENGTH: usize = 96;
const TCPDUMP: &[&str] = &["tcpdump", "-nne", "-l", "-A", "-p", "-i", "eth0", "udp", "port", "4789"];

struct Tools {
    kubectl: PathBuf,
    helm: PathBuf,
    /// Set on kind runs: the node checks read each node through Docker.
    docker: Option<PathBuf>,
    kind: Option<PathBuf>,
}

/// Where the scenarios run.
enum Target {
    /// A kind cluster made for the run (the default where Docker exists).
    Kind,
    /// The cluster `KUBECONFIG` names, with an image it can pull
    /// (`PODMIRROR_E2E_IMAGE=registry/podmirror:tag`): how a user validates a
    /// staging cluster before trusting podmirror in production.
    Existing { kubeconfig: PathBuf, image: String },
}

fn target() -> Result<Target> {
    match (std::env::var_os("PODMIRROR_E2E_IMAGE"), std::env::var_os("KUBECONFIG")) {
        (Some(image), Some(kubeconfig)) => {
            Ok(Target::Existing { kubeconfig: PathBuf::from(kubeconfig), image: image.to_string_lossy().into_owned() })
        }
        (Some(_), None) => bail!("PODMIRROR_E2E_IMAGE is set: also set KUBECONFIG to the cluster to test"),
        (None, _) => Ok(Target::Kind),
    }
}

/// Every missing prerequisite at once, so one run tells the whole story.
fn preflight(target: &Target) -> Result<Tools> {
    let kubectl = tools::kubectl();
    let helm = tools::helm();
    let mut found = vec![&kubectl, &helm];
    let (docker, kind) = match target {
        Target::Kind => (Some(tools::docker_with_daemon()), Some(tools::kind())),
        Target::Existing { .. } => (None, None),
    };
    found.extend(docker.iter().chain(kind.iter()));
    let mut missing: Vec<String> = found.iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
    if matches!(target, Target::Kind) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            missing
                .push("root: the uninstall check runs the host's bpftool in each kind node's network namespace".into());
        }
        for tool in ["bpftool", "nsenter"] {
            if tools::on_path(tool).is_none() {
                missing.push(format!("{tool} not on PATH (the uninstall check needs it)"));
            }
        }
    }
    if !missing.is_empty() {
        bail!("prerequisites missing, nothing was run:\n  - {}", missing.join("\n  - "));
    }
    Ok(Tools { kubectl: kubectl?, helm: helm?, docker: docker.transpose()?, kind: kind.transpose()? })
}

/// `registry/podmirror:tag` as the chart's `image.repository` and `image.tag`.
fn split_image(image: &str) -> Result<(&str, &str)> {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => Ok((&image[..slash + i], &image[slash + i + 1..])),
        None => bail!("PODMIRROR_E2E_IMAGE={image}: name a tag (registry/podmirror:tag)"),
    }
}

fn step(title: &str) {
    eprintln!("\n=== e2e: {title}");
}

fn main() -> ExitCode {
    match run() {
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

fn run() -> Result<()> {
    let target = target()?;
    let t = preflight(&target)?;
    let root = repo_root();

    let (cluster, kubeconfig_path, image_sets) = match &target {
        Target::Kind => {
            let (docker, kind) = (t.docker.clone().context("docker")?, t.kind.clone().context("kind")?);
            step("build the image");
            cmd::run_visible(&docker, &["build".as_ref(), "-t".as_ref(), IMAGE.as_ref(), root.as_os_str()])?;
            step("create the kind cluster");
            let name = format!("pm-e2e-{}", std::process::id());
            let cluster = Cluster::create(kind, &name, &root.join("e2e/kind/cluster.yaml"))?;
            cluster.load_image(IMAGE)?;
            let sets =
                vec!["image.repository=podmirror".to_string(), "image.tag=e2e".into(), "image.pullPolicy=Never".into()];
            let kubeconfig = cluster.kubeconfig.clone();
            (Some(cluster), kubeconfig, sets)
        }
        Target::Existing { kubeconfig, image } => {
            step(&format!("use the cluster of {} with image {image}", kubeconfig.display()));
            let (repository, tag) = split_image(image)?;
            let sets = vec![format!("image.repository={repository}"), format!("image.tag={tag}")];
            (None, kubeconfig.clone(), sets)
        }
    };
    let kubectl = Kubectl { bin: t.kubectl.clone(), kubeconfig: kubeconfig_path.clone() };
    let nodes: Vec<String> = match &cluster {
        Some(c) => c.nodes()?,
        None => kubectl
            .run(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"])?
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    let workers: Vec<String> = match &cluster {
        Some(_) => nodes.iter().filter(|n| !n.contains("control-plane")).cloned().collect(),
        None => kubectl
            .run(&[
                "get",
                "nodes",
                "-l",
                "!node-role.kubernetes.io/control-plane",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])?
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    ensure!(!workers.is_empty(), "no worker node among {nodes:?}");
    if cluster.is_some() {
        ensure!(workers.len() >= 2, "expected two workers, kind made {nodes:?}");
    } else if workers.len() < 2 {
        eprintln!("e2e: one worker only: the cross-node steps run with source and target on the same node");
    }
    let (w1, w2) = (workers[0].as_str(), workers.get(1).unwrap_or(&workers[0]).as_str());

    // What each node holds before the install (kind only: read through Docker).
    let baseline: Vec<(String, NodeState)> = match &t.docker {
        Some(docker) => nodes
            .iter()
            .map(|n| Ok((n.clone(), scenario::node_state(docker, n, PIN_DIR, DEVICE_PREFIX)?)))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };

    step("install the chart");
    let kubeconfig = format!("--kubeconfig={}", kubeconfig_path.display());
    let chart = chart_dir().display().to_string();
    let mut install: Vec<&str> =
        vec!["install", "podmirror", &chart, "-n", SYSTEM_NS, "--create-namespace", &kubeconfig];
    for set in &image_sets {
        install.extend(["--set", set.as_str()]);
    }
    install.extend(["--wait", "--timeout", "5m"]);
    cmd::run_visible(&t.helm, &install)?;
    let agents = kubectl.jsonpath(SYSTEM_NS, "daemonset/podmirror-agent", "{.status.numberReady}")?;
    ensure!(
        agents == nodes.len().to_string(),
        "{agents} agents ready on {} nodes (control plane included)",
        nodes.len()
    );
    let privileged = kubectl.jsonpath(
        SYSTEM_NS,
        "daemonset/podmirror-agent",
        "{.spec.template.spec.containers[0].securityContext.privileged}",
    )?;
    ensure!(privileged != "true", "the agent must run unprivileged, it runs privileged: {privileged}");
    kubectl.run(&["create", "namespace", TEST_NS])?;
    let tools_image = std::env::var("PODMIRROR_E2E_TOOLS_IMAGE").unwrap_or_else(|_| "nicolaka/netshoot:v0.13".into());
    let ctx = Ctx { kubectl: &kubectl, namespace: TEST_NS.into(), tools_image };

    step(
        "seed scenario (docs/concepts.md) from examples/seed-scenario/: ecs-test -> ecs-source:1234, copies to ecs-target, vni 1",
    );
    seed_from_examples(&Ctx { kubectl: &kubectl, namespace: "default".into(), tools_image: ctx.tools_image.clone() })?;

    step("source and target on the same node, vni 4");
    seed(&ctx, "y", "mirror-session-y", "mirror-filter-y", 4, (w1, w1))?;

    step("source and target on different nodes, vni 2");
    seed(&ctx, "x", "mirror-session-x", "mirror-filter-x", 2, (w1, w2))?;

    step("Service target with two collector replicas, vni 3");
    service_target(&ctx, w1, w2)?;

    step("a refused session (3 sessions per source pod)");
    quota(&ctx, w2)?;

    step("uninstall leaves nothing on any node");
    let mut pre_uninstall = Vec::new();
    if let Some(docker) = &t.docker {
        for node in &nodes {
            pre_uninstall.push((node.clone(), scenario::node_state(docker, node, PIN_DIR, DEVICE_PREFIX)?));
        }
        let on_w1 = &pre_uninstall.iter().find(|(n, _)| n == w1).context("state of w1")?.1;
        ensure!(
            !on_w1.pins.is_empty() && !on_w1.pinned.links.is_empty(),
            "before the uninstall {w1} shows no podmirror datapath ({on_w1:?}): the cleanup check would prove nothing"
        );
    }
    cmd::run_visible(&t.helm, &["uninstall", "podmirror", "-n", SYSTEM_NS, &kubeconfig, "--wait", "--timeout", "5m"])?;
    if let Some(docker) = &t.docker {
        let bpftool = tools::on_path("bpftool").context("bpftool")?;
        let live = bpfobj::live(&bpftool)?;
        let mut dirty = Vec::new();
        for ((node, base), (_, pre)) in baseline.iter().zip(&pre_uninstall) {
            let after = scenario::node_state(docker, node, PIN_DIR, DEVICE_PREFIX)?;
            dirty.extend(scenario::leftovers(base, &after).into_iter().map(|l| format!("{node}: {l}")));
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
    let hooks = kubectl.run(&["get", "daemonsets,jobs", "-n", SYSTEM_NS, "-o", "name"])?;
    ensure!(hooks.trim().is_empty(), "uninstall hook objects left: {hooks}");
    let reasons = kubectl.run(&[
        "get",
        "mirrorsessions",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Programmed\")].reason}{\"\\n\"}{end}",
    ])?;
    ensure!(
        !reasons.trim().is_empty() && reasons.lines().all(|r| r == "Uninstalled"),
        "after the uninstall every session must say Programmed=False/Uninstalled, got:\n{reasons}"
    );
    drop(cluster);
    Ok(())
}

/// The seed scenario exactly as examples/seed-scenario/README.md tells a
/// user to run it (its pods, its filter with the pods' IPs put in, its
/// session, in `default`). Its collector prints headers only, so a second
/// tcpdump with `-A` runs beside it for the payloads.
fn seed_from_examples(ctx: &Ctx<'_>) -> Result<()> {
    let dir = repo_root().join("examples").join("seed-scenario");
    let read = |name: &str| -> Result<String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))
    };
    ctx.kubectl.apply(&ctx.namespace, &read("pods.yaml")?)?;
    ctx.kubectl.run(&[
        "wait",
        "-n",
        &ctx.namespace,
        "--for=condition=Ready",
        "pod",
        "-l",
        "app.kubernetes.io/part-of=podmirror-seed-scenario",
        "--timeout=180s",
    ])?;
    let ip_of = |pod: &str| -> Result<IpAddr> {
        let ip = ctx.kubectl.jsonpath(&ctx.namespace, &format!("pod/{pod}"), "{.status.podIP}")?;
        ip.parse().with_context(|| format!("{pod}: podIP `{ip}`"))
    };
    let (client_ip, source_ip) = (ip_of("ecs-test")?, ip_of("ecs-source")?);
    let node_ip: IpAddr = {
        let ip = ctx.kubectl.jsonpath(&ctx.namespace, "pod/ecs-source", "{.status.hostIP}")?;
        ip.parse().with_context(|| format!("ecs-source: hostIP `{ip}`"))?
    };
    let seed_filter = read("filter.yaml")?;
    let filter = seed_filter
        .replace("192.168.0.161/32", &format!("{client_ip}/32"))
        .replace("192.168.0.230/32", &format!("{source_ip}/32"));
    ensure!(
        filter != seed_filter && !filter.contains("192.168.0."),
        "examples/seed-scenario/filter.yaml no longer carries the seed's 192.168.0.161/32 and 192.168.0.230/32"
    );
    ctx.kubectl.apply(&ctx.namespace, &filter)?;
    ctx.kubectl.apply(&ctx.namespace, &read("session.yaml")?)?;
    ctx.wait_phase("mirror-session-a", "Active")?;

    let long = "x".repeat(200);
    let payloads = ["hello", "12345"];
    let capture = "/tmp/podmirror-e2e.cap";
    eventually("mirror-session-a: copies at ecs-target", Duration::from_secs(90), || {
        let start = format!("(timeout 20 tcpdump -nne -l -A -p -i eth0 udp port 4789 > {capture} 2>&1 &); sleep 2");
        ctx.kubectl.run(&["exec", "-n", &ctx.namespace, "ecs-target", "--", "sh", "-c", &start])?;
        ctx.send_lines("ecs-test", source_ip, &[payloads[0], payloads[1], &long])?;
        let text = ctx.kubectl.run(&["exec", "-n", &ctx.namespace, "ecs-target", "--", "cat", capture])?;
        let with_payload = tcpdump::parse(&text);
        let collector = tcpdump::parse(&ctx.logs("ecs-target")?);
        Ok(scenario::check_seed_copies(&with_payload, 1, client_ip, source_ip, &payloads, PACKET_LENGTH)
            .and_then(|()| scenario::check_cut_to(&with_payload, 1, PACKET_LENGTH))
            .and_then(|()| scenario::check_outer_source(&with_payload, 1, node_ip))
            .and_then(|()| scenario::check_seed_copies(&collector, 1, client_ip, source_ip, &[], PACKET_LENGTH)))
    })?;
    let printed = ctx.logs("ecs-source")?;
    for p in payloads {
        ensure!(printed.contains(p), "ecs-source did not print `{p}`: the original traffic was disturbed:\n{printed}");
    }
    eprintln!("e2e: mirror-session-a (examples/seed-scenario): ok");
    Ok(())
}

/// One seed run: client, source and target pods (`prefix-test`,
/// `prefix-source`, `prefix-target`) on the given nodes, table 5 filter,
/// session with `vni`, `hello` and `12345` typed through nc.
fn seed(
    ctx: &Ctx<'_>,
    prefix: &str,
    session: &str,
    filter: &str,
    vni: u32,
    (source_node, target_node): (&str, &str),
) -> Result<()> {
    let source = format!("{prefix}-source");
    let target = format!("{prefix}-target");
    let client = format!("{prefix}-test");
    let source_ip = ctx.pod(&source, "source", source_node, &["nc", "-lk", "1234"])?;
    ctx.pod(&target, "collector", target_node, TCPDUMP)?;
    let client_ip = ctx.pod(&client, "client", source_node, &["sleep", "infinity"])?;
    let target_ref = format!("{{pod: {{name: {target}}}}}");
    ctx.session(&SessionParams {
        session,
        filter,
        priority: 1,
        vni,
        source: &source,
        client_ip,
        source_ip,
        target: &target_ref,
    })?;
    ctx.wait_phase(session, "Active")?;

    let long = "x".repeat(200);
    let payloads = ["hello", "12345"];
    eventually(&format!("{session}: copies at {target}"), Duration::from_secs(90), || {
        ctx.send_lines(&client, source_ip, &[payloads[0], payloads[1], &long])?;
        let copies = tcpdump::parse(&ctx.logs(&target)?);
        Ok(scenario::check_seed_copies(&copies, vni, client_ip, source_ip, &payloads, PACKET_LENGTH)
            .and_then(|()| scenario::check_cut_to(&copies, vni, PACKET_LENGTH)))
    })?;
    let printed = ctx.logs(&source)?;
    for p in payloads {
        ensure!(printed.contains(p), "{source} did not print `{p}`: the original traffic was disturbed:\n{printed}");
    }
    eprintln!("e2e: {session}: ok (vni {vni}, {source_node} -> {target_node})");
    Ok(())
}

fn service_target(ctx: &Ctx<'_>, source_node: &str, client_node: &str) -> Result<()> {
    let yaml = scenario::render(&scenario::template("collector-service.yaml")?, &[("image", &ctx.tools_image)])?;
    ctx.kubectl.apply(&ctx.namespace, &yaml)?;
    ctx.kubectl.run(&["rollout", "status", "-n", &ctx.namespace, "deployment/collector", "--timeout=180s"])?;
    let source_ip = ctx.pod("svc-source", "source", source_node, &["nc", "-lk", "1234"])?;
    let client_ip = ctx.pod("svc-test", "client", client_node, &["sleep", "infinity"])?;
    ctx.session(&SessionParams {
        session: "mirror-session-svc",
        filter: "mirror-filter-svc",
        priority: 1,
        vni: 3,
        source: "svc-source",
        client_ip,
        source_ip,
        target: "{service: {name: collector}}",
    })?;
    ctx.wait_phase("mirror-session-svc", "Active")?;

    let replicas = || -> Result<Vec<String>, podmirror_e2e::E2eError> {
        let names = ctx.kubectl.run(&["get", "pods", "-n", &ctx.namespace, "-l", "app=collector", "-o", "name"])?;
        Ok(names.lines().map(String::from).collect())
    };
    let captures = || -> Result<Vec<Vec<tcpdump::Copy>>, podmirror_e2e::E2eError> {
        replicas()?.iter().map(|p| Ok(tcpdump::parse(&ctx.logs(p)?))).collect()
    };
    // First make sure the session is programmed, then send the flows that count.
    eventually("svc: first copy reaches a collector", Duration::from_secs(90), || {
        ctx.send_lines("svc-test", source_ip, &["probe"])?;
        let seen = captures()?.iter().flatten().any(|c| c.vni == Some(3));
        Ok(if seen { Ok(()) } else { Err("no vni 3 copy yet".to_string()) })
    })?;
    const FLOWS: usize = 8;
    for i in 0..FLOWS {
        ctx.send_lines("svc-test", source_ip, &[&format!("flow-{i}")])?;
    }
    eventually("svc: every flow on exactly one replica", Duration::from_secs(60), || {
        Ok(scenario::check_flows_split(&captures()?, 3, FLOWS + 1))
    })?;
    let per_replica: Vec<usize> = captures()?.iter().map(|c| c.iter().filter(|c| c.vni == Some(3)).count()).collect();
    eprintln!("e2e: Service target: ok, copies per replica {per_replica:?}");
    Ok(())
}

fn quota(ctx: &Ctx<'_>, node: &str) -> Result<()> {
    let source_ip = ctx.pod("q-source", "source", node, &["nc", "-lk", "1234"])?;
    let client_ip: IpAddr = source_ip; // the filter content does not matter here
    let accepted = |s: &str| -> Result<(), podmirror_e2e::E2eError> {
        eventually(&format!("{s} Accepted=True"), Duration::from_secs(120), || {
            let (status, reason, message) = ctx.condition(s, "Accepted")?;
            Ok(if status == "True" { Ok(()) } else { Err(format!("Accepted={status} {reason}: {message}")) })
        })
    };
    let params = |session: &'static str, i: u32| SessionParams {
        session,
        filter: "mirror-filter-q",
        priority: i,
        vni: 10 + i,
        source: "q-source",
        client_ip,
        source_ip,
        target: "{pod: {name: y-target}}",
    };
    for (i, s) in [(1, "q1"), (2, "q2"), (3, "q3")] {
        ctx.session(&params(s, i))?;
        accepted(s)?;
    }
    ctx.session(&params("q4", 4))?;
    let message = eventually("q4 refused", Duration::from_secs(120), || {
        let (status, reason, message) = ctx.condition("q4", "Accepted")?;
        Ok(if status == "False" { Ok(format!("{reason}: {message}")) } else { Err(format!("Accepted=`{status}`")) })
    })?;
    ensure!(
        message.contains('3') && message.to_lowercase().contains("session"),
        "q4's Accepted=False condition does not name the quota (3 sessions per source pod): {message}"
    );
    for i in 1..=3 {
        accepted(&format!("q{i}"))?;
    }
    eprintln!("e2e: quota: ok (q4 refused: {message})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn images_split_into_repository_and_tag() {
        assert_eq!(
            split_image("registry.local:5000/pm/podmirror:v1").ok(),
            Some(("registry.local:5000/pm/podmirror", "v1"))
        );
        assert_eq!(split_image("podmirror:e2e").ok(), Some(("podmirror", "e2e")));
        assert!(split_image("registry.local:5000/podmirror").is_err(), "a registry port is no tag");
    }
}
