//! The interface table (`src/datapath/ifaces.rs`): every update lands in a
//! fresh slot before the interface flips to it, retired slots come back
//! after an RCU grace period, ifindexes past the direct array take the hash,
//! a restarted agent finds everything where it was, and the pin of the
//! table's predecessor (another layout) is removed. Checked through the
//! decision program (BPF_PROG_TEST_RUN), which looks interfaces up exactly as
//! the veth programs do.

mod support;
use support::Cleanup;

use std::net::{IpAddr, Ipv4Addr};

use podmirror_agent::datapath::abi::*;
use podmirror_agent::datapath::{Datapath, DatapathConfig, DatapathSession};
use podmirror_crds::model::{Action, CompiledSession, Direction, Encapsulation, IpFamily, SessionKey};
use podmirror_testkit::fixtures::any_rule;
use podmirror_testkit::{self as testbed, Topology};

const SMALL: u32 = 4242;
/// Past PM_IFINDEX_DIRECT: found through pm_ifbig.
const LARGE: u32 = 200_000;

/// One session whose outbound rules decide every IPv4 packet with `v4` and
/// every IPv6 packet with the opposite.
fn sessions(v4: Action) -> Vec<DatapathSession> {
    let v6 = if v4 == Action::Accept { Action::Reject } else { Action::Accept };
    vec![DatapathSession {
        id: 7,
        session: CompiledSession {
            key: SessionKey::new("ns", "s"),
            priority: 1,
            enabled: true,
            vni: 7,
            packet_length: None,
            encapsulation: Encapsulation::VXLAN,
            target_port: 4789,
            rate_limit: None,
            flow_sampling: None,
            targets: vec![IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1))],
            inbound: vec![],
            // IPv6 first by priority: the table still puts IPv4 first.
            outbound: vec![any_rule(1, v6, IpFamily::IPv6), any_rule(2, v4, IpFamily::IPv4)],
        },
    }]
}

/// Ethernet + IPv4 (+ 4 bytes of ports), or + IPv6 when `v6`.
fn frame(v6: bool) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 4, 17, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 24, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    }
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
    f
}

/// (IPv4 verdict, IPv6 verdict, deciding rule of the IPv4 packet) on `ifindex`.
fn decide(dp: &mut Datapath, ifindex: u32) -> Result<(u32, u32, u32), String> {
    let d4 = dp.test_decide(ifindex, Direction::Outbound, &frame(false)).map_err(|e| e.to_string())?;
    let d6 = dp.test_decide(ifindex, Direction::Outbound, &frame(true)).map_err(|e| e.to_string())?;
    Ok((d4.verdict, d6.verdict, d4.rule))
}

const ACCEPT_V4: (u32, u32, u32) = (PM_VERDICT_COPY, PM_VERDICT_REJECT, 1);
const REJECT_V4: (u32, u32, u32) = (PM_VERDICT_REJECT, PM_VERDICT_COPY, 1);

/// Pin a map named like the interface hash of agents before the table
/// (value: the old 4628-byte layout), as an upgraded node's pin dir holds it.
fn pin_old_layout_map(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("pm_ifaces");
    // union bpf_attr for BPF_MAP_CREATE: hash (1), key 4, value 4628, 1 entry.
    let create: [u32; 32] = {
        let mut a = [0u32; 32];
        a[..4].copy_from_slice(&[1, 4, 4628, 1]);
        a
    };
    // SAFETY: a valid attr of the size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, create.as_ptr(), std::mem::size_of_val(&create)) };
    if fd < 0 {
        return Err(format!("map create: {}", std::io::Error::last_os_error()));
    }
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // BPF_OBJ_PIN (6): pathname pointer, then the fd.
    let pin: [u64; 2] = [cpath.as_ptr() as u64, fd as u64];
    // SAFETY: attr points at a live NUL-terminated path.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 6, pin.as_ptr(), std::mem::size_of_val(&pin)) };
    let err = std::io::Error::last_os_error();
    // SAFETY: our own fd, closed once (the pin keeps the map).
    unsafe { libc::close(fd as i32) };
    if rc != 0 {
        return Err(format!("pin {}: {err}", path.display()));
    }
    Ok(path)
}

fn scenario(cfg: &DatapathConfig) -> Result<(), String> {
    let old = pin_old_layout_map(&cfg.pin_dir)?;
    let mut dp = Datapath::open(cfg).map_err(|e| format!("open beside an old layout's pin: {e}"))?;
    if old.exists() {
        return Err(format!("{} of the old layout is still pinned after open", old.display()));
    }
    for ifindex in [SMALL, LARGE] {
        dp.set_sessions(ifindex, &sessions(Action::Accept)).map_err(|e| e.to_string())?;
        let got = decide(&mut dp, ifindex)?;
        if got != ACCEPT_V4 {
            return Err(format!("ifindex {ifindex}: {got:?}, want {ACCEPT_V4:?} (rule 1: its session's second)"));
        }
    }
    // More updates than there are slots: retired slots must come back.
    let updates = PM_IFACE_SLOTS + 10;
    for n in 0..updates {
        let (action, want) =
            if n.is_multiple_of(2) { (Action::Reject, REJECT_V4) } else { (Action::Accept, ACCEPT_V4) };
        dp.set_sessions(SMALL, &sessions(action)).map_err(|e| format!("update {n}: {e}"))?;
        if n.is_multiple_of(97) || n + 1 == updates {
            let got = decide(&mut dp, SMALL)?;
            if got != want {
                return Err(format!("update {n}: {got:?}, want {want:?}"));
            }
        }
    }
    let last = if updates.is_multiple_of(2) { ACCEPT_V4 } else { REJECT_V4 };
    // A restarted agent adopts the table as the pins hold it.
    drop(dp);
    let mut dp = Datapath::open(cfg).map_err(|e| format!("reopen: {e}"))?;
    let (small, large) = (decide(&mut dp, SMALL)?, decide(&mut dp, LARGE)?);
    if (small, large) != (last, ACCEPT_V4) {
        return Err(format!("after a restart: {small:?} and {large:?}, want {last:?} and {ACCEPT_V4:?}"));
    }
    dp.set_sessions(LARGE, &sessions(Action::Reject)).map_err(|e| e.to_string())?;
    if decide(&mut dp, LARGE)? != REJECT_V4 {
        return Err("the adopted large ifindex did not take its update".into());
    }
    for ifindex in [SMALL, LARGE] {
        dp.set_sessions(ifindex, &[]).map_err(|e| e.to_string())?;
        // The decision program returns 2 for an interface it does not know.
        match dp.test_decide(ifindex, Direction::Outbound, &frame(false)) {
            Err(e) if e.to_string().contains("returned 2") => {}
            other => return Err(format!("ifindex {ifindex} still known after removal: {other:?}")),
        }
    }
    Ok(())
}

#[test]
fn interface_table_swaps_recycles_slots_and_survives_a_restart() {
    if !testbed::require_root("interface_table_swaps_recycles_slots_and_survives_a_restart") {
        return;
    }
    let topo = Topology::new("pmif").expect("node namespace");
    let cfg = support::config(&topo);
    let guard = Cleanup(cfg.clone());
    let result = topo.node.run(|| scenario(&cfg)).expect("enter node namespace");
    drop(guard);
    if let Err(e) = result {
        panic!("{e}");
    }
}
