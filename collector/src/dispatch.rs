//! From decoded datagrams to the sinks. Called on the receiving threads with
//! each batch a `recvmmsg` returned, so nothing here waits: each sink has a
//! bounded queue of batches and a full queue is a counted drop of the batch's
//! copies for that sink alone. Batches keep the per-copy cost (queue
//! operations, wake-ups, label lookups) off the hot path.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

use crate::decode::{Decoded, DropReason};
use crate::metrics::{Metrics, VniLabels};
use crate::stream::StreamHub;

/// One received copy: the VNI, when it arrived and its inner frame.
#[derive(Clone, Debug)]
pub struct Copy {
    pub vni: u32,
    pub at: SystemTime,
    pub frame: Bytes,
}

/// Copies handed to a sink at once.
pub type Batch = Vec<Copy>;

/// The sending side of a sink's queue, bounded in copies (not batches, whose
/// size follows the load).
#[derive(Clone, Debug)]
pub struct SinkQueue {
    tx: Sender<Batch>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// The receiving side of a sink's queue.
#[derive(Debug)]
pub struct SinkReceiver {
    rx: Receiver<Batch>,
    queued: Arc<AtomicUsize>,
}

/// A queue holding at most `capacity` copies.
pub fn sink_queue(capacity: usize) -> (SinkQueue, SinkReceiver) {
    let (tx, rx) = std::sync::mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (SinkQueue { tx, queued: queued.clone(), capacity: capacity.max(1) }, SinkReceiver { rx, queued })
}

impl SinkQueue {
    fn has_room(&self, n: usize) -> bool {
        self.queued.load(Ordering::Relaxed) + n <= self.capacity
    }

    /// Queues the batch unless it would exceed the capacity; never waits.
    fn offer(&self, batch: Batch) -> Result<(), Batch> {
        let n = batch.len();
        if !self.has_room(n) {
            return Err(batch);
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.tx.send(batch).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            e.0
        })
    }
}

impl SinkReceiver {
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Batch, RecvTimeoutError> {
        let b = self.rx.recv_timeout(timeout)?;
        self.queued.fetch_sub(b.len(), Ordering::Relaxed);
        Ok(b)
    }

    pub fn try_recv(&self) -> Option<Batch> {
        let b = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(b.len(), Ordering::Relaxed);
        Some(b)
    }
}

/// The sinks a copy goes to.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub metrics: Arc<Metrics>,
    allow: Option<Arc<HashSet<u32>>>,
    files: Option<SinkQueue>,
    stream: Arc<StreamHub>,
    replay: Option<SinkQueue>,
}

impl Dispatch {
    pub fn new(
        metrics: Arc<Metrics>,
        allow: &[u32],
        files: Option<SinkQueue>,
        stream: Arc<StreamHub>,
        replay: Option<SinkQueue>,
    ) -> Self {
        let allow = (!allow.is_empty()).then(|| Arc::new(allow.iter().copied().collect()));
        Dispatch { metrics, allow, files, stream, replay }
    }

    /// Hands a batch of decoded datagrams (or their drop reasons) to the
    /// sinks, all stamped with the time of this call.
    pub fn accept_batch<'a>(&self, input: &'static str, batch: impl Iterator<Item = Result<Decoded<'a>, DropReason>>) {
        let at = SystemTime::now();
        self.accept_stamped(input, batch.map(|d| (at, d)));
    }

    /// Hands a batch of decoded datagrams, each with the time it arrived,
    /// to the sinks.
    pub fn accept_stamped<'a>(
        &self,
        input: &'static str,
        batch: impl Iterator<Item = (SystemTime, Result<Decoded<'a>, DropReason>)>,
    ) {
        let accepted: Vec<(SystemTime, Decoded<'a>)> =
            batch.filter_map(|(at, d)| self.admit(d).map(|d| (at, d))).collect();
        // One allocation of exactly the batch's size: each copy's frame is a
        // slice of it (the receive buffers are reused, so the frames must
        // move; a small batch must not pin a large block).
        let mut store = BytesMut::with_capacity(accepted.iter().map(|(_, d)| d.frame.len()).sum());
        let mut copies: Batch = Vec::with_capacity(accepted.len());
        // (vni, packets, bytes) of this batch: one label lookup per VNI.
        let mut per_vni: Vec<(u32, u64, u64)> = Vec::new();
        for (at, d) in accepted {
            match per_vni.iter_mut().find(|v| v.0 == d.vni) {
                Some(v) => {
                    v.1 += 1;
                    v.2 += d.frame.len() as u64;
                }
                None => per_vni.push((d.vni, 1, d.frame.len() as u64)),
            }
            store.extend_from_slice(d.frame);
            let copy = Copy { vni: d.vni, at, frame: store.split().freeze() };
            self.stream.publish(&copy);
            copies.push(copy);
        }
        for (vni, packets, bytes) in per_vni {
            let labels = VniLabels { vni, input };
            self.metrics.received_packets.get_or_create(&labels).inc_by(packets);
            self.metrics.received_bytes.get_or_create(&labels).inc_by(bytes);
        }
        if copies.is_empty() {
            return;
        }
        match (&self.files, &self.replay) {
            (Some(files), Some(replay)) => {
                self.offer(files, "file", copies.clone());
                self.offer(replay, "replay", copies);
            }
            (Some(files), None) => self.offer(files, "file", copies),
            (None, Some(replay)) => self.offer(replay, "replay", copies),
            (None, None) => {}
        }
    }

    /// The copy if its VNI is allowed; a malformed or refused one is counted.
    fn admit<'a>(&self, decoded: Result<Decoded<'a>, DropReason>) -> Option<Decoded<'a>> {
        let reason = match decoded {
            Ok(d) if self.allow.as_ref().is_some_and(|a| !a.contains(&d.vni)) => DropReason::VniNotAllowed,
            Ok(d) => return Some(d),
            Err(reason) => reason,
        };
        self.metrics.malformed(reason.label());
        None
    }

    /// Hands one decoded datagram to the sinks.
    pub fn accept(&self, input: &'static str, decoded: Result<Decoded<'_>, DropReason>) {
        self.accept_batch(input, std::iter::once(decoded));
    }

    /// Whether the file sink's queue (if any) has room for `copies` more.
    /// An input with a buffer of its own (the ring) waits for the disk
    /// rather than drop: copies are only delayed. Only for the files: a full
    /// replay queue still drops its own copies (counted), so that a slow
    /// test server never holds up the capture.
    pub fn files_have_room(&self, copies: usize) -> bool {
        self.files.as_ref().is_none_or(|q| q.has_room(copies))
    }

    fn offer(&self, queue: &SinkQueue, sink: &'static str, batch: Batch) {
        let n = batch.len() as u64;
        match queue.offer(batch) {
            // The file sink counts what reaches the disk itself.
            Ok(()) if sink == "file" => {}
            Ok(()) => self.metrics.written_n(sink, n),
            Err(_) => self.metrics.dropped_n(sink, n),
        }
    }
}
