//! The load generator: pre-built VXLAN datagrams sent with `sendmmsg` from
//! several threads, each with several connected sockets (one outer source
//! port per group of inner flows, as the agent picks the source port from
//! the flow hash, so SO_REUSEPORT spreads them like real copies). Threads
//! can be pinned to CPUs. Pacing sleeps instead of spinning: on a small
//! machine a spinning sender would take the CPU the receivers need.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 32;

/// Copies grouped by outer source socket: `groups[g]` is sent in order on
/// socket `g`; group `g` belongs to thread `g % threads`.
pub struct Pool {
    pub groups: Vec<Vec<Vec<u8>>>,
}

#[derive(Clone, Debug)]
pub struct SenderConfig {
    pub threads: usize,
    /// CPUs the threads are pinned to (thread i on cpus[i % len]); empty:
    /// not pinned.
    pub cpus: Vec<usize>,
    /// Send runs of datagrams with UDP GSO (see [`Run`]).
    pub gso: bool,
    /// A network namespace (`/run/netns/NAME`) to open the sockets in,
    /// so that the copies reach the receivers through a device; None: the
    /// caller's namespace.
    pub netns: Option<PathBuf>,
}

/// What the sender did: datagrams the kernel accepted and the time it took.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub datagrams: u64,
    pub took: Duration,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.datagrams as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Sends `count` datagrams of `pool` to `to` at `rate` per second in total.
/// `cyclic`: groups are resent from their start when exhausted (a capture
/// stream); otherwise every datagram is sent once (`count` is ignored).
pub fn send(to: SocketAddr, pool: &Pool, count: u64, rate: u64, cyclic: bool, cfg: &SenderConfig) -> Sent {
    let threads = cfg.threads.clamp(1, pool.groups.len().max(1));
    let open = || -> Vec<UdpSocket> {
        let any = SocketAddr::new(if to.is_ipv4() { [0u8; 4].into() } else { [0u16; 8].into() }, 0);
        pool.groups
            .iter()
            .map(|_| {
                let s = UdpSocket::bind(any).expect("sender socket");
                s.connect(to).expect("sender connect");
                s
            })
            .collect()
    };
    let sockets = match &cfg.netns {
        Some(ns) => in_netns(ns, open),
        None => open(),
    };
    let barrier = Barrier::new(threads + 1);
    let per_thread_rate = rate as f64 / threads as f64;
    let start = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let quota = if cyclic {
                    count / threads as u64 + u64::from((t as u64) < count % threads as u64)
                } else {
                    u64::MAX
                };
                let mine: Vec<(usize, &Vec<Vec<u8>>)> =
                    pool.groups.iter().enumerate().filter(|(g, _)| g % threads == t).collect();
                let fds: Vec<i32> = mine.iter().map(|(g, _)| sockets[*g].as_raw_fd()).collect();
                let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[t % cfg.cpus.len()]);
                let barrier = &barrier;
                let gso = cfg.gso;
                scope.spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    precise_sleeps();
                    let groups: Vec<&Vec<Vec<u8>>> = mine.iter().map(|(_, g)| *g).collect();
                    let mut lane = Lane::new(&groups, &fds, gso);
                    barrier.wait();
                    lane.run(quota, per_thread_rate, cyclic)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let sent: u64 = handles.into_iter().map(|h| h.join().expect("sender thread")).sum();
        (sent, start.elapsed())
    });
    Sent { datagrams: start.0, took: start.1 }
}

/// Runs `f` on this thread inside the network namespace `ns`, then returns
/// to the thread's own: sockets opened by `f` stay in `ns`.
fn in_netns<T>(ns: &Path, f: impl FnOnce() -> T) -> T {
    let own = File::open("/proc/thread-self/ns/net").expect("this thread's network namespace");
    let target = File::open(ns).unwrap_or_else(|e| panic!("network namespace {}: {e}", ns.display()));
    // SAFETY: setns on fds of network namespace files, on this thread only.
    let enter = |fd: &File| unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(enter(&target), 0, "setns {}: {}", ns.display(), std::io::Error::last_os_error());
    let out = f();
    assert_eq!(enter(&own), 0, "setns back: {}", std::io::Error::last_os_error());
    out
}

/// Datagrams one GSO send may carry (the kernel's UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;

/// Consecutive datagrams sent by one message: with UDP GSO
/// (`UDP_SEGMENT`), equal-sized datagrams and one shorter last one go in a
/// single buffer the kernel cuts at `seg` bytes: the receivers still get
/// one datagram each, the sender pays the send path once per run.
struct Run {
    data: Vec<u8>,
    seg: u16,
    datagrams: usize,
}

fn runs(group: &[Vec<u8>], gso: bool) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut open = false;
    for d in group {
        let extend = open
            && out.last().is_some_and(|r| {
                d.len() <= usize::from(r.seg) && r.datagrams < MAX_SEGMENTS && r.data.len() + d.len() <= 65_000
            });
        if extend {
            let r = out.last_mut().expect("a run is open");
            r.data.extend_from_slice(d);
            r.datagrams += 1;
            // Only the last datagram of a run may be shorter.
            open = d.len() == usize::from(r.seg);
        } else {
            out.push(Run { data: d.clone(), seg: u16::try_from(d.len()).unwrap_or(u16::MAX), datagrams: 1 });
            open = gso;
        }
    }
    out
}

/// What the headers of one socket point at: its runs, their iovecs and
/// their control buffers.
type Backing = (Vec<Run>, Box<[libc::iovec]>, Box<[[u64; 4]]>);

/// One thread's sockets with their runs, as ready-made `mmsghdr`s.
struct Lane {
    fds: Vec<i32>,
    /// Per socket: runs, iovecs and control buffers the headers point at
    /// (heap data that stays put while the headers live).
    _keep: Vec<Backing>,
    hdrs: Vec<Vec<libc::mmsghdr>>,
    /// Per socket and message: datagrams it carries.
    counts: Vec<Vec<usize>>,
    cursor: Vec<usize>,
}

impl Lane {
    fn new(groups: &[&Vec<Vec<u8>>], fds: &[i32], gso: bool) -> Self {
        let (mut keep, mut hdrs, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for g in groups {
            let runs = runs(g, gso);
            let mut iovs: Box<[libc::iovec]> = runs
                .iter()
                .map(|r| libc::iovec { iov_base: r.data.as_ptr() as *mut _, iov_len: r.data.len() })
                .collect();
            let mut ctl: Box<[[u64; 4]]> = runs.iter().map(|r| podmirror_testkit::gso::segment_cmsg(r.seg)).collect();
            let mut h = podmirror_collector::input::mmsg_headers(&mut iovs);
            for ((h, r), c) in h.iter_mut().zip(&runs).zip(ctl.iter_mut()) {
                if r.datagrams > 1 {
                    h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                }
            }
            counts.push(runs.iter().map(|r| r.datagrams).collect());
            hdrs.push(h);
            keep.push((runs, iovs, ctl));
        }
        Lane { fds: fds.to_vec(), _keep: keep, hdrs, counts, cursor: vec![0; groups.len()] }
    }

    /// Sends up to `quota` datagrams at `rate`, round robin over the
    /// sockets one batch at a time; returns how many the kernel accepted.
    fn run(&mut self, quota: u64, rate: f64, cyclic: bool) -> u64 {
        let start = Instant::now();
        let (mut sent, mut offered) = (0u64, 0u64);
        let mut s = 0;
        while offered < quota {
            if !cyclic && self.cursor.iter().zip(&self.hdrs).all(|(c, h)| *c >= h.len()) {
                break;
            }
            s = (s + 1) % self.fds.len();
            let len = self.hdrs[s].len();
            if self.cursor[s] >= len {
                if !cyclic {
                    continue;
                }
                self.cursor[s] = 0;
            }
            // Messages of this batch: up to BATCH datagrams, within the quota.
            let at = self.cursor[s];
            let (mut n, mut datagrams) = (0, 0u64);
            while at + n < len && datagrams < BATCH as u64 && offered + datagrams < quota {
                datagrams += self.counts[s][at + n] as u64;
                n += 1;
            }
            let due = start + Duration::from_secs_f64(offered as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent += self.send_batch(s, n);
            self.cursor[s] += n;
            offered += datagrams;
        }
        sent
    }

    /// Sends messages `cursor..cursor + n` of socket `s`; returns the
    /// datagrams they carried.
    fn send_batch(&mut self, s: usize, n: usize) -> u64 {
        let at = self.cursor[s];
        let mut done = 0;
        while done < n {
            let hdrs = &mut self.hdrs[s][at + done..at + n];
            // SAFETY: the headers point at iovecs and control buffers in
            // `self._keep`, which point at its runs; all outlive the call.
            let r = unsafe { libc::sendmmsg(self.fds[s], hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
            if r <= 0 {
                break;
            }
            done += r as usize;
        }
        self.counts[s][at..at + done].iter().sum::<usize>() as u64
    }
}

/// Pins the calling thread to one CPU; best effort (the result says where).
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity on
    // the calling thread (pid 0) with the set's own size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Asks for 1 µs timer slack so that sleeps between batches end on time.
pub fn precise_sleeps() {
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}
