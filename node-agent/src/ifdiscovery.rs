//! Finds the host-side interface of a pod from its IP, in the node's network
//! namespace (the one the agent runs in).
//!
//! Two CNI shapes are covered:
//! - routed (Calico, Cilium in routing mode, kindnet's ptp): the node has a
//!   /32 route to the pod IP via the host side of the pod's veth, so
//!   `ip route get <ip>` names the veth directly;
//! - bridged (the bridge/flannel plugins, docker0): the route points at a
//!   bridge; the pod's MAC comes from the bridge's neighbour table and the
//!   bridge port that learned that MAC (the FDB) is the pod's veth.
//!
//! The JSON output of iproute2 (`-j`) is parsed by pure functions, tested on
//! captured samples; only `run` shells out.

use std::net::IpAddr;
use std::process::Command;

use serde_json::Value;

use crate::core::AgentError;

/// A host interface: its name and index in the node's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub ifindex: u32,
}

/// What `ip route get` says about one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHop {
    pub dev: String,
    /// Set when the destination is behind a router, i.e. not a local pod.
    pub gateway: Option<String>,
}

/// Parses `ip -j route get <ip>`.
pub fn parse_route_get(json: &str) -> Result<RouteHop, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("unreadable `ip -j route get` output: {e}"))?;
    let first = value.as_array().and_then(|a| a.first()).ok_or("`ip route get` returned no route")?;
    if first.get("type").and_then(Value::as_str).is_some_and(|t| t != "unicast") {
        return Err(format!("route type is {}", first["type"]));
    }
    let dev = first.get("dev").and_then(Value::as_str).ok_or("the route names no device")?;
    let gateway = first.get("gateway").and_then(Value::as_str).map(str::to_string);
    Ok(RouteHop { dev: dev.to_string(), gateway })
}

/// The MAC of `ip` in `ip -j neigh show` output, ignoring failed entries.
pub fn parse_neighbour_mac(json: &str, ip: &IpAddr) -> Result<Option<String>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("unreadable `ip -j neigh` output: {e}"))?;
    let wanted = ip.to_string();
    Ok(value.as_array().into_iter().flatten().find_map(|entry| {
        let dst = entry.get("dst").and_then(Value::as_str)?;
        let failed = entry
            .get("state")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|x| x.as_str() == Some("FAILED") || x.as_str() == Some("INCOMPLETE")));
        if dst != wanted || failed {
            return None;
        }
        entry.get("lladdr").and_then(Value::as_str).map(str::to_ascii_lowercase)
    }))
}

/// The bridge port that learned `mac`, from `bridge -j fdb show br <bridge>`.
/// The bridge's own entries (`self`, no `master`) are not ports.
pub fn parse_fdb_port(json: &str, mac: &str, bridge: &str) -> Result<Option<String>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("unreadable `bridge -j fdb` output: {e}"))?;
    let mac = mac.to_ascii_lowercase();
    Ok(value.as_array().into_iter().flatten().find_map(|entry| {
        let entry_mac = entry.get("mac").and_then(Value::as_str)?.to_ascii_lowercase();
        let port = entry.get("ifname").and_then(Value::as_str)?;
        let master = entry.get("master").and_then(Value::as_str);
        (entry_mac == mac && master == Some(bridge) && port != bridge).then(|| port.to_string())
    }))
}

/// Runs one iproute2 command and returns its stdout.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("`{program}` printed non-UTF-8: {e}"))
}

/// The index of interface `name` in the current network namespace.
///
/// Asked of the kernel (`if_nametoindex`, a socket ioctl in the caller's
/// network namespace), not read from /sys/class/net: sysfs shows the
/// namespace it was mounted in, which is not the agent's when it was moved
/// into a namespace with `nsenter --net` (as the demo and a hostNetwork pod
/// with a host /sys are).
pub fn ifindex_of(name: &str) -> Result<u32, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) || name.starts_with('.') {
        return Err(format!("{name:?} is not an interface name"));
    }
    let c_name = std::ffi::CString::new(name).map_err(|_| format!("{name:?} is not an interface name"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(format!("no interface named {name:?} on this node"));
    }
    Ok(index)
}

/// Parses `ip -j -d link show dev <name>`: is it a bridge?
pub fn parse_is_bridge(json: &str) -> Result<bool, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("unreadable `ip -j -d link` output: {e}"))?;
    Ok(value
        .as_array()
        .and_then(|a| a.first())
        .and_then(|l| l.get("linkinfo"))
        .and_then(|i| i.get("info_kind"))
        .and_then(Value::as_str)
        == Some("bridge"))
}

fn is_bridge(name: &str) -> Result<bool, String> {
    parse_is_bridge(&run("ip", &["-j", "-d", "link", "show", "dev", name])?)
}

/// The host interface of a pod named by interface name (`interface:` in the
/// standalone file), checked to exist.
pub fn by_name(pod: &str, name: &str) -> Result<HostInterface, AgentError> {
    let ifindex = ifindex_of(name).map_err(|message| AgentError::Discovery { pod: pod.to_string(), message })?;
    Ok(HostInterface { name: name.to_string(), ifindex })
}

/// The host interface of the pod that owns `ip`.
pub fn by_ip(pod: &str, ip: &IpAddr) -> Result<HostInterface, AgentError> {
    let fail = |message: String| AgentError::Discovery { pod: pod.to_string(), message: format!("{ip}: {message}") };
    let ip_text = ip.to_string();
    let hop = parse_route_get(&run("ip", &["-j", "route", "get", &ip_text]).map_err(fail)?).map_err(fail)?;
    if let Some(gateway) = hop.gateway {
        return Err(fail(format!("routed via {gateway} on {}: not a pod of this node", hop.dev)));
    }
    if hop.dev == "lo" {
        return Err(fail("is an address of the node itself".into()));
    }
    let dev = if is_bridge(&hop.dev).map_err(fail)? {
        let neigh = run("ip", &["-j", "neigh", "show", "to", &ip_text, "dev", &hop.dev]).map_err(fail)?;
        let mac = parse_neighbour_mac(&neigh, ip)
            .map_err(fail)?
            .ok_or_else(|| fail(format!("no neighbour entry on bridge {} (has the pod sent traffic yet?)", hop.dev)))?;
        let fdb = run("bridge", &["-j", "fdb", "show", "br", &hop.dev]).map_err(fail)?;
        parse_fdb_port(&fdb, &mac, &hop.dev)
            .map_err(fail)?
            .ok_or_else(|| fail(format!("no port of bridge {} has learned {mac}", hop.dev)))?
    } else {
        hop.dev
    };
    let ifindex = ifindex_of(&dev).map_err(fail)?;
    Ok(HostInterface { name: dev, ifindex })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routed_cni_names_the_veth() {
        // `ip -j route get 10.244.1.5` on a Calico node.
        let json = r#"[{"dst":"10.244.1.5","dev":"cali12ab34cd","prefsrc":"172.18.0.2","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(parse_route_get(json).unwrap(), RouteHop { dev: "cali12ab34cd".into(), gateway: None });
    }

    #[test]
    fn remote_pod_has_a_gateway_and_local_address_is_rejected() {
        let json = r#"[{"dst":"10.244.2.9","gateway":"172.18.0.3","dev":"eth0","prefsrc":"172.18.0.2","flags":[]}]"#;
        assert_eq!(parse_route_get(json).unwrap().gateway.as_deref(), Some("172.18.0.3"));
        let local = r#"[{"type":"local","dst":"172.18.0.2","dev":"lo","prefsrc":"172.18.0.2","flags":[]}]"#;
        assert!(parse_route_get(local).unwrap_err().contains("local"));
        assert!(parse_route_get("[]").unwrap_err().contains("no route"));
        assert!(parse_route_get("not json").unwrap_err().contains("unreadable"));
    }

    #[test]
    fn bridge_setup_goes_through_neighbour_and_fdb() {
        let neigh = r#"[{"dst":"10.88.0.7","dev":"cni0","lladdr":"AA:BB:CC:00:00:07","state":["REACHABLE"]},
                        {"dst":"10.88.0.8","dev":"cni0","state":["FAILED"]}]"#;
        let ip: IpAddr = "10.88.0.7".parse().unwrap();
        assert_eq!(parse_neighbour_mac(neigh, &ip).unwrap().as_deref(), Some("aa:bb:cc:00:00:07"));
        assert_eq!(parse_neighbour_mac(neigh, &"10.88.0.8".parse().unwrap()).unwrap(), None);
        let fdb = r#"[{"mac":"aa:bb:cc:00:00:07","ifname":"cni0","flags":[],"state":"permanent"},
                      {"mac":"33:33:00:00:00:01","ifname":"veth1","flags":["self"],"state":"permanent"},
                      {"mac":"aa:bb:cc:00:00:07","ifname":"veth7","master":"cni0","flags":[],"state":""}]"#;
        assert_eq!(parse_fdb_port(fdb, "AA:BB:CC:00:00:07", "cni0").unwrap().as_deref(), Some("veth7"));
        assert_eq!(parse_fdb_port(fdb, "aa:bb:cc:00:00:99", "cni0").unwrap(), None);
    }

    #[test]
    fn bridge_kind_comes_from_linkinfo() {
        let bridge = r#"[{"ifindex":4,"ifname":"cni0","linkinfo":{"info_kind":"bridge","info_data":{}}}]"#;
        let veth = r#"[{"ifindex":5,"ifname":"veth1","linkinfo":{"info_kind":"veth"}}]"#;
        let plain = r#"[{"ifindex":1,"ifname":"lo"}]"#;
        assert!(parse_is_bridge(bridge).unwrap());
        assert!(!parse_is_bridge(veth).unwrap());
        assert!(!parse_is_bridge(plain).unwrap());
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(ifindex_of("../etc").is_err());
        assert!(ifindex_of("").is_err());
        assert_eq!(ifindex_of("lo").ok(), Some(1), "lo is ifindex 1 in every namespace");
        let err = by_name("ns/p", "pmsa-does-not-exist").unwrap_err().to_string();
        assert!(err.contains("ns/p") && err.contains("pmsa-does-not-exist"), "{err}");
    }
}
