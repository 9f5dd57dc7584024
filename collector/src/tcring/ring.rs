//! The reading side of a BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`), mapped
//! the way the kernel lays it out: a consumer page the reader writes its
//! position to, then a read-only producer page and the data area, mapped
//! twice in a row so that a record that wraps around the end reads as one
//! slice. Records are read in batches and released together, after the
//! sinks took what they keep: the ring itself is the input's buffer.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Record header flags (`BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`).
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`: the kernel's header in front of every record.
const HDR: u64 = 8;

/// One shared mapping of the ring's file descriptor, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int, offset: usize) -> std::io::Result<Mapping> {
        let offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: a fresh shared mapping of a ring buffer map; checked below.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), offset) };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A mapped ring buffer, read by one thread.
pub struct Ring {
    /// The map, for poll (a duplicate: the loaded program keeps its own).
    fd: OwnedFd,
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    /// Data bytes (a power of two).
    size: u64,
    /// Where reading stands: records before it were handed out.
    read_to: u64,
}

// SAFETY: the mappings are owned and only read through &self/&mut self.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring `fd` of `size` data bytes (the map's max_entries).
    pub fn map(fd: BorrowedFd<'_>, size: u32) -> std::io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let bytes = size as usize;
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + 2 * bytes, libc::PROT_READ, page)?;
        let fd = fd.try_clone_to_owned()?;
        let mut ring = Ring { fd, consumer, producer, page, size: u64::from(size), read_to: 0 };
        ring.read_to = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    /// The map's descriptor: readable when records wait.
    pub fn fd(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts with the u64 position, page
        // aligned; the kernel only reads it.
        unsafe { &*self.consumer.ptr.as_ptr().cast::<AtomicU64>() }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above, the producer page starts with its position.
        unsafe { &*self.producer.ptr.as_ptr().cast::<AtomicU64>() }
    }

    /// Whether records wait beyond those handed out.
    pub fn has_data(&self) -> bool {
        self.producer_pos().load(Ordering::Acquire) > self.read_to
    }

    /// Hands up to `max` committed records after those already read to
    /// `f` (discarded ones are skipped), then gives them back to the
    /// kernel: they are valid only during `f`. Returns what `f` returned.
    pub fn consume<R>(&mut self, max: usize, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let produced = self.producer_pos().load(Ordering::Acquire);
        let mask = self.size - 1;
        let mut records: Vec<&[u8]> = Vec::with_capacity(max.min(1024));
        let mut at_pos = self.read_to;
        while at_pos < produced && records.len() < max {
            let at = self.page + (at_pos & mask) as usize;
            // SAFETY: `at` lies in the first copy of the data area, 8-byte
            // aligned; the kernel writes the length word atomically.
            let word = unsafe { &*self.producer.ptr.as_ptr().add(at).cast::<AtomicU32>() };
            let header = word.load(Ordering::Acquire);
            if header & BUSY != 0 {
                break;
            }
            let len = u64::from(header & !(BUSY | DISCARD));
            if header & DISCARD == 0 && len <= self.size {
                // SAFETY: the record lies in the data area, mapped twice in
                // a row (len <= size); it is committed and the kernel does
                // not reuse it before the consumer position passes it,
                // which happens after `f` returns.
                let start = unsafe { self.producer.ptr.as_ptr().add(at + HDR as usize) };
                records.push(unsafe { std::slice::from_raw_parts(start, len as usize) });
            }
            at_pos += (len + HDR).next_multiple_of(8);
        }
        let result = f(&records);
        drop(records);
        self.read_to = at_pos;
        self.consumer_pos().store(at_pos, Ordering::Release);
        result
    }
}
