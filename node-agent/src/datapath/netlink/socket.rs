//! One rtnetlink socket in the caller's network namespace: requests that
//! wait for their ACK and dumps that collect every reply, both matched to
//! their sequence number and bounded by a receive timeout, so an unexpected
//! or missing reply can never block the agent.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP_INTR: u16 = 0x10;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;
/// How long one reply may take. The kernel answers rtnetlink requests
/// synchronously; seconds of silence mean it never will.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// A dump that keeps being interrupted by concurrent changes is retried this often.
const DUMP_ATTEMPTS: usize = 5;

/// One netlink message of a reply: its type and its payload (after the header).
#[derive(Debug)]
pub struct Message {
    pub kind: u16,
    pub payload: Vec<u8>,
}

/// An rtnetlink socket bound to the network namespace it was opened in.
pub struct Socket {
    fd: OwnedFd,
    timeout: Duration,
}

fn next_seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn set_int_opt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

impl Socket {
    /// Opens a socket in this thread's network namespace, with strict
    /// checking of requests (needed to address another namespace by id)
    /// and a receive timeout of [`REPLY_TIMEOUT`].
    pub fn open() -> io::Result<Socket> {
        Socket::open_with_timeout(REPLY_TIMEOUT)
    }

    /// Like [`Socket::open`], waiting at most `timeout` for each reply.
    pub fn open_with_timeout(timeout: Duration) -> io::Result<Socket> {
        // SAFETY: plain socket(2) call; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_int_opt(&fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)?;
        // Extended ACKs carry the kernel's message; best effort (old kernels lack it).
        let _ = set_int_opt(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: `tv` outlives the call and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket { fd, timeout })
    }

    fn send(&self, kind: u16, flags: u16, seq: u32, body: &[u8]) -> io::Result<()> {
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        msg.extend_from_slice(body);
        // SAFETY: msg is a valid buffer of msg.len() bytes.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Reads one datagram and returns the messages in it that answer `seq`
    /// (with their header flags); replies to anything else are skipped.
    fn recv(&self, seq: u32, buf: &mut [u8]) -> io::Result<Vec<(u16, u16, Vec<u8>)>> {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from the kernel within {:?}", self.timeout),
                ),
                _ => e,
            });
        }
        Ok(split(&buf[..n as usize])
            .into_iter()
            .filter(|m| m.seq == seq)
            .map(|m| (m.kind, m.flags, m.payload))
            .collect())
    }

    /// Sends a request and waits for its ACK; a kernel error comes back as
    /// the `io::Error` of its errno, with `what` and the kernel's message.
    pub fn request(&self, kind: u16, flags: u16, body: &[u8], what: &str) -> io::Result<()> {
        let seq = next_seq();
        self.send(kind, flags | libc::NLM_F_ACK as u16, seq, body)?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            for (kind, _, payload) in self.recv(seq, &mut buf)? {
                if kind == NLMSG_ERROR {
                    return error_code(&payload, what);
                }
            }
        }
    }

    /// Sends a dump request and collects every message of the reply.
    /// A dump interrupted by concurrent changes is taken again.
    pub fn dump(&self, kind: u16, body: &[u8], what: &str) -> io::Result<Vec<Message>> {
        for _ in 0..DUMP_ATTEMPTS {
            if let Some(messages) = self.dump_once(kind, body, what)? {
                return Ok(messages);
            }
        }
        Err(io::Error::other(format!("{what}: the dump kept being interrupted by changes")))
    }

    fn dump_once(&self, kind: u16, body: &[u8], what: &str) -> io::Result<Option<Vec<Message>>> {
        let seq = next_seq();
        self.send(kind, libc::NLM_F_DUMP as u16, seq, body)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut messages = Vec::new();
        let mut interrupted = false;
        loop {
            for (kind, flags, payload) in self.recv(seq, &mut buf)? {
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match kind {
                    NLMSG_DONE => {
                        // DONE carries the dump's own error code.
                        error_code(&payload, what)?;
                        return Ok((!interrupted).then_some(messages));
                    }
                    NLMSG_ERROR => {
                        error_code(&payload, what)?;
                    }
                    _ => messages.push(Message { kind, payload }),
                }
            }
        }
    }
}

/// One message parsed out of a datagram.
struct Raw {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: Vec<u8>,
}

/// The messages of one datagram; a truncated message ends the list.
fn split(mut data: &[u8]) -> Vec<Raw> {
    let mut out = Vec::new();
    while let Some(header) = data.get(..NLMSG_HDRLEN) {
        let word = |i: usize| u32::from_ne_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let len = word(0) as usize;
        let Some(payload) = data.get(NLMSG_HDRLEN..len) else { break };
        out.push(Raw {
            kind: u16::from_ne_bytes([header[4], header[5]]),
            flags: u16::from_ne_bytes([header[6], header[7]]),
            seq: word(8),
            payload: payload.to_vec(),
        });
        data = data.get(super::attr::align(len)..).unwrap_or(&[]);
    }
    out
}

/// The errno in an NLMSG_ERROR / NLMSG_DONE payload: 0 is success.
fn error_code(payload: &[u8], what: &str) -> io::Result<()> {
    let code = super::attr::u32_of(payload).map(|c| c as i32).unwrap_or(0);
    if code == 0 {
        return Ok(());
    }
    let errno = io::Error::from_raw_os_error(-code);
    // With NETLINK_EXT_ACK, the kernel's message follows the echoed request header.
    let detail = payload
        .get(4 + NLMSG_HDRLEN..)
        .and_then(|attrs| super::attr::find(attrs, 1 /* NLMSGERR_ATTR_MSG */))
        .and_then(super::attr::str_of)
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    Err(io::Error::new(errno.kind(), WithErrno { errno: -code, text: format!("{what}: {errno}{detail}") }))
}

/// An error that keeps the kernel's errno next to the rendered text, so
/// callers can still tell EEXIST from ENODEV.
#[derive(Debug)]
struct WithErrno {
    errno: i32,
    text: String,
}

impl std::fmt::Display for WithErrno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for WithErrno {}

/// The kernel's errno of an error returned by [`Socket::request`] or [`Socket::dump`].
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| e.get_ref().and_then(|inner| inner.downcast_ref::<WithErrno>()).map(|w| w.errno))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(super::super::attr::align(m.len()), 0);
        m
    }

    #[test]
    fn datagrams_split_into_messages_and_truncation_stops_the_walk() {
        let mut data = message(16, 7, &[1, 2, 3]);
        data.extend(message(NLMSG_DONE, 8, &0i32.to_ne_bytes()));
        let all = split(&data);
        assert_eq!(all.iter().map(|m| (m.kind, m.seq)).collect::<Vec<_>>(), vec![(16, 7), (NLMSG_DONE, 8)]);
        assert_eq!(all[0].payload, vec![1, 2, 3]);
        let mut bad = message(16, 7, &[1, 2, 3]);
        bad[0] = 200; // claims more than there is
        assert!(split(&bad).is_empty());
    }

    #[test]
    fn kernel_errors_keep_their_errno_and_name_the_request() {
        let e = error_code(&(-libc::EEXIST).to_ne_bytes(), "RTM_NEWLINK pm-cp").unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::EEXIST));
        assert!(e.to_string().starts_with("RTM_NEWLINK pm-cp: "), "{e}");
        assert!(error_code(&0i32.to_ne_bytes(), "x").is_ok());
    }

    fn getlink(index: i32) -> Vec<u8> {
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body
    }

    #[test]
    fn a_stale_reply_to_another_request_is_not_taken_as_the_answer() {
        // A reply to an earlier request (ENODEV) waits in the socket; the
        // request for `lo` must get its own answer (success), not that one.
        let socket = Socket::open().unwrap();
        socket.send(libc::RTM_GETLINK, libc::NLM_F_ACK as u16, 0x7fff_0000, &getlink(i32::MAX)).unwrap();
        socket.request(libc::RTM_GETLINK, 0, &getlink(1), "RTM_GETLINK lo").unwrap();
    }

    #[test]
    fn silence_ends_in_a_timeout_not_a_hang() {
        let socket = Socket::open_with_timeout(Duration::from_millis(100)).unwrap();
        let started = std::time::Instant::now();
        let e = socket.recv(12345, &mut [0u8; 256]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("no reply from the kernel"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_request_to_the_kernel_gets_its_own_answer() {
        // An unknown link index: the kernel answers ENODEV, and the reply is matched by seq.
        let socket = Socket::open().unwrap();
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&i32::MAX.to_ne_bytes());
        let e = socket.request(libc::RTM_GETLINK, 0, &body, "RTM_GETLINK").unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::ENODEV), "{e}");
    }
}
