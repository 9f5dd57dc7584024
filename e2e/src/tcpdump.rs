//! Reading a collector's `tcpdump -nne -l -A udp port 4789` output: one
//! record per captured VXLAN packet, with its VNI, the inner flow and the
//! printable payload. The kind runner decides pass/fail on these records.

use std::net::IpAddr;

/// A transport flow as tcpdump prints it: `10.0.0.1.40000 > 10.0.0.2.1234`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// One captured VXLAN packet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Copy {
    pub vni: Option<u32>,
    /// The outer (VXLAN/UDP) flow: its source is the sending node's address.
    pub outer: Option<Flow>,
    /// The encapsulated packet's flow (the second flow printed in the record).
    pub inner: Option<Flow>,
    /// TCP flags of the inner packet, e.g. `P.`.
    pub inner_flags: Option<String>,
    /// Length of the outer frame (`length N:` of the record's first line):
    /// with `packetLength` P the frame is at most 14+20+8+8+P bytes.
    pub outer_frame_len: Option<usize>,
    /// Everything tcpdump printed for the record (header lines and the ASCII
    /// dump), to look for payloads in.
    pub text: String,
}

/// `10.0.0.1.40000` or `fd00::1.40000` (a trailing `:` allowed).
fn endpoint(token: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = token.trim_end_matches(':').rsplit_once('.')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

/// Every `A > B` pair of endpoints on a line, in order.
fn flows_in(line: &str) -> Vec<Flow> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    tokens
        .windows(3)
        .filter(|w| w[1] == ">")
        .filter_map(|w| {
            let (src, sport) = endpoint(w[0])?;
            let (dst, dport) = endpoint(w[2])?;
            Some(Flow { src, sport, dst, dport })
        })
        .collect()
}

/// A record starts with a timestamp `HH:MM:SS.ffffff`.
fn starts_record(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 9 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b':' && b[5] == b':' && b[8] == b'.'
}

/// Parses the whole capture output into records.
pub fn parse(output: &str) -> Vec<Copy> {
    let mut records: Vec<Vec<&str>> = Vec::new();
    for line in output.lines() {
        // tcpdump's closing statistics are not part of the last packet.
        if line.contains(" packets captured")
            || line.contains(" packets received by filter")
            || line.contains(" packets dropped by kernel")
        {
            continue;
        }
        if starts_record(line) {
            records.push(vec![line]);
        } else if let Some(current) = records.last_mut() {
            current.push(line);
        }
    }
    records.into_iter().map(|lines| record(&lines)).collect()
}

fn record(lines: &[&str]) -> Copy {
    let text = lines.join("\n");
    let vni = text
        .split("vni ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    // The outer flow comes first; the encapsulated one is the next flow found.
    let flows: Vec<(usize, Flow)> =
        lines.iter().enumerate().flat_map(|(i, l)| flows_in(l).into_iter().map(move |f| (i, f))).collect();
    let outer = flows.first().map(|(_, f)| f.clone());
    let inner = flows.get(1).cloned();
    let inner_flags = inner.as_ref().and_then(|(i, _)| {
        let line = lines[*i];
        let start = line.find("Flags [")? + "Flags [".len();
        let end = start + line[start..].find(']')?;
        Some(line[start..end].to_string())
    });
    let outer_frame_len = lines.first().and_then(|first| {
        let rest = &first[first.find("length ")? + "length ".len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    });
    Copy { vni, outer, inner: inner.map(|(_, f)| f), inner_flags, outer_frame_len, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As tcpdump 4.99 prints a VXLAN copy with -nne -A (the inner packet on
    // its own line, then the ASCII dump of the outer packet).
    const CAPTURE: &str = "\
tcpdump: verbose output suppressed, use -v[v]... for full protocol decode
listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes
10:00:00.000001 02:42:ac:12:00:02 > 02:42:ac:12:00:03, ethertype IPv4 (0x0800), length 126: 172.18.0.2.51234 > 10.244.1.7.4789: VXLAN, flags [I] (0x08), vni 1
0a:58:0a:f4:01:05 > 0a:58:0a:f4:01:06, ethertype IPv4 (0x0800), length 72: 10.244.1.5.40000 > 10.244.1.6.1234: Flags [P.], seq 1:7, ack 1, win 502, length 6
E..p..@.@.....
.........hello
10:00:01.000001 02:42:ac:12:00:02 > 02:42:ac:12:00:03, ethertype IPv4 (0x0800), length 126: 172.18.0.2.51234 > 10.244.1.7.4789: VXLAN, flags [I] (0x08), vni 12
0a:58:0a:f4:01:05 > 0a:58:0a:f4:01:06, ethertype IPv4 (0x0800), length 72: 10.244.1.5.40000 > 10.244.1.6.1234: Flags [P.], seq 7:13, ack 1, win 502, length 6
.........12345
2 packets captured
";

    #[test]
    fn records_carry_vni_inner_flow_flags_and_payload() {
        let copies = parse(CAPTURE);
        assert_eq!(copies.len(), 2, "{copies:#?}");
        assert_eq!(copies[0].vni, Some(1));
        assert_eq!(copies[1].vni, Some(12));
        let inner = copies[0].inner.clone().expect("inner flow");
        assert_eq!(inner.src.to_string(), "10.244.1.5");
        assert_eq!((inner.sport, inner.dport), (40000, 1234));
        assert_eq!(copies[0].inner_flags.as_deref(), Some("P."));
        assert_eq!(copies[0].outer_frame_len, Some(126));
        let outer = copies[0].outer.clone().expect("outer flow");
        assert_eq!((outer.src.to_string().as_str(), outer.dport), ("172.18.0.2", 4789));
        assert!(copies[0].text.contains("hello"));
        assert!(copies[1].text.contains("12345"));
        assert!(!copies[1].text.contains("packets captured"));
    }

    #[test]
    fn lines_without_records_give_nothing() {
        assert!(parse("listening on eth0\n").is_empty());
    }

    #[test]
    fn ipv6_endpoints_parse() {
        let f = flows_in("fd00::1.40000 > fd00::2.1234: Flags [S]");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dport, 1234);
    }
}
