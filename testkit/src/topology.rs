//! A "node" namespace with pods hanging off it by veth pairs (routed /32 and
//! /128 per pod, like kindnet/Calico: proxy ARP and a link-local gateway on
//! the host side) and remote hosts behind "underlay" veths. MTUs are knobs.

use super::netns::Netns;
use super::{Result, TestbedError, names::unique_name};

/// A pod to create: name, addresses, MTU of its veth.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub mtu: u32,
}

impl PodSpec {
    pub fn v4(name: &str, ipv4: &str) -> PodSpec {
        PodSpec { name: name.into(), ipv4: Some(ipv4.into()), ipv6: None, mtu: 1500 }
    }
    pub fn dual(name: &str, ipv4: &str, ipv6: &str) -> PodSpec {
        PodSpec { name: name.into(), ipv4: Some(ipv4.into()), ipv6: Some(ipv6.into()), mtu: 1500 }
    }
    pub fn mtu(mut self, mtu: u32) -> PodSpec {
        self.mtu = mtu;
        self
    }
}

/// A pod: its namespace (interface `eth0`) and its host-side veth in the node.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub host_ifname: String,
    /// ifindex of the host-side veth in the node namespace.
    pub host_ifindex: u32,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub netns: Netns,
}

/// A host outside the node, reached over an underlay veth (`eth0` inside).
#[derive(Debug)]
pub struct Remote {
    pub name: String,
    pub ip: String,
    /// The node's address on this underlay link (the copies' outer source).
    pub node_ip: String,
    pub node_ifname: String,
    pub ifname: String,
    pub netns: Netns,
}

/// The node and everything attached to it. Dropping it deletes all of it
/// (pods and remotes first, then the node namespace with its devices).
#[derive(Debug)]
pub struct Topology {
    pub tag: String,
    pub pods: Vec<Pod>,
    pub remotes: Vec<Remote>,
    pub node: Netns,
    links: u32,
}

impl Topology {
    /// A fresh node namespace `<tag>-node` with forwarding on; `prefix` is
    /// the caller's name prefix (e.g. `pmdp`).
    pub fn new(prefix: &str) -> Result<Topology> {
        let tag = unique_name(prefix);
        let node = Netns::create(&format!("{tag}-node"))?;
        node.sysctl("net.ipv4.ip_forward=1")?;
        node.sysctl("net.ipv6.conf.all.forwarding=1")?;
        Ok(Topology { tag, pods: Vec::new(), remotes: Vec::new(), node, links: 0 })
    }

    fn next_ifname(&mut self, kind: char) -> String {
        let n = self.links;
        self.links += 1;
        let name = format!("{}{kind}{n}", self.tag);
        // IFNAMSIZ: keep the unique head, it is what tells tests apart.
        name.chars().take(15).collect()
    }

    /// Add a pod; returns its index in `pods`.
    pub fn add_pod(&mut self, spec: PodSpec) -> Result<usize> {
        let ns = Netns::create(&format!("{}-{}", self.tag, spec.name))?;
        let host = self.next_ifname('h');
        let mtu = spec.mtu.to_string();
        self.node.ip(&[
            "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "netns", &ns.name, "mtu", &mtu,
        ])?;
        self.node.sysctl(&format!("net.ipv4.conf.{host}.proxy_arp=1"))?;
        // Answer proxy ARP at once (the default delays up to 0.8 s).
        self.node.sysctl(&format!("net.ipv4.neigh.{host}.proxy_delay=0"))?;
        self.node.ip(&["link", "set", &host, "up"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        if let Some(v4) = &spec.ipv4 {
            ns.ip(&["addr", "add", &format!("{v4}/32"), "dev", "eth0"])?;
            ns.ip(&["route", "add", "default", "dev", "eth0"])?;
            self.node.ip(&["route", "add", &format!("{v4}/32"), "dev", &host])?;
        }
        if let Some(v6) = &spec.ipv6 {
            self.node.ip(&["-6", "addr", "add", "fe80::1/64", "dev", &host, "nodad"])?;
            ns.ip(&["-6", "addr", "add", &format!("{v6}/128"), "dev", "eth0", "nodad"])?;
            ns.ip(&["-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"])?;
            self.node.ip(&["-6", "route", "add", &format!("{v6}/128"), "dev", &host])?;
        }
        let host_ifindex = self.node.ifindex(&host)?;
        self.pods.push(Pod {
            name: spec.name,
            host_ifname: host,
            host_ifindex,
            ipv4: spec.ipv4,
            ipv6: spec.ipv6,
            netns: ns,
        });
        Ok(self.pods.len() - 1)
    }

    /// Add a pod on the node's bridge `<tag>br` (made on first use, holding
    /// `gateway_cidr`), as the bridge plugin and flannel lay pods out: the
    /// host end is an address-less bridge port, pods reach each other over
    /// L2 and the node over the bridge. IPv4 only; returns the pod's index.
    pub fn add_bridged_pod(&mut self, spec: PodSpec, gateway_cidr: &str) -> Result<usize> {
        let bridge = format!("{}br", self.tag).chars().take(15).collect::<String>();
        if self.node.ifindex(&bridge).is_err() {
            self.node.ip(&["link", "add", &bridge, "type", "bridge"])?;
            self.node.ip(&["addr", "add", gateway_cidr, "dev", &bridge])?;
            self.node.ip(&["link", "set", &bridge, "up"])?;
        }
        let ns = Netns::create(&format!("{}-{}", self.tag, spec.name))?;
        let host = self.next_ifname('b');
        let mtu = spec.mtu.to_string();
        self.node.ip(&[
            "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "netns", &ns.name, "mtu", &mtu,
        ])?;
        self.node.ip(&["link", "set", &host, "master", &bridge, "up"])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        let gateway = gateway_cidr.split('/').next().unwrap_or(gateway_cidr);
        if let Some(v4) = &spec.ipv4 {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
            ns.ip(&["route", "add", "default", "via", gateway])?;
        }
        let host_ifindex = self.node.ifindex(&host)?;
        self.pods.push(Pod {
            name: spec.name,
            host_ifname: host,
            host_ifindex,
            ipv4: spec.ipv4,
            ipv6: None,
            netns: ns,
        });
        Ok(self.pods.len() - 1)
    }

    /// The datapath tests' usual node: pods `client` (192.168.0.161) and
    /// `source` (192.168.0.230) of `pod_mtu`, and a remote `collector`
    /// (10.77.0.2, node side 10.77.0.1) behind a 1500-byte underlay.
    pub fn client_source_collector(prefix: &str, pod_mtu: u32) -> Result<Topology> {
        let mut topo = Topology::new(prefix)?;
        topo.add_pod(PodSpec::v4("client", "192.168.0.161").mtu(pod_mtu))?;
        topo.add_pod(PodSpec::v4("source", "192.168.0.230").mtu(pod_mtu))?;
        topo.add_remote("collector", "10.77.0.2", "10.77.0.1", 1500)?;
        Ok(topo)
    }

    /// Add a remote host at `ip` (IPv4, /24 with `node_ip`) behind an
    /// underlay veth of `mtu`; returns its index in `remotes`.
    pub fn add_remote(&mut self, name: &str, ip_addr: &str, node_ip: &str, mtu: u32) -> Result<usize> {
        let ns = Netns::create(&format!("{}-{name}", self.tag))?;
        let ul = self.next_ifname('u');
        let m = mtu.to_string();
        self.node.ip(&[
            "link", "add", &ul, "mtu", &m, "type", "veth", "peer", "name", "eth0", "netns", &ns.name, "mtu", &m,
        ])?;
        self.node.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", &ul])?;
        self.node.ip(&["link", "set", &ul, "up"])?;
        ns.ip(&["addr", "add", &format!("{ip_addr}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "via", node_ip])?;
        self.remotes.push(Remote {
            name: name.into(),
            ip: ip_addr.into(),
            node_ip: node_ip.into(),
            node_ifname: ul,
            ifname: "eth0".into(),
            netns: ns,
        });
        Ok(self.remotes.len() - 1)
    }

    /// Give the node an address of its own (on `lo`), e.g. the source of
    /// copies to pods on the same node when it has no underlay address.
    pub fn add_node_address(&self, cidr: &str) -> Result<()> {
        self.node.ip(&["addr", "add", cidr, "dev", "lo"]).map(|_| ())
    }

    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods.iter().find(|p| p.name == name).ok_or_else(|| TestbedError::Setup(format!("no pod {name}")))
    }

    pub fn remote(&self, name: &str) -> Result<&Remote> {
        self.remotes.iter().find(|r| r.name == name).ok_or_else(|| TestbedError::Setup(format!("no remote {name}")))
    }

    /// Names of all namespaces this topology made (for leak checks).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pods.iter().map(|p| p.netns.name.clone()).collect();
        v.extend(self.remotes.iter().map(|r| r.netns.name.clone()));
        v.push(self.node.name.clone());
        v
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.pods.clear();
        self.remotes.clear();
        // The node namespace goes with its own Drop after this.
    }
}
