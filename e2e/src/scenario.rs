//! The kind e2e scenarios: the I/O steps (apply, exec, logs) and the pure
//! checks that decide each one (unit-tested below on synthetic captures).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::bpfobj::{self, Pinned};
use crate::kind::{Kubectl, eventually};
use crate::tcpdump::{Copy, Flow};
use crate::{E2eError, cmd, repo_root};

/// Replaces every `{{key}}` of `template`. A placeholder left over is an
/// error, so a typo in a manifest cannot produce a half-filled object.
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, E2eError> {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    // Comments may mention placeholders; only the YAML body must be filled.
    let body: String = out.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    match body.find("{{") {
        Some(at) => Err(E2eError::Step {
            step: "render manifest".into(),
            reason: format!("unfilled placeholder near `{}`", &body[at..(at + 30).min(body.len())]),
        }),
        None => Ok(out),
    }
}

/// A manifest template of `e2e/manifests/`.
pub fn template(name: &str) -> Result<String, E2eError> {
    let path = repo_root().join("e2e").join("manifests").join(name);
    std::fs::read_to_string(&path).map_err(|source| E2eError::Io { path, source })
}

/// One session of `manifests/session.yaml` and the filter it uses.
pub struct SessionParams<'a> {
    pub session: &'a str,
    pub filter: &'a str,
    pub priority: u32,
    pub vni: u32,
    /// The source pod's name.
    pub source: &'a str,
    /// Table 5's source CIDR (the client) and destination CIDR (the source pod).
    pub client_ip: IpAddr,
    pub source_ip: IpAddr,
    /// The `target:` value, inline YAML (`{pod: {name: x}}`, `{service: ...}`).
    pub target: &'a str,
}

/// The test namespace and the tools image of a run.
pub struct Ctx<'a> {
    pub kubectl: &'a Kubectl,
    pub namespace: String,
    /// An image with sh, nc (OpenBSD flavour) and tcpdump.
    pub tools_image: String,
}

impl Ctx<'_> {
    /// Starts a pod on `node` running `command`, waits until it is Ready and
    /// returns its IP.
    pub fn pod(&self, name: &str, role: &str, node: &str, command: &[&str]) -> Result<IpAddr, E2eError> {
        let command = serde_json::to_string(command)
            .map_err(|e| E2eError::Step { step: format!("pod {name}"), reason: e.to_string() })?;
        let yaml = render(
            &template("pods.yaml")?,
            &[("name", name), ("role", role), ("node", node), ("image", &self.tools_image), ("command", &command)],
        )?;
        self.kubectl.apply(&self.namespace, &yaml)?;
        self.kubectl.run(&[
            "wait",
            "-n",
            &self.namespace,
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=180s",
        ])?;
        let ip = self.kubectl.jsonpath(&self.namespace, &format!("pod/{name}"), "{.status.podIP}")?;
        ip.parse().map_err(|_| E2eError::Step {
            step: format!("pod {name}"),
            reason: format!("status.podIP `{ip}` is not an IP"),
        })
    }

    /// The seed filter (table 5 with real IPs) and a session using it.
    pub fn session(&self, p: &SessionParams<'_>) -> Result<(), E2eError> {
        let yaml = render(
            &template("session.yaml")?,
            &[
                ("session", p.session),
                ("filter", p.filter),
                ("priority", &p.priority.to_string()),
                ("vni", &p.vni.to_string()),
                ("source", p.source),
                ("client_ip", &p.client_ip.to_string()),
                ("source_ip", &p.source_ip.to_string()),
                ("target", p.target),
            ],
        )?;
        self.kubectl.apply(&self.namespace, &yaml)
    }

    /// Waits until the session's `status.phase` is `phase`.
    pub fn wait_phase(&self, session: &str, phase: &str) -> Result<(), E2eError> {
        eventually(&format!("session {session} phase {phase}"), Duration::from_secs(180), || {
            let got = self.kubectl.jsonpath(&self.namespace, &format!("mirrorsession/{session}"), "{.status.phase}")?;
            Ok(if got == phase { Ok(()) } else { Err(format!("phase is `{got}`")) })
        })
    }

    /// A condition of a session: (status, reason, message).
    pub fn condition(&self, session: &str, kind: &str) -> Result<(String, String, String), E2eError> {
        let obj = format!("mirrorsession/{session}");
        let get = |field: &str| {
            self.kubectl.jsonpath(
                &self.namespace,
                &obj,
                &format!("{{.status.conditions[?(@.type==\"{kind}\")].{field}}}"),
            )
        };
        Ok((get("status")?, get("reason")?, get("message")?))
    }

    /// Types `lines` into one TCP connection from `client` to `ip:1234`, one
    /// line a second (so each is its own segment, as in the seed).
    pub fn send_lines(&self, client: &str, ip: IpAddr, lines: &[&str]) -> Result<(), E2eError> {
        let script: String = lines.iter().map(|l| format!("echo '{l}'; sleep 1; ")).collect();
        let sh = format!("({script}) | nc -w 3 {ip} 1234");
        self.kubectl.run(&["exec", "-n", &self.namespace, client, "--", "sh", "-c", &sh]).map(|_| ())
    }

    /// Logs of a pod (or `deployment/x`, `pod/x`).
    pub fn logs(&self, pod: &str) -> Result<String, E2eError> {
        self.kubectl.run(&["logs", "-n", &self.namespace, pod])
    }
}

/// docs/concepts.md (seed scenario): for each payload a copy with `vni`, inner `client -> source:1234`
/// `Flags [P.]` carrying it, every copy cut to `packet_length` bytes of inner
/// frame, and no copy of the source's replies (no outbound rule).
/// Every copy with `vni` left from `node_ip`, the address of the node
/// hosting the source (not, say, a CNI bridge's address).
pub fn check_outer_source(copies: &[Copy], vni: u32, node_ip: IpAddr) -> Result<(), String> {
    let ours: Vec<&Copy> = copies.iter().filter(|c| c.vni == Some(vni)).collect();
    if ours.is_empty() {
        return Err(format!("no VXLAN copy with vni {vni}"));
    }
    match ours.iter().find(|c| c.outer.as_ref().map(|f| f.src) != Some(node_ip)) {
        Some(bad) => Err(format!(
            "a vni {vni} copy left from {:?}, not the node's {node_ip}:\n{}",
            bad.outer.as_ref().map(|f| f.src),
            bad.text
        )),
        None => Ok(()),
    }
}

pub fn check_seed_copies(
    copies: &[Copy],
    vni: u32,
    client: IpAddr,
    source: IpAddr,
    payloads: &[&str],
    packet_length: usize,
) -> Result<(), String> {
    let ours: Vec<&Copy> = copies.iter().filter(|c| c.vni == Some(vni)).collect();
    if ours.is_empty() {
        return Err(format!("no VXLAN copy with vni {vni} among {} captured", copies.len()));
    }
    for payload in payloads {
        let found = ours.iter().any(|c| {
            c.inner.as_ref().is_some_and(|f| f.src == client && f.dst == source && f.dport == 1234)
                && c.inner_flags.as_deref() == Some("P.")
                && c.text.contains(payload)
        });
        if !found {
            return Err(format!("no vni {vni} copy of {client} -> {source}:1234 [P.] carrying `{payload}`"));
        }
    }
    if let Some(reply) = ours.iter().find(|c| c.inner.as_ref().is_some_and(|f| f.src == source && f.sport == 1234)) {
        return Err(format!("a reply of the source was copied (no outbound rule): {}", reply.text));
    }
    // Outer Ethernet + IPv4 + UDP + VXLAN headers, then at most packetLength bytes.
    let max = 14 + 20 + 8 + 8 + packet_length;
    if let Some(long) = ours.iter().find(|c| c.outer_frame_len.is_some_and(|l| l > max)) {
        return Err(format!(
            "a copy is longer than {max} bytes (packetLength {packet_length}): {:?}",
            long.outer_frame_len
        ));
    }
    Ok(())
}

/// `packetLength` really cuts: some copy (of a long segment) is exactly
/// headers + `packet_length` bytes long.
pub fn check_cut_to(copies: &[Copy], vni: u32, packet_length: usize) -> Result<(), String> {
    let cut = 14 + 20 + 8 + 8 + packet_length;
    if copies.iter().any(|c| c.vni == Some(vni) && c.outer_frame_len == Some(cut)) {
        Ok(())
    } else {
        Err(format!("no vni {vni} copy is exactly {cut} bytes: the long segment was not cut to {packet_length}"))
    }
}

/// docs/wire-format.md for a Service target: every inner flow with `vni` was seen by
/// exactly one collector replica, and all `expected` flows were seen.
pub fn check_flows_split(per_replica: &[Vec<Copy>], vni: u32, expected: usize) -> Result<(), String> {
    let mut seen_by: BTreeMap<Flow, BTreeSet<usize>> = BTreeMap::new();
    for (replica, copies) in per_replica.iter().enumerate() {
        for copy in copies.iter().filter(|c| c.vni == Some(vni)) {
            if let Some(flow) = &copy.inner {
                seen_by.entry(flow.clone()).or_default().insert(replica);
            }
        }
    }
    if let Some((flow, replicas)) = seen_by.iter().find(|(_, r)| r.len() > 1) {
        return Err(format!("flow {flow:?} was split over replicas {replicas:?}"));
    }
    if seen_by.len() < expected {
        return Err(format!("{} of {expected} flows reached a collector", seen_by.len()));
    }
    Ok(())
}

/// What podmirror may leave on a node: its pins, its devices, its programs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeState {
    /// Entries under the pin dir.
    pub pins: Vec<String>,
    /// Network devices whose name starts with the agent's device prefix.
    pub devices: Vec<String>,
    /// (attach kind, program name) of every tc/tcx/xdp program in the node's
    /// network namespace (`bpftool net show`; old bpftool builds omit TCX,
    /// which `pinned` covers).
    pub programs: BTreeSet<(String, String)>,
    /// Ids of the links (TCX attachments) and programs pinned in the pin dir.
    pub pinned: Pinned,
}

/// Device names from `ip -o link show` that start with `prefix`.
pub fn devices_with_prefix(ip_link: &str, prefix: &str) -> Vec<String> {
    ip_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// (kind, name) of each program in `bpftool -j net show` output.
pub fn net_programs(bpftool_json: &str) -> Result<BTreeSet<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_str(bpftool_json).map_err(|e| format!("bpftool JSON: {e}"))?;
    let mut out = BTreeSet::new();
    for entry in v.as_array().into_iter().flatten() {
        for (section, list) in entry.as_object().into_iter().flatten() {
            for prog in list.as_array().into_iter().flatten() {
                let kind = prog.get("kind").and_then(|k| k.as_str()).unwrap_or(section);
                let name = prog.get("name").and_then(|n| n.as_str()).unwrap_or("<unnamed>");
                out.insert((kind.to_string(), name.to_string()));
            }
        }
    }
    Ok(out)
}

/// What `after` holds that a clean node must not: any pin, any prefixed
/// device, any program that was not there before podmirror was installed.
pub fn leftovers(before: &NodeState, after: &NodeState) -> Vec<String> {
    let mut found: Vec<String> = after.pins.iter().map(|p| format!("pin {p}")).collect();
    found.extend(after.devices.iter().map(|d| format!("device {d}")));
    found.extend(after.programs.difference(&before.programs).map(|(k, n)| format!("program {n} ({k})")));
    found
}

/// Reads a kind node's state: pins and devices through `docker exec`, and the
/// programs with the host's bpftool inside the node's network namespace (kind
/// nodes share the host kernel; needs root on the host).
pub fn node_state(docker: &Path, node: &str, pin_dir: &str, device_prefix: &str) -> Result<NodeState, E2eError> {
    let ls = format!("ls -A {pin_dir} 2>/dev/null || true");
    let pins = cmd::run(docker, &["exec", node, "sh", "-c", &ls])?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let links = cmd::run(docker, &["exec", node, "ip", "-o", "link", "show"])?;
    let pid = cmd::run(docker, &["inspect", "-f", "{{.State.Pid}}", node])?;
    let bpftool = crate::tools::on_path("bpftool").ok_or(E2eError::ToolMissing {
        tool: "bpftool",
        hint: "the uninstall check lists tc/tcx programs with the host's bpftool".into(),
    })?;
    let nsenter = crate::tools::on_path("nsenter").ok_or(E2eError::ToolMissing {
        tool: "nsenter",
        hint: "util-linux nsenter enters the kind node's network namespace".into(),
    })?;
    let net = cmd::run(&nsenter, &["-t", pid.trim(), "-n", &bpftool.to_string_lossy(), "-j", "net", "show"])?;
    let programs =
        net_programs(&net).map_err(|reason| E2eError::Step { step: format!("bpftool net show on {node}"), reason })?;
    // The node's bpffs is reachable from the host through its root.
    let pinned = bpfobj::pinned(&[], &bpftool, &format!("/proc/{}/root{pin_dir}", pid.trim()))?;
    Ok(NodeState { pins, devices: devices_with_prefix(&links, device_prefix), programs, pinned })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(
        vni: u32,
        (src, sport): (&str, u16),
        (dst, dport): (&str, u16),
        flags: &str,
        text: &str,
        len: usize,
    ) -> Copy {
        Copy {
            vni: Some(vni),
            outer: Some(Flow {
                src: "172.18.0.3".parse().expect("ip"),
                sport: 50000,
                dst: dst.parse().expect("ip"),
                dport: 4789,
            }),
            inner: Some(Flow { src: src.parse().expect("ip"), sport, dst: dst.parse().expect("ip"), dport }),
            inner_flags: Some(flags.into()),
            outer_frame_len: Some(len),
            text: text.into(),
        }
    }

    const C: &str = "10.244.1.5";
    const S: &str = "10.244.1.6";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn render_fills_and_refuses_leftovers() {
        assert_eq!(render("a: {{x}}", &[("x", "1")]).expect("filled"), "a: 1");
        assert!(render("a: {{x}}\nb: {{y}}", &[("x", "1")]).is_err());
        assert!(render("# {{doc}}\na: 1", &[]).is_ok(), "comments may keep placeholders");
    }

    #[test]
    fn outer_source_must_be_the_node_address() {
        let copies = vec![copy(1, (C, 40000), (S, 1234), "P.", "hello", 120)];
        check_outer_source(&copies, 1, ip("172.18.0.3")).expect("the node's address");
        let err = check_outer_source(&copies, 1, ip("10.244.1.1")).expect_err("a bridge address is not the node");
        assert!(err.contains("not the node's 10.244.1.1"), "{err}");
        assert!(check_outer_source(&copies, 2, ip("172.18.0.3")).is_err(), "no copy of that vni");
    }

    #[test]
    fn seed_check_passes_on_the_seed_capture() {
        let copies = vec![
            copy(1, (C, 40000), (S, 1234), "P.", "hello", 120),
            copy(1, (C, 40000), (S, 1234), "P.", "12345", 120),
        ];
        check_seed_copies(&copies, 1, ip(C), ip(S), &["hello", "12345"], 96).expect("seed passes");
    }

    #[test]
    fn seed_check_fails_on_each_way_of_being_wrong() {
        let good = copy(1, (C, 40000), (S, 1234), "P.", "hello", 120);
        // wrong VNI
        assert!(
            check_seed_copies(&[copy(2, (C, 40000), (S, 1234), "P.", "hello", 120)], 1, ip(C), ip(S), &["hello"], 96)
                .is_err()
        );
        // payload missing
        assert!(check_seed_copies(std::slice::from_ref(&good), 1, ip(C), ip(S), &["hello", "12345"], 96).is_err());
        // an outbound reply copied
        let reply = copy(1, (S, 1234), (C, 40000), ".", "", 80);
        assert!(check_seed_copies(&[good.clone(), reply], 1, ip(C), ip(S), &["hello"], 96).is_err());
        // not cut to packetLength
        let long = copy(1, (C, 40000), (S, 1234), "P.", "x", 400);
        assert!(check_seed_copies(&[good, long], 1, ip(C), ip(S), &["hello"], 96).is_err());
    }

    #[test]
    fn a_long_segment_must_be_cut_to_packet_length() {
        let short = copy(1, (C, 40000), (S, 1234), "P.", "hello", 120);
        let cut = copy(1, (C, 40000), (S, 1234), "P.", "xxxx", 146);
        assert!(check_cut_to(std::slice::from_ref(&short), 1, 96).is_err());
        check_cut_to(&[short, cut], 1, 96).expect("cut copy found");
    }

    #[test]
    fn flows_must_not_be_split_over_replicas() {
        let a = copy(3, (C, 40001), (S, 1234), "P.", "", 100);
        let b = copy(3, (C, 40002), (S, 1234), "P.", "", 100);
        check_flows_split(&[vec![a.clone()], vec![b.clone()]], 3, 2).expect("one flow per replica");
        assert!(check_flows_split(&[vec![a.clone()], vec![a.clone(), b.clone()]], 3, 2).is_err());
        assert!(check_flows_split(&[vec![a], vec![]], 3, 2).is_err(), "a flow is missing");
    }

    #[test]
    fn node_leftovers_ignore_what_was_there_before() {
        let net = r#"[{"xdp":[],"tc":[{"devname":"eth0","ifindex":2,"kind":"tcx/ingress","name":"pm_ingress","prog_id":7}],"flow_dissector":[]}]"#;
        let programs = net_programs(net).expect("json");
        assert!(programs.contains(&("tcx/ingress".to_string(), "pm_ingress".to_string())));
        let before = NodeState::default();
        let after = NodeState {
            pins: vec!["maps".into()],
            devices: devices_with_prefix("1: lo: <LOOPBACK>\n7: pmvx0@NONE: <UP>\n", "pm"),
            programs: programs.clone(),
            pinned: Pinned::default(),
        };
        assert_eq!(after.devices, vec!["pmvx0".to_string()]);
        assert_eq!(leftovers(&before, &after).len(), 3);
        let same = NodeState { programs, ..NodeState::default() };
        assert!(leftovers(&same, &same).is_empty());
    }
}
