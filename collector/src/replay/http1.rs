//! Incremental HTTP/1.x message framing, for requests (mirrored, to replay)
//! and responses (mirrored production ones, and the test server's). A
//! message is only ever returned whole: head, then a body framed by
//! Content-Length or chunked encoding (trailers included), or for responses
//! without either, up to the end of the connection.

/// Head size at most (bigger heads are not HTTP a server would take).
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not HTTP/1.x (or a head httparse refuses).
    NotHttp,
    /// Conflicting or invalid Content-Length / chunk size.
    BadFraming,
    /// Larger than the configured limit.
    TooLarge,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Request method (empty for responses).
    pub method: String,
    /// Request target (empty for responses).
    pub target: String,
    pub status: u16,
    /// Minor version: 0 or 1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

/// A whole message: its head and the raw bytes of head and framed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub head: Head,
    pub raw: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(usize),
    /// Scanning chunks: offset of the next chunk-size line.
    Chunked(usize),
    UntilClose,
}

#[derive(Debug)]
pub struct MessageParser {
    kind: Kind,
    max: usize,
    buf: Vec<u8>,
    head: Option<(Head, Body)>,
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|p| from + p)
}

impl MessageParser {
    pub fn new(kind: Kind, max: usize) -> Self {
        MessageParser { kind, max, buf: Vec::new(), head: None }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held (a message in progress).
    pub fn mem(&self) -> usize {
        self.buf.len()
    }

    pub fn in_progress(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Forgets the message in progress (after a gap).
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.head = None;
    }

    /// The next whole message, if the buffer holds one. `no_body` says the
    /// response answers a HEAD request.
    pub fn next(&mut self, no_body: bool) -> Result<Option<Message>, ParseError> {
        if self.head.is_none() {
            let Some(parsed) = self.parse_head(no_body)? else {
                return if self.buf.len() > MAX_HEAD.min(self.max) { Err(ParseError::TooLarge) } else { Ok(None) };
            };
            self.head = Some(parsed);
        }
        let Some((head, body)) = &mut self.head else {
            return Ok(None);
        };
        let end = match *body {
            Body::Length(n) => head.len.checked_add(n).ok_or(ParseError::TooLarge)?,
            Body::Chunked(ref mut at) => match scan_chunks(&self.buf, at)? {
                Some(end) => end,
                None => return self.check_size(),
            },
            Body::UntilClose => return self.check_size(),
        };
        if end > self.max {
            return Err(ParseError::TooLarge);
        }
        if self.buf.len() < end {
            return Ok(None);
        }
        let rest = self.buf.split_off(end);
        let raw = std::mem::replace(&mut self.buf, rest);
        let (head, _) = self.head.take().ok_or(ParseError::NotHttp)?;
        Ok(Some(Message { head, raw }))
    }

    /// The connection ended: a response framed by the close is now whole.
    pub fn finish(&mut self) -> Option<Message> {
        match self.head.take() {
            Some((head, Body::UntilClose)) => Some(Message { head, raw: std::mem::take(&mut self.buf) }),
            other => {
                self.head = other;
                None
            }
        }
    }

    fn check_size(&self) -> Result<Option<Message>, ParseError> {
        if self.buf.len() > self.max { Err(ParseError::TooLarge) } else { Ok(None) }
    }

    fn parse_head(&self, no_body: bool) -> Result<Option<(Head, Body)>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (len, mut head) = match self.kind {
            Kind::Request => {
                let mut req = httparse::Request::new(&mut headers);
                let httparse::Status::Complete(len) = req.parse(&self.buf).map_err(|_| ParseError::NotHttp)? else {
                    return Ok(None);
                };
                let head = Head {
                    method: req.method.unwrap_or_default().to_string(),
                    target: req.path.unwrap_or_default().to_string(),
                    status: 0,
                    version: req.version.unwrap_or(1),
                    headers: owned(req.headers),
                    len,
                };
                (len, head)
            }
            Kind::Response => {
                let mut resp = httparse::Response::new(&mut headers);
                let httparse::Status::Complete(len) = resp.parse(&self.buf).map_err(|_| ParseError::NotHttp)? else {
                    return Ok(None);
                };
                let head = Head {
                    method: String::new(),
                    target: String::new(),
                    status: resp.code.unwrap_or(0),
                    version: resp.version.unwrap_or(1),
                    headers: owned(resp.headers),
                    len,
                };
                (len, head)
            }
        };
        head.len = len;
        let body = self.framing(&head, no_body, len)?;
        Ok(Some((head, body)))
    }

    fn framing(&self, head: &Head, no_body: bool, len: usize) -> Result<Body, ParseError> {
        let status = head.status;
        if self.kind == Kind::Response && (no_body || (100..200).contains(&status) || status == 204 || status == 304) {
            return Ok(Body::Length(0));
        }
        let mut te = head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
        if let Some((_, v)) = te.next_back() {
            let last = v.rsplit(|b| *b == b',').next().unwrap_or_default();
            return if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Ok(Body::Chunked(len))
            } else if self.kind == Kind::Response {
                Ok(Body::UntilClose)
            } else {
                Err(ParseError::BadFraming) // RFC 9112 6.3: a request must be chunked last
            };
        }
        let mut length: Option<usize> = None;
        for (_, v) in head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(ParseError::BadFraming)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::BadFraming);
            }
            length = Some(n);
        }
        Ok(match (length, self.kind) {
            (Some(n), _) => Body::Length(n),
            (None, Kind::Request) => Body::Length(0),
            (None, Kind::Response) => Body::UntilClose,
        })
    }
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect()
}

/// Walks chunks from `*at`; returns the end of the message once the last
/// chunk and the trailers are in, remembering progress in `*at`.
fn scan_chunks(buf: &[u8], at: &mut usize) -> Result<Option<usize>, ParseError> {
    loop {
        let Some(eol) = find_crlf(buf, *at) else {
            return Ok(None);
        };
        let line = &buf[*at..eol];
        let size_hex = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
        let size = std::str::from_utf8(size_hex)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 15)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(ParseError::BadFraming)?;
        if size == 0 {
            // Trailers: header lines up to an empty line.
            let mut t = eol + 2;
            loop {
                let Some(e) = find_crlf(buf, t) else {
                    return Ok(None);
                };
                if e == t {
                    return Ok(Some(e + 2));
                }
                t = e + 2;
            }
        }
        let data_end = eol + 2 + size;
        if buf.len() < data_end + 2 {
            return Ok(None);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(ParseError::BadFraming);
        }
        *at = data_end + 2;
    }
}

/// Whether a segment starts like a request line: where to resynchronise
/// after a gap (a body segment starting with these bytes is unlikely).
pub fn starts_request(data: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] =
        [b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];
    METHODS.iter().any(|m| data.starts_with(m))
}

/// Whether a segment starts like a response status line.
pub fn starts_response(data: &[u8]) -> bool {
    data.starts_with(b"HTTP/1.")
}

/// A TLS handshake record (ClientHello): 0x16, version 3.x.
pub fn looks_like_tls(data: &[u8]) -> bool {
    matches!(data, [0x16, 0x03, 0x00..=0x04, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: &[u8]) -> MessageParser {
        let mut p = MessageParser::new(Kind::Request, 1 << 20);
        p.push(bytes);
        p
    }

    #[test]
    fn pipelined_requests_with_bodies() {
        let mut p =
            req(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /c");
        let a = p.next(false).expect("ok").expect("first");
        assert_eq!((a.head.method.as_str(), a.head.target.as_str()), ("GET", "/a?x=1"));
        let b = p.next(false).expect("ok").expect("second");
        assert!(b.raw.ends_with(b"\r\n\r\nabc"));
        assert_eq!(p.next(false), Ok(None));
        assert!(p.in_progress());
    }

    #[test]
    fn chunked_request_byte_by_byte() {
        let body =
            b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n";
        let mut p = MessageParser::new(Kind::Request, 1 << 20);
        for (i, b) in body.iter().enumerate() {
            p.push(&[*b]);
            let got = p.next(false).expect("never an error");
            assert_eq!(got.is_some(), i == body.len() - 1, "at byte {i}");
            if let Some(m) = got {
                assert_eq!(m.raw, body);
            }
        }
    }

    #[test]
    fn framing_errors_and_limits() {
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").next(false),
            Err(ParseError::BadFraming)
        );
        assert_eq!(req(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").next(false), Err(ParseError::NotHttp));
        let mut small = MessageParser::new(Kind::Request, 100);
        small.push(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
        assert_eq!(small.next(false), Err(ParseError::TooLarge));
        assert_eq!(
            req(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").next(false),
            Err(ParseError::BadFraming)
        );
    }

    #[test]
    fn responses_head_204_and_until_close() {
        let mut p = MessageParser::new(Kind::Response, 1 << 20);
        p.push(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 500 X\r\n\r\nbody",
        );
        assert_eq!(p.next(true).expect("ok").map(|m| m.head.status), Some(200), "HEAD: no body");
        assert_eq!(p.next(false).expect("ok").map(|m| m.head.status), Some(204));
        assert_eq!(p.next(false), Ok(None));
        assert_eq!(p.finish().map(|m| (m.head.status, m.raw.len())), Some((500, 22)));
    }

    #[test]
    fn classifiers() {
        assert!(starts_request(b"DELETE /x HTTP/1.1"));
        assert!(!starts_request(b"GETX"));
        assert!(starts_response(b"HTTP/1.1 200"));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x00]));
        assert!(!looks_like_tls(b"GET "));
    }
}
