//! Receive cost: the CPU time each receiver takes per copy on the
//! receivers' CPU (kernel and user: the veth's receive processing lands
//! there by RPS), at one rate below every receiver's limit, with its output
//! discarded (tcpdump `-w /dev/null`, the collector without a file sink).
//! CPU time is what a busy loop at the lowest priority on that CPU loses
//! while the copies arrive (see [`Hog`]).
//! Writing the capture files is left out on purpose: both receivers write
//! the same bytes, and on the VMs these benchmarks run on a write into
//! fresh memory costs a host page fault whose price changes from minute to
//! minute; the receive path is what the receivers do differently. Rounds
//! are interleaved receiver by receiver; medians and spread are reported.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use aya::Ebpf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::capture::{Receiver, Setup, Started, collector_drops, kernel_drops, port_of, start};
use crate::sender::{Pool, pin_to, send};

/// A busy loop on one CPU at the lowest priority (SCHED_IDLE): it gets
/// what the receiver leaves of that CPU, so the work it loses while copies
/// arrive is the receiver's cost, kernel and user, softirq included. (The
/// kernel's CPU time accounting cannot say that here: it samples at ticks,
/// and misses receive processing that runs between idle periods.)
struct Hog {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn start(cpu: usize) -> Hog {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            pin_to(cpu);
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: this thread's own policy; SCHED_IDLE needs no privilege.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            while !s.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    std::hint::black_box(c.load(Ordering::Relaxed));
                }
                c.fetch_add(1, Ordering::Relaxed);
            }
        });
        Hog { count, stop, thread: Some(thread) }
    }

    fn now(&self) -> (u64, Instant) {
        (self.count.load(Ordering::Relaxed), Instant::now())
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Loops per second between two readings.
fn rate_between(a: (u64, Instant), b: (u64, Instant)) -> f64 {
    (b.0 - a.0) as f64 / b.1.duration_since(a.1).as_secs_f64()
}

/// CPU seconds of `cpu` that sending `count` copies at `rate` to `port`
/// took from the loop, and the datagrams sent; NaN when the measurement is
/// void (the loop ran faster busy than idle: an idle window was disturbed).
fn measure(setup: &Setup, port: u16, pool: &Pool, count: u64, rate: u64, cpu: usize) -> (f64, u64) {
    let hog = Hog::start(cpu);
    // What the loop gets of an idle receiver before and after the copies
    // (the faster of the two: a window disturbed by something else only
    // slows it), and while they arrive.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = hog.now();
    std::thread::sleep(Duration::from_millis(500));
    let t1 = hog.now();
    let sent = send(SocketAddr::new(setup.to, port), pool, count, rate, true, &setup.sender);
    // tcpdump hands a partly filled ring block over after its 1 s timeout.
    std::thread::sleep(Duration::from_millis(1200));
    let t2 = hog.now();
    std::thread::sleep(Duration::from_millis(500));
    let t3 = hog.now();
    drop(hog);
    let idle = rate_between(t0, t1).max(rate_between(t2, t3));
    let busy = rate_between(t1, t2);
    let window = t2.1.duration_since(t1.1).as_secs_f64();
    let cpu_secs = if idle > 0.0 && busy <= idle { (1.0 - busy / idle) * window } else { f64::NAN };
    (cpu_secs, sent.datagrams)
}

/// The floor: the same copies dropped by a TC program on `iface` before
/// any receiver sees them (`obj`, built by run.sh), attached by TCX like
/// the ring input's. Microseconds per copy.
fn floor_round(setup: &Setup, iface: &str, obj: &Path, pool: &Pool, count: u64, rate: u64, cpu: usize) -> Option<f64> {
    let attached = Ebpf::load_file(obj).map_err(|e| e.to_string()).and_then(|mut ebpf| {
        podmirror_collector::tcring::attach_tcx_ingress(&mut ebpf, "pm_bench_floor", iface).map(|()| ebpf)
    });
    let ebpf = match attached {
        Ok(e) => e,
        Err(e) => {
            eprintln!("  cost floor: cannot attach {} to {iface}: {e}", obj.display());
            return None;
        }
    };
    let (cpu_secs, sent) = measure(setup, port_of(Receiver::Collector), pool, count, rate, cpu);
    // Dropping the program detaches it.
    drop(ebpf);
    let us = cpu_secs * 1e6 / sent.max(1) as f64;
    eprintln!("  cost floor         {rate} pps: {sent} copies, {cpu_secs:.3} CPU s, {us:.3} us/copy");
    us.is_finite().then_some(us)
}

/// One round: microseconds of CPU `cpu` per copy, or None when the
/// receiver lost copies or the measurement is void.
fn round(setup: &Setup, r: Receiver, pool: &Pool, count: u64, rate: u64, c: &CostRun<'_>) -> Option<f64> {
    let out = c.files.map(|d| d.join(format!("cost-{r:?}").to_lowercase()));
    if let Some(o) = &out {
        let _ = std::fs::remove_dir_all(o);
        std::fs::create_dir_all(o).expect("output dir");
    }
    let cpu = c.cpu;
    if let Some(dir) = c.files {
        crate::capture::warm_memory(dir, count * crate::capture::WARM_BYTES_PER_COPY);
    }
    let Started { mut child, rest, http } = start(setup, r, out.as_deref());
    let drops_before = kernel_drops(&setup.dev);
    let (cpu_secs, datagrams) = measure(setup, port_of(r), pool, count, rate, cpu);
    let lost_by_collector = http.map_or(0, collector_drops);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let said = rest.join().unwrap_or_default();
    let drops_after = kernel_drops(&setup.dev);
    let lost_by_tcpdump: u64 = said
        .lines()
        .find(|l| l.contains("dropped by kernel"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let lost = lost_by_collector
        + lost_by_tcpdump
        + (drops_after.0 - drops_before.0)
        + if r.is_collector() { drops_after.1 - drops_before.1 } else { 0 };
    let us = cpu_secs * 1e6 / datagrams.max(1) as f64;
    eprintln!(
        "  cost {:<13} {rate} pps: {datagrams} copies, {cpu_secs:.3} CPU s, {us:.3} us/copy, {lost} lost",
        format!("{r:?}")
    );
    if let Some(o) = &out {
        let _ = std::fs::remove_dir_all(o);
    }
    (lost == 0 && us.is_finite()).then_some(us)
}

/// The receive-cost measurement's settings.
pub struct CostRun<'a> {
    pub rate: u64,
    pub secs: f64,
    pub rounds: usize,
    /// The receivers' CPU.
    pub cpu: usize,
    /// The floor's TC program and the interface the copies arrive on.
    pub floor: Option<(&'a str, &'a Path)>,
    /// Where the receivers write their files; None: output discarded.
    pub files: Option<&'a Path>,
}

/// Median and spread (min..max) of each receiver's rounds (and the
/// floor's first, when given), as table rows.
pub fn run(setup: &Setup, receivers: &[Receiver], pool: &Pool, c: &CostRun<'_>) -> Vec<String> {
    let count = (c.rate as f64 * c.secs) as u64;
    // Column 0 is the floor, then the receivers.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); receivers.len() + 1];
    for i in 0..c.rounds {
        // Alternate the order so that drifts of the machine hit all alike.
        let mut order: Vec<usize> = (0..=receivers.len()).collect();
        if i % 2 == 1 {
            order.reverse();
        }
        for k in order {
            let us = match (k, c.floor) {
                (0, Some((iface, obj))) => floor_round(setup, iface, obj, pool, count, c.rate, c.cpu),
                (0, None) => None,
                _ => round(setup, receivers[k - 1], pool, count, c.rate, c),
            };
            samples[k].extend(us);
        }
    }
    let floor = median(&samples[0]);
    let tcpdump = receivers.iter().position(|r| *r == Receiver::Tcpdump).and_then(|k| median(&samples[k + 1]));
    let mut rows = Vec::new();
    if c.floor.is_some() {
        rows.push(row("floor: every copy dropped at the interface, no receiver", &samples[0], c.rounds, ""));
    }
    for (k, r) in receivers.iter().enumerate() {
        let med = median(&samples[k + 1]);
        let ratio = |base: f64| match (tcpdump, med) {
            (Some(t), Some(m)) if *r != Receiver::Tcpdump && m - base > 0.0 => {
                format!("{:.2}x", (t - base) / (m - base))
            }
            // At or under the floor, within its noise: nothing measurable added.
            (Some(_), Some(_)) if *r != Receiver::Tcpdump => "at the floor".to_string(),
            _ => String::new(),
        };
        let ratios = match floor {
            Some(f) => format!("{} | {}", ratio(0.0), ratio(f)),
            None => format!("{} | ", ratio(0.0)),
        };
        rows.push(row(&r.name().replace(" --files-dir", ""), &samples[k + 1], c.rounds, &ratios));
    }
    rows
}

fn row(name: &str, samples: &[f64], rounds: usize, ratios: &str) -> String {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let ratios = if ratios.is_empty() { " | " } else { ratios };
    format!(
        "| {name} | {} | {} | {}/{rounds} | {ratios} |",
        median(&s).map_or("-".into(), |m| format!("{m:.2}")),
        match (s.first(), s.last()) {
            (Some(a), Some(b)) => format!("{a:.2}-{b:.2}"),
            _ => "-".into(),
        },
        s.len()
    )
}

fn median(sorted_or_not: &[f64]) -> Option<f64> {
    let mut s = sorted_or_not.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// The caption of a receive-cost table.
pub fn caption(with_files: bool, rate: u64, rounds: usize, secs: f64) -> String {
    let output = if with_files {
        "with the files written (tmpfs), as in the capture comparison"
    } else {
        "output discarded (tcpdump -w /dev/null; the collector without a file sink)"
    };
    format!(
        "{} at {rate} copies/s, {output}: CPU time of the receivers' CPU per copy (kernel and user, softirq \
         included: what a busy loop at the lowest priority on that CPU loses while the copies arrive), median of \
         {rounds} interleaved rounds of {secs} s; a round that lost copies is not counted. The floor is the path \
         every receiver pays before it sees a copy (veth, RPS, backlog); the last column compares what each \
         receiver adds to it.",
        if with_files { "Capture cost" } else { "Receive cost" }
    )
}
