//! The classic pcap format (what `tcpdump -w` writes, what `tshark -r -`
//! and Wireshark read from a pipe): a 24-byte file header, then one 16-byte
//! record header per frame. Nanosecond timestamps, little endian,
//! LINKTYPE_ETHERNET: the records are the inner frames of the copies.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanosecond-resolution pcap magic.
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Larger than any inner frame (a 9216-byte jumbo frame included).
pub const SNAPLEN: u32 = 262_144;
pub const FILE_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;

/// The pcap file header.
pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// One record's header and the part of `frame` it keeps (all of it up to
/// the snap length): written one after the other, without building the
/// record in between.
pub fn record_parts(at: SystemTime, frame: &[u8]) -> ([u8; RECORD_HEADER_LEN], &[u8]) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let kept = frame.get(..SNAPLEN as usize).unwrap_or(frame);
    let caplen = u32::try_from(kept.len()).unwrap_or(SNAPLEN);
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&since.subsec_nanos().to_le_bytes());
    h[8..12].copy_from_slice(&caplen.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    (h, kept)
}

/// The frames of a little-endian classic pcap file (microsecond or
/// nanosecond magic), in order; nothing for another format. A record cut
/// short at the end (a writer stopped mid-record) is not returned.
pub fn frames(file: &[u8]) -> impl Iterator<Item = &[u8]> {
    let magic = file.get(..4).map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    let mut at = if matches!(magic, Some(0xa1b2_c3d4 | MAGIC_NS)) { FILE_HEADER_LEN } else { file.len() };
    std::iter::from_fn(move || {
        let h = file.get(at..at + RECORD_HEADER_LEN)?;
        let caplen = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let frame = file.get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + caplen)?;
        at += RECORD_HEADER_LEN + caplen;
        Some(frame)
    })
}

/// Appends one record (header and frame) to `out`.
pub fn push_record(out: &mut Vec<u8>, at: SystemTime, frame: &[u8]) {
    let (h, kept) = record_parts(at, frame);
    out.extend_from_slice(&h);
    out.extend_from_slice(kept);
}

/// One record as bytes.
pub fn record(at: SystemTime, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + frame.len());
    push_record(&mut out, at, frame);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn header_and_record_layout() {
        let h = file_header();
        assert_eq!(&h[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        let r = record(at, &[1, 2, 3]);
        assert_eq!(r.len(), RECORD_HEADER_LEN + 3);
        assert_eq!(&r[0..4], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&r[4..8], &123u32.to_le_bytes());
        assert_eq!(&r[8..16], &[3, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn frames_reads_back_what_was_written_and_drops_a_cut_record() {
        let at = UNIX_EPOCH + Duration::new(1, 0);
        let mut file = file_header().to_vec();
        push_record(&mut file, at, &[1, 2, 3]);
        push_record(&mut file, at, &[4; 70]);
        assert_eq!(frames(&file).collect::<Vec<_>>(), [&[1, 2, 3][..], &[4; 70][..]]);
        assert_eq!(frames(&file[..file.len() - 1]).count(), 1, "the cut last record");
        assert_eq!(frames(b"not a pcap file at all, no").count(), 0);
    }
}
