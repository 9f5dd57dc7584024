//! The replay (seed 003): copies in, HTTP requests out. A thread owns the
//! flow table (no locks); complete requests go to the async [`sender`]
//! through a bounded queue. Memory is bounded per flow (the largest request,
//! the reordering window) and in total (the idlest flows are evicted), and
//! idle flows are evicted; every request not sent is counted by reason.

pub mod flow;
pub mod http1;
pub mod pairing;
pub mod reassembly;
pub mod sender;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use self::flow::{Flow, Out};
use self::http1::Message;
use crate::config::{Args, ReplayTarget};
use crate::dispatch::{Copy, SinkReceiver};
use crate::frame::parse_tcp;
use crate::metrics::Metrics;

/// A hole in a stream older than this is declared lost: copies are
/// reordered by microseconds, not by a fraction of a second.
pub const HOLE_TIMEOUT: Duration = Duration::from_millis(300);
const SWEEP_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    vni: u32,
    client: SocketAddr,
    server: SocketAddr,
}

pub struct Replay {
    target: ReplayTarget,
    ports: Vec<u16>,
    sample_percent: u8,
    rewrite_host: bool,
    max_request: usize,
    max_memory: usize,
    max_flows: usize,
    idle: Duration,
    metrics: Arc<Metrics>,
    jobs: tokio::sync::mpsc::Sender<sender::Job>,
    flows: HashMap<FlowKey, Flow>,
    memory: usize,
}

impl Replay {
    pub fn new(args: &Args, target: ReplayTarget, metrics: Arc<Metrics>, runtime: tokio::runtime::Handle) -> Self {
        let client =
            sender::Client::new(target.clone(), args.replay_timeout(), args.replay_max_request_bytes, metrics.clone());
        let jobs = sender::spawn(client, args.replay_concurrency, args.replay_queue, &runtime);
        Replay {
            target,
            ports: args.replay_ports.clone(),
            sample_percent: args.replay_sample_percent,
            rewrite_host: args.replay_rewrite_host,
            max_request: args.replay_max_request_bytes,
            max_memory: args.replay_max_memory_bytes,
            max_flows: args.replay_max_flows.max(1),
            idle: args.flow_idle(),
            metrics,
            jobs,
            flows: HashMap::new(),
            memory: 0,
        }
    }

    /// Handles copies until the queue's senders are gone.
    pub fn run(mut self, queue: SinkReceiver) {
        let mut last_sweep = Instant::now();
        loop {
            match queue.recv_timeout(SWEEP_EVERY) {
                Ok(batch) => batch.iter().for_each(|c| self.copy(c)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep(Instant::now());
                last_sweep = Instant::now();
            }
        }
        // The copies ended: holes will never fill.
        self.sweep(Instant::now() + HOLE_TIMEOUT);
    }

    fn copy(&mut self, copy: &Copy) {
        let Ok(seg) = parse_tcp(&copy.frame) else {
            return;
        };
        let (from_client, client, server) = if self.ports.contains(&seg.dst.port()) {
            (true, seg.src, seg.dst)
        } else if self.ports.contains(&seg.src.port()) {
            (false, seg.dst, seg.src)
        } else {
            return;
        };
        let key = FlowKey { vni: copy.vni, client, server };
        let now = Instant::now();
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.max_flows {
                self.evict_idlest("max_flows");
            }
            self.flows.insert(key, Flow::new(now, self.max_request));
            self.metrics.flows_tracked.set(self.flows.len() as i64);
        }
        let mut out = Vec::new();
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let before = flow.mem();
        flow.segment(from_client, &seg, now, &self.metrics, &mut out);
        let (after, finished) = (flow.mem(), flow.finished());
        self.memory = (self.memory + after).saturating_sub(before);
        self.outputs(key, out);
        if finished {
            self.remove(&key);
        }
        while self.memory > self.max_memory && !self.flows.is_empty() {
            self.evict_idlest("memory");
        }
    }

    fn outputs(&mut self, key: FlowKey, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Request(m, slot) => self.send(key, m, slot),
                Out::Incomplete(reason) => self.metrics.incomplete(reason),
                Out::Unreplayable(reason) => {
                    self.metrics
                        .replay_unreplayable_flows
                        .get_or_create(&crate::metrics::ReasonLabels { reason })
                        .inc();
                    tracing::debug!(client = %key.client, server = %key.server, reason, "flow not replayable");
                }
            }
        }
    }

    fn send(&mut self, key: FlowKey, m: Message, slot: Arc<pairing::Slot>) {
        let n = self.flows.get(&key).map_or(0, |f| f.requests);
        if !sampled(&key, n, self.sample_percent) {
            self.metrics.replayed("sampled_out", "none");
            return slot.test(None, &self.metrics);
        }
        let head_request = m.head.method == "HEAD";
        let bytes = outgoing(&m, &self.target, self.rewrite_host);
        match self.jobs.try_send(sender::Job { bytes, head_request, slot }) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Closed(job)) => {
                self.metrics.replayed("backlog", "none");
                job.slot.test(None, &self.metrics);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            let mut out = Vec::new();
            let Some(flow) = self.flows.get_mut(&key) else {
                continue;
            };
            let before = flow.mem();
            flow.expire_holes(now, HOLE_TIMEOUT, &self.metrics, &mut out);
            let after = flow.mem();
            let idle = now.saturating_duration_since(flow.last_seen) >= self.idle;
            let finished = flow.finished();
            self.memory = (self.memory + after).saturating_sub(before);
            self.outputs(key, out);
            if finished {
                self.remove(&key);
            } else if idle {
                self.evict(&key, "idle");
            }
        }
    }

    fn evict_idlest(&mut self, reason: &'static str) {
        if let Some(key) = self.flows.iter().min_by_key(|(_, f)| f.last_seen).map(|(k, _)| *k) {
            self.evict(&key, reason);
        }
    }

    fn evict(&mut self, key: &FlowKey, reason: &'static str) {
        if self.flows.get(key).is_some_and(Flow::in_progress) {
            self.metrics.incomplete(if reason == "idle" { "evicted_idle" } else { "evicted_memory" });
        }
        self.metrics.evicted(reason);
        self.remove(key);
    }

    fn remove(&mut self, key: &FlowKey) {
        if let Some(f) = self.flows.remove(key) {
            self.memory = self.memory.saturating_sub(f.mem());
        }
        self.metrics.flows_tracked.set(self.flows.len() as i64);
    }
}

/// A stable choice per request: the same copies sample the same requests.
fn sampled(key: &FlowKey, n: u64, percent: u8) -> bool {
    if percent >= 100 {
        return true;
    }
    let mut h = DefaultHasher::new();
    (key, n).hash(&mut h);
    h.finish() % 100 < u64::from(percent)
}

/// The bytes to send: the mirrored ones, or the head rebuilt when the Host
/// header or the target's base path change it.
pub fn outgoing(m: &Message, target: &ReplayTarget, rewrite_host: bool) -> Vec<u8> {
    if !rewrite_host && target.prefix.is_empty() {
        return m.raw.clone();
    }
    let h = &m.head;
    let path = if h.target.starts_with('/') { format!("{}{}", target.prefix, h.target) } else { h.target.clone() };
    let mut out = format!("{} {} HTTP/1.{}\r\n", h.method, path, h.version).into_bytes();
    for (name, value) in &h.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if rewrite_host && name.eq_ignore_ascii_case("host") {
            out.extend_from_slice(target.authority().as_bytes());
        } else {
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(m.raw.get(h.len..).unwrap_or_default());
    out
}
