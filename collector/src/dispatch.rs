//! From a decoded datagram to the sinks. Called on the receiving threads, so
//! nothing here waits: each sink has a bounded queue and a full queue is a
//! counted drop for that sink alone.

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

/// The sinks a copy goes to.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub metrics: Arc<Metrics>,
    allow: Option<Arc<HashSet<u32>>>,
    files: Option<SyncSender<Copy>>,
    stream: Arc<StreamHub>,
    replay: Option<SyncSender<Copy>>,
}

impl Dispatch {
    pub fn new(
        metrics: Arc<Metrics>,
        allow: &[u32],
        files: Option<SyncSender<Copy>>,
        stream: Arc<StreamHub>,
        replay: Option<SyncSender<Copy>>,
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

    /// Hands a decoded datagram (or its drop reason) to the sinks.
    pub fn accept(&self, input: &'static str, decoded: Result<Decoded<'_>, DropReason>) {
        let d = match decoded {
            Ok(d) if self.allow.as_ref().is_some_and(|a| !a.contains(&d.vni)) => {
                return self.metrics.malformed(DropReason::VniNotAllowed.label());
            }
            Ok(d) => d,
            Err(reason) => return self.metrics.malformed(reason.label()),
        };
        let labels = VniLabels { vni: d.vni, input };
        self.metrics.received_packets.get_or_create(&labels).inc();
        self.metrics
            .received_bytes
            .get_or_create(&labels)
            .inc_by(d.frame.len() as u64);
        let copy = Copy {
            vni: d.vni,
            at: SystemTime::now(),
            frame: Bytes::copy_from_slice(d.frame),
        };
        if let Some(files) = &self.files {
            self.offer(files, "file", copy.clone());
        }
        self.stream.publish(&copy);
        if let Some(replay) = &self.replay {
            self.offer(replay, "replay", copy);
        }
    }

    fn offer(&self, queue: &SyncSender<Copy>, sink: &'static str, copy: Copy) {
        match queue.try_send(copy) {
            Ok(()) => self.metrics.written(sink),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped(sink)
            }
        }
    }
}
