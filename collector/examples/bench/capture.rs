//! The capture comparison: `tcpdump -w` on the kernel VXLAN device against
//! `podmirror-collector --files-dir`, both as separate processes started
//! fresh for every trial, both writing to tmpfs, both counted the same way:
//! the records in the pcap files they wrote, against the datagrams the
//! sender got accepted by the kernel.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sender::{Pool, SenderConfig, Sent, send};

/// One of the two receivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Receiver {
    Tcpdump,
    Collector,
    /// The collector with its AF_XDP input (`--xdp-iface`).
    CollectorXdp,
    /// The collector with its ring input (`--ring-iface`).
    CollectorRing,
}

impl Receiver {
    pub fn name(self) -> &'static str {
        match self {
            Receiver::Tcpdump => "tcpdump -w on a kernel vxlan device",
            Receiver::Collector => "podmirror-collector --files-dir",
            Receiver::CollectorXdp => "podmirror-collector --files-dir --xdp-iface",
            Receiver::CollectorRing => "podmirror-collector --files-dir --ring-iface",
        }
    }

    pub fn is_collector(self) -> bool {
        self != Receiver::Tcpdump
    }
}

/// Where and how the receivers run.
#[derive(Clone, Debug)]
pub struct Setup {
    pub dev: String,
    pub dir: PathBuf,
    pub collector_bin: PathBuf,
    /// `taskset -c` list for both receivers ("" = not pinned).
    pub receiver_cpus: String,
    pub sender: SenderConfig,
    /// The address copies are sent to (both receivers listen on it).
    pub to: std::net::IpAddr,
    /// TCP payload of a full-sized copy (see `count_records`).
    pub mss: usize,
    /// Extra flags for the collector.
    pub collector_args: Vec<String>,
    /// The AF_XDP variant's flags (`--xdp-iface IF --xdp-mode M`).
    pub xdp_args: Vec<String>,
    /// The ring variant's flags (`--ring-iface IF`).
    pub ring_args: Vec<String>,
}

impl Setup {
    /// The flags that make `r` the variant it is.
    fn variant_args(&self, r: Receiver) -> &[String] {
        match r {
            Receiver::CollectorXdp => &self.xdp_args,
            Receiver::CollectorRing => &self.ring_args,
            Receiver::Tcpdump | Receiver::Collector => &[],
        }
    }
}

const TCPDUMP_PORT: u16 = 4789;
const COLLECTOR_PORT: u16 = 4790;

/// The UDP port copies for `r` go to.
pub(crate) fn port_of(r: Receiver) -> u16 {
    if r == Receiver::Tcpdump { TCPDUMP_PORT } else { COLLECTOR_PORT }
}

/// One trial: the copies sent and the records found in the files.
#[derive(Clone, Copy, Debug)]
pub struct Trial {
    pub sent: Sent,
    pub kept: u64,
    /// Drops the kernel reports on the receiver's path (see `trial`).
    pub reported: u64,
}

impl Trial {
    pub fn lost(&self) -> u64 {
        self.sent.datagrams.saturating_sub(self.kept)
    }
}

pub(crate) fn command(setup: &Setup, program: &Path) -> Command {
    if setup.receiver_cpus.is_empty() {
        Command::new(program)
    } else {
        let mut c = Command::new("taskset");
        c.args(["-c", &setup.receiver_cpus]).arg(program);
        c
    }
}

/// A started receiver: the process, the thread collecting the rest of its
/// output, and (the collector) its HTTP address.
pub(crate) struct Started {
    pub child: Child,
    pub rest: std::thread::JoinHandle<String>,
    pub http: Option<SocketAddr>,
}

/// Starts the receiver writing into `out` (nowhere: tcpdump to /dev/null,
/// the collector without a file sink) and returns once it receives, with
/// a thread that collects the rest of its output.
pub(crate) fn start(setup: &Setup, r: Receiver, out: Option<&Path>) -> Started {
    let mut child = match r {
        Receiver::Tcpdump => command(setup, Path::new("tcpdump"))
            // `tcp`: the benchmark's frames only, not the device's own IPv6
            // chatter. -B: the same 8 MiB the collector's sockets get.
            .args(["-i", &setup.dev, "-n", "-B", "8192", "-w"])
            .arg(out.map_or_else(|| PathBuf::from("/dev/null"), |o| o.join("tcpdump.pcap")))
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump runs"),
        _ => command(setup, &setup.collector_bin)
            .args([
                "--vxlan-listen",
                &SocketAddr::new(setup.to, COLLECTOR_PORT).to_string(),
                "--http-addr",
                "127.0.0.1:0",
            ])
            .args(out.iter().flat_map(|o| {
                [
                    "--files-dir".into(),
                    o.display().to_string(),
                    "--files-keep-bytes".into(),
                    (64u64 << 30).to_string(),
                    "--files-keep".into(),
                    "100000".into(),
                ]
            }))
            .args(&setup.collector_args)
            .args(setup.variant_args(r))
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("podmirror-collector runs"),
    };
    // Both say when they receive: tcpdump "listening on", the collector
    // "collector started".
    let (pipe, ready): (Box<dyn Read + Send>, &str) = match r {
        Receiver::Tcpdump => (Box::new(child.stderr.take().expect("stderr")), "listening on"),
        _ => (Box::new(child.stdout.take().expect("stdout")), "collector started"),
    };
    let mut lines = BufReader::new(pipe).lines();
    let mut http = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains(ready) {
            // The collector's line names its HTTP address: "http_addr=IP:PORT".
            http = line.split_whitespace().find_map(|w| w.strip_prefix("http_addr=")?.parse().ok());
            break;
        }
    }
    // Keep reading so that the receiver never blocks on a full pipe.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    Started { child, rest, http }
}

/// The collector's own count of copies it lost: the AF_XDP input's kernel
/// drops, the ring input's full-ring drops and the file sink's queue
/// overflows, from its /metrics.
pub(crate) fn collector_drops(http: SocketAddr) -> u64 {
    podmirror_testkit::probe::http_get(http, "/metrics")
        .lines()
        .filter(|l| {
            l.starts_with("podmirror_collector_xdp_dropped_total")
                || l.starts_with("podmirror_collector_ring_full_total")
                || l.starts_with("podmirror_collector_dropped_total{sink=\"file\"}")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Total size of the files in `dir`: grows while a receiver still writes.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|es| es.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// How long a receiver's output must stay the same size before it counts
/// as done. Longer than libpcap's TPACKET_V3 block timeout (tcpdump's 1 s
/// read timeout): a partly filled block reaches tcpdump only when it
/// retires, so stopping tcpdump earlier would lose its last copies.
const SETTLED: Duration = Duration::from_millis(1500);

/// Waits until the receiver has written what it received (its output
/// stops growing), then stops it the way a user would (SIGINT) and waits.
/// Returns the copies the collector says it dropped (0 for tcpdump).
fn finish(mut child: Child, out: &Path, http: Option<SocketAddr>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = dir_bytes(out);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= SETTLED {
            break;
        }
    }
    let dropped = http.map_or(0, collector_drops);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    dropped
}

/// Copies kept in the classic pcap files of `dir` (both tcpdump's
/// microsecond and the collector's nanosecond format): a record is one copy,
/// or, when the kernel VXLAN device's GRO coalesced consecutive segments of
/// an inner TCP flow before tcpdump saw them, the copies it holds (its TCP
/// payload in `mss`-sized segments; GRO only joins segments in sequence).
pub fn count_records(dir: &Path, mss: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries.filter_map(Result::ok).map(|e| count_file(&e.path(), mss)).sum()
}

/// Copies in one record's Ethernet/IPv4/TCP frame (1 for anything else).
fn copies_in(frame: &[u8], mss: usize) -> u64 {
    let payload = || {
        let ip = frame.get(14..)?;
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        let doff = usize::from(ip.get(ihl + 12)? >> 4) * 4;
        (ip.get(9) == Some(&6)).then(|| total.saturating_sub(ihl + doff))
    };
    payload().filter(|p| *p > 0).map_or(1, |p| p.div_ceil(mss.max(1)) as u64)
}

fn count_file(path: &Path, mss: usize) -> u64 {
    let bytes = std::fs::read(path).unwrap_or_default();
    podmirror_collector::pcap::frames(&bytes).map(|f| copies_in(f, mss)).sum()
}

/// Kernel drop counters on each receiver's path: the VXLAN device's and the
/// CPUs' backlog drops (both receivers), and UDP receive-buffer overflows
/// (the collector's sockets).
pub(crate) fn kernel_drops(dev: &str) -> (u64, u64) {
    let dev_drops: u64 = std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/rx_dropped"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // /proc/net/softnet_stat: a line per CPU, the second column (hex) counts
    // packets dropped because that CPU's backlog was full.
    let backlog: u64 = std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum();
    let rcvbuf = podmirror_testkit::probe::udp_counter("RcvbufErrors");
    (dev_drops + backlog, rcvbuf)
}

/// Bytes a copy takes in a capture file, with room to spare (a
/// 1514-byte frame and its record header).
pub const WARM_BYTES_PER_COPY: u64 = 1600;

/// Writes and removes `bytes` in `dir` (tmpfs) just before a receiver
/// starts. The VMs these benchmarks run on hand memory freed for two
/// seconds back to their host, and the next write into it costs a host
/// page fault (dd: 0.45-0.6 GB/s into such memory, 3.3 GB/s into memory
/// just freed), which a node's page cache does not pay and which would
/// decide the result for whoever writes more. Both receivers then write
/// into memory the host still backs.
pub fn warm_memory(dir: &Path, bytes: u64) {
    use std::io::Write;
    let path = dir.join(".warm");
    if let Ok(mut f) = std::fs::File::create(&path) {
        let block = vec![0x5au8; 1 << 20];
        let mut left = bytes;
        while left > 0 && f.write_all(&block).is_ok() {
            left = left.saturating_sub(block.len() as u64);
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// One trial: a fresh receiver, `count` copies from `pool` at `rate`.
pub fn trial(setup: &Setup, r: Receiver, pool: &Pool, count: u64, rate: u64) -> Trial {
    let out = setup.dir.join(format!("{r:?}").to_lowercase());
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output dir");
    warm_memory(&setup.dir, count * WARM_BYTES_PER_COPY);
    let Started { child, rest, http } = start(setup, r, Some(&out));
    let port = port_of(r);
    let before = kernel_drops(&setup.dev);
    let sent = send(SocketAddr::new(setup.to, port), pool, count, rate, true, &setup.sender);
    let collector_dropped = finish(child, &out, http);
    let said = rest.join().unwrap_or_default();
    let after = kernel_drops(&setup.dev);
    // The receiver's own account of its losses, a cross-check of the
    // counts: tcpdump prints "N packets dropped by kernel" (its ring full);
    // the collector's losses are its sockets' receive-buffer overflows and
    // what its metrics count (AF_XDP drops, file queue overflows).
    let reported = match r {
        Receiver::Tcpdump => said
            .lines()
            .find(|l| l.contains("dropped by kernel"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0),
        _ => after.1 - before.1 + collector_dropped,
    } + (after.0 - before.0);
    let kept = count_records(&out, setup.mss);
    let _ = std::fs::remove_dir_all(&out);
    Trial { sent, kept, reported }
}
