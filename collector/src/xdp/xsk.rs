//! One AF_XDP socket per receive queue of the interface: its own UMEM (an
//! anonymous mapping cut into frames), fill ring and RX ring, read by one
//! thread. The kernel copies each redirected packet into a free frame and
//! posts its descriptor on the RX ring; the thread decodes the VXLAN copy in
//! place, hands the batch to the sinks (which copy what they keep) and gives
//! the frames back through the fill ring.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xdpilone::{BufIdx, DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::decode::{decode_vxlan, udp_payload};
use crate::dispatch::Dispatch;
use crate::metrics::{Metrics, ReasonLabels};

/// Bytes per frame: a VXLAN copy of a 1500-byte frame and the kernel's
/// 256-byte XDP headroom fit; larger copies take the socket path.
pub const FRAME_SIZE: u32 = 2048;
/// Headroom the kernel keeps in front of every packet it copies in.
const XDP_PACKET_HEADROOM: u32 = 256;
/// The largest packet a frame holds (the XDP program's `max_len`).
pub const MAX_PACKET: u32 = FRAME_SIZE - XDP_PACKET_HEADROOM;
/// Frames per queue (16 MiB): all of them fit the fill ring, so a frame
/// given back always finds room; the RX ring holds half (about 8 ms of
/// copies at 500k a second, to ride out a busy moment of the CPU).
const FRAMES: u32 = 8192;
const RX_RING: u32 = FRAMES / 2;
/// Descriptors read per turn.
const BATCH: u32 = 256;
/// How long a turn waits for packets before it looks at the stop flag.
const POLL_MS: libc::c_int = 100;

/// The anonymous mapping behind a UMEM, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Area, std::io::Error> {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Area { ptr, len })
    }

    fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// The bytes of a descriptor, if they lie inside the area.
    fn bytes(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); the kernel wrote these bytes before
        // posting the descriptor and does not touch the frame until it is
        // back on the fill ring, which happens after this borrow ends.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A bound AF_XDP socket of one receive queue. Field order is drop order:
/// the rings and the socket go before the memory they point at.
pub struct Queue {
    rx: RingRx,
    fill: DeviceQueue,
    user: User,
    _umem: Umem,
    area: Area,
}

/// The socket's kernel drop counters as last exported.
#[derive(Default)]
struct KernelDrops {
    ring_full: u64,
    no_frame: u64,
    read: Option<Instant>,
}

impl KernelDrops {
    /// Adds what the kernel counted since the last look to
    /// `podmirror_collector_xdp_dropped` (at most once a second).
    fn update(&mut self, user: &User, metrics: &Metrics) {
        if self.read.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.read = Some(Instant::now());
        let Ok(now) = user.statistics_v2() else {
            return;
        };
        for (reason, total, seen) in
            [("ring_full", now.rx_ring_full, &mut self.ring_full), ("no_frame", now.rx_dropped, &mut self.no_frame)]
        {
            metrics.xdp_dropped.get_or_create(&ReasonLabels { reason }).inc_by(total.saturating_sub(*seen));
            *seen = total;
        }
    }
}

/// Why a queue's socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct QueueError {
    step: &'static str,
    detail: String,
}

impl QueueError {
    /// The queue's thread ended before it said how the setup went.
    pub fn gone() -> QueueError {
        QueueError { step: "starting the queue's thread", detail: "the thread ended early".into() }
    }
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> QueueError {
    move |e| QueueError { step, detail: e.to_string() }
}

impl Queue {
    /// Creates and binds the socket of `queue_id` on `iface` and fills its
    /// fill ring with all its frames.
    pub fn open(iface: &str, queue_id: u32) -> Result<Queue, QueueError> {
        let area = Area::new((FRAMES * FRAME_SIZE) as usize).map_err(step("mapping the UMEM"))?;
        let config =
            UmemConfig { fill_size: FRAMES, complete_size: RX_RING, frame_size: FRAME_SIZE, headroom: 0, flags: 0 };
        // SAFETY: the area is page aligned (mmap) and outlives the UMEM
        // (dropped after it, see the field order of Queue).
        let umem = unsafe { Umem::new(config, area.slice()) }
            .map_err(step("registering the UMEM (16 MiB locked: needs CAP_IPC_LOCK or RLIMIT_MEMLOCK)"))?;
        let name = CString::new(iface).map_err(step("interface name"))?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(step("finding the interface"))?;
        info.set_queue(queue_id);
        let sock = Socket::with_shared(&info, &umem).map_err(step("creating the socket"))?;
        let mut fill = umem.fq_cq(&sock).map_err(step("creating the fill ring"))?;
        let rings = SocketConfig { rx_size: NonZeroU32::new(RX_RING), tx_size: None, bind_flags: 0 };
        let user = umem.rx_tx(&sock, &rings).map_err(step("creating the RX ring"))?;
        let rx = user.map_rx().map_err(step("mapping the RX ring"))?;
        umem.bind(&user).map_err(step("binding to the queue"))?;
        let offsets = (0..FRAMES).filter_map(|i| umem.frame(BufIdx(i)).map(|f| f.offset));
        let mut writer = fill.fill(FRAMES);
        writer.insert(offsets);
        writer.commit();
        drop(writer);
        Ok(Queue { rx, fill, user, _umem: umem, area })
    }

    /// The socket's descriptor, for the XSKMAP.
    pub fn fd(&self) -> libc::c_int {
        self.rx.as_raw_fd()
    }

    /// Receives until `stop` is set.
    pub fn run(mut self, port: u16, dispatch: &Dispatch, stop: &AtomicBool) {
        let mut done: Vec<u64> = Vec::with_capacity(BATCH as usize);
        let mut descs = Vec::with_capacity(BATCH as usize);
        let mut drops = KernelDrops::default();
        while !stop.load(Ordering::Relaxed) {
            drops.update(&self.user, &dispatch.metrics);
            if self.rx.available() == 0 && !self.wait() {
                continue;
            }
            let mut reader = self.rx.receive(BATCH);
            descs.clear();
            while let Some(d) = reader.read() {
                descs.push(d);
            }
            reader.release();
            drop(reader);
            let area = &self.area;
            let copies = descs.iter().map(|d| {
                let packet = area.bytes(d.addr, d.len).unwrap_or_default();
                // The program only redirects UDP to `port`; anything else
                // would be a short VXLAN header, and is counted as one.
                decode_vxlan(udp_payload(packet, port).unwrap_or_default())
            });
            dispatch.accept_batch("vxlan", copies);
            // Frames go back whole: the descriptor points past the headroom.
            done.clear();
            done.extend(descs.iter().map(|d| d.addr - d.addr % u64::from(FRAME_SIZE)));
            let mut writer = self.fill.fill(done.len() as u32);
            writer.insert(done.iter().copied());
            writer.commit();
        }
        drops.read = None;
        drops.update(&self.user, &dispatch.metrics);
        tracing::info!(ring_full = drops.ring_full, no_frame = drops.no_frame, "AF_XDP queue stopped");
    }

    /// Blocks until packets arrive or a poll interval passes.
    fn wait(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, POLL_MS) > 0 }
    }
}
