//! One network namespace (created with `ip netns add`, deleted on drop) and
//! commands and code run inside it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};

use super::{Result, TestbedError};

#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

fn run(cmd: &mut Command) -> Result<Output> {
    let text = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| TestbedError::Command { command: text.clone(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(TestbedError::Command {
            command: text,
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(out)
}

/// Run `ip <args>` in the caller's namespace.
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

impl Netns {
    /// Create namespace `name` with loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `cmd args` inside this namespace; fails on a non-zero exit.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").args(["netns", "exec", &self.name, cmd]).args(args))
    }

    /// `ip args` inside this namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `sh -c script` inside this namespace; returns stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.exec("sh", &["-c", script])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Write a sysctl inside this namespace (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, setting: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", setting]).map(|_| ())
    }

    /// Start `sh -c script` inside this namespace; killed when dropped.
    pub fn spawn(&self, script: &str) -> Result<Process> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestbedError::Command { command: script.to_string(), detail: e.to_string() })?;
        Ok(Process { child: Some(child) })
    }

    /// Run `f` on a thread that has entered this namespace (for code that
    /// works on the current namespace, like the datapath's netlink and TCX
    /// calls). Panics in `f` propagate.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|e| TestbedError::Setup(format!("open {path}: {e}")))?;
        std::thread::scope(|s| {
            let handle = s.spawn(move || {
                // SAFETY: setns on a valid netns fd affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(TestbedError::Setup(format!("setns {path}: {}", std::io::Error::last_os_error())));
                }
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The ifindex of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        // /sys/class/net shows the reader's namespace: read it from inside.
        let out = self.sh(&format!("cat /sys/class/net/{ifname}/ifindex"))?;
        out.trim().parse().map_err(|e| TestbedError::Setup(format!("ifindex of {ifname} in {}: {e}", self.name)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside would keep it alive: kill them first.
        let _ = Command::new("ip").args(["netns", "pids", &self.name]).output().map(|out| {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A process started in a namespace; killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// A placeholder holding no process.
    pub(crate) fn empty() -> Process {
        Process { child: None }
    }

    /// The child, to write to its stdin or read its output.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("a Process holds its child until dropped or waited")
    }

    /// Close stdin and wait for the output (with a deadline, then kill).
    pub fn finish(mut self, timeout: std::time::Duration) -> Result<Output> {
        let Some(mut child) = self.child.take() else {
            return Err(TestbedError::Setup("no process".into()));
        };
        drop(child.stdin.take());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    break;
                }
            }
        }
        child.wait_with_output().map_err(|e| TestbedError::Setup(format!("wait: {e}")))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
