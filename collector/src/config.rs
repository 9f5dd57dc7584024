//! Command line of `podmirror-collector` (clap). Tests build the same
//! [`Args`] with `Args::parse_from`, so flags and defaults exist once.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--{flag}: {value:?} is not valid: {reason}")]
    Invalid { flag: &'static str, value: String, reason: &'static str },
}

fn invalid(flag: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { flag, value: value.to_string(), reason }
}

/// Receives the copies podmirror sends (VXLAN over UDP, GRE), and records
/// them as rotating pcap files, streams them live as pcap on `GET /stream`,
/// and replays the mirrored HTTP/1.x requests to a test server.
#[derive(Clone, Debug, Parser)]
#[command(name = "podmirror-collector", version, about, long_about = None)]
pub struct Args {
    /// UDP address the VXLAN copies arrive on (the session's targetPort).
    #[arg(long, env = "PODMIRROR_VXLAN_LISTEN", default_value = "0.0.0.0:4789")]
    pub vxlan_listen: SocketAddr,
    /// Receiving threads, each with its own SO_REUSEPORT socket. Default:
    /// one per CPU this process may use (its affinity and cgroup CPU quota),
    /// at most 4: more threads than CPUs only take turns.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub vxlan_workers: Option<u16>,
    /// Also receive GRE copies (IP protocol 47, key = VNI) on a raw IPv4
    /// socket; needs CAP_NET_RAW.
    #[arg(long)]
    pub gre: bool,
    /// IPv4 address the GRE raw socket binds to.
    #[arg(long, default_value = "0.0.0.0")]
    pub gre_bind: Ipv4Addr,
    /// Accept only these VNIs (comma separated); others are counted as
    /// malformed with reason vni_not_allowed. Default: every VNI.
    #[arg(long, value_delimiter = ',', value_parser = parse_vni)]
    pub vni_allow: Vec<u32>,
    /// Also receive VXLAN copies through AF_XDP on this interface (the one
    /// they arrive on, e.g. eth0 in a pod): an XDP program hands them to
    /// the collector without a trip through the kernel's IP and UDP layers.
    /// Copies larger than 1792 bytes still arrive on the UDP sockets. Needs
    /// CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK.
    #[arg(long, env = "PODMIRROR_XDP_IFACE")]
    pub xdp_iface: Option<String>,
    /// Where the XDP program runs: auto (the driver if it can, else
    /// generic), native or generic.
    #[arg(long, value_enum, default_value_t = crate::xdp::XdpMode::Auto)]
    pub xdp_mode: crate::xdp::XdpMode,
    /// Also receive VXLAN copies through a BPF ring buffer on this
    /// interface: a TC program copies each one into memory the collector
    /// reads in batches and writes the files from. Copies larger than 1792
    /// bytes still arrive on the UDP sockets; a copy that finds the ring
    /// full is dropped and counted. Needs CAP_NET_ADMIN and CAP_BPF, Linux
    /// 6.6 or later.
    #[arg(long, env = "PODMIRROR_RING_IFACE", conflicts_with = "xdp_iface")]
    pub ring_iface: Option<String>,
    /// Size of the ring buffer of --ring-iface in bytes: a power of two
    /// from 1 page (4096) to 1 GiB.
    #[arg(long, default_value_t = 64 << 20, value_parser = parse_ring_bytes)]
    pub ring_bytes: u32,
    /// Socket receive buffer (SO_RCVBUF) of each receiving socket.
    #[arg(long, default_value_t = 8 << 20)]
    pub recv_buffer_bytes: usize,

    /// Address of the HTTP server: /stream, /metrics, /healthz, /readyz.
    #[arg(long, env = "PODMIRROR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Copies a /stream client may lag behind before it skips some (counted
    /// as dropped by the stream sink).
    #[arg(long, default_value_t = 4096)]
    pub stream_queue: usize,

    /// Write rotating pcap files here, one series per VNI. Off when unset.
    #[arg(long)]
    pub files_dir: Option<PathBuf>,
    /// Rotate a file when it reaches this size.
    #[arg(long, default_value_t = 64 << 20)]
    pub files_max_file_bytes: u64,
    /// Rotate a file when it is this old (seconds).
    #[arg(long, default_value_t = 300)]
    pub files_max_age_secs: u64,
    /// Keep at most this many files (oldest removed first).
    #[arg(long, default_value_t = 32)]
    pub files_keep: usize,
    /// Keep at most this many bytes of files (oldest removed first).
    #[arg(long, default_value_t = 1 << 30)]
    pub files_keep_bytes: u64,
    /// Copies queued for the file writer; when full, copies are dropped and
    /// counted (receiving never waits for the disk).
    #[arg(long, default_value_t = 65536)]
    pub files_queue: usize,

    /// Replay the mirrored HTTP/1.x requests to this base URL
    /// (http://host:port[/prefix]). Off when unset.
    #[arg(long, value_parser = ReplayTarget::parse)]
    pub replay_to: Option<ReplayTarget>,
    /// Inner server ports that carry HTTP (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "80,8080")]
    pub replay_ports: Vec<u16>,
    /// Percentage of requests to replay (0-100), chosen per request by a hash.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub replay_sample_percent: u8,
    /// Send the Host header of the replay target instead of the original.
    #[arg(long)]
    pub replay_rewrite_host: bool,
    /// Requests in flight to the replay target at most.
    #[arg(long, default_value_t = 32)]
    pub replay_concurrency: usize,
    /// Timeout of one replayed request (connect, send and response), ms.
    #[arg(long, default_value_t = 5000)]
    pub replay_timeout_ms: u64,
    /// Largest request (head and body) replayed; larger ones are counted.
    #[arg(long, default_value_t = 16 << 20)]
    pub replay_max_request_bytes: usize,
    /// Bytes all flows may buffer together; beyond, the idlest are evicted.
    #[arg(long, default_value_t = 256 << 20)]
    pub replay_max_memory_bytes: usize,
    /// Flows tracked at most; beyond, the idlest are evicted.
    #[arg(long, default_value_t = 65536)]
    pub replay_max_flows: usize,
    /// A flow without a segment for this long is evicted (seconds).
    #[arg(long, default_value_t = 60)]
    pub replay_flow_idle_secs: u64,
    /// Copies queued for the replay; when full, copies are dropped and
    /// counted (and the flows they belong to lose a segment).
    #[arg(long, default_value_t = 65536)]
    pub replay_queue: usize,
}

impl Args {
    /// `--vxlan-workers`, or one per usable CPU (at most 4).
    pub fn vxlan_workers(&self) -> u16 {
        self.vxlan_workers.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            u16::try_from(cpus.min(4)).unwrap_or(1)
        })
    }

    pub fn replay_timeout(&self) -> Duration {
        Duration::from_millis(self.replay_timeout_ms)
    }
    pub fn files_max_age(&self) -> Duration {
        Duration::from_secs(self.files_max_age_secs)
    }
    pub fn flow_idle(&self) -> Duration {
        Duration::from_secs(self.replay_flow_idle_secs)
    }
}

fn parse_vni(s: &str) -> Result<u32, ConfigError> {
    let vni: u32 = s.trim().parse().map_err(|_| invalid("vni-allow", s, "not a number"))?;
    if vni > MAX_VNI {
        return Err(invalid("vni-allow", s, "a VNI has 24 bits (0..=16777215)"));
    }
    Ok(vni)
}

fn parse_ring_bytes(s: &str) -> Result<u32, ConfigError> {
    let bytes: u32 = s.trim().parse().map_err(|_| invalid("ring-bytes", s, "not a number"))?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(invalid("ring-bytes", s, "a power of two from 4096 to 1073741824"));
    }
    Ok(bytes)
}

/// Where replayed requests go: `http://host[:port][/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayTarget {
    pub host: String,
    pub port: u16,
    /// Prepended to every request target; empty or starting with `/`.
    pub prefix: String,
}

impl ReplayTarget {
    pub fn parse(s: &str) -> Result<ReplayTarget, ConfigError> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| invalid("replay-to", s, "must start with http:// (the replay speaks plain HTTP/1.1)"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if prefix.contains(['?', '#']) {
            return Err(invalid("replay-to", s, "a query or fragment has no meaning in a base URL"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => {
                (h, p.parse::<u16>().map_err(|_| invalid("replay-to", s, "the port is not a number 1..=65535"))?)
            }
            _ => (authority, 80),
        };
        if host.is_empty() || port == 0 {
            return Err(invalid("replay-to", s, "needs a host and a non-zero port"));
        }
        Ok(ReplayTarget { host: host.to_string(), port, prefix: prefix.to_string() })
    }

    /// The Host header value naming this target.
    pub fn authority(&self) -> String {
        if self.port == 80 { self.host.clone() } else { format!("{}:{}", self.host, self.port) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = Args::parse_from(["podmirror-collector"]);
        assert_eq!(a.vxlan_listen, SocketAddr::from(([0, 0, 0, 0], 4789)));
        assert_eq!(a.http_addr, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(a.replay_ports, [80, 8080]);
        assert!(a.replay_to.is_none() && a.files_dir.is_none() && a.vni_allow.is_empty());
    }

    #[test]
    fn replay_target_parses_and_refuses_naming_the_flag() {
        let t = ReplayTarget::parse("http://test.ns.svc:8081/base/").expect("valid");
        assert_eq!((t.host.as_str(), t.port, t.prefix.as_str()), ("test.ns.svc", 8081, "/base"));
        assert_eq!(ReplayTarget::parse("http://[::1]:9").map(|t| t.host), Ok("[::1]".into()));
        assert_eq!(ReplayTarget::parse("http://h").map(|t| t.authority()), Ok("h".into()));
        let e = ReplayTarget::parse("https://h").expect_err("tls refused");
        assert!(e.to_string().starts_with("--replay-to: \"https://h\""), "{e}");
        assert!(ReplayTarget::parse("http://h:0").is_err());
        assert!(ReplayTarget::parse("http://h:x").is_err());
    }

    #[test]
    fn ring_bytes_must_be_a_power_of_two_in_range() {
        assert_eq!(Args::parse_from(["c"]).ring_bytes, 64 << 20);
        assert_eq!(Args::parse_from(["c", "--ring-bytes", "4096"]).ring_bytes, 4096);
        for bad in ["3000", "2048", "2147483648", "x"] {
            let e = Args::try_parse_from(["c", "--ring-bytes", bad]).expect_err(bad);
            assert!(e.to_string().contains("--ring-bytes"), "{e}");
        }
        let e = Args::try_parse_from(["c", "--ring-iface", "eth0", "--xdp-iface", "eth0"]).expect_err("both inputs");
        assert!(e.to_string().contains("--xdp-iface"), "{e}");
    }

    #[test]
    fn vni_allow_list_is_checked() {
        let a = Args::parse_from(["c", "--vni-allow", "1,7"]);
        assert_eq!(a.vni_allow, [1, 7]);
        let e = Args::try_parse_from(["c", "--vni-allow", "16777216"]).expect_err("too big");
        assert!(e.to_string().contains("24 bits"), "{e}");
    }
}
