//! From decoded datagrams to the sinks. Called on the receiving threads with
//! each batch a `recvmmsg` returned, so nothing here waits: each sink has a
//! bounded queue of batches and a full queue is a counted drop of the batch's
//! copies for that sink alone. Batches keep the per-copy cost (queue
//! operations, wake-ups, label lookups) off the hot path.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::SystemTime;

use bytes::Bytes;

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

/// The sinks a copy goes to.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub metrics: Arc<Metrics>,
    allow: Option<Arc<HashSet<u32>>>,
    files: Option<SyncSender<Batch>>,
    stream: Arc<StreamHub>,
    replay: Option<SyncSender<Batch>>,
}

impl Dispatch {
    pub fn new(
        metrics: Arc<Metrics>,
        allow: &[u32],
        files: Option<SyncSender<Batch>>,
        stream: Arc<StreamHub>,
        replay: Option<SyncSender<Batch>>,
    ) -> Self {
        let allow = (!allow.is_empty()).then(|| Arc::new(allow.iter().copied().collect()));
        Dispatch {
            metrics,
            allow,
            files,
            stream,
            replay,
        }
    }

    /// Hands a batch of decoded datagrams (or their drop reasons) to the
    /// sinks.
    pub fn accept_batch<'a>(
        &self,
        input: &'static str,
        batch: impl Iterator<Item = Result<Decoded<'a>, DropReason>>,
    ) {
        let at = SystemTime::now();
        let mut copies: Batch = Vec::new();
        // (vni, packets, bytes) of this batch: one label lookup per VNI.
        let mut per_vni: Vec<(u32, u64, u64)> = Vec::new();
        for decoded in batch {
            let d = match decoded {
                Ok(d) if self.allow.as_ref().is_some_and(|a| !a.contains(&d.vni)) => {
                    self.metrics.malformed(DropReason::VniNotAllowed.label());
                    continue;
                }
                Ok(d) => d,
                Err(reason) => {
                    self.metrics.malformed(reason.label());
                    continue;
                }
            };
            match per_vni.iter_mut().find(|v| v.0 == d.vni) {
                Some(v) => {
                    v.1 += 1;
                    v.2 += d.frame.len() as u64;
                }
                None => per_vni.push((d.vni, 1, d.frame.len() as u64)),
            }
            let copy = Copy {
                vni: d.vni,
                at,
                frame: Bytes::copy_from_slice(d.frame),
            };
            self.stream.publish(&copy);
            copies.push(copy);
        }
        for (vni, packets, bytes) in per_vni {
            let labels = VniLabels { vni, input };
            self.metrics
                .received_packets
                .get_or_create(&labels)
                .inc_by(packets);
            self.metrics
                .received_bytes
                .get_or_create(&labels)
                .inc_by(bytes);
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

    /// Hands one decoded datagram to the sinks.
    pub fn accept(&self, input: &'static str, decoded: Result<Decoded<'_>, DropReason>) {
        self.accept_batch(input, std::iter::once(decoded));
    }

    fn offer(&self, queue: &SyncSender<Batch>, sink: &'static str, batch: Batch) {
        let n = batch.len() as u64;
        let labels = crate::metrics::SinkLabels { sink };
        match queue.try_send(batch) {
            Ok(()) => {
                self.metrics.written.get_or_create(&labels).inc_by(n);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped.get_or_create(&labels).inc_by(n);
            }
        }
    }
}
