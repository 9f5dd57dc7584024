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

/// One packet of [`tshark_rows`]: its fields by name.
#[derive(Clone, PartialEq, Eq)]
pub struct Row {
    fields: Vec<(String, String)>,
}

impl Row {
    /// Every occurrence of `field`, joined with ',' (outer first); empty
    /// when the packet has none, or when `field` was not asked for.
    pub fn get(&self, field: &str) -> &str {
        self.fields.iter().find(|(f, _)| f == field).map_or("", |(_, v)| v.as_str())
    }

    /// The first occurrence of `field`: the outer header's of a copy.
    pub fn outer(&self, field: &str) -> &str {
        self.get(field).split(',').next().unwrap_or("")
    }

    /// The second occurrence of `field`: the inner (mirrored) packet's.
    pub fn inner(&self, field: &str) -> &str {
        self.get(field).split(',').nth(1).unwrap_or("")
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.fields.iter().map(|(k, v)| (k, v))).finish()
    }
}

/// [`tshark_fields`] with each row's fields by name (`row.get("vxlan.vni")`,
/// `row.inner("udp.dstport")`), so a test reads as the fields it checks.
pub fn tshark_rows(pcap: &Pcap, display_filter: &str, fields: &[&str]) -> Result<Vec<Row>> {
    let rows = tshark_fields(pcap, display_filter, fields)?;
    Ok(rows
        .into_iter()
        .map(|values| Row {
            fields: fields
                .iter()
                .map(|f| f.to_string())
                .zip(values.into_iter().chain(std::iter::repeat(String::new())))
                .collect(),
        })
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

#[cfg(test)]
mod tests {
    use super::Row;

    #[test]
    fn a_row_reads_fields_by_name_outer_and_inner() {
        let row = Row { fields: vec![("vxlan.vni".into(), "7".into()), ("udp.dstport".into(), "4789,1234".into())] };
        assert_eq!(row.get("vxlan.vni"), "7");
        assert_eq!((row.outer("udp.dstport"), row.inner("udp.dstport")), ("4789", "1234"));
        assert_eq!(row.inner("vxlan.vni"), "", "one occurrence only");
        assert_eq!(row.get("ip.src"), "", "a field not asked for");
    }
}
