//! An open capture file that writes records without copying their frames:
//! each record is a pcap header and a shared frame (`Bytes`), queued and
//! written with one `writev` per [`RECORDS_PER_WRITE`] records, or a frame
//! borrowed from an input that holds it until the write returns
//! ([`RecordFile::write_now`], the ring input). The frames
//! reach the kernel straight from where the receiver put them; a buffered
//! writer would copy every byte once more on the way, and at capture rates
//! that copy is a measurable share of the file sink's time.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::Path;

use bytes::Bytes;

use crate::pcap::{self, RECORD_HEADER_LEN};

/// Records per `writev` (two iovecs each, within the kernel's IOV_MAX).
pub const RECORDS_PER_WRITE: usize = 256;

/// A write that failed, with the records it lost.
#[derive(Debug)]
pub struct Lost {
    pub records: u64,
    pub source: io::Error,
}

pub struct RecordFile {
    file: File,
    headers: Vec<[u8; RECORD_HEADER_LEN]>,
    frames: Vec<Bytes>,
}

impl RecordFile {
    /// Creates `path` and writes the pcap file header.
    pub fn create(path: &Path) -> io::Result<RecordFile> {
        let mut file = File::create(path)?;
        file.write_all(&pcap::file_header())?;
        let cap = RECORDS_PER_WRITE;
        Ok(RecordFile { file, headers: Vec::with_capacity(cap), frames: Vec::with_capacity(cap) })
    }

    /// Queues one record; returns the records written to the file by this
    /// call (0, or a full write's worth).
    pub fn push(&mut self, header: [u8; RECORD_HEADER_LEN], frame: Bytes) -> Result<u64, Lost> {
        self.headers.push(header);
        self.frames.push(frame);
        if self.headers.len() >= RECORDS_PER_WRITE { self.flush() } else { Ok(0) }
    }

    /// Writes the queued records; returns how many.
    pub fn flush(&mut self) -> Result<u64, Lost> {
        let records = self.headers.len() as u64;
        if records == 0 {
            return Ok(0);
        }
        let result = self.write_queued();
        self.headers.clear();
        self.frames.clear();
        result.map(|()| records).map_err(|source| Lost { records, source })
    }

    /// Writes the queued records, then `records` (frames borrowed from
    /// the input, which keeps them until this returns), at once. Returns
    /// how many records reached the file, and what a failed write lost
    /// (everything from the failed write on).
    pub fn write_now(&mut self, records: &[([u8; RECORD_HEADER_LEN], &[u8])]) -> (u64, Result<(), Lost>) {
        let queued = match self.flush() {
            Ok(n) => n,
            Err(l) => return (0, Err(Lost { records: l.records + records.len() as u64, source: l.source })),
        };
        let mut written = queued;
        for (i, chunk) in records.chunks(RECORDS_PER_WRITE).enumerate() {
            let parts = chunk.iter().map(|(h, f)| (&h[..], *f));
            if let Err(source) = write_records(&mut self.file, parts) {
                let lost = (records.len() - i * RECORDS_PER_WRITE) as u64;
                return (written, Err(Lost { records: lost, source }));
            }
            written += chunk.len() as u64;
        }
        (written, Ok(()))
    }

    fn write_queued(&mut self) -> io::Result<()> {
        let parts = self.headers.iter().zip(&self.frames).map(|(h, f)| (&h[..], &f[..]));
        write_records(&mut self.file, parts)
    }
}

/// Writes (header, frame) records with one `writev` where it can.
fn write_records<'a>(file: &mut File, records: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(RECORDS_PER_WRITE * 2);
    for (h, f) in records {
        slices.push(IoSlice::new(h));
        slices.push(IoSlice::new(f));
    }
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn records_are_written_whole_in_order_across_several_writes() {
        let dir = std::env::temp_dir().join(format!("pm-recordfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.pcap");
        let mut f = RecordFile::create(&path).expect("create");
        let frames: Vec<Bytes> = (0..RECORDS_PER_WRITE + 3).map(|i| Bytes::from(vec![i as u8; 60 + i % 7])).collect();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut written = 0;
        for fr in &frames {
            let (header, _) = pcap::record_parts(at, fr);
            written += f.push(header, fr.clone()).expect("push");
        }
        assert_eq!(written, RECORDS_PER_WRITE as u64, "one full write so far");
        assert_eq!(f.flush().expect("flush"), 3);
        let expected: Vec<u8> =
            pcap::file_header().into_iter().chain(frames.iter().flat_map(|fr| pcap::record(at, fr))).collect();
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_written_at_once_follow_the_queued_ones() {
        let dir = std::env::temp_dir().join(format!("pm-recordfile-now-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.pcap");
        let mut f = RecordFile::create(&path).expect("create");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let queued = Bytes::from(vec![1u8; 70]);
        f.push(pcap::record_parts(at, &queued).0, queued.clone()).expect("push");
        let borrowed: Vec<Vec<u8>> = (0..RECORDS_PER_WRITE + 5).map(|i| vec![i as u8; 60 + i % 5]).collect();
        let now: Vec<_> = borrowed.iter().map(|b| (pcap::record_parts(at, b).0, &b[..])).collect();
        let (written, outcome) = f.write_now(&now);
        assert!(outcome.is_ok());
        assert_eq!(written, 1 + borrowed.len() as u64);
        let expected: Vec<u8> = pcap::file_header()
            .into_iter()
            .chain(pcap::record(at, &queued))
            .chain(borrowed.iter().flat_map(|b| pcap::record(at, b)))
            .collect();
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
