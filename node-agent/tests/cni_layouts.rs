//! Interface discovery on the layouts real CNIs build (root), each with pods
//! that have sent nothing and that the node has never talked to, so no
//! neighbour entry and no learned FDB entry exists:
//! - routed (Calico `cali*`, Cilium `lxc*`): a /32 route to the pod via its
//!   veth, no address on the host end (the testbed's pods);
//! - ptp (the ptp plugin, kindnet): the host end holds a /32 gateway
//!   address, the pod a /32 with a route via it;
//! - bridge (the bridge plugin, flannel, k3s): the host end is a bridge
//!   port, the route points at the bridge;
//! - a dual-stack pod found by its IPv6 address, and an address of no pod.
//!
//! Prints `SKIPPED:` off root and fails under `CI=true` when it cannot run.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use podmirror_agent::ifdiscovery::{self, Finder};
use podmirror_testkit::{self as testbed, Netns, PodSpec, Topology};

/// A pod namespace whose `eth0` is the peer of `host` in the node namespace.
fn pair(topo: &Topology, pod: &Netns, host: &str) {
    topo.node.ip(&["link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", &pod.name]).unwrap();
    pod.ip(&["link", "set", "lo", "up"]).unwrap();
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();
}

/// The bridge plugin's layout: `<tag>br` 10.88.0.1/24, the pod's veth a port.
fn bridged_pod(topo: &Topology, ip: &str) -> (Netns, String) {
    let bridge = format!("{}br", topo.tag);
    let port = format!("{}bp", topo.tag);
    let pod = Netns::create(&format!("{}-bridged", topo.tag)).unwrap();
    topo.node.ip(&["link", "add", &bridge, "type", "bridge"]).unwrap();
    topo.node.ip(&["addr", "add", "10.88.0.1/24", "dev", &bridge]).unwrap();
    topo.node.ip(&["link", "set", &bridge, "up"]).unwrap();
    pair(topo, &pod, &port);
    topo.node.ip(&["link", "set", &port, "master", &bridge]).unwrap();
    // The pod's own IPv6 chatter (DAD, router solicitations) would teach the
    // bridge its MAC; with learning off the FDB stays empty, so discovery
    // is shown not to depend on it.
    topo.node.sh(&format!("bridge link set dev {port} learning off")).unwrap();
    topo.node.ip(&["link", "set", &port, "up"]).unwrap();
    pod.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]).unwrap();
    pod.ip(&["route", "add", "default", "via", "10.88.0.1"]).unwrap();
    (pod, port)
}

/// The ptp plugin's layout: host end 10.99.0.1/32, pod 10.99.0.X/32 via it.
fn ptp_pod(topo: &Topology, ip: &str) -> (Netns, String) {
    let host = format!("{}pp", topo.tag);
    let pod = Netns::create(&format!("{}-ptp", topo.tag)).unwrap();
    pair(topo, &pod, &host);
    topo.node.ip(&["addr", "add", "10.99.0.1/32", "dev", &host]).unwrap();
    topo.node.ip(&["link", "set", &host, "up"]).unwrap();
    topo.node.ip(&["route", "add", &format!("{ip}/32"), "dev", &host, "scope", "link"]).unwrap();
    pod.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]).unwrap();
    pod.ip(&["route", "add", "10.99.0.1/32", "dev", "eth0", "scope", "link"]).unwrap();
    pod.ip(&["route", "add", "default", "via", "10.99.0.1", "dev", "eth0"]).unwrap();
    (pod, host)
}

#[test]
fn finds_host_interfaces_on_every_cni_layout_without_traffic() {
    if !testbed::require_root("finds_host_interfaces_on_every_cni_layout_without_traffic") {
        return;
    }
    let mut topo = Topology::new("pmcni").expect("topology");
    topo.add_pod(PodSpec::dual("routed", "10.66.0.5", "fd00:66::5")).expect("pod");
    let routed = topo.pod("routed").unwrap();
    let (bridged_ns, port) = bridged_pod(&topo, "10.88.0.7");
    let (ptp_ns, ptp_host) = ptp_pod(&topo, "10.99.0.9");
    let port_ifindex = topo.node.ifindex(&port).unwrap();
    let ptp_ifindex = topo.node.ifindex(&ptp_host).unwrap();

    let (neigh, fdb, found) = topo
        .node
        .run(|| {
            let mut finder = Finder::new();
            let find = |finder: &mut Finder, pod: &str, ip: &str| finder.find(pod, &[ip.to_string()]);
            let found = (
                find(&mut finder, "default/routed", "10.66.0.5"),
                find(&mut finder, "default/routed", "fd00:66::5"),
                find(&mut finder, "default/bridged", "10.88.0.7"),
                find(&mut finder, "default/ptp", "10.99.0.9"),
                find(&mut finder, "default/ghost", "10.88.0.99"),
                find(&mut finder, "default/node", "10.88.0.1"),
                ifdiscovery::by_name("default/routed", &routed.host_ifname),
            );
            let neigh = std::process::Command::new("ip").args(["neigh", "show"]).output().unwrap();
            let fdb = std::process::Command::new("bridge").args(["fdb", "show", "dynamic"]).output().unwrap();
            (
                String::from_utf8_lossy(&neigh.stdout).into_owned(),
                String::from_utf8_lossy(&fdb.stdout).into_owned(),
                found,
            )
        })
        .expect("node namespace");
    // Nothing was learned from traffic: the lookups did not depend on it.
    assert!(!neigh.contains("10.88.0.7") && !neigh.contains("10.99.0.9"), "neighbour entries exist: {neigh}");
    assert!(fdb.trim().is_empty(), "learned FDB entries exist: {fdb}");

    let (routed4, routed6, bridged, ptp, ghost, node_addr, by_name) = found;
    assert_eq!(routed4.expect("routed pod").ifindex, routed.host_ifindex);
    assert_eq!(routed6.expect("routed pod by IPv6").name, routed.host_ifname);
    let bridged = bridged.expect("bridged pod");
    assert_eq!((bridged.name.as_str(), bridged.ifindex), (port.as_str(), port_ifindex));
    let ptp = ptp.expect("ptp pod");
    assert_eq!((ptp.name.as_str(), ptp.ifindex), (ptp_host.as_str(), ptp_ifindex));
    let message = ghost.expect_err("an IP nobody has").to_string();
    assert!(message.contains("default/ghost") && message.contains("10.88.0.99"), "{message}");
    assert!(node_addr.is_err(), "an address of the node itself is no pod");
    assert_eq!(by_name.expect("by name").ifindex, routed.host_ifindex);
    drop((bridged_ns, ptp_ns));
}
