//! One direction of a TCP flow put back in order. Copies may be duplicated
//! (retransmissions), reordered, lost (a copy is never retransmitted: the
//! original was delivered) or cut (`packetLength`). The reassembler only
//! ever delivers bytes in sequence order; where bytes are missing it says
//! so with a [`Event::Gap`], so that the HTTP parser above it can drop the
//! request they belonged to instead of sending a corrupt one.
//!
//! Segments keep their boundaries in [`Event::Data`]: after a gap the parser
//! resynchronises on a segment that starts a request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::frame::{Segment, TCP_FIN, TCP_RST, TCP_SYN};

/// Bytes held beyond a hole before the hole is declared lost: reordering on
/// a copy path moves segments by a few places, not by a megabyte.
pub const REORDER_WINDOW: usize = 1 << 20;
/// Segments too far ahead of the stream are garbage, not data.
const MAX_AHEAD: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The copy was cut (`packetLength` or path MTU): bytes never sent to us.
    Truncated,
    /// A segment never arrived (copy lost, or a queue dropped it).
    Lost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Data(Vec<u8>),
    Gap(GapReason),
    /// The FIN or RST of this direction, after every byte before it.
    Closed,
}

#[derive(Debug)]
struct Pending {
    data: Vec<u8>,
    /// Sequence space the segment covers (more than `data` when cut).
    declared: u64,
}

#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of stream offset 0, once known.
    base: Option<u32>,
    next_off: u64,
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    fin_off: Option<u64>,
    hole_since: Option<Instant>,
    closed: bool,
}

impl Reassembler {
    /// Bytes held for this direction.
    pub fn mem(&self) -> usize {
        self.pending_bytes
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn segment(&mut self, seg: &Segment<'_>, now: Instant, out: &mut Vec<Event>) {
        if self.closed {
            return;
        }
        if seg.has(TCP_RST) {
            self.closed = true;
            out.push(Event::Closed);
            return;
        }
        if seg.has(TCP_SYN) {
            if self.base.is_none() {
                self.base = Some(seg.seq.wrapping_add(1));
            }
            return;
        }
        if seg.declared_len == 0 && !seg.has(TCP_FIN) {
            return; // a pure ACK
        }
        // Joining a flow already open: the first segment seen is offset 0.
        let base = *self.base.get_or_insert(seg.seq);
        let next_seq = base.wrapping_add(self.next_off as u32);
        let off = self.next_off as i64 + i64::from(seg.seq.wrapping_sub(next_seq) as i32);
        let Ok(off) = u64::try_from(off) else { return }; // before the start
        if off > self.next_off + MAX_AHEAD {
            return;
        }
        let declared = seg.declared_len as u64;
        if seg.has(TCP_FIN) {
            self.fin_off.get_or_insert(off + declared);
        }
        self.store(off, seg.payload, declared);
        self.drain(now, out);
        if self.pending_bytes > REORDER_WINDOW {
            self.skip_hole(out);
            self.drain(now, out);
        }
    }

    /// Declares a hole older than `timeout` lost and delivers what follows.
    pub fn expire_hole(&mut self, now: Instant, timeout: Duration, out: &mut Vec<Event>) {
        if self.hole_since.is_some_and(|t| now.duration_since(t) >= timeout) {
            self.skip_hole(out);
            self.drain(now, out);
        }
    }

    fn store(&mut self, off: u64, data: &[u8], declared: u64) {
        if off + declared <= self.next_off && declared > 0 {
            return; // all delivered already: a retransmission
        }
        // Trim what was delivered already.
        let skip = self.next_off.saturating_sub(off);
        let (off, data, declared) = if skip > 0 {
            let held = data.get(skip as usize..).unwrap_or(&[]);
            (self.next_off, held, declared.saturating_sub(skip))
        } else {
            (off, data, declared)
        };
        let better = match self.pending.get(&off) {
            None => true,
            // Prefer the copy holding more bytes (an uncut retransmission).
            Some(p) => data.len() > p.data.len(),
        };
        if better {
            if let Some(old) = self.pending.insert(off, Pending { data: data.to_vec(), declared }) {
                self.pending_bytes -= old.data.len();
            }
            self.pending_bytes += data.len();
        }
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<Event>) {
        while let Some(mut entry) = self.pending.first_entry() {
            let key = *entry.key();
            if key > self.next_off {
                self.hole_since.get_or_insert(now);
                break;
            }
            let p = entry.get_mut();
            let skip = (self.next_off - key) as usize;
            let end = key + p.declared;
            let data = std::mem::take(&mut p.data);
            self.pending_bytes -= data.len();
            entry.remove();
            if end <= self.next_off {
                continue; // overlapped by what was delivered
            }
            let fresh = data.get(skip..).unwrap_or(&[]);
            let held_end = key + data.len() as u64;
            if !fresh.is_empty() {
                out.push(Event::Data(fresh.to_vec()));
            }
            self.next_off = held_end.max(self.next_off);
            if held_end < end {
                // A cut copy: the rest of its bytes never reached us, but
                // its extent is known, so the stream goes on after it.
                out.push(Event::Gap(GapReason::Truncated));
                self.next_off = end;
            }
        }
        if self.pending.first_key_value().is_none_or(|(k, _)| *k <= self.next_off) {
            self.hole_since = None;
        }
        if self.fin_off.is_some_and(|f| f <= self.next_off) && !self.closed {
            self.closed = true;
            out.push(Event::Closed);
        }
    }

    /// Jumps over the hole before the first held segment.
    fn skip_hole(&mut self, out: &mut Vec<Event>) {
        if let Some((&key, _)) = self.pending.first_key_value() {
            if key > self.next_off {
                out.push(Event::Gap(GapReason::Lost));
                self.next_off = key;
            }
        } else if self.fin_off.is_some_and(|f| f > self.next_off) {
            out.push(Event::Gap(GapReason::Lost));
            self.next_off = self.fin_off.unwrap_or(self.next_off);
        }
        self.hole_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn seg(seq: u32, flags: u8, payload: &[u8]) -> Segment<'_> {
        let a = SocketAddr::from(([10, 0, 0, 1], 1));
        Segment { src: a, dst: a, seq, flags, payload, declared_len: payload.len() }
    }

    fn feed(r: &mut Reassembler, segs: &[Segment<'_>]) -> Vec<Event> {
        let mut out = Vec::new();
        for s in segs {
            r.segment(s, Instant::now(), &mut out);
        }
        out
    }

    fn data(s: &str) -> Event {
        Event::Data(s.as_bytes().to_vec())
    }

    #[test]
    fn in_order_duplicates_and_reordering() {
        let mut r = Reassembler::default();
        let out = feed(
            &mut r,
            &[seg(99, TCP_SYN, b""), seg(100, 0, b"ab"), seg(104, 0, b"ef"), seg(100, 0, b"ab"), seg(102, 0, b"cd")],
        );
        assert_eq!(out, [data("ab"), data("cd"), data("ef")]);
        assert_eq!(r.mem(), 0);
    }

    #[test]
    fn overlapping_retransmission_delivers_only_new_bytes() {
        let mut r = Reassembler::default();
        let out = feed(&mut r, &[seg(0, TCP_SYN, b""), seg(1, 0, b"abc"), seg(2, 0, b"bcdef"), seg(7, TCP_FIN, b"")]);
        assert_eq!(out, [data("abc"), data("def"), Event::Closed]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = Reassembler::default();
        let out = feed(&mut r, &[seg(u32::MAX - 1, TCP_SYN, b""), seg(u32::MAX, 0, b"ab"), seg(1, 0, b"cd")]);
        assert_eq!(out, [data("ab"), data("cd")]);
    }

    #[test]
    fn a_cut_copy_is_a_truncated_gap_and_the_stream_goes_on() {
        let mut r = Reassembler::default();
        let mut cut = seg(1, 0, b"GET");
        cut.declared_len = 10;
        let out = feed(&mut r, &[seg(0, TCP_SYN, b""), cut, seg(11, 0, b"next")]);
        assert_eq!(out, [data("GET"), Event::Gap(GapReason::Truncated), data("next")]);
    }

    #[test]
    fn a_lost_segment_becomes_a_gap_after_the_timeout() {
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        let mut out = feed(&mut r, &[seg(0, TCP_SYN, b""), seg(1, 0, b"ab"), seg(5, TCP_FIN, b"ef")]);
        assert_eq!(out, [data("ab")]);
        r.expire_hole(t0, Duration::from_secs(3600), &mut out);
        assert_eq!(out.len(), 1, "not yet");
        r.expire_hole(t0 + Duration::from_secs(2), Duration::from_secs(1), &mut out);
        assert_eq!(out, [data("ab"), Event::Gap(GapReason::Lost), data("ef"), Event::Closed]);
    }

    #[test]
    fn too_much_held_beyond_a_hole_declares_it_lost() {
        let mut r = Reassembler::default();
        let big = vec![b'x'; REORDER_WINDOW + 1];
        let out = feed(&mut r, &[seg(0, TCP_SYN, b""), seg(11, 0, &big)]);
        assert_eq!(out.first(), Some(&Event::Gap(GapReason::Lost)));
        assert_eq!(r.mem(), 0);
    }
}
