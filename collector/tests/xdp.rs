//! The AF_XDP input (`--xdp-iface`), on a veth pair between two network
//! namespaces with the collector running as its own process in one of them:
//! copies that fit a frame arrive through AF_XDP (the kernel's UDP layer
//! never sees them), larger ones (9000-byte frames) through the UDP socket,
//! every copy is recorded byte for byte, other traffic still flows, and the
//! program is gone when the collector stops (`common::kernel_input_scenario`).
//! Root.

mod common;

use common::*;

#[test]
fn copies_arrive_through_af_xdp_and_jumbo_copies_through_the_socket() {
    if require_root("copies_arrive_through_af_xdp_and_jumbo_copies_through_the_socket") {
        // auto: the veth driver runs the program.
        af_xdp_scenario("", "native", 1);
    }
}

#[test]
fn generic_mode_and_several_queues_work_the_same() {
    if require_root("generic_mode_and_several_queues_work_the_same") {
        af_xdp_scenario("--xdp-mode generic", "generic", 4);
    }
}

/// Runs the kernel-input scenario with `--xdp-iface eth0 {flags}` on a veth
/// with `queues` receive queues; the input must attach in `mode` with a
/// socket per queue.
fn af_xdp_scenario(flags: &str, mode: &str, queues: u32) {
    let attached = |said: &[String]| {
        let line = said.iter().find(|l| l.contains("AF_XDP input attached"));
        let wanted = [format!("mode=\"{mode}\""), format!("queues={queues}")];
        assert!(
            line.is_some_and(|l| wanted.iter().all(|w| l.contains(w.as_str()))),
            "attached in {mode} mode with {queues} sockets: {said:?}"
        );
    };
    let on_eth0 = |pod: &podmirror_testkit::Netns| pod.sh("ip link show eth0").expect("link").contains("prog/xdp");
    kernel_input_scenario(&format!("xdp-{mode}"), &format!("--xdp-iface eth0 {flags}"), queues, attached, on_eth0);
}

#[test]
fn the_charts_capabilities_are_enough_and_each_is_needed() {
    if require_root("the_charts_capabilities_are_enough_and_each_is_needed") {
        assert_capabilities_enough_and_each_needed(
            "xdp",
            &["--xdp-iface", "eth0"],
            "AF_XDP input attached",
            "--xdp-iface eth0",
        );
    }
}
