//! The eBPF datapath: loads `bpf/podmirror.bpf.c`, attaches it to host-side
//! veths with TCX, programs per-interface sessions, reads counters, and pins
//! everything under `pin_dir` so that a restarted agent adopts what runs.
//!
//! Layout of `pin_dir` (one bpffs directory per node agent):
//! - `pm_ifaces`, `pm_lbs`, `pm_rates`, `pm_counters`, `pm_config`: maps, pinned by name (reused
//!   on open, so sessions and counters survive a restart);
//! - `prog-<name>`: the programs of the newest open;
//! - `link-copy`: the copy device's egress link; `link-<ifindex>-ingress`
//!   and `link-<ifindex>-egress`: each attached veth's links.
//!
//! Copies leave through a per-node device `<device_prefix>-cp` (one end of a
//! veth pair; the other, `-cq`, carries nothing) whose egress program
//! encapsulates them and redirects them to the underlay (see `bpf/podmirror.bpf.c`). Callers
//! outside this module use it through the agent core's `DatapathOps` trait.

pub mod abi;
mod clsact;
pub mod encode;
mod error;
pub mod flow;
pub mod maglev;
pub mod netlink;
mod pins;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuHashMap, PerCpuValues};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use podmirror_crds::model::{CompiledSession, Direction};

use abi::*;
pub use error::DatapathError;

/// The compiled eBPF object (built by `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/podmirror.bpf.o"));

const PROG_INGRESS: &str = "pm_veth_ingress";
const PROG_EGRESS: &str = "pm_veth_egress";
const PROG_COPY: &str = "pm_copy_egress";
const PROG_TEST: &str = "pm_test_decide";
const MAP_IFACES: &str = "pm_ifaces";
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

/// The pins of the two TCX links of one attached veth. Only the pins hold
/// the links (no fd here), so unpinning detaches at once, even while this
/// instance lives (`remove_all` from another process, `--cleanup`).
struct VethLinks {
    ingress: PathBuf,
    egress: PathBuf,
}

pub struct Datapath {
    cfg: DatapathConfig,
    ebpf: Ebpf,
    copy_ifindex: u32,
    veths: BTreeMap<u32, VethLinks>,
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

        let mut dp = Datapath {
            cfg: cfg.clone(),
            ebpf,
            copy_ifindex,
            veths: BTreeMap::new(),
            generation: 0,
            attach_mode: AttachMode::Auto,
        };
        dp.adopt_veths()?;
        Ok(dp)
    }

    /// Re-point the links a previous agent pinned at this instance's
    /// programs; forget those whose interface is gone.
    fn adopt_veths(&mut self) -> Result<(), DatapathError> {
        for ifindex in pins::pinned_veths(&self.cfg.pin_dir)? {
            let dir = self.cfg.pin_dir.clone();
            let mut paths = Vec::new();
            for (hook, hook_name, name) in
                [(TcAttachType::Ingress, "ingress", PROG_INGRESS), (TcAttachType::Egress, "egress", PROG_EGRESS)]
            {
                let link_pin = pins::veth_link(&dir, ifindex, hook_name);
                let record = clsact::find(&dir, ifindex, hook).map(|(p, _)| p);
                if netlink::ifname(ifindex).is_err() {
                    pins::remove_link_pin(&link_pin);
                    if let Some(r) = record {
                        clsact::remove(&r);
                    }
                    continue;
                }
                let prog = classifier(&mut self.ebpf, name)?;
                if link_pin.exists() {
                    paths.push(attach_or_adopt(prog, name, ifindex, hook, &link_pin)?);
                } else if record.is_some() {
                    paths.push(clsact::attach(prog, name, ifindex, hook, &dir)?);
                }
            }
            match paths.as_slice() {
                [ingress, egress] => {
                    self.veths.insert(ifindex, VethLinks { ingress: ingress.clone(), egress: egress.clone() });
                }
                partial => {
                    // Half of a pair, or an interface gone: forget it.
                    for p in partial {
                        remove_attachment(p);
                    }
                    self.forget_iface(ifindex)?;
                }
            }
        }
        Ok(())
    }

    /// Attach both hooks to host-side veth `ifindex` (TCX, after programs
    /// already there, returning TCX_NEXT so they still run; clsact filters
    /// on kernels without TCX). Idempotent.
    pub fn attach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        if self.veths.contains_key(&ifindex) {
            return Ok(());
        }
        netlink::ifname(ifindex)?;
        let ingress = self.attach_hook(ifindex, TcAttachType::Ingress)?;
        let egress = match self.attach_hook(ifindex, TcAttachType::Egress) {
            Ok(p) => p,
            Err(e) => {
                // Leave nothing half-attached.
                remove_attachment(&ingress);
                return Err(e);
            }
        };
        self.veths.insert(ifindex, VethLinks { ingress, egress });
        Ok(())
    }

    /// Choose TCX or clsact for the next `attach` (default: by kernel).
    pub fn set_attach_mode(&mut self, mode: AttachMode) {
        self.attach_mode = mode;
    }

    fn use_tcx(&self) -> bool {
        match self.attach_mode {
            AttachMode::Tcx => true,
            AttachMode::Clsact => false,
            AttachMode::Auto => {
                aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
            }
        }
    }

    fn attach_hook(&mut self, ifindex: u32, hook: TcAttachType) -> Result<PathBuf, DatapathError> {
        let (name, hook_name) = match hook {
            TcAttachType::Ingress => (PROG_INGRESS, "ingress"),
            _ => (PROG_EGRESS, "egress"),
        };
        let dir = self.cfg.pin_dir.clone();
        let tcx = self.use_tcx();
        let prog = classifier(&mut self.ebpf, name)?;
        if tcx {
            attach_or_adopt(prog, name, ifindex, hook, &pins::veth_link(&dir, ifindex, hook_name))
        } else {
            clsact::attach(prog, name, ifindex, hook, &dir)
        }
    }

    /// Replace the sessions of `ifindex` in one map update (RCU swap of a
    /// whole entry: a packet sees the old set or the new, never a mix). An
    /// empty list removes them. At most 3 sessions; a refused list leaves the
    /// interface as it was.
    pub fn set_sessions(&mut self, ifindex: u32, sessions: &[DatapathSession]) -> Result<(), DatapathError> {
        if sessions.is_empty() {
            return self.forget_iface(ifindex);
        }
        self.generation = self.generation.wrapping_add(1);
        let (iface, ids) = encode::encode_iface(sessions, self.generation)?;
        let tables = lbs_of(sessions)?;
        // Counters first, so that the first copied packet already has its entry.
        let nr_cpus = aya::util::nr_cpus().map_err(|(what, e)| DatapathError::Invalid {
            field: "possible CPUs".into(),
            reason: format!("{what}: {e}"),
        })?;
        {
            let mut counters: PerCpuHashMap<&mut MapData, PmCounterKey, PmCounters> =
                map_mut(&mut self.ebpf, MAP_COUNTERS)?;
            for id in &ids {
                for d in [PM_DIR_INBOUND, PM_DIR_OUTBOUND] {
                    let key = PmCounterKey { session_id: *id, direction: d };
                    if counters.get(&key, 0).is_err() {
                        let zeros = PerCpuValues::try_from(vec![PmCounters::default(); nr_cpus]).map_err(|e| {
                            DatapathError::Invalid { field: "possible CPUs".into(), reason: e.to_string() }
                        })?;
                        // BPF_NOEXIST: a packet may have created it meanwhile.
                        let _ = counters.insert(key, zeros, BPF_NOEXIST);
                    }
                }
            }
        }
        // Endpoint tables before the sessions that use them (a packet never
        // finds a session without its table). Keyed by session id: the
        // interfaces sharing a session share its table.
        {
            let mut lbs: HashMap<&mut MapData, u32, PmLb> = map_mut(&mut self.ebpf, MAP_LBS)?;
            for (ds, lb) in sessions.iter().filter(|s| s.session.enabled).zip(tables) {
                lbs.insert(ds.id, lb.as_ref(), 0).map_err(|source| DatapathError::Map { map: MAP_LBS, source })?;
            }
        }
        self.set_rates(sessions)?;
        let mut ifaces: HashMap<&mut MapData, u32, PmIface> = map_mut(&mut self.ebpf, MAP_IFACES)?;
        ifaces.insert(ifindex, iface, 0).map_err(|source| DatapathError::Map { map: MAP_IFACES, source })
    }

    /// The rate caps of these sessions. A cap that did not change keeps its
    /// buckets (rewriting them would grant a fresh burst on every update of
    /// any interface sharing the session).
    fn set_rates(&mut self, sessions: &[DatapathSession]) -> Result<(), DatapathError> {
        let mut rates: HashMap<&mut MapData, u32, PmRate> = map_mut(&mut self.ebpf, MAP_RATES)?;
        let err = |source| DatapathError::Map { map: MAP_RATES, source };
        for ds in sessions.iter().filter(|s| s.session.enabled) {
            match &ds.session.rate_limit {
                Some(cap) => {
                    let want = encode::encode_rate(cap);
                    let same = rates.get(&ds.id, 0).is_ok_and(|r| {
                        (r.pkt_cost, r.byte_cost, r.burst) == (want.pkt_cost, want.byte_cost, want.burst)
                    });
                    if !same {
                        rates.insert(ds.id, want, 0).map_err(err)?;
                    }
                }
                None => match rates.remove(&ds.id) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => return Err(err(source)),
                },
            }
        }
        Ok(())
    }

    fn forget_iface(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let mut ifaces: HashMap<&mut MapData, u32, PmIface> = map_mut(&mut self.ebpf, MAP_IFACES)?;
        match ifaces.remove(&ifindex) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(DatapathError::Map { map: MAP_IFACES, source }),
        }
    }

    /// Remove both links of `ifindex` and its sessions. Idempotent.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        if let Some(links) = self.veths.remove(&ifindex) {
            remove_attachment(&links.ingress);
            remove_attachment(&links.egress);
        }
        self.forget_iface(ifindex)
    }

    /// Interfaces attached (including those adopted from pins).
    pub fn attached(&self) -> Vec<u32> {
        self.veths.keys().copied().collect()
    }

    /// Counters of every session and direction, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<(u32, Direction), SessionCounters>, DatapathError> {
        let map = self.ebpf.map(MAP_COUNTERS).ok_or(DatapathError::Map {
            map: MAP_COUNTERS,
            source: aya::maps::MapError::InvalidName { name: MAP_COUNTERS.into() },
        })?;
        let counters: PerCpuHashMap<&MapData, PmCounterKey, PmCounters> =
            PerCpuHashMap::try_from(map).map_err(|source| DatapathError::Map { map: MAP_COUNTERS, source })?;
        let mut out = BTreeMap::new();
        for entry in counters.iter() {
            let (key, per_cpu) = entry.map_err(|source| DatapathError::Map { map: MAP_COUNTERS, source })?;
            let direction = if key.direction == PM_DIR_OUTBOUND { Direction::Outbound } else { Direction::Inbound };
            let mut sum = SessionCounters::default();
            let mut failures = [0u64; PM_FAIL_MAX];
            let mut skipped = [0u64; PM_SKIP_MAX];
            for c in per_cpu.iter() {
                sum.matched += c.matched;
                sum.copied_packets += c.copied_packets;
                sum.copied_bytes += c.copied_bytes;
                sum.truncated += c.truncated;
                sum.rejected += c.rejected;
                for (acc, f) in failures.iter_mut().zip(c.failures.iter()) {
                    *acc += f;
                }
                for (acc, s) in skipped.iter_mut().zip(c.skipped.iter()) {
                    *acc += s;
                }
            }
            for (reason, n) in PM_FAIL_REASONS.iter().zip(failures) {
                if n > 0 {
                    sum.failures.insert((*reason).to_string(), n);
                }
            }
            for (reason, n) in PM_SKIP_REASONS.iter().zip(skipped) {
                if n > 0 {
                    sum.skipped.insert((*reason).to_string(), n);
                }
            }
            out.insert((key.session_id, direction), sum);
        }
        Ok(out)
    }

    /// Drop the counters and endpoint table of a session no interface uses
    /// any more.
    pub fn remove_counters(&mut self, session_id: u32) -> Result<(), DatapathError> {
        let mut lbs: HashMap<&mut MapData, u32, PmLb> = map_mut(&mut self.ebpf, MAP_LBS)?;
        match lbs.remove(&session_id) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(source) => return Err(DatapathError::Map { map: MAP_LBS, source }),
        }
        let mut rates: HashMap<&mut MapData, u32, PmRate> = map_mut(&mut self.ebpf, MAP_RATES)?;
        match rates.remove(&session_id) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(source) => return Err(DatapathError::Map { map: MAP_RATES, source }),
        }
        let mut counters: PerCpuHashMap<&mut MapData, PmCounterKey, PmCounters> =
            map_mut(&mut self.ebpf, MAP_COUNTERS)?;
        for d in [PM_DIR_INBOUND, PM_DIR_OUTBOUND] {
            match counters.remove(&PmCounterKey { session_id, direction: d }) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => return Err(DatapathError::Map { map: MAP_COUNTERS, source }),
            }
        }
        Ok(())
    }

    /// The ifindex of this node's copy device.
    pub fn copy_ifindex(&self) -> u32 {
        self.copy_ifindex
    }

    /// Run the veth programs' decision on `frame` with BPF_PROG_TEST_RUN,
    /// as if seen on `ifindex` in `direction`; nothing is copied. For the
    /// differential test and diagnostics.
    pub fn test_decide(
        &mut self,
        ifindex: u32,
        direction: Direction,
        frame: &[u8],
    ) -> Result<PmDecision, DatapathError> {
        // struct __sk_buff up to the end of cb[5]; cb[0] = direction, cb[1] = ifindex.
        let mut ctx = [0u8; 68];
        ctx[48..52].copy_from_slice(&direction_code(direction).to_ne_bytes());
        ctx[52..56].copy_from_slice(&ifindex.to_ne_bytes());
        let prog = classifier(&mut self.ebpf, PROG_TEST)?;
        let opts = TestRunOptions { data_in: Some(frame), ctx_in: Some(&ctx), ..TestRunOptions::new() };
        let result = prog.test_run(opts).map_err(|e| DatapathError::TestRun(e.to_string()))?;
        if result.return_value != 0 {
            return Err(DatapathError::TestRun(format!("program returned {}", result.return_value)));
        }
        let map = self.ebpf.map(MAP_DECISION).ok_or_else(|| DatapathError::TestRun("no decision map".into()))?;
        let decisions: Array<&MapData, PmDecision> =
            Array::try_from(map).map_err(|source| DatapathError::Map { map: MAP_DECISION, source })?;
        decisions.get(&0, 0).map_err(|source| DatapathError::Map { map: MAP_DECISION, source })
    }

    /// Run the production veth program of `direction` on `frame` with
    /// BPF_PROG_TEST_RUN (the interface is the test run's loopback, ifindex 1
    /// of the caller's namespace). Returns the program's return value and the
    /// packet as the program left it, to check that the original is never
    /// changed and always passed on.
    pub fn test_run_veth(&mut self, direction: Direction, frame: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        let name = match direction {
            Direction::Outbound => PROG_INGRESS,
            Direction::Inbound => PROG_EGRESS,
        };
        let prog = classifier(&mut self.ebpf, name)?;
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::new() };
        let result = prog.test_run(opts).map_err(|e| DatapathError::TestRun(e.to_string()))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
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

/// The endpoint tables of the enabled sessions, all encoded before any is
/// written (a refused session leaves the maps as they were).
fn lbs_of(sessions: &[DatapathSession]) -> Result<Vec<Box<PmLb>>, DatapathError> {
    sessions.iter().filter(|s| s.session.enabled).map(|s| encode::encode_lb(&s.session)).collect()
}

/// Undo one hook's attachment, TCX link pin or clsact record alike.
fn remove_attachment(path: &Path) {
    let is_clsact = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(clsact::PREFIX));
    if is_clsact { clsact::remove(path) } else { pins::remove_link_pin(path) }
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

/// Attach `prog` at (`ifindex`, `hook`) and pin the link at `pin`; when a
/// link is already pinned there, atomically point it at `prog` instead
/// (bpf_link_update: no gap in mirroring across an agent restart).
fn attach_or_adopt(
    prog: &mut SchedClassifier,
    name: &'static str,
    ifindex: u32,
    hook: TcAttachType,
    pin: &Path,
) -> Result<PathBuf, DatapathError> {
    let hook_name = match hook {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    };
    let err = |reason: String| DatapathError::Attach { program: name, ifindex, hook: hook_name, reason };
    if pin.exists() {
        let adopted = PinnedLink::from_pin(pin)
            .map_err(|e| e.to_string())
            .and_then(|p| p.unpin().map_err(|e| e.to_string()))
            .and_then(|fd: FdLink| SchedClassifierLink::try_from(fd).map_err(|e| e.to_string()))
            .and_then(|link| prog.attach_to_link(link).map_err(|e| e.to_string()));
        match adopted {
            Ok(id) => return pin_link(prog, id, pin).map_err(err),
            // A link of a vanished device (or a bad pin): start afresh.
            Err(_) => pins::remove_link_pin(pin),
        }
    }
    let ifname = netlink::ifname(ifindex)?;
    let id = prog
        .attach_with_options(&ifname, hook, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(|e| err(format!("TCX attach failed: {e}")))?;
    pin_link(prog, id, pin).map_err(err)
}

/// Pin the link and let go of its fd: from here on the pin alone keeps it.
fn pin_link(
    prog: &mut SchedClassifier,
    id: aya::programs::tc::SchedClassifierLinkId,
    pin: &Path,
) -> Result<PathBuf, String> {
    let link = prog.take_link(id).map_err(|e| e.to_string())?;
    let fd: FdLink = link.try_into().map_err(|e: aya::programs::links::LinkError| e.to_string())?;
    fd.pin(pin).map_err(|e| format!("pin {}: {e}", pin.display()))?;
    Ok(pin.to_path_buf())
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
