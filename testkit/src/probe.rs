//! Reading a running system from a test: the kernel's UDP counters of a
//! namespace (`/proc/net/snmp`) and a plain HTTP GET (a `/metrics` scrape),
//! here or inside a namespace. Failures read as empty: the callers poll
//! until what they wait for shows up, and say what they saw.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{Netns, Result};

/// The `Udp:` counters of a `/proc/net/snmp` text by name
/// (`InDatagrams`, `NoPorts`, `RcvbufErrors`, ...).
pub fn udp_counters(snmp: &str) -> BTreeMap<String, u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap_or_default(), udp.next().unwrap_or_default());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

/// One UDP counter of this process's namespace (0 if unreadable).
pub fn udp_counter(name: &str) -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    udp_counters(&snmp).get(name).copied().unwrap_or(0)
}

/// `GET <path>` over HTTP/1.0 from this namespace: the whole response
/// (headers and body), empty when nothing answers within a few seconds.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes());
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

impl Netns {
    /// The `Udp:` counters of this namespace.
    pub fn udp_counters(&self) -> Result<BTreeMap<String, u64>> {
        Ok(udp_counters(&self.sh("cat /proc/net/snmp")?))
    }

    /// [`http_get`] from inside this namespace.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> Result<String> {
        self.run(|| http_get(addr, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_counters_pair_the_header_line_with_the_values_line() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts RcvbufErrors\nUdp: 12 3 0\nUdpLite: InDatagrams\nUdpLite: 9\n";
        let c = udp_counters(snmp);
        assert_eq!(c.get("InDatagrams"), Some(&12));
        assert_eq!(c.get("NoPorts"), Some(&3));
        assert_eq!(c.len(), 3, "UdpLite is another table");
        assert!(udp_counters("").is_empty());
    }
}
