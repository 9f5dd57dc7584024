//! What podmirror may leave on a kind node (pins, devices, programs), read
//! before the install and after the uninstall, and what counts as left over.

use std::collections::BTreeSet;
use std::path::Path;

use crate::bpfobj::{self, Pinned};
use crate::{E2eError, cmd};

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
