//! The ring input (`--ring-iface`): a TC ingress program on the interface
//! the copies arrive on copies each VXLAN datagram to the collector's port
//! into a BPF ring buffer and stops it there (see `bpf/pm_ring.bpf.c`); one
//! thread reads the ring in batches ([`ring`]) and writes the files from
//! it. Per copy the kernel does one copy and no socket work, and wakes the
//! reader once per batch. The UDP sockets stay open beside it: copies
//! larger than a record (9000-byte frames) pass on to them. A copy that
//! finds the ring full is dropped and counted
//! (`podmirror_collector_ring_full`): passing it on would make an
//! overloaded collector pay the dearer socket path. Needs CAP_BPF and
//! CAP_NET_ADMIN, and the kernel's TCX (Linux 6.6 or later).

mod ring;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader, Pod};

use crate::decode::{decode_vxlan, udp_payload};
use crate::dispatch::Dispatch;

/// The program, embedded (built from `bpf/pm_ring.bpf.c` by `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pm_ring.bpf.o"));
/// `PM_RING_MAX_PACKET`: the largest packet a record holds.
pub const MAX_PACKET: usize = 1792;
/// `struct pm_ring_rec`, in front of each packet.
const RECORD_HEADER: usize = 16;
/// `PM_RING_RECORD`: ring bytes one record takes (kernel header, ours, the
/// largest packet).
const RECORD: u32 = 8 + RECORD_HEADER as u32 + MAX_PACKET as u32;
/// Records read per turn, and the batch the program wakes the reader for.
const BATCH: usize = 256;
/// How long the reader waits for a batch before it reads what there is (the
/// last records of a quiet moment wait at most this long).
const POLL_MS: libc::c_int = 5;

/// Unread bytes at which the program wakes the reader: a batch, or an
/// eighth of a smaller ring (so that a small ring never fills unread).
fn wakeup_bytes(ring_bytes: u32) -> u32 {
    (BATCH as u32 * RECORD).min(ring_bytes / 8).max(RECORD)
}

/// `struct pm_ring_cfg` of the program (ABI: keep in step with the C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RingConfig {
    /// UDP destination port, network order.
    port_be: u16,
    pad: u16,
    /// Unread bytes at which the program wakes the reader.
    wakeup_bytes: u32,
}

// SAFETY: repr(C), plain integers, no padding (2 + 2 + 4 bytes).
unsafe impl Pod for RingConfig {}

#[derive(Debug, thiserror::Error)]
#[error("--ring-iface {iface}: {what}: {detail}")]
pub struct RingError {
    iface: String,
    what: &'static str,
    detail: String,
}

/// The attached program; dropping it detaches the program (the reading
/// thread ends with the collector's stop flag).
pub struct RingInput {
    _ebpf: Ebpf,
}

/// Loads the program with a ring of `ring_bytes` (a power of two, at
/// least a page: `config` checks it), starts the reading thread, then
/// attaches the program to `iface`'s ingress.
pub fn start(
    iface: &str,
    port: u16,
    ring_bytes: u32,
    dispatch: &Dispatch,
    stop: &Arc<AtomicBool>,
) -> Result<(RingInput, JoinHandle<()>), RingError> {
    let fail = |what: &'static str| {
        let iface = iface.to_string();
        move |e: String| RingError { iface, what, detail: e }
    };
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("pm_ring", ring_bytes)
        .load(OBJECT)
        .map_err(|e| fail("loading the TC program")(e.to_string()))?;
    let mut cfg: Array<_, RingConfig> = ebpf
        .map_mut("pm_ring_cfg")
        .ok_or_else(|| fail("the program's pm_ring_cfg map")("missing".into()))
        .and_then(|m| Array::try_from(m).map_err(|e| fail("the program's pm_ring_cfg map")(e.to_string())))?;
    let config = RingConfig { port_be: port.to_be(), pad: 0, wakeup_bytes: wakeup_bytes(ring_bytes) };
    cfg.set(0, config, 0).map_err(|e| fail("configuring the program")(e.to_string()))?;
    let full: PerCpuArray<MapData, u64> = ebpf
        .take_map("pm_ring_full")
        .ok_or_else(|| "missing".to_string())
        .and_then(|m| PerCpuArray::try_from(m).map_err(|e| e.to_string()))
        .map_err(fail("the program's pm_ring_full map"))?;
    let ring = match ebpf.map("pm_ring") {
        Some(aya::maps::Map::RingBuf(data)) => map_ring(data, ring_bytes),
        _ => Err("missing".to_string()),
    }
    .map_err(fail("mapping the ring buffer"))?;
    let reader = Reader { ring, full, full_seen: 0, port, dispatch: dispatch.clone() };
    let stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ring-rx".into())
        .spawn(move || reader.run(&stop))
        .map_err(|e| fail("starting a thread")(e.to_string()))?;
    attach_tcx_ingress(&mut ebpf, "pm_ring_capture", iface)
        .map_err(fail("attaching the TC program (needs TCX, Linux 6.6 or later)"))?;
    Ok((RingInput { _ebpf: ebpf }, thread))
}

fn map_ring(data: &MapData, ring_bytes: u32) -> Result<ring::Ring, String> {
    ring::Ring::map(data.fd().as_fd(), ring_bytes).map_err(|e| e.to_string())
}

/// Loads `program` of `ebpf` and attaches it to `iface`'s ingress by TCX
/// (the benchmark attaches its floor the same way).
pub fn attach_tcx_ingress(ebpf: &mut Ebpf, program: &str, iface: &str) -> Result<(), String> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("no {program} program"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    prog.attach_with_options(iface, TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The reading thread's state.
struct Reader {
    ring: ring::Ring,
    /// The program's count of copies dropped with the ring full.
    full: PerCpuArray<MapData, u64>,
    full_seen: u64,
    port: u16,
    dispatch: Dispatch,
}

impl Reader {
    /// Reads the ring in batches until `stop` is set, writing the files in
    /// place before it gives the records back: while the disk is slow the
    /// ring holds the copies, it is the input's buffer (the program drops
    /// copies, counted, only when the ring is full).
    fn run(mut self, stop: &AtomicBool) {
        // This thread writes the files: the kernel filling the ring comes
        // first.
        crate::filesink::yield_to_receivers();
        let mut clock = Clock::now();
        let mut last_count = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if last_count.elapsed() >= Duration::from_secs(1) {
                self.count_full();
                clock = Clock::now();
                last_count = Instant::now();
            }
            if !self.ring.has_data() && !wait(&self.ring) {
                continue;
            }
            let (port, dispatch) = (self.port, &self.dispatch);
            self.ring.consume(BATCH, |records| {
                let copies = records.iter().map(|r| {
                    let (boot_ns, packet) = record(r).unwrap_or_default();
                    (clock.wall(boot_ns), decode_vxlan(udp_payload(packet, port).unwrap_or_default()))
                });
                dispatch.accept_in_place("vxlan", copies);
            });
        }
        self.count_full();
    }

    /// Adds the copies the program dropped since the last look to
    /// `podmirror_collector_ring_full`.
    fn count_full(&mut self) {
        let total: u64 = self.full.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(self.full_seen);
        self.dispatch.metrics.ring_full.inc_by(total.saturating_sub(self.full_seen));
        self.full_seen = total;
    }
}

/// Turns the program's CLOCK_BOOTTIME stamps into wall-clock time.
#[derive(Clone, Copy)]
struct Clock {
    /// Wall-clock time at boot time `boot_ns`.
    wall: SystemTime,
    boot_ns: u64,
}

impl Clock {
    fn now() -> Clock {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: one valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot_ns = (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64);
        Clock { wall: SystemTime::now(), boot_ns }
    }

    /// The wall-clock time of boot time `boot_ns` (the reading time for a
    /// stamp out of range).
    fn wall(&self, boot_ns: u64) -> SystemTime {
        let shifted = if boot_ns >= self.boot_ns {
            self.wall.checked_add(Duration::from_nanos(boot_ns - self.boot_ns))
        } else {
            self.wall.checked_sub(Duration::from_nanos(self.boot_ns - boot_ns))
        };
        shifted.unwrap_or(self.wall)
    }
}

/// A record's receipt time and packet (`struct pm_ring_rec` says how long
/// the packet is).
fn record(record: &[u8]) -> Option<(u64, &[u8])> {
    let boot_ns = u64::from_ne_bytes(record.get(0..8)?.try_into().ok()?);
    let len = u32::from_ne_bytes(record.get(8..12)?.try_into().ok()?) as usize;
    Some((boot_ns, record.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?))
}

/// Blocks until the kernel says records wait or a poll interval passes.
fn wait(ring: &ring::Ring) -> bool {
    let mut pfd = libc::pollfd { fd: ring.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, POLL_MS) > 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The program's constants and structs as Rust sees them (aya also
    /// refuses a map whose value size differs, at start).
    #[test]
    fn the_c_abi_matches() {
        let c = include_str!("../../bpf/pm_ring.bpf.c");
        let max = c
            .lines()
            .find_map(|l| l.strip_prefix("#define PM_RING_MAX_PACKET "))
            .and_then(|v| v.trim().parse::<usize>().ok());
        assert_eq!(max, Some(MAX_PACKET));
        assert_eq!(size_of::<RingConfig>(), 8);
        assert_eq!(offset_of!(RingConfig, wakeup_bytes), 4);
        assert!(c.contains("#define PM_RING_RECORD (8 + 16 + PM_RING_MAX_PACKET)"), "record size changed");
        assert_eq!(RECORD, 8 + 16 + 1792);
        assert!(c.contains("__u64 boot_ns;") && c.contains("__u32 len;"), "struct pm_ring_rec changed");
        assert_eq!(RECORD_HEADER, 16, "struct pm_ring_rec: u64 boot_ns, u32 len, u32 pad");
        assert_eq!(offset_of!(RingConfig, port_be), 0);
    }

    #[test]
    fn the_reader_is_woken_per_batch_and_before_a_small_ring_fills() {
        assert_eq!(wakeup_bytes(64 << 20), 256 * RECORD);
        assert_eq!(wakeup_bytes(1 << 20), (1 << 20) / 8);
        assert_eq!(wakeup_bytes(4096), RECORD, "at least one record");
    }

    #[test]
    fn a_record_gives_its_stamp_and_packet() {
        let mut r = 123_456_789u64.to_ne_bytes().to_vec();
        r.extend(3u32.to_ne_bytes());
        r.extend([0u8; 4]);
        r.extend([1, 2, 3, 4, 5]);
        assert_eq!(record(&r), Some((123_456_789, &[1u8, 2, 3][..])));
        // A length past the record is refused, not read.
        r[8] = 200;
        assert_eq!(record(&r), None);
        assert_eq!(record(&r[..10]), None);
    }

    #[test]
    fn boot_stamps_become_wall_clock_time() {
        let c = Clock { wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1000), boot_ns: 5_000_000_000 };
        assert_eq!(c.wall(6_500_000_000), SystemTime::UNIX_EPOCH + Duration::from_millis(1_001_500));
        assert_eq!(c.wall(4_000_000_000), SystemTime::UNIX_EPOCH + Duration::from_secs(999));
    }
}
