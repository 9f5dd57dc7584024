//! A container run by runc from a bundle `write_bundle` made: started in
//! the background with its output in a log file, killed and deleted when
//! dropped. Shared by the tests that run podmirror's binaries as installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{E2eError, cmd};

pub struct RuncContainer {
    runc: PathBuf,
    id: String,
    child: Option<Child>,
}

impl RuncContainer {
    /// `runc run --bundle <bundle> <id>`, output to `log`.
    pub fn start(runc: &Path, id: &str, bundle: &Path, log: &Path) -> Result<RuncContainer, E2eError> {
        let io = |source| E2eError::Io { path: log.to_path_buf(), source };
        let log_file = std::fs::File::create(log).map_err(io)?;
        let child = Command::new(runc)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(io)?)
            .stderr(log_file)
            .spawn()
            .map_err(|source| E2eError::Io { path: runc.to_path_buf(), source })?;
        Ok(RuncContainer { runc: runc.to_path_buf(), id: id.to_string(), child: Some(child) })
    }

    /// `runc exec` in the running container: (success, combined output).
    pub fn exec(&self, script: &str) -> (bool, String) {
        match Command::new(&self.runc).args(["exec", &self.id, "/bin/sh", "-c", script]).output() {
            Ok(out) => {
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                (out.status.success(), text)
            }
            Err(e) => (false, e.to_string()),
        }
    }

    /// The host pid of the container's process.
    pub fn pid(&self) -> Result<u32, E2eError> {
        let state = cmd::run(&self.runc, &["state", &self.id])?;
        let bad = |reason: String| E2eError::Manifest { index: 0, what: "runc state".into(), reason };
        let state: serde_json::Value = serde_json::from_str(&state).map_err(|e| bad(e.to_string()))?;
        state["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).ok_or_else(|| bad(format!("no pid in {state}")))
    }

    /// The effective capability mask and seccomp mode of the container's
    /// process, from `/proc/<pid>/status`.
    pub fn cap_eff_and_seccomp(&self) -> Result<(u64, String), E2eError> {
        let path = PathBuf::from(format!("/proc/{}/status", self.pid()?));
        let status = std::fs::read_to_string(&path).map_err(|source| E2eError::Io { path: path.clone(), source })?;
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default();
        let mask = u64::from_str_radix(field("CapEff:"), 16).unwrap_or(u64::MAX);
        Ok((mask, field("Seccomp:").to_string()))
    }

    /// Waits for the container to exit by itself; returns whether it succeeded.
    pub fn wait(mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    return false;
                }
            }
        }
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc).args(["kill", &self.id, "KILL"]).output();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let _ = Command::new(&self.runc).args(["delete", "--force", &self.id]).output();
    }
}

/// The kernel's number of a capability (`linux/capability.h`), for the
/// ones podmirror's containers are given.
pub fn cap_number(name: &str) -> Option<u32> {
    Some(match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_IPC_LOCK" => 14,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        _ => return None,
    })
}
