//! Unique names and the privileged-test gate.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `<prefix><pid % 100000>x<n>`: unique across processes and within one.
/// Short enough (<= 15 bytes for a 4-byte prefix plus a 1-byte suffix) to
/// derive interface names from.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// True when running under CI (`CI=true`): privileged tests must run there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Print a loud `SKIPPED: <test>: <why>` that shows even for a passing test.
pub fn announce_skip(test: &str, why: &str) {
    // Straight to the stderr fd: libtest captures eprintln! of passing tests.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("\n!!!!!!!!\nSKIPPED: {test}: {why}\n!!!!!!!!\n").as_bytes(),
    );
}

/// Gate for tests that need root (namespaces, eBPF). Off root: prints a loud
/// `SKIPPED: <test>: <why>` and returns false, except under `CI=true`, where
/// it panics (the test fails). Also makes sure bpffs is mounted.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let why = if euid != 0 {
        Some("needs root (network namespaces and eBPF)".to_string())
    } else if !std::path::Path::new("/usr/sbin/ip").exists()
        && !std::path::Path::new("/sbin/ip").exists()
        && !std::path::Path::new("/usr/bin/ip").exists()
    {
        Some("needs iproute2 (`ip`)".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        if in_ci() {
            panic!("{test}: cannot run under CI=true: {why}");
        }
        announce_skip(test, &why);
        return false;
    }
    ensure_bpffs();
    true
}

fn ensure_bpffs() {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf ")))
        .unwrap_or(false);
    if !mounted {
        let _ = std::process::Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]).status();
    }
}
