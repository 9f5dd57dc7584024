//! One mirrored TCP connection to an HTTP port: both directions reassembled,
//! requests framed on the client side, production responses on the server
//! side (when the session mirrors them) paired with the requests in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http1::{Kind, Message, MessageParser, ParseError, looks_like_tls, starts_request, starts_response};
use super::pairing::Slot;
use super::reassembly::{Event, GapReason, Reassembler};
use crate::frame::Segment;
use crate::metrics::Metrics;

/// Requests awaiting their production response, at most (responses may
/// not be mirrored at all).
const MAX_SLOTS: usize = 1024;

/// What a flow reports to the replay.
#[derive(Debug)]
pub enum Out {
    Request(Message, Arc<Slot>),
    Incomplete(&'static str),
    Unreplayable(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Http,
    Tls,
}

#[derive(Debug)]
pub struct Flow {
    pub last_seen: Instant,
    pub requests: u64,
    req: Reassembler,
    resp: Reassembler,
    reqp: MessageParser,
    respp: MessageParser,
    /// False while waiting for a segment that starts a message (at first,
    /// and after a gap).
    req_sync: bool,
    resp_sync: bool,
    mode: Mode,
    seen_data: bool,
    resp_seen: bool,
    /// Off once a gap on either side makes the order of responses uncertain.
    pairing: bool,
    slots: VecDeque<Arc<Slot>>,
}

fn gap_label(r: GapReason) -> &'static str {
    match r {
        GapReason::Truncated => "truncated",
        GapReason::Lost => "lost_segment",
    }
}

fn parse_label(e: ParseError) -> &'static str {
    match e {
        ParseError::NotHttp => "malformed",
        ParseError::BadFraming => "bad_framing",
        ParseError::TooLarge => "too_large",
    }
}

impl Flow {
    pub fn new(now: Instant, max_request: usize) -> Self {
        Flow {
            last_seen: now,
            requests: 0,
            req: Reassembler::default(),
            resp: Reassembler::default(),
            reqp: MessageParser::new(Kind::Request, max_request),
            respp: MessageParser::new(Kind::Response, max_request),
            req_sync: false,
            resp_sync: false,
            mode: Mode::Http,
            seen_data: false,
            resp_seen: false,
            pairing: true,
            slots: VecDeque::new(),
        }
    }

    pub fn mem(&self) -> usize {
        self.req.mem() + self.resp.mem() + self.reqp.mem() + self.respp.mem()
    }

    /// Done: the client closed, and the server too (or its side is not
    /// mirrored).
    pub fn finished(&self) -> bool {
        self.req.is_closed() && (self.resp.is_closed() || !self.resp_seen)
    }

    /// A request was being received when the flow is dropped.
    pub fn in_progress(&self) -> bool {
        self.mode == Mode::Http && self.reqp.in_progress()
    }

    pub fn segment(
        &mut self,
        from_client: bool,
        seg: &Segment<'_>,
        now: Instant,
        metrics: &Metrics,
        out: &mut Vec<Out>,
    ) {
        self.last_seen = now;
        let mut events = Vec::new();
        if from_client {
            self.req.segment(seg, now, &mut events);
            self.client_events(events, out);
        } else {
            self.resp_seen = true;
            self.resp.segment(seg, now, &mut events);
            self.server_events(events, metrics);
        }
    }

    /// Declares holes older than `timeout` lost.
    pub fn expire_holes(&mut self, now: Instant, timeout: Duration, metrics: &Metrics, out: &mut Vec<Out>) {
        let mut events = Vec::new();
        self.req.expire_hole(now, timeout, &mut events);
        self.client_events(events, out);
        let mut events = Vec::new();
        self.resp.expire_hole(now, timeout, &mut events);
        self.server_events(events, metrics);
    }

    fn client_events(&mut self, events: Vec<Event>, out: &mut Vec<Out>) {
        for ev in events {
            if self.mode == Mode::Tls {
                return;
            }
            match ev {
                Event::Data(d) => self.client_data(&d, out),
                Event::Gap(reason) => {
                    if self.reqp.in_progress() || self.req_sync {
                        out.push(Out::Incomplete(gap_label(reason)));
                    }
                    self.reqp.reset();
                    self.req_sync = false;
                    self.stop_pairing();
                }
                Event::Closed => {
                    if self.reqp.in_progress() {
                        out.push(Out::Incomplete("connection_closed"));
                        self.reqp.reset();
                    }
                }
            }
        }
    }

    fn client_data(&mut self, d: &[u8], out: &mut Vec<Out>) {
        let first = !self.seen_data;
        self.seen_data = true;
        if first && looks_like_tls(d) {
            self.mode = Mode::Tls;
            out.push(Out::Unreplayable("tls"));
            return;
        }
        if !self.req_sync {
            if !starts_request(d) {
                if first {
                    out.push(Out::Unreplayable("not_http"));
                }
                return; // quietly wait for a request start
            }
            self.req_sync = true;
        }
        self.reqp.push(d);
        loop {
            match self.reqp.next(false) {
                Ok(Some(m)) => {
                    self.requests += 1;
                    let slot = Slot::new(&m.head.method, &m.head.target);
                    if self.pairing {
                        if self.slots.len() >= MAX_SLOTS {
                            self.slots.pop_front();
                        }
                        self.slots.push_back(slot.clone());
                    }
                    out.push(Out::Request(m, slot));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Out::Incomplete(parse_label(e)));
                    self.reqp.reset();
                    self.req_sync = false;
                    self.stop_pairing();
                    break;
                }
            }
        }
    }

    fn stop_pairing(&mut self) {
        self.pairing = false;
        self.slots.clear();
    }

    fn server_events(&mut self, events: Vec<Event>, metrics: &Metrics) {
        for ev in events {
            if !self.pairing {
                return;
            }
            match ev {
                Event::Data(d) => self.server_data(&d, metrics),
                Event::Gap(_) => self.stop_pairing(),
                Event::Closed => {
                    if let Some(m) = self.respp.finish() {
                        self.production(m.head.status, metrics);
                    }
                }
            }
        }
    }

    fn server_data(&mut self, d: &[u8], metrics: &Metrics) {
        if !self.resp_sync {
            if !starts_response(d) {
                return self.stop_pairing();
            }
            self.resp_sync = true;
        }
        self.respp.push(d);
        loop {
            let head_request = self.slots.front().is_some_and(|s| s.method == "HEAD");
            match self.respp.next(head_request) {
                Ok(Some(m)) => self.production(m.head.status, metrics),
                Ok(None) => break,
                Err(_) => {
                    self.respp.reset();
                    return self.stop_pairing();
                }
            }
        }
    }

    fn production(&mut self, status: u16, metrics: &Metrics) {
        if (100..200).contains(&status) {
            return; // an interim response; the final one follows
        }
        match self.slots.pop_front() {
            Some(slot) => slot.production(status, metrics),
            // A response without a request we saw: the order is unknown.
            None => self.stop_pairing(),
        }
    }
}
