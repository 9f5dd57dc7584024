//! The AF_XDP input (`--xdp-iface`): an XDP program on the interface the
//! copies arrive on redirects VXLAN datagrams to one AF_XDP socket per
//! receive queue (see `bpf/pm_xsk.bpf.c` and [`xsk`]). Each copy then costs
//! the kernel one copy into shared memory instead of a trip through IP,
//! UDP and a socket buffer. The UDP sockets stay open beside it: copies
//! larger than an AF_XDP frame (9000-byte frames) and anything the program
//! passes still arrive there. Needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and
//! CAP_IPC_LOCK (or a memlock limit of 16 MiB per queue); not CAP_PERFMON:
//! the program uses no variable packet offsets, which would need it.

mod xsk;

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread::JoinHandle;

use aya::maps::{Array, XskMap};
use aya::programs::{Xdp, XdpMode as Attach};
use aya::{Ebpf, Pod};

use crate::dispatch::Dispatch;

/// The program, embedded (built from `bpf/pm_xsk.bpf.c` by `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pm_xsk.bpf.o"));
/// Receive queues the program's XSKMAP has room for (`PM_XSK_MAX_QUEUES`).
const MAX_QUEUES: u32 = 256;

/// `struct pm_xsk_cfg` of the program (ABI: keep in step with the C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct XskConfig {
    /// UDP destination port, network order.
    port_be: u16,
    pad: u16,
    /// The largest packet an AF_XDP frame holds.
    max_len: u32,
}

// SAFETY: repr(C), plain integers, no padding (2 + 2 + 4 bytes).
unsafe impl Pod for XskConfig {}

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    /// In the driver where it can, else generic.
    Auto,
    /// In the driver only (fails where the driver has no XDP).
    Native,
    /// Generic (skb) mode: any interface, after the kernel built the skb.
    Generic,
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("--xdp-iface {iface}: {what}: {detail}")]
    Setup { iface: String, what: &'static str, detail: String },
    #[error("--xdp-iface {iface}: AF_XDP socket of receive queue {queue}: {source}")]
    Queue { iface: String, queue: u32, source: xsk::QueueError },
}

/// The attached program; dropping it detaches the program (and the
/// receiving threads end with the collector's stop flag).
pub struct XdpInput {
    _ebpf: Ebpf,
    pub mode: &'static str,
    pub queues: u32,
}

/// Loads the program, opens one socket per receive queue of `iface`, each
/// read by its own thread, then attaches the program.
pub fn start(
    iface: &str,
    port: u16,
    mode: XdpMode,
    dispatch: &Dispatch,
    stop: &Arc<AtomicBool>,
) -> Result<(XdpInput, Vec<JoinHandle<()>>), XdpError> {
    let setup = |what: &'static str| {
        let iface = iface.to_string();
        move |e: String| XdpError::Setup { iface, what, detail: e }
    };
    let mut ebpf = Ebpf::load(OBJECT).map_err(|e| setup("loading the XDP program")(e.to_string()))?;
    let config = XskConfig { port_be: port.to_be(), pad: 0, max_len: xsk::MAX_PACKET };
    let mut cfg: Array<_, XskConfig> = ebpf
        .map_mut("pm_xsk_cfg")
        .ok_or_else(|| setup("the program's pm_xsk_cfg map")("missing".into()))
        .and_then(|m| Array::try_from(m).map_err(|e| setup("the program's pm_xsk_cfg map")(e.to_string())))?;
    cfg.set(0, config, 0).map_err(|e| setup("configuring the program")(e.to_string()))?;
    let queues = rx_queues(iface);
    let mut threads = Vec::new();
    let mut xsks: XskMap<_> = ebpf
        .map_mut("pm_xsks")
        .ok_or_else(|| setup("the program's pm_xsks map")("missing".into()))
        .and_then(|m| XskMap::try_from(m).map_err(|e| setup("the program's pm_xsks map")(e.to_string())))?;
    for queue in 0..queues {
        let (fd, thread) = spawn_queue(iface, queue, port, dispatch.clone(), stop.clone())?;
        // SAFETY: the socket stays open while its thread runs, and the
        // map only takes a reference to it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        xsks.set(queue, borrowed, 0).map_err(|e| setup("registering a socket")(e.to_string()))?;
        threads.push(thread);
    }
    let mode = attach(&mut ebpf, iface, mode).map_err(setup("attaching the XDP program"))?;
    Ok((XdpInput { _ebpf: ebpf, mode, queues }, threads))
}

/// Opens queue `queue`'s socket on a thread of its own (the socket and its
/// rings stay on that thread) and returns its descriptor.
fn spawn_queue(
    iface: &str,
    queue: u32,
    port: u16,
    dispatch: Dispatch,
    stop: Arc<AtomicBool>,
) -> Result<(libc::c_int, JoinHandle<()>), XdpError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let name = iface.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("xdp-rx-{queue}"))
        .spawn(move || match xsk::Queue::open(&name, queue) {
            Ok(q) => {
                let _ = tx.send(Ok(q.fd()));
                q.run(port, &dispatch, &stop);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| XdpError::Setup { iface: iface.into(), what: "starting a thread", detail: e.to_string() })?;
    let opened = rx.recv().unwrap_or_else(|_| Err(xsk::QueueError::gone()));
    let fd = opened.map_err(|source| XdpError::Queue { iface: iface.into(), queue, source })?;
    Ok((fd, thread))
}

/// Attaches in the requested mode; `Auto` tries the driver first.
fn attach(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> Result<&'static str, String> {
    let prog: &mut Xdp = ebpf
        .program_mut("pm_xsk_redirect")
        .ok_or("no pm_xsk_redirect program")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    let mut tried = Vec::new();
    let order: &[(Attach, &'static str)] = match mode {
        XdpMode::Auto => &[(Attach::Driver, "native"), (Attach::Skb, "generic")],
        XdpMode::Native => &[(Attach::Driver, "native")],
        XdpMode::Generic => &[(Attach::Skb, "generic")],
    };
    for (how, name) in order {
        match prog.attach(iface, *how) {
            Ok(_) => return Ok(name),
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(tried.join("; "))
}

/// Receive queues of `iface` (its `queues/rx-*` in sysfs; 1 if unknown).
fn rx_queues(iface: &str) -> u32 {
    let counted = std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1);
    u32::try_from(counted).unwrap_or(1).clamp(1, MAX_QUEUES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The program's constants and `struct pm_xsk_cfg` as Rust sees them
    /// (aya also refuses a map whose value size differs, at start).
    #[test]
    fn the_c_abi_matches() {
        let c = include_str!("../../bpf/pm_xsk.bpf.c");
        let queues = c
            .lines()
            .find_map(|l| l.strip_prefix("#define PM_XSK_MAX_QUEUES "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        assert_eq!(queues, Some(MAX_QUEUES));
        assert_eq!(size_of::<XskConfig>(), 8);
        assert_eq!(offset_of!(XskConfig, max_len), 4);
        assert_eq!(xsk::MAX_PACKET, 1792, "a VXLAN copy of a 1500-byte frame (1564 bytes) fits");
    }
}
