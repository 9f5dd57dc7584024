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
use crate::filesink::SharedFileSink;
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
    files: Option<FileSinks>,
    stream: Arc<StreamHub>,
    replay: Option<SinkQueue>,
}

/// The file sink's two doors: its queue, and the sink itself for an input
/// that writes in place ([`Dispatch::accept_in_place`]).
#[derive(Clone, Debug)]
pub struct FileSinks {
    pub queue: SinkQueue,
    pub sink: SharedFileSink,
}

/// A batch's accepted datagrams with their arrival times.
type Accepted<'a> = Vec<(SystemTime, Decoded<'a>)>;

impl Dispatch {
    pub fn new(
        metrics: Arc<Metrics>,
        allow: &[u32],
        files: Option<FileSinks>,
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
    /// to the sinks' queues.
    pub fn accept_stamped<'a>(
        &self,
        input: &'static str,
        batch: impl Iterator<Item = (SystemTime, Result<Decoded<'a>, DropReason>)>,
    ) {
        let accepted = self.admit_batch(input, batch);
        let copies = self.copies_of(&accepted);
        if copies.is_empty() {
            return;
        }
        match (&self.files, &self.replay) {
            (Some(files), Some(replay)) => {
                self.offer(&files.queue, "file", copies.clone());
                self.offer(replay, "replay", copies);
            }
            (Some(files), None) => self.offer(&files.queue, "file", copies),
            (None, Some(replay)) => self.offer(replay, "replay", copies),
            (None, None) => {}
        }
    }

    /// Like [`Dispatch::accept_stamped`], for an input that holds the
    /// frames until this returns and has a buffer of its own (the ring):
    /// the files are written here, from where the frames lie, on the
    /// caller's thread (no copy, no queue: while the disk is slow the
    /// input's buffer fills); the stream and the replay get copies, and only
    /// when they want them.
    pub fn accept_in_place<'a>(
        &self,
        input: &'static str,
        batch: impl Iterator<Item = (SystemTime, Result<Decoded<'a>, DropReason>)>,
    ) {
        let accepted = self.admit_batch(input, batch);
        if let Some(files) = &self.files {
            files.sink.lock().write_now(accepted.iter().map(|(at, d)| (d.vni, *at, d.frame)));
        }
        if self.replay.is_none() && !self.stream.has_clients() {
            return;
        }
        let copies = self.copies_of(&accepted);
        if let (Some(replay), false) = (&self.replay, copies.is_empty()) {
            self.offer(replay, "replay", copies);
        }
    }

    /// The batch's datagrams that pass (malformed and refused ones are
    /// counted), counted as received by VNI.
    fn admit_batch<'a>(
        &self,
        input: &'static str,
        batch: impl Iterator<Item = (SystemTime, Result<Decoded<'a>, DropReason>)>,
    ) -> Accepted<'a> {
        let accepted: Accepted<'a> = batch.filter_map(|(at, d)| self.admit(d).map(|d| (at, d))).collect();
        // (vni, packets, bytes) of this batch: one label lookup per VNI.
        let mut per_vni: Vec<(u32, u64, u64)> = Vec::new();
        for (_, d) in &accepted {
            match per_vni.iter_mut().find(|v| v.0 == d.vni) {
                Some(v) => {
                    v.1 += 1;
                    v.2 += d.frame.len() as u64;
                }
                None => per_vni.push((d.vni, 1, d.frame.len() as u64)),
            }
        }
        for (vni, packets, bytes) in per_vni {
            let labels = VniLabels { vni, input };
            self.metrics.received_packets.get_or_create(&labels).inc_by(packets);
            self.metrics.received_bytes.get_or_create(&labels).inc_by(bytes);
        }
        accepted
    }

    /// Copies of the accepted frames (the receive buffers are reused), each
    /// published to the live stream.
    fn copies_of(&self, accepted: &Accepted<'_>) -> Batch {
        // One allocation of exactly the batch's size: each copy's frame is a
        // slice of it (a small batch must not pin a large block).
        let mut store = BytesMut::with_capacity(accepted.iter().map(|(_, d)| d.frame.len()).sum());
        let mut copies: Batch = Vec::with_capacity(accepted.len());
        for (at, d) in accepted {
            store.extend_from_slice(d.frame);
            let copy = Copy { vni: d.vni, at: *at, frame: store.split().freeze() };
            self.stream.publish(&copy);
            copies.push(copy);
        }
        copies
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
