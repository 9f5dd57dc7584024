//! Wiring: sockets, sink threads, the replay and the HTTP server, and an
//! orderly stop (receivers first, so the sinks drain what was accepted).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::config::Args;
use crate::dispatch::{Dispatch, FileSinks, sink_queue};
use crate::filesink::{FileLimits, FileSink, FileSinkError};
use crate::http::{HttpState, router};
use crate::input::{InputError, Kind, gre_socket, spawn_receiver, vxlan_sockets};
use crate::metrics::Metrics;
use crate::replay::Replay;
use crate::stream::StreamHub;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Files(#[from] FileSinkError),
    #[error(transparent)]
    Xdp(#[from] crate::xdp::XdpError),
    #[error(transparent)]
    Ring(#[from] crate::tcring::RingError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http { addr: SocketAddr, source: std::io::Error },
}

/// A started collector. Dropping it without [`Running::shutdown`] leaves
/// the threads running until the process exits.
pub struct Running {
    /// The bound VXLAN address (useful with port 0).
    pub vxlan_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    stream: Arc<StreamHub>,
    receivers: Vec<JoinHandle<()>>,
    sinks: Vec<JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
    /// The AF_XDP input's program: detached after its threads stopped.
    xdp: Option<crate::xdp::XdpInput>,
    ring: Option<crate::tcring::RingInput>,
}

/// Starts the collector; must run inside a tokio runtime.
pub async fn start(args: &Args) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let mut sinks = Vec::new();
    let files = match &args.files_dir {
        Some(dir) => {
            let limits = FileLimits {
                max_file_bytes: args.files_max_file_bytes,
                max_age: args.files_max_age(),
                keep_files: args.files_keep,
                keep_bytes: args.files_keep_bytes,
            };
            let sink = FileSink::new(dir, limits, metrics.clone())?.shared();
            let (queue, rx) = sink_queue(args.files_queue);
            let thread_sink = sink.clone();
            sinks.push(spawn_thread("file-sink", move || FileSink::run(thread_sink, rx)));
            Some(FileSinks { queue, sink })
        }
        None => None,
    };
    let replay = match &args.replay_to {
        Some(target) => {
            let (tx, rx) = sink_queue(args.replay_queue);
            let replay = Replay::new(args, target.clone(), metrics.clone(), tokio::runtime::Handle::current());
            sinks.push(spawn_thread("replay", move || replay.run(rx)));
            Some(tx)
        }
        None => None,
    };
    let stream = Arc::new(StreamHub::new(args.stream_queue, metrics.clone()));
    let dispatch = Dispatch::new(metrics.clone(), &args.vni_allow, files, stream.clone(), replay);

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| StartError::Http { addr: args.http_addr, source })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Http { addr: args.http_addr, source })?;
    let app = router(HttpState { metrics: metrics.clone(), stream: stream.clone() });
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let sockets = vxlan_sockets(args.vxlan_listen, args.vxlan_workers(), args.recv_buffer_bytes)?;
    let vxlan_addr =
        sockets.first().and_then(|s| s.local_addr().ok()).and_then(|a| a.as_socket()).unwrap_or(args.vxlan_listen);
    let mut receivers: Vec<JoinHandle<()>> =
        sockets.into_iter().map(|s| spawn_receiver(s, Kind::Vxlan, dispatch.clone(), stop.clone())).collect();
    if args.gre {
        let s = gre_socket(args.gre_bind, args.recv_buffer_bytes)?;
        receivers.push(spawn_receiver(s, Kind::Gre, dispatch.clone(), stop.clone()));
    }
    let xdp = match &args.xdp_iface {
        Some(iface) => {
            let (input, threads) = crate::xdp::start(iface, vxlan_addr.port(), args.xdp_mode, &dispatch, &stop)?;
            tracing::info!(%iface, mode = input.mode, queues = input.queues, "AF_XDP input attached");
            receivers.extend(threads);
            Some(input)
        }
        None => None,
    };
    let ring = match &args.ring_iface {
        Some(iface) => {
            let (input, thread) = crate::tcring::start(iface, vxlan_addr.port(), args.ring_bytes, &dispatch, &stop)?;
            tracing::info!(%iface, bytes = args.ring_bytes, "ring input attached");
            receivers.push(thread);
            Some(input)
        }
        None => None,
    };
    tracing::info!(%vxlan_addr, %http_addr, gre = args.gre, "collector started");
    Ok(Running { vxlan_addr, http_addr, metrics, stop, stream, receivers, sinks, server, xdp, ring })
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
}

impl Running {
    /// Stops receiving, lets the sinks drain what they accepted, ends the
    /// live streams (after what they have queued) and stops the HTTP server.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let Running { receivers, sinks, server, stream, xdp, ring, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            // Receivers hold the queues' senders: once they are gone the
            // sinks see the end of their queue and return.
            for t in receivers.into_iter().chain(sinks) {
                let _ = t.join();
            }
            drop(xdp);
            drop(ring);
        })
        .await;
        stream.close_all();
        server.abort();
    }
}
