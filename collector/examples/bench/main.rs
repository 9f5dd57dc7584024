//! Collector benchmark (run by `bench/collector/run.sh` inside a network
//! namespace that has a kernel VXLAN device on port 4789):
//!
//! 1. capture: one stream of copies, paced at increasing rates by a
//!    multi-threaded `sendmmsg` sender, goes in turn (interleaved, rate by
//!    rate) to `tcpdump -w` on the kernel VXLAN device (what a user would do
//!    instead) and to `podmirror-collector --files-dir`; the highest rate
//!    each keeps with zero loss (records in its files = datagrams sent) is
//!    reported;
//! 2. replay: keep-alive HTTP requests in copies, replayed to a local HTTP
//!    server: requests per second, and every one checked byte for byte.
//!
//! Prints a markdown report on stdout, progress on stderr.

mod capture;
mod cost;
mod replay;
mod sender;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use podmirror_collector::decode::vxlan_header;
use podmirror_collector::frame::build_ipv4_tcp;

use capture::{Receiver, Setup, Trial, trial};
use sender::{Pool, SenderConfig};

#[derive(Parser, Debug)]
struct Opts {
    /// The kernel VXLAN device tcpdump listens on (port 4789).
    #[arg(default_value = "vx0")]
    dev: String,
    /// A tmpfs directory for both receivers' files.
    #[arg(default_value = "/dev/shm")]
    dir: PathBuf,
    /// The podmirror-collector binary (release build).
    #[arg(long)]
    collector_bin: PathBuf,
    /// Also measure the collector with its AF_XDP input on this interface
    /// (the one the copies arrive on).
    #[arg(long)]
    xdp_iface: Option<String>,
    /// --xdp-mode for that variant. generic: the program runs where RPS put
    /// the receive processing (the receivers' CPU), like the other paths.
    #[arg(long, default_value = "generic")]
    xdp_mode: String,
    /// Also measure the collector with its ring input on this interface.
    #[arg(long)]
    ring_iface: Option<String>,
    /// Run one receiver only (to profile it).
    #[arg(long, value_enum)]
    only: Option<Receiver>,
    /// Extra flags for the collector (repeat; e.g. --collector-arg=--vxlan-workers=1).
    #[arg(long, allow_hyphen_values = true)]
    collector_arg: Vec<String>,
    /// Offered rates in datagrams per second, lowest first. Steps of 25k
    /// from 100k to 700k: where both receivers reach their limits on the
    /// machines tried, so that the grid, not the receivers, does not decide
    /// the ratio (a 50k step there moved it by over 10%).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,125000,150000,175000,200000,225000,250000,275000,300000,325000,350000,375000,\
                         400000,425000,450000,475000,500000,525000,550000,575000,600000,625000,650000,675000,\
                         700000,800000,1000000"
    )]
    rates: Vec<u64>,
    /// Seconds of copies per trial.
    #[arg(long, default_value_t = 1.0)]
    step_secs: f64,
    /// Trials per rate and receiver; a rate is kept when one loses nothing.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Sender threads.
    #[arg(long, default_value_t = 2)]
    sender_threads: usize,
    /// CPUs the sender threads are pinned to (comma separated; empty: none).
    #[arg(long, value_delimiter = ',')]
    sender_cpus: Vec<usize>,
    /// Send without UDP GSO (one send path per datagram).
    #[arg(long)]
    no_gso: bool,
    /// `taskset -c` CPU list for both receivers (empty: not pinned).
    #[arg(long, default_value = "")]
    receiver_cpus: String,
    /// Network namespace the sender's sockets are opened in (a name under
    /// /run/netns); empty: this one (copies on loopback).
    #[arg(long, default_value = "")]
    sender_netns: String,
    /// Address of this namespace the copies are sent to (the collector
    /// listens on it; the kernel VXLAN device must receive on it).
    #[arg(long, default_value = "127.0.0.1")]
    to: std::net::IpAddr,
    /// Receive cost: the rate (datagrams per second, below every
    /// receiver's limit) at which each receiver's CPU time per copy is
    /// measured with its output discarded; 0 leaves the measurement out.
    #[arg(long, default_value_t = 200_000)]
    cost_rate: u64,
    /// Seconds of copies per receive-cost round.
    #[arg(long, default_value_t = 3.0)]
    cost_secs: f64,
    /// The floor of the receive cost: a TC object whose program drops every
    /// packet (run.sh builds bench/collector/floor.bpf.c), attached in turn
    /// to the --ring-iface (else --xdp-iface) interface.
    #[arg(long)]
    floor_obj: Option<PathBuf>,
    /// Receive-cost rounds per receiver (interleaved).
    #[arg(long, default_value_t = 5)]
    cost_rounds: usize,
    /// Keep-alive connections and POSTs per connection of the replay part.
    #[arg(long, default_value_t = 200)]
    replay_posts: usize,
}

/// Outer source sockets of the capture stream (inner flows, one each).
const GROUPS: u16 = 16;
/// Datagrams per group; the groups are sent cyclically.
const PER_GROUP: usize = 3072;

/// TCP payload of a full-sized copy; `capture::count_records` counts a
/// record coalesced by the kernel's GRO as the segments it holds.
const MSS: usize = 1448;

/// Copies shaped like HTTP uploads as a host's TCP sends them: two full
/// segments (ACK) and a tail (PSH, ACK), per flow, with valid checksums, so
/// that the kernel VXLAN device's GRO may coalesce them as it would on a
/// real NIC.
fn capture_pool() -> Pool {
    let groups = (0..GROUPS)
        .map(|g| {
            let c = SocketAddr::from(([10, 0, 0, 1], 40000 + g));
            let s = SocketAddr::from(([10, 0, 0, 2], 80));
            let mut seq = 1u32;
            (0..PER_GROUP)
                .map(|i| {
                    let (len, flags) = if i % 3 == 2 { (200, 0x08) } else { (MSS, 0) };
                    let f = build_ipv4_tcp(c, s, seq, 1, flags, &vec![b'x'; len]);
                    seq = seq.wrapping_add(len as u32);
                    let mut d = vxlan_header(1).to_vec();
                    d.extend(f);
                    d
                })
                .collect()
        })
        .collect();
    Pool { groups }
}

/// One receiver's progress through the rates.
struct Progress {
    r: Receiver,
    /// Left out of this run (--only, or no --xdp-iface).
    skipped: bool,
    best: u64,
    out: bool,
}

/// The trial that lost the least, the faster one on a tie.
fn best_of(setup: &Setup, r: Receiver, pool: &Pool, count: u64, rate: u64, trials: usize) -> Trial {
    let mut best: Option<Trial> = None;
    for _ in 0..trials.max(1) {
        let t = trial(setup, r, pool, count, rate);
        eprintln!(
            "  {:<10} {rate:>8} pps offered: {:>8.0} achieved, {} sent, {} lost ({} reported by the kernel)",
            format!("{r:?}"),
            t.sent.rate(),
            t.sent.datagrams,
            t.lost(),
            t.reported
        );
        if best.is_none_or(|b| (t.lost(), t.sent.took) < (b.lost(), b.sent.took)) {
            best = Some(t);
        }
        if t.lost() == 0 {
            break;
        }
    }
    best.expect("at least one trial")
}

/// Raises the rate for both receivers, interleaved rate by rate (the
/// first one alternates) so that the machine's noise hits both alike, until
/// each loses copies in every trial of a rate.
fn zero_loss(opts: &Opts, setup: &Setup, pool: &Pool, rows: &mut Vec<String>) -> Vec<Progress> {
    // A receiver left out (--only) starts as done.
    let skip = |r: Receiver| opts.only.is_some_and(|o| o != r);
    let progress = |r: Receiver, skipped: bool| Progress { r, skipped, best: 0, out: skipped };
    let mut ps = vec![
        progress(Receiver::Tcpdump, skip(Receiver::Tcpdump)),
        progress(Receiver::Collector, skip(Receiver::Collector)),
        progress(Receiver::CollectorXdp, opts.xdp_iface.is_none() || skip(Receiver::CollectorXdp)),
        progress(Receiver::CollectorRing, opts.ring_iface.is_none() || skip(Receiver::CollectorRing)),
    ];
    for (i, &rate) in opts.rates.iter().enumerate() {
        let count = (rate as f64 * opts.step_secs) as u64;
        if i % 2 == 1 {
            ps.reverse();
        }
        for p in ps.iter_mut().filter(|p| !p.out) {
            let t = best_of(setup, p.r, pool, count, rate, opts.trials);
            let achieved = t.sent.rate();
            rows.push(format!(
                "| {} | {rate} | {achieved:.0} | {} | {} | {} | {} |",
                p.r.name(),
                t.sent.datagrams,
                t.kept,
                t.lost(),
                t.reported
            ));
            // What counts is the rate the sender achieved: on a shared
            // machine it may fall short of the offered one.
            if t.lost() == 0 {
                p.best = p.best.max(achieved as u64);
            } else {
                p.out = true;
            }
        }
        if i % 2 == 1 {
            ps.reverse();
        }
        if ps.iter().all(|p| p.out) {
            break;
        }
    }
    ps
}

fn summary(ps: &[Progress]) -> String {
    let tcpdump = ps.iter().find(|p| p.r == Receiver::Tcpdump).map_or(0, |p| p.best);
    let fate = |p: &Progress| match (p.out, p.best) {
        (true, 0) => "lost copies at every rate tried",
        (true, _) => "lost copies at the next rate",
        (false, _) => "lost nothing at any rate (the sender was the limit)",
    };
    let mut lines = vec!["Highest achieved rate kept with zero loss (goal: collector >= 1.5x tcpdump):".to_string()];
    for p in ps.iter().filter(|p| !p.skipped) {
        let ratio = match p.r {
            Receiver::Tcpdump => String::new(),
            _ if tcpdump > 0 => format!(", {:.2}x tcpdump", p.best as f64 / tcpdump as f64),
            _ => ", no tcpdump rate to compare".into(),
        };
        lines.push(format!("- {}: {} pps{ratio}; {}.", p.r.name(), p.best, fate(p)));
    }
    lines.join("\n")
}

/// How the capture part ran, for the report.
fn method(o: &Opts) -> String {
    let pin = |cpus: String| if cpus.is_empty() { "not pinned".to_string() } else { format!("on CPUs {cpus}") };
    let sender_cpus = o.sender_cpus.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    format!(
        "Sender: {} thread(s) ({}) in the sender namespace{}, sendmmsg of pre-built VXLAN datagrams{} over \
         {GROUPS} outer source ports; inner frames as a host's TCP sends an upload: two 1448-byte segments (ACK) \
         and a 200-byte tail (PSH) per flow, valid checksums (so the kernel VXLAN device's GRO may coalesce them; \
         a coalesced record counts as the copies it holds). Receivers {} (with the veth's receive processing, \
         by RPS), each started afresh per trial with its default buffers (tcpdump: libpcap's ring; the \
         collector: its --recv-buffer-bytes per socket and --vxlan-workers sockets). After sending, a trial \
         waits until the receiver's files stop growing, stops it with SIGINT and counts the copies in its pcap \
         files on tmpfs: lost = datagrams the kernel accepted from the sender - copies written. Before each \
         trial the benchmark writes and removes as many bytes as the trial will write, in the same tmpfs: this \
         VM hands memory freed for two seconds back to its host, and writing into such memory costs a host page \
         fault a node's page cache does not pay. {} s of copies \
         per trial, up to {} trials per rate; the receivers alternate rate by rate; a rate is kept when a trial \
         loses nothing; a receiver stops at its first rate lost in every trial. Kernel-reported drops: \
         tcpdump's own count or the collector's UDP receive-buffer overflows, plus the VXLAN device's and the \
         CPUs' backlog drops.",
        o.sender_threads,
        pin(sender_cpus),
        if o.sender_netns.is_empty() { " (none given: loopback)" } else { "" },
        if o.no_gso {
            ""
        } else {
            " (runs of equal-sized datagrams as one UDP GSO send, cut into single datagrams at the veth)"
        },
        pin(o.receiver_cpus.clone()),
        o.step_secs,
        o.trials
    )
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let netns = (!opts.sender_netns.is_empty()).then(|| PathBuf::from("/run/netns").join(&opts.sender_netns));
    let sender =
        SenderConfig { threads: opts.sender_threads, cpus: opts.sender_cpus.clone(), gso: !opts.no_gso, netns };
    let setup = Setup {
        to: opts.to,
        mss: MSS,
        dev: opts.dev.clone(),
        dir: opts.dir.clone(),
        collector_bin: opts.collector_bin.clone(),
        collector_args: opts.collector_arg.clone(),
        xdp_args: opts
            .xdp_iface
            .iter()
            .flat_map(|i| ["--xdp-iface".to_string(), i.clone(), "--xdp-mode".into(), opts.xdp_mode.clone()])
            .collect(),
        ring_args: opts.ring_iface.iter().flat_map(|i| ["--ring-iface".to_string(), i.clone()]).collect(),
        receiver_cpus: opts.receiver_cpus.clone(),
        sender: sender.clone(),
    };
    let pool = capture_pool();
    let mut rows = Vec::new();
    let ps = tokio::task::block_in_place(|| zero_loss(&opts, &setup, &pool, &mut rows));
    // Receive cost with the output discarded, then with the files written.
    let cost_tables: Vec<(bool, Vec<String>)> = if opts.cost_rate > 0 {
        let receivers: Vec<Receiver> = ps.iter().filter(|p| !p.skipped).map(|p| p.r).collect();
        // The receivers' CPU: the last of --receiver-cpus.
        let cpu = opts.receiver_cpus.split(',').next_back().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
        let iface = opts.ring_iface.as_deref().or(opts.xdp_iface.as_deref());
        let floor = iface.zip(opts.floor_obj.as_deref());
        [false, true]
            .into_iter()
            .map(|with_files| {
                let files = with_files.then_some(opts.dir.as_path());
                let c = cost::CostRun {
                    rate: opts.cost_rate,
                    secs: opts.cost_secs,
                    rounds: opts.cost_rounds,
                    cpu,
                    floor,
                    files,
                };
                (with_files, tokio::task::block_in_place(|| cost::run(&setup, &receivers, &pool, &c)))
            })
            .collect()
    } else {
        Vec::new()
    };
    eprintln!("  replay: 100 connections x {} POSTs", opts.replay_posts);
    // Replay runs on this namespace's loopback.
    let local = SenderConfig { netns: None, ..sender };
    let replay_row = replay::run(100, opts.replay_posts, 100_000, &local).await;

    println!("{}\n", method(&opts));
    println!(
        "| receiver | offered pps | achieved pps | sent | kept | lost | kernel-reported drops |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &rows {
        println!("{r}");
    }
    println!("\n{}\n", summary(&ps));
    for (with_files, rows) in &cost_tables {
        println!("{}\n", cost::caption(*with_files, opts.cost_rate, opts.cost_rounds, opts.cost_secs));
        println!(
            "| receiver | us per copy (median) | spread | rounds counted | tcpdump's cost / this | above the floor: tcpdump's / this |\n| --- | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in rows {
            println!("{r}");
        }
        println!();
    }
    println!(
        "| replay | requests | replayed whole | corrupt | seconds | requests/s |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    println!("{replay_row}");
}
