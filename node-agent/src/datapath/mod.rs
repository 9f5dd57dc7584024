//! The eBPF datapath: loads `bpf/podmirror.bpf.c`, attaches it to host-side
//! veths with TCX, programs per-interface sessions, reads counters, and pins
//! everything under `pin_dir` so that a restarted agent adopts what runs.
//!
//! Layout of `pin_dir` (one bpffs directory per node agent):
//! - `pm_ifslot`, `pm_ifbig`, `pm_iftab` (the interface table, see `ifaces`), `pm_lbs`,
//!   `pm_rates`, `pm_counters`, `pm_config`, `pm_xfer_v1` (the veth programs' hand-over to
//!   the copy program): maps, pinned by name (reused on open, so sessions and counters
//!   survive a restart, and old and new programs share one hand-over). A map whose layout changes gets a new name, so an
//!   upgraded agent never adopts a pin of the old layout; `pins::RETIRED_MAPS` lists the old
//!   names, removed once the new programs run;
//! - `prog-<name>`: the programs of the newest open;
//! - `link-copy`: the copy device's egress link; `link-<ifindex>-ingress`
//!   and `link-<ifindex>-egress`: each attached veth's links.
//!
//! Copies leave through a per-node device `<device_prefix>-cp` (one end of a
//! veth pair; the other, `-cq`, carries nothing) whose egress program
//! encapsulates them and redirects them to the underlay (see `bpf/podmirror.bpf.c`). Callers
//! outside this module use it through the agent core's `DatapathOps` trait.

pub mod abi;
mod attach;
mod clsact;
mod counters;
pub mod encode;
mod error;
pub mod flow;
mod ifaces;
pub mod maglev;
pub mod netlink;
mod pins;
mod sessions;
mod testrun;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use aya::maps::{Array, MapData};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use podmirror_crds::model::{CompiledSession, Direction};

use abi::*;
use attach::{VethLinks, attach_or_adopt};
pub use error::DatapathError;
use ifaces::IfaceTable;

/// The compiled eBPF object (built by `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/podmirror.bpf.o"));

const PROG_INGRESS: &str = "pm_veth_ingress";
const PROG_EGRESS: &str = "pm_veth_egress";
const PROG_COPY: &str = "pm_copy_egress";
const PROG_TEST: &str = "pm_test_decide";
const MAP_COUNTERS: &str = "pm_counters";
const MAP_LBS: &str = "pm_lbs";
const MAP_RATES: &str = "pm_rates";
const MAP_CONFIG: &str = "pm_config";
const MAP_DECISION: &str = "pm_decision";

/// `skb->mark` of every copy ("pm" + 1): the veth programs never mirror it.
pub const COPY_MARK: u32 = 0x706d_0001;

/// bpf(2) map update flag: create only.
const BPF_NOEXIST: u64 = 1;

/// Where and how a node's datapath lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// bpffs directory for pins (default `/sys/fs/bpf/podmirror`).
    pub pin_dir: PathBuf,
    /// Prefix of the per-node devices (default `pm`): the copy device is
    /// `<prefix>-cp`.
    pub device_prefix: String,
    /// Outer source IP of IPv4 copies; `None` = the route's source address.
    pub node_ipv4: Option<Ipv4Addr>,
    /// Outer source IP of IPv6 copies; `None` = the route's source address.
    pub node_ipv6: Option<Ipv6Addr>,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            pin_dir: PathBuf::from("/sys/fs/bpf/podmirror"),
            device_prefix: "pm".to_string(),
            node_ipv4: None,
            node_ipv6: None,
        }
    }
}

impl DatapathConfig {
    /// The per-node copy device's name.
    pub fn copy_device(&self) -> String {
        format!("{}-cp", self.device_prefix)
    }

    /// The other end of the copy device's veth pair (never carries traffic).
    pub fn copy_device_peer(&self) -> String {
        format!("{}-cq", self.device_prefix)
    }
}

/// How programs are attached to veths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX when the kernel has it (>= 6.6), clsact otherwise.
    #[default]
    Auto,
    /// TCX links (bpf_link, pinned).
    Tcx,
    /// A clsact qdisc and direct-action tc filters (recorded under the pin dir).
    Clsact,
}

/// One session on one interface; `id` is stable per `SessionKey`, chosen by
/// the caller, and keys the session's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathSession {
    pub id: u32,
    pub session: CompiledSession,
}

/// Counters of one session in one direction, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Packets an Accept rule of this session selected (copy attempts).
    pub matched: u64,
    pub copied_packets: u64,
    /// Bytes of the inner frames copied (after cutting).
    pub copied_bytes: u64,
    /// Copies cut to fit the path MTU (not counting `packetLength` cuts).
    pub truncated: u64,
    /// Packets a Reject rule of this session kept from being copied.
    pub rejected: u64,
    /// Copies lost, by reason (`abi::PM_FAIL_REASONS`); zero reasons omitted.
    pub failures: BTreeMap<String, u64>,
    /// Accepts not copied on purpose, by reason (`abi::PM_SKIP_REASONS`:
    /// `rate_limit`, `flow_sampling`); zero reasons omitted. Every matched
    /// packet is copied, failed or skipped.
    pub skipped: BTreeMap<String, u64>,
}

impl SessionCounters {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Copies skipped for this reason (`"rate_limit"`, `"flow_sampling"`).
    pub fn skipped_for(&self, reason: &str) -> u64 {
        self.skipped.get(reason).copied().unwrap_or(0)
    }
}

pub struct Datapath {
    cfg: DatapathConfig,
    ebpf: Ebpf,
    copy_ifindex: u32,
    veths: BTreeMap<u32, VethLinks>,
    ifaces: IfaceTable,
    generation: u32,
    attach_mode: AttachMode,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("cfg", &self.cfg)
            .field("copy_ifindex", &self.copy_ifindex)
            .field("attached", &self.veths.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn direction_code(d: Direction) -> u32 {
    match d {
        Direction::Inbound => PM_DIR_INBOUND,
        Direction::Outbound => PM_DIR_OUTBOUND,
    }
}

impl Datapath {
    /// Load the programs (or adopt what `pin_dir` holds: maps, the copy
    /// device's link, attached veths), create the copy device, write the
    /// node settings. Fails with a clear error without BPF permission.
    pub fn open(cfg: &DatapathConfig) -> Result<Self, DatapathError> {
        let existed = cfg.pin_dir.exists();
        pins::ensure_bpffs_dir(&cfg.pin_dir)?;
        let opened = Self::open_in(cfg);
        if opened.is_err() && !existed {
            // Leave nothing behind: remove_dir only succeeds while empty.
            let _ = std::fs::remove_dir(&cfg.pin_dir);
        }
        opened
    }

    fn open_in(cfg: &DatapathConfig) -> Result<Self, DatapathError> {
        let mut ebpf =
            EbpfLoader::new().default_map_pin_directory(&cfg.pin_dir).load(OBJECT).map_err(DatapathError::load)?;
        for name in [PROG_INGRESS, PROG_EGRESS, PROG_COPY, PROG_TEST] {
            let prog = classifier(&mut ebpf, name)?;
            prog.load().map_err(DatapathError::load)?;
            pins::replace_program_pin(&cfg.pin_dir, name, prog)?;
        }

        // The copy device's link switches to the new copy program before the
        // veths' links switch to the new veth programs: in between, old veth
        // programs hand copies to the new copy program. Safe because both use
        // the one pinned `pm_xfer_v1` (an unpinned hand-over lost those copies
        // as `failures{reason="clone"}`).
        let copy_name = cfg.copy_device();
        let copy_ifindex = netlink::ensure_veth_pair(&copy_name, &cfg.copy_device_peer())?;
        attach_or_adopt(
            classifier(&mut ebpf, PROG_COPY)?,
            PROG_COPY,
            copy_ifindex,
            TcAttachType::Egress,
            &cfg.pin_dir.join(pins::COPY_LINK),
        )?;

        let config = PmConfig {
            copy_ifindex,
            copy_mark: COPY_MARK,
            node_ip4: cfg.node_ipv4.map(|a| encode::addr_words(&IpAddr::V4(a))).unwrap_or_default(),
            node_ip6: cfg.node_ipv6.map(|a| encode::addr_words(&IpAddr::V6(a))).unwrap_or_default(),
        };
        let mut config_map: Array<&mut MapData, PmConfig> = map_mut(&mut ebpf, MAP_CONFIG)?;
        config_map.set(0, config, 0).map_err(|source| DatapathError::Map { map: MAP_CONFIG, source })?;

        let ifaces = IfaceTable::adopt(&mut ebpf)?;
        let mut dp = Datapath {
            cfg: cfg.clone(),
            ebpf,
            copy_ifindex,
            veths: BTreeMap::new(),
            ifaces,
            generation: 0,
            attach_mode: AttachMode::Auto,
        };
        dp.adopt_veths()?;
        // The links now run this open's programs: maps only older ones used can go.
        pins::remove_retired_maps(&cfg.pin_dir);
        Ok(dp)
    }

    /// The ifindex of this node's copy device.
    pub fn copy_ifindex(&self) -> u32 {
        self.copy_ifindex
    }

    /// Remove everything ever made under `cfg`: links (which detaches the
    /// programs from every veth and the copy device), pinned maps and
    /// programs, the pin directory, and the copy device. Idempotent.
    pub fn remove_all(cfg: &DatapathConfig) -> Result<(), DatapathError> {
        let mut first_err = None;
        if cfg.pin_dir.exists()
            && let Err(e) = pins::remove_everything(&cfg.pin_dir)
        {
            first_err.get_or_insert(e);
        }
        if let Err(e) = netlink::delete_link(&cfg.copy_device()) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    pub fn config(&self) -> &DatapathConfig {
        &self.cfg
    }
}

/// A delete of a missing key: aya reports ENOENT as a syscall error.
fn is_not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, DatapathError> {
    let prog = ebpf
        .program_mut(name)
        .ok_or(DatapathError::Program { program: name, source: aya::programs::ProgramError::UnexpectedProgramType })?;
    prog.try_into().map_err(|source| DatapathError::Program { program: name, source })
}

fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map_mut(name)
        .ok_or(DatapathError::Map { map: name, source: aya::maps::MapError::InvalidName { name: name.into() } })?;
    T::try_from(map).map_err(|source| DatapathError::Map { map: name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapath_can_move_to_another_thread() {
        // The agent runs it on a runtime worker; it must be Send.
        fn assert_send<T: Send>() {}
        assert_send::<Datapath>();
        let cfg = DatapathConfig::default();
        assert_eq!(cfg.copy_device(), "pm-cp");
        assert_eq!(cfg.pin_dir, PathBuf::from("/sys/fs/bpf/podmirror"));
    }
}
