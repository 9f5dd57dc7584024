//! tcpdump capture inside a namespace, and tshark/tcpdump decoding.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::{Netns, Process};
use super::{Result, TestbedError, names::unique_name};

/// A running `tcpdump -w`; `stop` ends it and hands over the file.
#[derive(Debug)]
pub struct Capture {
    process: Process,
    path: String,
    log: String,
}

/// A pcap file, removed on drop.
#[derive(Debug)]
pub struct Pcap {
    pub path: String,
}

impl Drop for Pcap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Capture {
    /// Start capturing on `ifname` in `netns` with a BPF `filter`; returns
    /// once tcpdump is listening.
    pub fn start(netns: &Netns, ifname: &str, filter: &str) -> Result<Capture> {
        Capture::start_with(netns, ifname, filter, 0)
    }

    /// Like `start`, keeping `snaplen` bytes of each packet (0 = all).
    pub fn start_with(netns: &Netns, ifname: &str, filter: &str, snaplen: u32) -> Result<Capture> {
        let base = format!("/tmp/{}", unique_name("pmcap"));
        let path = format!("{base}.pcap");
        let log = format!("{base}.log");
        let script = format!(
            "exec tcpdump --immediate-mode -B 16384 -i {ifname} -n -s {snaplen} -U -w {path} '{filter}' 2>{log}"
        );
        let process = netns.spawn(&script)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            if Instant::now() > deadline {
                return Err(TestbedError::Setup(format!("tcpdump did not start: {text}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Capture { process, path, log })
    }

    /// Stop tcpdump (SIGINT, so it flushes) and return the capture.
    pub fn stop(mut self) -> Result<Pcap> {
        std::thread::sleep(Duration::from_millis(200));
        let pid = self.process.child().id();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let _ = std::mem::replace(&mut self.process, Process::empty()).finish(Duration::from_secs(5));
        let _ = std::fs::remove_file(&self.log);
        Ok(Pcap { path: self.path.clone() })
    }
}

/// `tshark -r pcap -Y filter -T fields -e ...`: one row per packet, one
/// column per field; several occurrences of a field (outer and inner IP)
/// are joined with ','.
pub fn tshark_fields(pcap: &Pcap, display_filter: &str, fields: &[&str]) -> Result<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args([
        "-n",
        "-r",
        &pcap.path,
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| TestbedError::Command { command: "tshark".into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(TestbedError::Command {
            command: format!("{cmd:?}"),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// `tcpdump -nne -r pcap [extra]`: the human-readable decode.
pub fn tcpdump_text(pcap: &Pcap, extra: &[&str]) -> Result<String> {
    let out = Command::new("tcpdump")
        .args(["-nne", "-r", &pcap.path])
        .args(extra)
        .output()
        .map_err(|e| TestbedError::Command { command: "tcpdump -r".into(), detail: e.to_string() })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
