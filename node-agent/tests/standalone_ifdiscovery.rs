//! Interface discovery on real namespaces (root): a routed pod (a /32 route
//! to its veth, as Calico/Cilium do) and a bridged pod (a bridge, the pod's
//! MAC in the neighbour table and the bridge FDB, as the bridge/flannel CNIs
//! do) are both traced back to their host-side veth. Prints `SKIPPED:` off
//! root and fails under `CI=true` when it cannot run.

#![allow(clippy::unwrap_used)]

use podmirror_agent::ifdiscovery;
use podmirror_agent::testbed::{self, Netns, PodSpec, Topology};

#[test]
fn finds_the_host_veth_of_routed_and_bridged_pods() {
    if !testbed::require_root("finds_the_host_veth_of_routed_and_bridged_pods") {
        return;
    }
    let mut topo = Topology::new("pmsa").expect("topology");
    topo.add_pod(PodSpec::v4("routed", "10.66.0.5")).expect("pod");
    let routed = topo.pod("routed").expect("pod");

    // A bridged pod: node bridge <tag>br with 10.88.0.1/24, the pod's veth a port of it.
    let bridge = format!("{}br", topo.tag);
    let port = format!("{}bp", topo.tag);
    let pod_ns = Netns::create(&format!("{}-bridged", topo.tag)).expect("netns");
    topo.node.ip(&["link", "add", &bridge, "type", "bridge"]).unwrap();
    topo.node.ip(&["addr", "add", "10.88.0.1/24", "dev", &bridge]).unwrap();
    topo.node.ip(&["link", "set", &bridge, "up"]).unwrap();
    topo.node.ip(&["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &pod_ns.name]).unwrap();
    topo.node.ip(&["link", "set", &port, "master", &bridge, "up"]).unwrap();
    pod_ns.ip(&["addr", "add", "10.88.0.7/24", "dev", "eth0"]).unwrap();
    pod_ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    let mac = pod_ns.sh("cat /sys/class/net/eth0/address").unwrap().trim().to_string();
    // What traffic from the pod would have taught the node, made explicit.
    topo.node.ip(&["neigh", "replace", "10.88.0.7", "lladdr", &mac, "dev", &bridge, "nud", "reachable"]).unwrap();
    topo.node.sh(&format!("bridge fdb replace {mac} dev {port} master static")).unwrap();
    let port_ifindex = topo.node.ifindex(&port).unwrap();

    let (routed_found, bridged_found, foreign, by_name) = topo
        .node
        .run(|| {
            (
                ifdiscovery::by_ip("default/routed", &"10.66.0.5".parse().unwrap()),
                ifdiscovery::by_ip("default/bridged", &"10.88.0.7".parse().unwrap()),
                ifdiscovery::by_ip("default/ghost", &"10.88.0.99".parse().unwrap()),
                ifdiscovery::by_name("default/routed", &routed.host_ifname),
            )
        })
        .expect("node namespace");

    let routed_found = routed_found.expect("routed pod");
    assert_eq!(routed_found.name, routed.host_ifname);
    assert_eq!(routed_found.ifindex, routed.host_ifindex);
    let bridged_found = bridged_found.expect("bridged pod");
    assert_eq!(bridged_found.name, port);
    assert_eq!(bridged_found.ifindex, port_ifindex);
    let message = foreign.expect_err("an IP nobody has").to_string();
    assert!(message.contains("default/ghost") && message.contains("10.88.0.99"), "{message}");
    assert_eq!(by_name.expect("by name").ifindex, routed.host_ifindex);
    drop(pod_ns);
}
