//! The packet a user describes on the command line, as the model's
//! [`PacketMeta`]: `--proto tcp --src 10.0.0.1:40000 --dst [fd00::1]:80`.

use std::net::{IpAddr, SocketAddr};

use podmirror_crds::model::{PacketMeta, ipproto};

use crate::error::PluginError;

/// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp` (any case) or a number 0..=255.
pub fn parse_protocol(text: &str) -> Result<u8, PluginError> {
    let number = match text.to_ascii_lowercase().as_str() {
        "tcp" => ipproto::TCP,
        "udp" => ipproto::UDP,
        "icmp" => ipproto::ICMP,
        "icmpv6" => ipproto::ICMPV6,
        "sctp" => ipproto::SCTP,
        other => other.parse::<u8>().map_err(|_| {
            PluginError::bad(
                "--proto",
                format!("{text:?} is not tcp, udp, icmp, icmpv6, sctp or a protocol number 0..=255"),
            )
        })?,
    };
    Ok(number)
}

/// `IP` or `IP:PORT`, IPv6 with a port as `[IP]:PORT`.
pub fn parse_endpoint(flag: &str, text: &str) -> Result<(IpAddr, Option<u16>), PluginError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    text.parse::<SocketAddr>()
        .map(|addr| (addr.ip(), Some(addr.port())))
        .map_err(|_| PluginError::bad(flag, format!("{text:?} is not IP or IP:PORT (IPv6 with a port: [IP]:PORT)")))
}

/// The packet of `explain`. Ports are kept only for protocols that carry
/// them; TCP/UDP/SCTP need both ports, as the datapath sees both.
pub fn packet(proto: &str, src: &str, dst: &str) -> Result<PacketMeta, PluginError> {
    let protocol = parse_protocol(proto)?;
    let (source, source_port) = parse_endpoint("--src", src)?;
    let (destination, destination_port) = parse_endpoint("--dst", dst)?;
    if source.is_ipv4() != destination.is_ipv4() {
        return Err(PluginError::bad("--dst", format!("{destination} is not of the same IP family as --src {source}")));
    }
    let ports = if ipproto::has_ports(protocol) {
        match (source_port, destination_port) {
            (Some(s), Some(d)) => Some((s, d)),
            _ => {
                return Err(PluginError::bad(
                    "--src/--dst",
                    "TCP, UDP and SCTP packets have ports: give both as IP:PORT",
                ));
            }
        }
    } else if source_port.is_some() || destination_port.is_some() {
        return Err(PluginError::bad(
            "--src/--dst",
            format!("protocol {proto} has no ports: give the addresses alone"),
        ));
    } else {
        None
    };
    Ok(PacketMeta { source, destination, protocol, ports })
}

/// A protocol number as a person reads it.
pub fn protocol_name(number: u8) -> String {
    match number {
        ipproto::TCP => "TCP".into(),
        ipproto::UDP => "UDP".into(),
        ipproto::ICMP => "ICMP".into(),
        ipproto::ICMPV6 => "ICMPv6".into(),
        ipproto::SCTP => "SCTP".into(),
        other => format!("protocol {other}"),
    }
}

/// `192.168.0.161:40000`, `[fd00::1]:80`, or the bare address.
pub fn endpoint_text(ip: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(port) => SocketAddr::new(ip, port).to_string(),
        None => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_needs_both_ports_and_icmp_none() {
        let p = packet("TCP", "192.168.0.161:40000", "192.168.0.230:1234").expect("valid");
        assert_eq!(p.protocol, ipproto::TCP);
        assert_eq!(p.ports, Some((40000, 1234)));
        let v6 = packet("tcp", "[fd00::1]:5", "[fd00::2]:80").expect("v6");
        assert_eq!(v6.ports, Some((5, 80)));
        let ping = packet("icmp", "10.0.0.1", "10.0.0.2").expect("icmp");
        assert_eq!(ping.ports, None);
        let gre = packet("47", "10.0.0.1", "10.0.0.2").expect("number");
        assert_eq!(gre.protocol, 47);

        let err = packet("tcp", "10.0.0.1", "10.0.0.2:80").expect_err("missing port");
        assert!(err.to_string().starts_with("--src/--dst:"), "{err}");
        let err = packet("icmp", "10.0.0.1:1", "10.0.0.2").expect_err("ports on icmp");
        assert!(err.to_string().contains("has no ports"), "{err}");
        let err = packet("tcp", "10.0.0.1:1", "[fd00::2]:80").expect_err("families");
        assert!(err.to_string().starts_with("--dst:"), "{err}");
        let err = packet("tcpp", "10.0.0.1:1", "10.0.0.2:2").expect_err("proto");
        assert!(err.to_string().starts_with("--proto:"), "{err}");
        let err = packet("tcp", "10.0.0.300:1", "10.0.0.2:2").expect_err("address");
        assert!(err.to_string().starts_with("--src:"), "{err}");
    }
}
