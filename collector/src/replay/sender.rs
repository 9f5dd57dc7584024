//! A small HTTP/1.1 client for the replay: it writes each request's bytes as
//! they were mirrored (so method, target, headers, body and its framing are
//! the original ones), over a pool of keep-alive connections, at most
//! `concurrency` at a time, each within a timeout. Responses are read (to
//! keep the connection usable) and discarded; their status class and latency
//! are counted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use super::http1::{Kind, MessageParser};
use super::pairing::Slot;
use crate::config::ReplayTarget;
use crate::metrics::{Metrics, status_class};

/// One request to send.
#[derive(Debug)]
pub struct Job {
    pub bytes: Vec<u8>,
    pub head_request: bool,
    pub slot: Arc<Slot>,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub target: ReplayTarget,
    pub timeout: Duration,
    pub max_response: usize,
    pub metrics: Arc<Metrics>,
    pool: Arc<Mutex<Vec<TcpStream>>>,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the response is not HTTP/1.x or too large")]
    BadResponse,
    #[error("the connection closed before a response")]
    Closed,
}

/// Starts the dispatcher on `runtime`; the returned queue takes jobs.
pub fn spawn(client: Client, concurrency: usize, queue: usize, runtime: &tokio::runtime::Handle) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(queue.max(1));
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    runtime.spawn(async move {
        while let Some(job) = rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            tokio::spawn(async move {
                client.replay(job).await;
                drop(permit);
            });
        }
    });
    tx
}

impl Client {
    pub fn new(target: ReplayTarget, timeout: Duration, max_response: usize, metrics: Arc<Metrics>) -> Self {
        Client { target, timeout, max_response, metrics, pool: Arc::default() }
    }

    async fn replay(&self, job: Job) {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.send(&job)).await;
        let status = match result {
            Ok(Ok(status)) => {
                self.metrics.replay_latency.observe(started.elapsed().as_secs_f64());
                self.metrics.replayed("ok", status_class(status));
                Some(status)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "replay failed");
                self.metrics.replayed("error", "none");
                None
            }
            Err(_) => {
                self.metrics.replayed("timeout", "none");
                None
            }
        };
        job.slot.test(status, &self.metrics);
    }

    /// Sends on a pooled connection; a pooled connection the server closed
    /// meanwhile fails before any response byte, and is retried once on a
    /// new connection.
    async fn send(&self, job: &Job) -> Result<u16, SendError> {
        let pooled = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        if let Some(conn) = pooled {
            match self.exchange(conn, job).await {
                Err(SendError::Closed) | Err(SendError::Io(_)) => {}
                other => return other,
            }
        }
        let conn = TcpStream::connect((self.target.host.trim_matches(['[', ']']), self.target.port)).await?;
        conn.set_nodelay(true)?;
        self.exchange(conn, job).await
    }

    async fn exchange(&self, mut conn: TcpStream, job: &Job) -> Result<u16, SendError> {
        conn.write_all(&job.bytes).await?;
        let mut parser = MessageParser::new(Kind::Response, self.max_response);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = conn.read(&mut buf).await?;
            let response = if n == 0 {
                parser.finish().ok_or(SendError::Closed)?
            } else {
                parser.push(&buf[..n]);
                match parser.next(job.head_request) {
                    Ok(Some(m)) if (100..200).contains(&m.head.status) => continue,
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(_) => return Err(SendError::BadResponse),
                }
            };
            let close = response.head.header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"))
                || response.head.version == 0
                || n == 0
                || parser.in_progress();
            if !close {
                self.pool.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
            }
            return Ok(response.head.status);
        }
    }
}
