//! The few rtnetlink and interface calls the datapath needs, without an
//! external binary: create the per-node copy device (a veth pair, up),
//! delete it, and map ifindex <-> name in the caller's network namespace.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::size_of;

use super::error::DatapathError;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;

/// The name of interface `ifindex` in this thread's network namespace.
pub fn ifname(ifindex: u32) -> Result<String, DatapathError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(DatapathError::Interface { ifindex, reason: format!("no such interface: {}", io::Error::last_os_error()) });
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The ifindex of `name`, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Send one request and wait for its ACK (or error).
fn request(msg_type: u16, flags: u16, ifi_index: i32, ifi_flags: u32, attrs: &[u8], what: &str) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);

    let mut msg = Vec::with_capacity(64 + attrs.len());
    let total = 16 + size_of::<libc::ifinfomsg>() + attrs.len();
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
    // struct ifinfomsg { family u8, pad u8, type u16, index i32, flags u32, change u32 }
    msg.push(libc::AF_UNSPEC as u8);
    msg.push(0);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&ifi_index.to_ne_bytes());
    msg.extend_from_slice(&ifi_flags.to_ne_bytes());
    msg.extend_from_slice(&(if ifi_flags != 0 { ifi_flags } else { 0u32 }).to_ne_bytes());
    msg.extend_from_slice(attrs);

    // SAFETY: msg is a valid buffer of msg.len() bytes.
    let sent = unsafe { libc::send(raw, msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if kind == libc::NLMSG_ERROR as u16 && off + 20 <= n {
                let code = i32::from_ne_bytes([buf[off + 16], buf[off + 17], buf[off + 18], buf[off + 19]]);
                return if code == 0 {
                    Ok(())
                } else {
                    let e = io::Error::from_raw_os_error(-code);
                    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
                };
            }
            if len < 16 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// Create (or find) the veth pair `name` <-> `peer`, set both up, return the
/// ifindex of `name`. (A veth rather than a `dummy`: every node that runs
/// pods has veth, not every kernel has the dummy driver.)
pub fn ensure_veth_pair(name: &str, peer: &str) -> Result<u32, DatapathError> {
    let err = |reason: String| DatapathError::Device { name: name.to_string(), reason };
    for n in [name, peer] {
        if n.is_empty() || n.len() >= libc::IF_NAMESIZE {
            return Err(err(format!("device name {n:?} must be 1..{} bytes", libc::IF_NAMESIZE - 1)));
        }
    }
    if ifindex(name).is_none() {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, IFLA_IFNAME, &nul_terminated(name));
        // VETH_INFO_PEER carries a struct ifinfomsg, then the peer's attributes.
        let mut peer_msg = vec![0u8; size_of::<libc::ifinfomsg>()];
        push_attr(&mut peer_msg, IFLA_IFNAME, &nul_terminated(peer));
        let mut data = Vec::new();
        push_attr(&mut data, VETH_INFO_PEER | NLA_F_NESTED, &peer_msg);
        let mut info = Vec::new();
        push_attr(&mut info, IFLA_INFO_KIND, &nul_terminated("veth"));
        push_attr(&mut info, IFLA_INFO_DATA | NLA_F_NESTED, &data);
        push_attr(&mut attrs, IFLA_LINKINFO | NLA_F_NESTED, &info);
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        match request(libc::RTM_NEWLINK, flags, 0, libc::IFF_UP as u32, &attrs, "RTM_NEWLINK") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(err(format!("cannot create: {e}"))),
        }
    }
    let idx = ifindex(name).ok_or_else(|| err("vanished after creation".into()))?;
    let peer_idx = ifindex(peer).ok_or_else(|| err(format!("peer {peer} missing")))?;
    for i in [idx, peer_idx] {
        request(libc::RTM_NEWLINK, 0, i as i32, libc::IFF_UP as u32, &[], "set up").map_err(|e| err(format!("cannot set up: {e}")))?;
    }
    // The copy program routes with an ingress-perspective bpf_fib_lookup()
    // from this device, which needs forwarding on it; nothing is ever
    // forwarded from it otherwise (its egress program drops what is not a
    // copy). The peer must not answer or send anything.
    for (path, value) in [
        (format!("/proc/sys/net/ipv4/conf/{name}/forwarding"), "1"),
        (format!("/proc/sys/net/ipv6/conf/{name}/forwarding"), "1"),
        (format!("/proc/sys/net/ipv6/conf/{peer}/disable_ipv6"), "1"),
    ] {
        std::fs::write(&path, value).map_err(|e| err(format!("cannot write {path}: {e}")))?;
    }
    Ok(idx)
}

/// Delete link `name` if it exists.
pub fn delete_link(name: &str) -> Result<(), DatapathError> {
    let Some(idx) = ifindex(name) else { return Ok(()) };
    match request(libc::RTM_DELLINK, 0, idx as i32, 0, &[], "RTM_DELLINK") {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(DatapathError::Device { name: name.to_string(), reason: format!("cannot delete: {e}") }),
    }
}
