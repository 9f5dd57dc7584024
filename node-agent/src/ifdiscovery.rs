//! Finds the host-side interface of a pod from its IPs, in the node's
//! network namespace (the one the agent runs in), with no traffic needed.
//!
//! Every CNI connects a pod with a pair of devices: one end in the pod's
//! network namespace holds the pod IP, the other end sits in the node's
//! namespace, alone (routed and ptp CNIs: Calico `cali*`, Cilium `lxc*`,
//! kindnet) or as a bridge port (the bridge plugin, flannel). The kernel
//! tells both halves over netlink: a link dump of the node's namespace gives
//! each such host link with its peer's namespace id and ifindex, and an
//! address dump addressed to that namespace id (`IFA_TARGET_NETNSID`) gives
//! the addresses there. Neither neighbour tables nor bridge FDBs are read,
//! so a pod that has not sent anything yet is found too.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::core::AgentError;
use crate::datapath::netlink::addr::{self, InterfaceAddr};
use crate::datapath::netlink::link::{self, PeeredLink};
use crate::datapath::netlink::socket::Socket;

/// A host interface: its name and index in the node's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub ifindex: u32,
}

/// Addresses that identify no pod: every namespace has its own loopback,
/// and link-local addresses repeat from one namespace to the next.
fn identifies_a_pod(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    }
}

/// Which host link leads to each pod address: the link whose peer holds
/// the address, or, when the address sits on another interface of the
/// peer's namespace, the only host link into that namespace.
pub fn index(links: &[PeeredLink], addrs: &BTreeMap<i32, Vec<InterfaceAddr>>) -> HashMap<IpAddr, HostInterface> {
    let host = |l: &PeeredLink| HostInterface { name: l.name.clone(), ifindex: l.ifindex };
    let mut by_ns: BTreeMap<i32, Vec<&PeeredLink>> = BTreeMap::new();
    for l in links {
        by_ns.entry(l.peer_netnsid).or_default().push(l);
    }
    let mut out = HashMap::new();
    for (netnsid, ns_links) in &by_ns {
        for a in addrs.get(netnsid).into_iter().flatten().filter(|a| identifies_a_pod(&a.ip)) {
            let exact = ns_links.iter().find(|l| l.peer_ifindex == a.ifindex);
            let only = (ns_links.len() == 1).then(|| ns_links[0]);
            if let Some(l) = exact.copied().or(only) {
                out.insert(a.ip, host(l));
            }
        }
    }
    out
}

/// One look at the node: every pod address behind a host link.
#[derive(Debug, Default)]
pub struct PodLinks {
    by_ip: HashMap<IpAddr, HostInterface>,
}

impl PodLinks {
    /// Asks the kernel (this thread's network namespace is the node's).
    pub fn scan() -> Result<PodLinks, String> {
        let socket = Socket::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
        let links = link::peered_links(&socket).map_err(|e| e.to_string())?;
        let mut addrs = BTreeMap::new();
        for netnsid in links.iter().map(|l| l.peer_netnsid) {
            if let std::collections::btree_map::Entry::Vacant(slot) = addrs.entry(netnsid) {
                // A pod deleted between the two dumps has no addresses left: skip it.
                slot.insert(addr::addresses_in(&socket, netnsid).unwrap_or_default());
            }
        }
        Ok(PodLinks { by_ip: index(&links, &addrs) })
    }

    /// The host interface of the pod that holds `ip`.
    pub fn get(&self, ip: &IpAddr) -> Option<&HostInterface> {
        self.by_ip.get(ip)
    }
}

/// Finds pods' host interfaces during one pass of the agent: the node is
/// scanned on first use, and once more when a pod is missing (it may have
/// started since), never more than twice per pass.
#[derive(Debug, Default)]
pub struct Finder {
    links: Option<PodLinks>,
    rescanned: bool,
}

impl Finder {
    pub fn new() -> Finder {
        Finder::default()
    }

    /// The host interface of pod `pod` from the first of its `ips` that
    /// leads to one.
    pub fn find(&mut self, pod: &str, ips: &[String]) -> Result<HostInterface, AgentError> {
        let fail = |message: String| AgentError::Discovery { pod: pod.to_string(), message };
        if ips.is_empty() {
            return Err(fail("the pod has no IP".into()));
        }
        let mut parsed = Vec::new();
        for text in ips {
            parsed.push(text.parse::<IpAddr>().map_err(|_| fail(format!("{text:?} is not an IP")))?);
        }
        for attempt in 0..2 {
            if self.links.is_none() || (attempt == 1 && !self.rescanned) {
                self.rescanned |= self.links.is_some();
                self.links = Some(PodLinks::scan().map_err(fail)?);
            }
            if let Some(found) = parsed.iter().find_map(|ip| self.links.as_ref().and_then(|l| l.get(ip))) {
                return Ok(found.clone());
            }
        }
        let shown: Vec<String> = parsed.iter().map(IpAddr::to_string).collect();
        Err(fail(format!(
            "{}: no interface of this node leads to a network namespace holding this address \
             (not a pod of this node, or a hostNetwork pod)",
            shown.join(", ")
        )))
    }
}

/// The host interface of the pod that owns `ip` (one scan of the node).
pub fn by_ip(pod: &str, ip: &IpAddr) -> Result<HostInterface, AgentError> {
    Finder::new().find(pod, &[ip.to_string()])
}

/// The index of interface `name` in the current network namespace.
///
/// Asked of the kernel (`if_nametoindex`, in the caller's network
/// namespace), not read from /sys/class/net: sysfs shows the namespace it
/// was mounted in, which is not the agent's when it was moved into a
/// namespace with `nsenter --net`.
pub fn ifindex_of(name: &str) -> Result<u32, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) || name.starts_with('.') {
        return Err(format!("{name:?} is not an interface name"));
    }
    link::ifindex(name).ok_or_else(|| format!("no interface named {name:?} on this node"))
}

/// The host interface of a pod named by interface name (`interface:` in the
/// standalone file), checked to exist.
pub fn by_name(pod: &str, name: &str) -> Result<HostInterface, AgentError> {
    let ifindex = ifindex_of(name).map_err(|message| AgentError::Discovery { pod: pod.to_string(), message })?;
    Ok(HostInterface { name: name.to_string(), ifindex })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn peered(ifindex: u32, name: &str, netnsid: i32, peer_ifindex: u32) -> PeeredLink {
        PeeredLink { ifindex, name: name.into(), kind: Some("veth".into()), peer_netnsid: netnsid, peer_ifindex }
    }

    fn addr(ifindex: u32, ip: &str) -> InterfaceAddr {
        InterfaceAddr { ifindex, ip: ip.parse().unwrap() }
    }

    #[test]
    fn each_pod_address_maps_to_the_host_end_of_its_own_pair() {
        let links = vec![peered(10, "veth-a", 0, 2), peered(11, "cali-b", 1, 2)];
        let addrs = BTreeMap::from([
            (0, vec![addr(1, "127.0.0.1"), addr(2, "10.244.0.5"), addr(2, "fe80::1"), addr(2, "fd00::5")]),
            (1, vec![addr(1, "127.0.0.1"), addr(2, "10.244.0.6"), addr(2, "fe80::1")]),
        ]);
        let idx = index(&links, &addrs);
        let at = |ip: &str| idx.get(&ip.parse().unwrap()).map(|h| h.name.clone());
        assert_eq!(at("10.244.0.5").as_deref(), Some("veth-a"));
        assert_eq!(at("fd00::5").as_deref(), Some("veth-a"));
        assert_eq!(at("10.244.0.6").as_deref(), Some("cali-b"));
        assert_eq!(at("127.0.0.1"), None, "every namespace has a loopback");
        assert_eq!(at("fe80::1"), None, "link-local addresses repeat across namespaces");
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn an_address_on_another_interface_needs_a_single_link_into_its_namespace() {
        // A pod whose IP sits on a second interface (ifindex 5) of its namespace.
        let one = vec![peered(10, "veth-a", 0, 2)];
        let addrs = BTreeMap::from([(0, vec![addr(5, "10.1.0.9")])]);
        assert_eq!(index(&one, &addrs).get(&"10.1.0.9".parse().unwrap()).map(|h| h.ifindex), Some(10));
        // Two links into that namespace: which one carries it is unknown, so none is guessed.
        let two = vec![peered(10, "veth-a", 0, 2), peered(12, "veth-c", 0, 3)];
        assert!(index(&two, &addrs).is_empty());
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(ifindex_of("../etc").is_err());
        assert!(ifindex_of("").is_err());
        assert_eq!(ifindex_of("lo").ok(), Some(1), "lo is ifindex 1 in every namespace");
        let err = by_name("ns/p", "pmsa-does-not-exist").unwrap_err().to_string();
        assert!(err.contains("ns/p") && err.contains("pmsa-does-not-exist"), "{err}");
    }

    #[test]
    fn a_pod_without_a_usable_ip_is_named_in_the_error() {
        let mut finder = Finder::new();
        let err = finder.find("ns/p", &[]).unwrap_err().to_string();
        assert!(err.contains("ns/p") && err.contains("no IP"), "{err}");
        let err = finder.find("ns/p", &["not-an-ip".into()]).unwrap_err().to_string();
        assert!(err.contains("\"not-an-ip\" is not an IP"), "{err}");
    }
}
