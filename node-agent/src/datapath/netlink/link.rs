//! Links: name <-> index, the agent's copy device (a veth pair) and the
//! kernel settings it needs, set over netlink rather than through
//! `/proc/sys`, which is read-only in every unprivileged container.

use std::ffi::{CStr, CString};
use std::io;

use super::attr;
use super::socket::{Socket, errno_of};
use crate::datapath::error::DatapathError;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_INET_CONF: u16 = 1;
const IPV4_DEVCONF_FORWARDING: u16 = 1;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
pub(super) const IFINFOMSG_LEN: usize = 16;

/// The name of interface `ifindex` in this thread's network namespace.
pub fn ifname(ifindex: u32) -> Result<String, DatapathError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(DatapathError::Interface {
            ifindex,
            reason: format!("no such interface: {}", io::Error::last_os_error()),
        });
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The ifindex of `name` in this thread's network namespace, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// A `struct ifinfomsg` for `index` with `flags` (and the same bits in `change`).
fn ifinfomsg(index: i32, flags: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(IFINFOMSG_LEN);
    m.push(libc::AF_UNSPEC as u8);
    m.push(0);
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m
}

/// Create (or find) the veth pair `name` <-> `peer`, configure both and set
/// them up; returns the ifindex of `name`. (A veth rather than a `dummy`:
/// every node that runs pods has veth, not every kernel has dummy.)
///
/// The copy program routes with a `bpf_fib_lookup()` from `name`, which
/// needs IPv4 forwarding on that device: it is set with `IFLA_INET_CONF`
/// (no sysctl write). Neither end gets an IPv6 link-local address, so the
/// pair never sends anything of its own.
pub fn ensure_veth_pair(name: &str, peer: &str) -> Result<u32, DatapathError> {
    let err = |reason: String| DatapathError::Device { name: name.to_string(), reason };
    for n in [name, peer] {
        if n.is_empty() || n.len() >= libc::IF_NAMESIZE {
            return Err(err(format!("device name {n:?} must be 1..{} bytes", libc::IF_NAMESIZE - 1)));
        }
    }
    let socket = Socket::open().map_err(|e| err(format!("cannot open a netlink socket: {e}")))?;
    if ifindex(name).is_none() {
        create_veth(&socket, name, peer).map_err(|e| err(format!("cannot create: {e}")))?;
    }
    let idx = ifindex(name).ok_or_else(|| err("vanished after creation".into()))?;
    let peer_idx = ifindex(peer).ok_or_else(|| err(format!("peer {peer} missing")))?;
    for i in [idx, peer_idx] {
        no_ipv6_link_local(&socket, i).map_err(|e| err(format!("cannot turn off IPv6 address generation: {e}")))?;
    }
    set_ipv4_forwarding(&socket, idx).map_err(|e| err(format!("cannot turn on IPv4 forwarding: {e}")))?;
    warn_without_ipv6_forwarding(name);
    for i in [idx, peer_idx] {
        let body = ifinfomsg(i as i32, libc::IFF_UP as u32);
        socket.request(libc::RTM_NEWLINK, 0, &body, "set up").map_err(|e| err(format!("cannot set up: {e}")))?;
    }
    Ok(idx)
}

fn create_veth(socket: &Socket, name: &str, peer: &str) -> io::Result<()> {
    let mut body = ifinfomsg(0, 0);
    attr::push(&mut body, IFLA_IFNAME, &attr::c_string(name));
    attr::push_nested(&mut body, IFLA_LINKINFO, |info| {
        attr::push(info, IFLA_INFO_KIND, &attr::c_string("veth"));
        attr::push_nested(info, IFLA_INFO_DATA, |data| {
            // VETH_INFO_PEER carries a struct ifinfomsg, then the peer's attributes.
            let mut peer_msg = ifinfomsg(0, 0);
            attr::push(&mut peer_msg, IFLA_IFNAME, &attr::c_string(peer));
            attr::push(data, VETH_INFO_PEER | attr::NLA_F_NESTED, &peer_msg);
        });
    });
    let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    match socket.request(libc::RTM_NEWLINK, flags, &body, "RTM_NEWLINK") {
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// `IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { FORWARDING = 1 } } }` on `index`.
fn set_ipv4_forwarding(socket: &Socket, index: u32) -> io::Result<()> {
    let mut body = ifinfomsg(index as i32, 0);
    attr::push_nested(&mut body, IFLA_AF_SPEC, |spec| {
        attr::push_nested(spec, libc::AF_INET as u16, |inet| {
            attr::push_nested(inet, IFLA_INET_CONF, |conf| {
                attr::push(conf, IPV4_DEVCONF_FORWARDING, &1u32.to_ne_bytes())
            })
        })
    });
    socket.request(libc::RTM_NEWLINK, 0, &body, "IFLA_INET_CONF forwarding")
}

/// IPv6 forwarding cannot be set over netlink; a device inherits it from
/// `net.ipv6.conf.all.forwarding`, which IPv6 and dual-stack clusters turn
/// on. Without it, copies to IPv6 targets fail (counted as route failures):
/// say so once, at start.
fn warn_without_ipv6_forwarding(name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/forwarding");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            device = name,
            "IPv6 forwarding is off on this node (net.ipv6.conf.all.forwarding=0): copies to IPv6 targets will fail"
        );
    }
}

/// No IPv6 link-local address on `index` (a node without IPv6 is fine).
fn no_ipv6_link_local(socket: &Socket, index: u32) -> io::Result<()> {
    let mut body = ifinfomsg(index as i32, 0);
    attr::push_nested(&mut body, IFLA_AF_SPEC, |spec| {
        attr::push_nested(spec, libc::AF_INET6 as u16, |inet6| {
            attr::push(inet6, IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE])
        })
    });
    match socket.request(libc::RTM_NEWLINK, 0, &body, "IFLA_INET6_ADDR_GEN_MODE") {
        Err(e) if matches!(errno_of(&e), Some(libc::EAFNOSUPPORT) | Some(libc::EOPNOTSUPP)) => Ok(()),
        other => other,
    }
}

/// Delete link `name` if it exists.
pub fn delete_link(name: &str) -> Result<(), DatapathError> {
    let Some(idx) = ifindex(name) else { return Ok(()) };
    let fail = |e: io::Error| DatapathError::Device { name: name.to_string(), reason: format!("cannot delete: {e}") };
    let socket = Socket::open().map_err(fail)?;
    match socket.request(libc::RTM_DELLINK, 0, &ifinfomsg(idx as i32, 0), "RTM_DELLINK") {
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
        other => other.map_err(fail),
    }
}

/// A link of this namespace whose other end lives in another network
/// namespace (a veth or netkit pair, as every CNI gives a pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeeredLink {
    pub ifindex: u32,
    pub name: String,
    /// The kind (`veth`, `netkit`, ...), when the kernel reports one.
    pub kind: Option<String>,
    /// The peer namespace, as this namespace's id for it.
    pub peer_netnsid: i32,
    /// The peer's ifindex inside that namespace.
    pub peer_ifindex: u32,
}

/// Parses one RTM_NEWLINK message of a dump: `None` unless the link has a
/// peer in another namespace.
pub fn parse_peered_link(payload: &[u8]) -> Option<PeeredLink> {
    let header = payload.get(..IFINFOMSG_LEN)?;
    let ifindex = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    let attrs = &payload[IFINFOMSG_LEN..];
    let peer_netnsid = attr::u32_of(attr::find(attrs, IFLA_LINK_NETNSID)?)? as i32;
    let peer_ifindex = attr::u32_of(attr::find(attrs, IFLA_LINK)?)?;
    if peer_netnsid < 0 || peer_ifindex == 0 {
        return None;
    }
    let name = attr::str_of(attr::find(attrs, IFLA_IFNAME)?)?.to_string();
    let kind = attr::find(attrs, IFLA_LINKINFO)
        .and_then(|info| attr::find(info, IFLA_INFO_KIND))
        .and_then(attr::str_of)
        .map(str::to_string);
    Some(PeeredLink { ifindex, name, kind, peer_netnsid, peer_ifindex })
}

/// Every link of this namespace that has its peer in another namespace.
pub fn peered_links(socket: &Socket) -> io::Result<Vec<PeeredLink>> {
    let messages = socket.dump(libc::RTM_GETLINK, &ifinfomsg(0, 0), "RTM_GETLINK dump")?;
    Ok(messages.iter().filter(|m| m.kind == libc::RTM_NEWLINK).filter_map(|m| parse_peered_link(&m.payload)).collect())
}
