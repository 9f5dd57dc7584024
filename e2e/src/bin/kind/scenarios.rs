//! The scenarios of the kind run (docs/concepts.md): each sets up its pods,
//! filter and session in a namespace, sends traffic, and decides with the
//! pure checks of `podmirror_e2e::checks` on what the collectors captured.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use podmirror_e2e::kind::eventually;
use podmirror_e2e::scenario::{self, Ctx, SessionParams};
use podmirror_e2e::{checks, repo_root, tcpdump};

use super::{PACKET_LENGTH, TCPDUMP};

/// The seed scenario exactly as examples/seed-scenario/README.md tells a
/// user to run it (its pods, its filter with the pods' IPs put in, its
/// session, in `default`). Its collector prints headers only, so a second
/// tcpdump with `-A` runs beside it for the payloads.
pub fn seed_from_examples(ctx: &Ctx<'_>) -> Result<()> {
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
        Ok(checks::check_seed_copies(&with_payload, 1, client_ip, source_ip, &payloads, PACKET_LENGTH)
            .and_then(|()| checks::check_cut_to(&with_payload, 1, PACKET_LENGTH))
            .and_then(|()| checks::check_outer_source(&with_payload, 1, node_ip))
            .and_then(|()| checks::check_seed_copies(&collector, 1, client_ip, source_ip, &[], PACKET_LENGTH)))
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
pub fn seed(
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
        Ok(checks::check_seed_copies(&copies, vni, client_ip, source_ip, &payloads, PACKET_LENGTH)
            .and_then(|()| checks::check_cut_to(&copies, vni, PACKET_LENGTH)))
    })?;
    let printed = ctx.logs(&source)?;
    for p in payloads {
        ensure!(printed.contains(p), "{source} did not print `{p}`: the original traffic was disturbed:\n{printed}");
    }
    eprintln!("e2e: {session}: ok (vni {vni}, {source_node} -> {target_node})");
    Ok(())
}

/// A Service target with two collector replicas: each flow reaches exactly one.
pub fn service_target(ctx: &Ctx<'_>, source_node: &str, client_node: &str) -> Result<()> {
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
        Ok(checks::check_flows_split(&captures()?, 3, FLOWS + 1))
    })?;
    let per_replica: Vec<usize> = captures()?.iter().map(|c| c.iter().filter(|c| c.vni == Some(3)).count()).collect();
    eprintln!("e2e: Service target: ok, copies per replica {per_replica:?}");
    Ok(())
}

/// A fourth session on one source pod is refused; the three before stay accepted.
pub fn quota(ctx: &Ctx<'_>, node: &str) -> Result<()> {
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
