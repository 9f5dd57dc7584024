//! The interface table: which `pm_iftab` slot holds each host-side veth's
//! state, and how a new state replaces the old one without a packet ever
//! seeing a mix of the two (see `struct pm_iface` in `bpf/pm_abi.h`).
//!
//! An update writes the new state into a free slot, then flips the
//! interface's entry to it: one aligned 32-bit store into the memory-mapped
//! `pm_ifslot` (or an RCU swap of a `pm_ifbig` element for ifindexes past
//! `PM_IFINDEX_DIRECT`). The old slot may still be read by a program that
//! looked the entry up just before the flip, so it is retired, and retired
//! slots are reused only after an RCU grace period (`rcu_barrier`). All
//! state lives in the pinned maps, so a restarted agent rebuilds this table
//! from them.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::Ebpf;
use aya::maps::{Array, HashMap, Map, MapData};

use super::abi::{PM_IFACE_SLOTS, PM_IFINDEX_DIRECT, PmIface};
use super::error::DatapathError;
use super::{is_not_found, map_mut};

pub(super) const MAP_IFSLOT: &str = "pm_ifslot";
pub(super) const MAP_IFBIG: &str = "pm_ifbig";
pub(super) const MAP_IFTAB: &str = "pm_iftab";

pub(super) struct IfaceTable {
    index: SlotIndex,
    /// ifindex -> its slot in `pm_iftab`.
    used: BTreeMap<u32, u32>,
    free: Vec<u32>,
    /// Slots replaced or removed since the last grace period.
    retired: Vec<u32>,
}

impl IfaceTable {
    /// The table as the pinned maps hold it (empty on a first start).
    pub(super) fn adopt(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        let index = SlotIndex::map(ebpf)?;
        let mut used = BTreeMap::new();
        for ifindex in 0..PM_IFINDEX_DIRECT as u32 {
            if let Some(slot) = index.load(ifindex).checked_sub(1) {
                used.insert(ifindex, slot as u32);
            }
        }
        let big: HashMap<&mut MapData, u32, u64> = map_mut(ebpf, MAP_IFBIG)?;
        for entry in big.iter() {
            let (ifindex, v) = entry.map_err(|source| DatapathError::Map { map: MAP_IFBIG, source })?;
            if let Some(slot) = v.checked_sub(1) {
                used.insert(ifindex, slot as u32);
            }
        }
        let taken: std::collections::BTreeSet<u32> = used.values().copied().collect();
        let free = (0..PM_IFACE_SLOTS as u32).rev().filter(|s| !taken.contains(s)).collect();
        // A previous agent may have retired slots a moment ago.
        rcu_barrier()?;
        Ok(IfaceTable { index, used, free, retired: Vec::new() })
    }

    /// Replace the state of `ifindex` (write a free slot, then flip).
    pub(super) fn set(&mut self, ebpf: &mut Ebpf, ifindex: u32, iface: &PmIface) -> Result<(), DatapathError> {
        let slot = self.take_free(ifindex)?;
        let written = map_mut::<Array<&mut MapData, PmIface>>(ebpf, MAP_IFTAB)
            .and_then(|mut tab| tab.set(slot, iface, 0).map_err(|source| DatapathError::Map { map: MAP_IFTAB, source }))
            .and_then(|()| self.publish(ebpf, ifindex, u64::from(slot) + 1));
        if let Err(e) = written {
            self.free.push(slot);
            return Err(e);
        }
        if let Some(old) = self.used.insert(ifindex, slot) {
            self.retired.push(old);
        }
        Ok(())
    }

    /// Stop mirroring `ifindex`. Idempotent.
    pub(super) fn remove(&mut self, ebpf: &mut Ebpf, ifindex: u32) -> Result<(), DatapathError> {
        let Some(&old) = self.used.get(&ifindex) else { return Ok(()) };
        self.publish(ebpf, ifindex, 0)?;
        self.used.remove(&ifindex);
        self.retired.push(old);
        Ok(())
    }

    fn take_free(&mut self, ifindex: u32) -> Result<u32, DatapathError> {
        if self.free.is_empty() && !self.retired.is_empty() {
            // One grace period frees every slot retired before it.
            rcu_barrier()?;
            self.free.append(&mut self.retired);
        }
        self.free.pop().ok_or_else(|| DatapathError::Interface {
            ifindex,
            reason: format!("all {PM_IFACE_SLOTS} interface slots are in use"),
        })
    }

    /// Point `ifindex` at `value` (slot + 1; 0 = not mirrored).
    fn publish(&mut self, ebpf: &mut Ebpf, ifindex: u32, value: u64) -> Result<(), DatapathError> {
        if (ifindex as usize) < PM_IFINDEX_DIRECT {
            self.index.store(ifindex, value);
            return Ok(());
        }
        let mut big: HashMap<&mut MapData, u32, u64> = map_mut(ebpf, MAP_IFBIG)?;
        let done = if value == 0 {
            big.remove(&ifindex).or_else(|e| if is_not_found(&e) { Ok(()) } else { Err(e) })
        } else {
            big.insert(ifindex, value, 0)
        };
        done.map_err(|source| DatapathError::Map { map: MAP_IFBIG, source })
    }
}

/// `pm_ifslot` mapped into this process (a `u64[PM_IFINDEX_DIRECT]`): entry
/// `i` is the slot + 1 of ifindex `i`, read by the programs with one load.
struct SlotIndex {
    base: NonNull<AtomicU64>,
}

// SAFETY: the mapping is process-wide shared memory accessed only through
// atomics; the pointer stays valid until Drop.
unsafe impl Send for SlotIndex {}

const INDEX_BYTES: usize = PM_IFINDEX_DIRECT * 8;

impl SlotIndex {
    fn map(ebpf: &Ebpf) -> Result<Self, DatapathError> {
        let err = |reason: String| DatapathError::Invalid { field: MAP_IFSLOT.into(), reason };
        let fd: BorrowedFd<'_> = match ebpf.map(MAP_IFSLOT) {
            Some(Map::Array(data)) => data.fd().as_fd(),
            _ => return Err(err("not an array in the eBPF object".into())),
        };
        // SAFETY: a shared read-write mapping of a BPF_F_MMAPABLE array of
        // INDEX_BYTES; checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                INDEX_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err(format!("mmap: {}", std::io::Error::last_os_error())));
        }
        NonNull::new(ptr.cast()).map(|base| SlotIndex { base }).ok_or_else(|| err("mmap returned NULL".into()))
    }

    fn entry(&self, ifindex: u32) -> &AtomicU64 {
        assert!((ifindex as usize) < PM_IFINDEX_DIRECT, "callers check the bound");
        // SAFETY: in bounds (asserted), 8-byte aligned (page-aligned base).
        unsafe { &*self.base.as_ptr().add(ifindex as usize) }
    }

    fn load(&self, ifindex: u32) -> u64 {
        self.entry(ifindex).load(Ordering::Acquire)
    }

    /// Release: the slot's contents (written by a syscall before) are
    /// visible to whoever reads the new value.
    fn store(&self, ifindex: u32, value: u64) {
        self.entry(ifindex).store(value, Ordering::Release);
    }
}

impl Drop for SlotIndex {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), INDEX_BYTES) };
    }
}

/// Wait until every eBPF program that was running has finished: updating a
/// map-in-map from user space makes the kernel wait for an RCU grace period
/// before returning (its documented promise that programs see the new value;
/// the kernel's own selftests use it the same way). A throwaway pair of maps.
pub(super) fn rcu_barrier() -> Result<(), DatapathError> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
    let err = |what: &str| DatapathError::Invalid {
        field: "RCU barrier".into(),
        reason: format!("{what}: {}", std::io::Error::last_os_error()),
    };
    // union bpf_attr, BPF_MAP_CREATE: type, key size, value size, max
    // entries, flags, inner map fd (the rest zero).
    let create = |map_type: u32, inner: u32| -> Option<OwnedFd> {
        let attr: [u32; 32] = {
            let mut a = [0u32; 32];
            a[..6].copy_from_slice(&[map_type, 4, 4, 1, 0, inner]);
            a
        };
        // SAFETY: a valid, fully initialised attr of the size passed.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_ptr(), size_of_val(&attr)) };
        // SAFETY: a new fd owned by nobody else.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    };
    let inner = create(BPF_MAP_TYPE_ARRAY, 0).ok_or_else(|| err("inner map"))?;
    let outer = create(BPF_MAP_TYPE_ARRAY_OF_MAPS, inner.as_raw_fd() as u32).ok_or_else(|| err("outer map"))?;
    let key = 0u32;
    let value = inner.as_raw_fd() as u32;
    // BPF_MAP_UPDATE_ELEM: map fd (+ pad), key pointer, value pointer, flags.
    let attr: [u64; 4] = [outer.as_raw_fd() as u64, &key as *const u32 as u64, &value as *const u32 as u64, 0];
    // SAFETY: attr points at live locals for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, attr.as_ptr(), size_of_val(&attr)) };
    if rc != 0 {
        return Err(err("map-in-map update"));
    }
    Ok(())
}
