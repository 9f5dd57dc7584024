//! The file sink: one series of pcap files per VNI in one directory,
//! `vni<VNI>-<UTC stamp>-<seq>.pcap`, rotated by size and age, the whole
//! directory kept under a number of files and of bytes (oldest first). It
//! runs on its own thread behind a bounded queue (see `dispatch`), so a slow
//! disk costs counted drops, never a stalled receiver. The ring input, whose
//! ring is a buffer of its own, writes its batches in place instead
//! ([`FileSink::write_now`]), on its thread: the sink is shared behind a lock.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::dispatch::{Copy, SinkReceiver};
use crate::metrics::Metrics;
use crate::pcap;
use crate::recordfile::{Lost, RecordFile};

#[derive(Clone, Debug)]
pub struct FileLimits {
    pub max_file_bytes: u64,
    pub max_age: Duration,
    pub keep_files: usize,
    pub keep_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("capture file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("capture file {path}: {records} records not written: {source}")]
    Write { path: PathBuf, records: u64, source: std::io::Error },
}

impl FileSinkError {
    fn write(path: &Path, lost: Lost) -> FileSinkError {
        FileSinkError::Write { path: path.to_path_buf(), records: lost.records, source: lost.source }
    }

    /// The same failure, losing `records` copies (a file that could not be
    /// opened loses the copies meant for it).
    fn with_lost(self, records: u64) -> FileSinkError {
        match self {
            FileSinkError::Io { path, source } => FileSinkError::Write { path, records, source },
            FileSinkError::Write { path, source, .. } => FileSinkError::Write { path, records, source },
        }
    }
}

/// One VNI's records of a batch written in place: arrival and frame.
type Run<'a> = Vec<(SystemTime, &'a [u8])>;

/// The file sink shared by its thread and an input that writes in place.
#[derive(Clone)]
pub struct SharedFileSink(Arc<Mutex<FileSink>>);

impl SharedFileSink {
    /// The sink, for one batch (a panic elsewhere leaves it usable: the
    /// files hold whole records only).
    pub fn lock(&self) -> MutexGuard<'_, FileSink> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SharedFileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedFileSink")
    }
}

/// Lowers this thread's priority (nice 10): where the receiving threads (or
/// the kernel's receive processing, in ksoftirqd) and the writer share a
/// CPU, receiving comes first, and the writer catches up from its queue or
/// the ring (which absorb bursts). Without it the scheduler shares the CPU
/// evenly and the kernel drops copies it had no time to take in.
pub fn yield_to_receivers() {
    // SAFETY: setpriority on this thread (gettid), raising its nice value,
    // which needs no privilege.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// The longest a written record waits in memory before readers of the file
/// see it (whole records only).
const FLUSH_EVERY: Duration = Duration::from_millis(50);

struct Open {
    out: RecordFile,
    path: PathBuf,
    bytes: u64,
    opened: Instant,
}

pub struct FileSink {
    dir: PathBuf,
    limits: FileLimits,
    metrics: Arc<Metrics>,
    /// Open files by VNI (a few: a B-tree finds them in a few compares).
    open: BTreeMap<u32, Open>,
    seq: u64,
}

/// Name of a capture file; the stamp then the sequence order files by age.
fn file_name(vni: u32, seq: u64) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    format!("vni{vni}-{stamp}-{seq:06}.pcap")
}

/// The (stamp, seq) age key of one of our file names, None for other files.
fn age_key(name: &str) -> Option<(String, u64)> {
    let rest = name.strip_prefix("vni")?.strip_suffix(".pcap")?;
    let mut parts = rest.splitn(3, '-');
    let (_vni, stamp, seq) = (parts.next()?, parts.next()?, parts.next()?);
    Some((stamp.to_string(), seq.parse().ok()?))
}

impl FileSink {
    pub fn new(dir: &Path, limits: FileLimits, metrics: Arc<Metrics>) -> Result<Self, FileSinkError> {
        fs::create_dir_all(dir).map_err(|source| FileSinkError::Io { path: dir.to_path_buf(), source })?;
        Ok(FileSink { dir: dir.to_path_buf(), limits, metrics, open: BTreeMap::new(), seq: 0 })
    }

    /// Shares the sink between its thread ([`FileSink::run`]) and an input
    /// that writes in place.
    pub fn shared(self) -> SharedFileSink {
        SharedFileSink(Arc::new(Mutex::new(self)))
    }

    /// Writes copies until the queue's senders are gone, then closes files.
    /// Files are flushed when the queue runs dry, at most every
    /// [`FLUSH_EVERY`] under steady load: a write per small batch would cost
    /// more than the copies themselves.
    pub fn run(sink: SharedFileSink, queue: SinkReceiver) {
        yield_to_receivers();
        let mut flushed = Instant::now();
        loop {
            match queue.recv_timeout(FLUSH_EVERY) {
                Ok(batch) => sink.lock().write_batch(&batch),
                Err(RecvTimeoutError::Timeout) => {
                    let mut s = sink.lock();
                    s.flush();
                    flushed = Instant::now();
                    s.close_aged();
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Some(batch) = queue.try_recv() {
                sink.lock().write_batch(&batch);
            }
            if flushed.elapsed() >= FLUSH_EVERY {
                sink.lock().flush();
                flushed = Instant::now();
            }
        }
        sink.lock().flush();
    }

    /// Writes `records` (VNI, arrival, frame) now, in order, each VNI's in
    /// as few writes as its files allow: for an input that keeps the frames
    /// only until this returns.
    pub fn write_now<'a>(&mut self, records: impl Iterator<Item = (u32, SystemTime, &'a [u8])>) {
        let now = Instant::now();
        let mut by_vni: Vec<(u32, Run<'a>)> = Vec::new();
        for (vni, at, frame) in records {
            match by_vni.iter_mut().find(|(v, _)| *v == vni) {
                Some((_, run)) => run.push((at, frame)),
                None => by_vni.push((vni, vec![(at, frame)])),
            }
        }
        for (vni, run) in by_vni {
            let (written, outcome) = self.write_run(vni, &run, now);
            self.metrics.written_n("file", written);
            self.count(vni, outcome.map(|()| 0));
        }
    }

    /// Writes one VNI's records, rotating where the limits say; returns the
    /// records written, and what stopped it.
    fn write_run(&mut self, vni: u32, run: &[(SystemTime, &[u8])], now: Instant) -> (u64, Result<(), FileSinkError>) {
        let record_len = |(_, f): &(SystemTime, &[u8])| (pcap::RECORD_HEADER_LEN + f.len()) as u64;
        let (mut written, mut start) = (0, 0);
        while start < run.len() {
            match self.ready(vni, record_len(&run[start]), now) {
                Ok(n) => written += n,
                Err(e) => return (written, Err(e.with_lost((run.len() - start) as u64))),
            }
            let Some(o) = self.open.get_mut(&vni) else {
                return (written, Ok(()));
            };
            // As many records as the file takes before it is full (one at least).
            let mut end = start;
            while end < run.len() && (end == start || o.bytes + record_len(&run[end]) <= self.limits.max_file_bytes) {
                o.bytes += record_len(&run[end]);
                end += 1;
            }
            let parts: Vec<_> = run[start..end].iter().map(|(at, f)| pcap::record_parts(*at, f)).collect();
            let (n, outcome) = o.out.write_now(&parts);
            written += n;
            if let Err(lost) = outcome {
                let lost = Lost { records: lost.records + (run.len() - end) as u64, source: lost.source };
                return (written, Err(FileSinkError::write(&o.path, lost)));
            }
            start = end;
        }
        (written, Ok(()))
    }

    /// Writes a batch; file ages are checked against one clock reading per
    /// batch (a batch spans microseconds).
    fn write_batch(&mut self, batch: &[Copy]) {
        let now = Instant::now();
        for copy in batch {
            let outcome = self.write(copy, now);
            self.count(copy.vni, outcome);
        }
    }

    /// `written{sink="file"}` counts records once they are in the file; a
    /// record the disk refused counts as dropped instead (and the file is
    /// given up: the next copy of its VNI opens a new one).
    fn count(&mut self, vni: u32, outcome: Result<u64, FileSinkError>) {
        match outcome {
            Ok(written) => self.metrics.written_n("file", written),
            Err(e) => {
                let lost = match &e {
                    FileSinkError::Write { records, .. } => *records,
                    FileSinkError::Io { .. } => 1,
                };
                self.metrics.dropped_n("file", lost);
                tracing::warn!(error = %e, lost, "file sink: copies not written");
                self.open.remove(&vni);
            }
        }
    }

    /// Makes the file of `vni` ready for a record of `record_len` bytes:
    /// closes it when full or old (returns the records that closing wrote)
    /// and opens the next one.
    fn ready(&mut self, vni: u32, record_len: u64, now: Instant) -> Result<u64, FileSinkError> {
        let rotate = self.open.get(&vni).is_some_and(|o| {
            let full = o.bytes > pcap::FILE_HEADER_LEN as u64 && o.bytes + record_len > self.limits.max_file_bytes;
            full || now.saturating_duration_since(o.opened) >= self.limits.max_age
        });
        let mut written = 0;
        if rotate {
            written += self.close(vni)?;
        }
        if !self.open.contains_key(&vni) {
            self.open_file(vni)?;
        }
        Ok(written)
    }

    /// Writes one copy (rotating first when due); returns the records that
    /// reached the file.
    fn write(&mut self, copy: &Copy, now: Instant) -> Result<u64, FileSinkError> {
        let record_len = (pcap::RECORD_HEADER_LEN + copy.frame.len()) as u64;
        let mut written = self.ready(copy.vni, record_len, now)?;
        let Some(o) = self.open.get_mut(&copy.vni) else {
            return Ok(written);
        };
        let (header, kept) = pcap::record_parts(copy.at, &copy.frame);
        let kept = copy.frame.slice(..kept.len());
        o.bytes += (header.len() + kept.len()) as u64;
        let path = &o.path;
        written += o.out.push(header, kept).map_err(|l| FileSinkError::write(path, l))?;
        Ok(written)
    }

    fn open_file(&mut self, vni: u32) -> Result<(), FileSinkError> {
        self.seq += 1;
        let path = self.dir.join(file_name(vni, self.seq));
        let io = |source| FileSinkError::Io { path: path.clone(), source };
        let out = RecordFile::create(&path).map_err(io)?;
        self.open.insert(vni, Open { out, path, bytes: pcap::FILE_HEADER_LEN as u64, opened: Instant::now() });
        self.enforce_retention();
        Ok(())
    }

    /// Writes what the file of `vni` has queued and closes it; returns the
    /// records written.
    fn close(&mut self, vni: u32) -> Result<u64, FileSinkError> {
        let Some(mut o) = self.open.remove(&vni) else {
            return Ok(0);
        };
        self.metrics.files_rotated.inc();
        o.out.flush().map_err(|l| FileSinkError::write(&o.path, l))
    }

    fn close_aged(&mut self) {
        let aged: Vec<u32> =
            self.open.iter().filter(|(_, o)| o.opened.elapsed() >= self.limits.max_age).map(|(v, _)| *v).collect();
        for vni in aged {
            let outcome = self.close(vni);
            self.count(vni, outcome);
        }
    }

    fn flush(&mut self) {
        let vnis: Vec<u32> = self.open.keys().copied().collect();
        for vni in vnis {
            let outcome = match self.open.get_mut(&vni) {
                Some(o) => o.out.flush().map_err(|l| FileSinkError::write(&o.path, l)),
                None => Ok(0),
            };
            self.count(vni, outcome);
        }
    }

    /// Removes our oldest closed files until the directory holds at most
    /// `keep_files` files and `keep_bytes` bytes (open files count, but are
    /// never removed).
    fn enforce_retention(&mut self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<((String, u64), PathBuf, u64)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let key = age_key(e.file_name().to_str()?)?;
                let len = e.metadata().ok()?.len();
                Some((key, e.path(), len))
            })
            .collect();
        files.sort();
        let open: Vec<&PathBuf> = self.open.values().map(|o| &o.path).collect();
        let mut count = files.len();
        let mut bytes: u64 = files.iter().map(|f| f.2).sum();
        for (_, path, len) in &files {
            if count <= self.limits.keep_files && bytes <= self.limits.keep_bytes {
                break;
            }
            if open.contains(&path) {
                continue;
            }
            match fs::remove_file(path) {
                Ok(()) => {
                    count -= 1;
                    bytes = bytes.saturating_sub(*len);
                    self.metrics.files_removed.inc();
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "file sink: cannot remove old file")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_by_stamp_then_sequence() {
        let a = file_name(7, 9);
        assert!(a.starts_with("vni7-") && a.ends_with("-000009.pcap"), "{a}");
        let (stamp, seq) = age_key(&a).expect("our name");
        assert_eq!(seq, 9);
        assert!(stamp.ends_with('Z'));
        assert_eq!(age_key("other.pcap"), None);
        assert_eq!(age_key("vni1-x.pcap"), None);
    }

    /// Records written in place go out in order per VNI, rotate at the size
    /// limit (never splitting a record), and count as written.
    #[test]
    fn records_written_in_place_rotate_at_the_size_limit_and_are_counted() {
        let dir = std::env::temp_dir().join(format!("pm-filesink-now-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let limits = FileLimits {
            // The file header and three 116-byte records per file.
            max_file_bytes: (pcap::FILE_HEADER_LEN + 3 * (pcap::RECORD_HEADER_LEN + 100)) as u64,
            max_age: Duration::from_secs(3600),
            keep_files: 100,
            keep_bytes: 1 << 30,
        };
        let metrics = Arc::new(Metrics::new());
        let mut sink = FileSink::new(&dir, limits, metrics.clone()).expect("sink");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let frames: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100]).collect();
        // VNI 1 gets the even frames, VNI 2 the odd ones, interleaved.
        sink.write_now(frames.iter().enumerate().map(|(i, f)| (1 + (i as u32 % 2), at, &f[..])));
        let written = metrics.written.get_or_create(&crate::metrics::SinkLabels { sink: "file" }).get();
        assert_eq!(written, 8);
        for (vni, want) in [(1u32, [0u8, 2, 4, 6]), (2, [1, 3, 5, 7])] {
            let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                .expect("dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("vni{vni}-"))))
                .collect();
            files.sort();
            assert_eq!(files.len(), 2, "VNI {vni}: 4 records, 3 per file");
            let got: Vec<u8> = files
                .iter()
                .flat_map(|f| {
                    let bytes = fs::read(f).expect("read");
                    pcap::frames(&bytes).map(|fr| fr[0]).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got, want, "VNI {vni}: its frames, in order");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
