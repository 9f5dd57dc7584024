//! The live stream's fan-out: one bounded queue per `/stream` client. The
//! receiving threads offer each copy to every client without waiting; a
//! client whose queue is full skips the copy (counted at once as dropped by
//! the `stream` sink), so a slow client never slows the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::dispatch::Copy;
use crate::metrics::Metrics;

#[derive(Debug)]
struct Client {
    vni: Option<u32>,
    tx: mpsc::Sender<Copy>,
}

#[derive(Debug)]
pub struct StreamHub {
    clients: RwLock<Vec<Client>>,
    count: AtomicUsize,
    queue: usize,
    metrics: Arc<Metrics>,
}

impl StreamHub {
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> Self {
        StreamHub { clients: RwLock::default(), count: AtomicUsize::new(0), queue: queue.max(1), metrics }
    }

    /// A new client's queue (copies of `vni` only, or all).
    pub fn subscribe(&self, vni: Option<u32>) -> mpsc::Receiver<Copy> {
        let (tx, rx) = mpsc::channel(self.queue);
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        clients.push(Client { vni, tx });
        self.count.store(clients.len(), Ordering::Relaxed);
        rx
    }

    /// Ends every client's stream (on shutdown): their queues close once
    /// drained.
    pub fn close_all(&self) {
        self.clients.write().unwrap_or_else(PoisonError::into_inner).clear();
        self.count.store(0, Ordering::Relaxed);
    }

    /// Whether any client is connected (copies are made for them only).
    pub fn has_clients(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Offers a copy to every client; never waits.
    pub fn publish(&self, copy: &Copy) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut gone = false;
        {
            let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
            for c in clients.iter().filter(|c| c.vni.is_none_or(|v| v == copy.vni)) {
                match c.tx.try_send(copy.clone()) {
                    Ok(()) => self.metrics.written("stream"),
                    Err(TrySendError::Full(_)) => self.metrics.dropped("stream"),
                    Err(TrySendError::Closed(_)) => gone = true,
                }
            }
        }
        if gone {
            let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
            clients.retain(|c| !c.tx.is_closed());
            self.count.store(clients.len(), Ordering::Relaxed);
        }
    }
}
