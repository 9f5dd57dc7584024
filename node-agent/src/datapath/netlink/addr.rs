//! Addresses of another network namespace, asked for by that namespace's
//! id (`IFA_TARGET_NETNSID`, Linux 4.20+): the agent learns which pod
//! interface holds an IP without entering the pod's namespace and without
//! the pod or the node having sent any traffic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attr;
use super::socket::Socket;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_TARGET_NETNSID: u16 = 10;
/// `struct ifaddrmsg`: family, prefixlen, flags, scope, index.
const IFADDRMSG_LEN: usize = 8;

/// One address and the interface (in its namespace) that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub ifindex: u32,
    pub ip: IpAddr,
}

/// Parses one RTM_NEWADDR message. For IPv4 the local address is the
/// interface's own (`IFA_ADDRESS` is the peer's on point-to-point links).
pub fn parse_addr(payload: &[u8]) -> Option<InterfaceAddr> {
    let header = payload.get(..IFADDRMSG_LEN)?;
    let family = i32::from(header[0]);
    let ifindex = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    let attrs = &payload[IFADDRMSG_LEN..];
    let ip = match family {
        libc::AF_INET => {
            let raw = attr::find(attrs, IFA_LOCAL).or_else(|| attr::find(attrs, IFA_ADDRESS))?;
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(raw.get(..4)?).ok()?))
        }
        libc::AF_INET6 => {
            let raw = attr::find(attrs, IFA_ADDRESS)?;
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(raw.get(..16)?).ok()?))
        }
        _ => return None,
    };
    Some(InterfaceAddr { ifindex, ip })
}

/// The addresses of namespace `netnsid` (an id of the socket's namespace).
pub fn addresses_in(socket: &Socket, netnsid: i32) -> io::Result<Vec<InterfaceAddr>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let mut body = vec![0u8; IFADDRMSG_LEN];
        body[0] = family as u8;
        attr::push(&mut body, IFA_TARGET_NETNSID, &netnsid.to_ne_bytes());
        let what = format!("RTM_GETADDR dump of namespace id {netnsid}");
        match socket.dump(libc::RTM_GETADDR, &body, &what) {
            Ok(messages) => out
                .extend(messages.iter().filter(|m| m.kind == libc::RTM_NEWADDR).filter_map(|m| parse_addr(&m.payload))),
            // A kernel without IPv6 has nothing to dump for it.
            Err(e) if family == libc::AF_INET6 && super::socket::errno_of(&e) == Some(libc::EAFNOSUPPORT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ifaddrmsg(family: i32, index: u32) -> Vec<u8> {
        let mut m = vec![family as u8, 24, 0, 0];
        m.extend_from_slice(&index.to_ne_bytes());
        m
    }

    #[test]
    fn ipv4_takes_the_local_address_and_ipv6_the_address() {
        let mut v4 = ifaddrmsg(libc::AF_INET, 2);
        attr::push(&mut v4, IFA_ADDRESS, &[10, 0, 0, 9]); // the peer of a ptp link
        attr::push(&mut v4, IFA_LOCAL, &[10, 244, 0, 5]);
        assert_eq!(parse_addr(&v4), Some(InterfaceAddr { ifindex: 2, ip: "10.244.0.5".parse().unwrap() }));
        let mut v6 = ifaddrmsg(libc::AF_INET6, 3);
        let ip: Ipv6Addr = "fd00::5".parse().unwrap();
        attr::push(&mut v6, IFA_ADDRESS, &ip.octets());
        assert_eq!(parse_addr(&v6), Some(InterfaceAddr { ifindex: 3, ip: IpAddr::V6(ip) }));
    }

    #[test]
    fn short_or_foreign_messages_are_skipped() {
        assert_eq!(parse_addr(&[2, 24, 0]), None);
        let mut short = ifaddrmsg(libc::AF_INET, 2);
        attr::push(&mut short, IFA_LOCAL, &[10, 0]);
        assert_eq!(parse_addr(&short), None);
        assert_eq!(parse_addr(&ifaddrmsg(libc::AF_PACKET, 2)), None);
    }
}
