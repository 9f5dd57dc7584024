//! The file sink: one series of pcap files per VNI in one directory,
//! `vni<VNI>-<UTC stamp>-<seq>.pcap`, rotated by size and age, the whole
//! directory kept under a number of files and of bytes (oldest first). It
//! runs on its own thread behind a bounded queue (see `dispatch`), so a slow
//! disk costs counted drops, never a stalled receiver.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::dispatch::{Copy, SinkReceiver};
use crate::metrics::Metrics;
use crate::pcap;

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
}

struct Open {
    out: BufWriter<File>,
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

    /// Writes copies until the queue's senders are gone, then closes files.
    pub fn run(mut self, queue: SinkReceiver) {
        loop {
            match queue.recv_timeout(Duration::from_millis(200)) {
                Ok(batch) => self.write_batch(&batch),
                Err(RecvTimeoutError::Timeout) => self.close_aged(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Drain what is queued, then flush once: readers see whole records.
            while let Some(batch) = queue.try_recv() {
                self.write_batch(&batch);
            }
            self.flush();
        }
        self.flush();
    }

    /// Writes a batch; file ages are checked against one clock reading per
    /// batch (a batch spans microseconds).
    /// `written{sink="file"}` counts records that reached the file, once per
    /// batch; a record the disk refused counts as dropped instead.
    fn write_batch(&mut self, batch: &[Copy]) {
        let now = Instant::now();
        let written = batch.iter().filter(|c| self.write_logged(c, now)).count();
        self.metrics.written_n("file", written as u64);
    }

    fn write_logged(&mut self, copy: &Copy, now: Instant) -> bool {
        match self.write(copy, now) {
            Ok(()) => true,
            Err(e) => {
                self.metrics.dropped("file");
                tracing::warn!(error = %e, "file sink: copy not written");
                self.open.remove(&copy.vni);
                false
            }
        }
    }

    fn write(&mut self, copy: &Copy, now: Instant) -> Result<(), FileSinkError> {
        let record_len = (pcap::RECORD_HEADER_LEN + copy.frame.len()) as u64;
        let rotate = self.open.get(&copy.vni).is_some_and(|o| {
            let full = o.bytes > pcap::FILE_HEADER_LEN as u64 && o.bytes + record_len > self.limits.max_file_bytes;
            full || now.saturating_duration_since(o.opened) >= self.limits.max_age
        });
        if rotate {
            self.close(copy.vni);
        }
        if !self.open.contains_key(&copy.vni) {
            self.open_file(copy.vni)?;
        }
        let Some(o) = self.open.get_mut(&copy.vni) else {
            return Ok(());
        };
        let (header, kept) = pcap::record_parts(copy.at, &copy.frame);
        let io = |source| FileSinkError::Io { path: o.path.clone(), source };
        o.out.write_all(&header).map_err(io)?;
        o.out.write_all(kept).map_err(io)?;
        o.bytes += (header.len() + kept.len()) as u64;
        Ok(())
    }

    fn open_file(&mut self, vni: u32) -> Result<(), FileSinkError> {
        self.seq += 1;
        let path = self.dir.join(file_name(vni, self.seq));
        let io = |source| FileSinkError::Io { path: path.clone(), source };
        let mut out = BufWriter::with_capacity(256 << 10, File::create(&path).map_err(io)?);
        out.write_all(&pcap::file_header()).map_err(io)?;
        self.open.insert(vni, Open { out, path, bytes: pcap::FILE_HEADER_LEN as u64, opened: Instant::now() });
        self.enforce_retention();
        Ok(())
    }

    fn close(&mut self, vni: u32) {
        if let Some(mut o) = self.open.remove(&vni) {
            if let Err(e) = o.out.flush() {
                tracing::warn!(path = %o.path.display(), error = %e, "file sink: flush on rotation failed");
            }
            self.metrics.files_rotated.inc();
        }
    }

    fn close_aged(&mut self) {
        let aged: Vec<u32> =
            self.open.iter().filter(|(_, o)| o.opened.elapsed() >= self.limits.max_age).map(|(v, _)| *v).collect();
        for vni in aged {
            self.close(vni);
        }
    }

    fn flush(&mut self) {
        for o in self.open.values_mut() {
            if let Err(e) = o.out.flush() {
                tracing::warn!(path = %o.path.display(), error = %e, "file sink: flush failed");
            }
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
}
