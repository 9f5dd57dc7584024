//! Pure parsing of an inner Ethernet frame down to its TCP segment, for the
//! replay. A copy may be cut (`packetLength`, path MTU): the segment says how
//! many payload bytes the IP header promised and how many the copy holds, so
//! that a cut request is never mistaken for a whole one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_VLAN: u16 = 0x8100;
const ETH_P_QINQ: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;

/// Why a frame is not a TCP segment the replay can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTcp {
    /// Not IPv4/IPv6, or not TCP, or an IPv6 extension header.
    Other,
    /// An IPv4 fragment: the agent never fragments, so this is foreign.
    Fragment,
    /// Headers cut before the TCP payload starts.
    Truncated,
}

/// One TCP segment of an inner frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: u8,
    /// The payload bytes the copy holds.
    pub payload: &'a [u8],
    /// Payload bytes the IP header announced; more than `payload.len()` when
    /// the copy was cut.
    pub declared_len: usize,
}

impl Segment<'_> {
    pub fn is_cut(&self) -> bool {
        self.payload.len() < self.declared_len
    }
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses an Ethernet frame (optionally VLAN tagged) into its TCP segment.
pub fn parse_tcp(frame: &[u8]) -> Result<Segment<'_>, NotTcp> {
    let mut at = 12;
    let mut ethertype = be16(frame, at).ok_or(NotTcp::Truncated)?;
    while ethertype == ETH_P_VLAN || ethertype == ETH_P_QINQ {
        at += 4;
        ethertype = be16(frame, at).ok_or(NotTcp::Truncated)?;
    }
    let ip = frame.get(at + 2..).ok_or(NotTcp::Truncated)?;
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(ip),
        ETH_P_IPV6 => parse_ipv6(ip),
        _ => Err(NotTcp::Other),
    }
}

fn parse_ipv4(ip: &[u8]) -> Result<Segment<'_>, NotTcp> {
    let first = *ip.first().ok_or(NotTcp::Truncated)?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 {
        return Err(NotTcp::Other);
    }
    let header = ip.get(..20).ok_or(NotTcp::Truncated)?;
    if header[9] != IPPROTO_TCP {
        return Err(NotTcp::Other);
    }
    let frag = u16::from_be_bytes([header[6], header[7]]);
    if frag & 0x3fff != 0 {
        return Err(NotTcp::Fragment);
    }
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let src = IpAddr::V4(Ipv4Addr::new(header[12], header[13], header[14], header[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(header[16], header[17], header[18], header[19]));
    let l4_len = total.checked_sub(ihl).ok_or(NotTcp::Other)?;
    parse_tcp_header(ip.get(ihl..).ok_or(NotTcp::Truncated)?, l4_len, src, dst)
}

fn parse_ipv6(ip: &[u8]) -> Result<Segment<'_>, NotTcp> {
    let header = ip.get(..40).ok_or(NotTcp::Truncated)?;
    if header[0] >> 4 != 6 {
        return Err(NotTcp::Other);
    }
    if header[6] != IPPROTO_TCP {
        return Err(NotTcp::Other);
    }
    let l4_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&header[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    parse_tcp_header(&ip[40..], l4_len, addr(8), addr(24))
}

fn parse_tcp_header(tcp: &[u8], l4_len: usize, src: IpAddr, dst: IpAddr) -> Result<Segment<'_>, NotTcp> {
    let header = tcp.get(..20).ok_or(NotTcp::Truncated)?;
    let data_off = usize::from(header[12] >> 4) * 4;
    if data_off < 20 || data_off > l4_len {
        return Err(NotTcp::Other);
    }
    let held = tcp.get(data_off..).ok_or(NotTcp::Truncated)?;
    let declared_len = l4_len - data_off;
    // Ethernet padding may follow a short segment: keep only what IP announced.
    let payload = &held[..held.len().min(declared_len)];
    Ok(Segment {
        src: SocketAddr::new(src, u16::from_be_bytes([header[0], header[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([header[2], header[3]])),
        seq: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        flags: header[13],
        payload,
        declared_len,
    })
}

/// Builds an Ethernet/IPv4/TCP frame with valid IP and TCP checksums, as a
/// host sends it (the kernel's GRO, which a benchmark's baseline relies on,
/// ignores frames with bad ones). For tests, benchmarks and demos.
pub fn build_ipv4_tcp(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        return Vec::new();
    };
    let total = u16::try_from(40 + payload.len()).unwrap_or(u16::MAX);
    let mut f = Vec::with_capacity(54 + payload.len());
    f.extend([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f.extend([0x45, 0]);
    f.extend(total.to_be_bytes());
    f.extend([0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
    f.extend(s.octets());
    f.extend(d.octets());
    f.extend(src.port().to_be_bytes());
    f.extend(dst.port().to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(ack.to_be_bytes());
    f.extend([0x50, flags | if ack != 0 { 0x10 } else { 0 }, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(payload);
    fill_checksums(&mut f);
    f
}

/// One's-complement sum of `data` folded to 16 bits and inverted, from `sum`.
fn internet_checksum(mut sum: u32, data: &[u8]) -> u16 {
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills the IPv4 header and TCP checksums of a frame `build_ipv4_tcp` laid
/// out (20-byte IP header at 14, TCP at 34).
fn fill_checksums(f: &mut [u8]) {
    let (ip, tcp) = (crate::decode::ETH_HLEN, crate::decode::ETH_HLEN + 20);
    let ip_sum = internet_checksum(0, &f[ip..tcp]);
    f[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // Pseudo-header: addresses, protocol, TCP length.
    let pseudo = f[ip + 12..ip + 20].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>()
        + u32::from(IPPROTO_TCP)
        + (f.len() - tcp) as u32;
    let tcp_sum = internet_checksum(pseudo, &f[tcp..]);
    f[tcp + 16..tcp + 18].copy_from_slice(&tcp_sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (SocketAddr::from(([10, 0, 0, 1], 40000)), SocketAddr::from(([10, 0, 0, 2], 80)))
    }

    #[test]
    fn parses_what_it_builds() {
        let (c, s) = addrs();
        let f = build_ipv4_tcp(c, s, 1000, 5, 0x08, b"GET / HTTP/1.1\r\n");
        let seg = parse_tcp(&f).expect("tcp");
        assert_eq!((seg.src, seg.dst, seg.seq), (c, s, 1000));
        assert_eq!(seg.payload, b"GET / HTTP/1.1\r\n");
        assert!(!seg.is_cut());
    }

    #[test]
    fn built_frames_carry_valid_checksums() {
        let (c, s) = addrs();
        for payload in [&b""[..], b"odd", b"GET / HTTP/1.1\r\n"] {
            let f = build_ipv4_tcp(c, s, 7, 9, 0x18, payload);
            assert_eq!(internet_checksum(0, &f[14..34]), 0, "IP header sums to all ones");
            let pseudo: u32 = f[26..34].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>()
                + 6
                + (f.len() - 34) as u32;
            assert_eq!(internet_checksum(pseudo, &f[34..]), 0, "TCP segment with pseudo-header sums to all ones");
        }
    }

    #[test]
    fn a_cut_copy_says_so() {
        let (c, s) = addrs();
        let f = build_ipv4_tcp(c, s, 1, 0, 0, &[b'x'; 500]);
        let seg = parse_tcp(&f[..96]).expect("headers are whole");
        assert_eq!((seg.payload.len(), seg.declared_len), (42, 500));
        assert!(seg.is_cut());
        assert_eq!(parse_tcp(&f[..40]), Err(NotTcp::Truncated));
    }

    #[test]
    fn padding_is_not_payload_and_vlan_is_skipped() {
        let (c, s) = addrs();
        let mut f = build_ipv4_tcp(c, s, 1, 0, TCP_SYN, b"");
        f.extend([0u8; 6]);
        assert_eq!(parse_tcp(&f).map(|s| s.payload.len()), Ok(0));
        let mut tagged = f[..12].to_vec();
        tagged.extend([0x81, 0x00, 0x00, 0x07]);
        tagged.extend(&f[12..]);
        assert_eq!(parse_tcp(&tagged).map(|s| s.dst), Ok(s));
    }

    #[test]
    fn fragments_and_udp_are_refused() {
        let (c, s) = addrs();
        let mut f = build_ipv4_tcp(c, s, 1, 0, 0, b"x");
        f[14 + 6] = 0x20; // MF
        assert_eq!(parse_tcp(&f), Err(NotTcp::Fragment));
        f[14 + 6] = 0x40;
        f[14 + 9] = 17;
        assert_eq!(parse_tcp(&f), Err(NotTcp::Other));
    }
}
