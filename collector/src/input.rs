//! Receiving threads: N UDP sockets bound to the VXLAN address with
//! SO_REUSEPORT (the kernel spreads the outer flows over them, one core
//! each) and optionally one raw IPv4 socket of protocol 47 for GRE. Plain
//! blocking threads: decoding and dispatching never wait, so a thread per
//! socket is the simplest way to use the cores.
//!
//! The VXLAN sockets ask for `UDP_GRO`: where the NIC (or veth) coalesces
//! a flow's equal-sized datagrams, one receive brings up to 64 of them with
//! their size in a control message, and the loop cuts them apart again.
//! Each copy still becomes its own record; the kernel's per-datagram work
//! (queueing, one copy to user space, one wake-up) is paid once per run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::decode::{IPPROTO_GRE, decode_gre_ipv4, decode_vxlan};
use crate::dispatch::Dispatch;

/// The largest datagram IP can carry: a copy of a 9000-byte (or larger)
/// frame always fits, unlike a fixed Ethernet-sized buffer.
const RECV_BUF: usize = 65_536;
/// How often a blocked receiver looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open the {what} socket on {addr}: {source}")]
    Socket { what: &'static str, addr: String, source: std::io::Error },
}

fn sock_err(what: &'static str, addr: impl ToString) -> impl FnOnce(std::io::Error) -> InputError {
    move |source| InputError::Socket { what, addr: addr.to_string(), source }
}

/// Opens `workers` VXLAN sockets on `addr` (port 0 picks one port for all).
pub fn vxlan_sockets(addr: SocketAddr, workers: u16, rcvbuf: usize) -> Result<Vec<Socket>, InputError> {
    let mut sockets = Vec::new();
    let mut bind = addr;
    for _ in 0..workers {
        let err = sock_err("VXLAN UDP", bind);
        let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        s.set_reuse_port(true).map_err(sock_err("VXLAN UDP", bind))?;
        set_rcvbuf(&s, rcvbuf);
        s.set_read_timeout(Some(POLL)).map_err(sock_err("VXLAN UDP", bind))?;
        s.bind(&bind.into()).map_err(sock_err("VXLAN UDP", bind))?;
        enable_udp_gro(&s);
        // With port 0 the first bind chose the port: the others join it.
        if let Some(local) = s.local_addr().ok().and_then(|a| a.as_socket()) {
            bind = local;
        }
        sockets.push(s);
    }
    Ok(sockets)
}

/// Opens the raw GRE socket (needs CAP_NET_RAW).
pub fn gre_socket(bind: std::net::Ipv4Addr, rcvbuf: usize) -> Result<Socket, InputError> {
    let err = || sock_err("GRE raw", bind);
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_GRE))).map_err(err())?;
    set_rcvbuf(&s, rcvbuf);
    s.set_read_timeout(Some(POLL)).map_err(err())?;
    s.bind(&SocketAddr::from((bind, 0)).into()).map_err(err())?;
    Ok(s)
}

/// SO_RCVBUF is capped by net.core.rmem_max; with CAP_NET_ADMIN,
/// SO_RCVBUFFORCE is not. Best effort: a small buffer only costs drops,
/// which the kernel counts.
fn set_rcvbuf(s: &Socket, bytes: usize) {
    let _ = s.set_recv_buffer_size(bytes);
    if let Ok(val) = libc::c_int::try_from(bytes) {
        let _ = set_int_option(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, val);
    }
}

/// `setsockopt` of an int-valued option (those socket2 has no call for).
fn set_int_option(s: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a valid fd, a pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Asks the kernel to deliver coalesced runs of datagrams (see the module
/// comment). Best effort: without it (kernels before 5.0) every datagram
/// arrives on its own, which is correct, only slower.
fn enable_udp_gro(s: &Socket) {
    if let Err(e) = set_int_option(s, libc::SOL_UDP, libc::UDP_GRO, 1) {
        tracing::debug!(error = %e, "UDP_GRO not available");
    }
}

/// The segment size of a coalesced receive, from its control messages
/// (`None`: one datagram).
///
/// # Safety
/// `hdr.msg_control`/`msg_controllen` must describe the control buffer the
/// kernel filled for this message.
unsafe fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: the caller's contract; CMSG_* walk within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let mut size: libc::c_int = 0;
                std::ptr::copy_nonoverlapping(libc::CMSG_DATA(c), (&raw mut size).cast::<u8>(), 4);
                return usize::try_from(size).ok().filter(|s| *s > 0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// The datagrams of one receive: `segment` bytes each (the last may be
/// shorter) when the kernel coalesced them, else the whole buffer (an empty
/// datagram included: it is counted as malformed, not skipped).
pub fn datagrams(received: &[u8], segment: Option<usize>) -> impl Iterator<Item = &[u8]> {
    let empty = received.is_empty().then_some(received);
    received.chunks(segment.unwrap_or(received.len()).max(1)).chain(empty)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Vxlan,
    Gre,
}

/// Receives on `socket` until `stop` is set, handing every datagram to
/// `dispatch`.
pub fn spawn_receiver(socket: Socket, kind: Kind, dispatch: Dispatch, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let name = match kind {
        Kind::Vxlan => "vxlan-rx",
        Kind::Gre => "gre-rx",
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || receive_loop(&socket, kind, &dispatch, &stop))
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
}

/// One `mmsghdr` per iovec, each naming just that buffer: the batch
/// `recvmmsg`/`sendmmsg` take. The headers point into `iovs`, which must
/// outlive them and not move.
pub fn mmsg_headers(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

/// Datagrams one `recvmmsg` call may return.
pub const BATCH: usize = 32;

/// Control buffer per message: room for one `UDP_GRO` cmsg (an int).
type Control = [u64; 4];

fn receive_loop(socket: &Socket, kind: Kind, dispatch: &Dispatch, stop: &AtomicBool) {
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; RECV_BUF]).collect();
    let mut iovs: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut controls: Vec<Control> = vec![[0; 4]; BATCH];
    let mut hdrs = mmsg_headers(&mut iovs);
    for (h, c) in hdrs.iter_mut().zip(controls.iter_mut()) {
        h.msg_hdr.msg_control = c.as_mut_ptr().cast();
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
    while !stop.load(Ordering::Relaxed) {
        // The kernel shrinks msg_controllen to what it wrote: reset it.
        for h in hdrs.iter_mut() {
            h.msg_hdr.msg_controllen = std::mem::size_of::<Control>() as _;
        }
        // SAFETY: hdrs point at iovs (which point at bufs) and at controls;
        // none of them is moved or dropped during the call. MSG_WAITFORONE:
        // block (up to SO_RCVTIMEO) for the first datagram only.
        let n =
            unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), BATCH as u32, libc::MSG_WAITFORONE, std::ptr::null_mut()) };
        let Ok(n) = usize::try_from(n) else {
            let e = std::io::Error::last_os_error();
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
            ) {
                tracing::warn!(error = %e, "receive failed");
                std::thread::sleep(POLL);
            }
            continue;
        };
        let received = hdrs.iter().zip(&bufs).take(n).flat_map(|(h, b)| {
            // SAFETY: the kernel just filled this header's control buffer.
            let segment = unsafe { gro_segment_size(&h.msg_hdr) };
            datagrams(&b[..(h.msg_len as usize).min(b.len())], segment)
        });
        match kind {
            Kind::Vxlan => dispatch.accept_batch("vxlan", received.map(decode_vxlan)),
            Kind::Gre => dispatch.accept_batch("gre", received.map(decode_gre_ipv4)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::datagrams;

    #[test]
    fn a_coalesced_receive_is_cut_at_the_segment_size() {
        let run: Vec<u8> = (0..250u8).collect();
        let parts: Vec<&[u8]> = datagrams(&run, Some(100)).collect();
        assert_eq!(parts, [&run[..100], &run[100..200], &run[200..]]);
        assert_eq!(datagrams(&run, None).collect::<Vec<_>>(), [&run[..]]);
        assert_eq!(datagrams(&run, Some(250)).count(), 1);
        assert_eq!(datagrams(&[], None).collect::<Vec<_>>(), [&[] as &[u8]], "an empty datagram is still seen");
    }
}
