//! The real `podmirror-agent` binary, standalone in a node namespace, and
//! everything it leaves behind removed when the test ends, passed or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{Result, TestbedError};

/// The agent in the node's network namespace, keeping the host's mounts
/// (bpffs): `nsenter --net`, not `ip netns exec`.
pub fn agent_command(agent: &Path, node_netns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{node_netns}")).arg(agent).args(args);
    cmd
}

/// A running `podmirror-agent --standalone DIR`. Dropping it kills the
/// agent, runs `--cleanup` and removes the pin dir and DIR.
#[derive(Debug)]
pub struct StandaloneAgent {
    child: Option<Child>,
    agent: PathBuf,
    node_netns: String,
    pin_dir: PathBuf,
    prefix: String,
    dir: PathBuf,
}

impl StandaloneAgent {
    /// Starts `agent` on `dir` in `node_netns` with its own pin dir and
    /// device prefix, then `extra` arguments; its stderr goes to the test's.
    pub fn start(
        agent: &Path,
        node_netns: &str,
        dir: &Path,
        pin_dir: &Path,
        prefix: &str,
        extra: &[&str],
    ) -> Result<StandaloneAgent> {
        let (d, pin) = (dir.display().to_string(), pin_dir.display().to_string());
        let mut args = vec!["--standalone", &d, "--pin-dir", &pin, "--device-prefix", prefix];
        args.extend_from_slice(extra);
        let child =
            agent_command(agent, node_netns, &args).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().map_err(
                |e| TestbedError::Command {
                    command: format!("{} {}", agent.display(), args.join(" ")),
                    detail: e.to_string(),
                },
            )?;
        Ok(StandaloneAgent {
            child: Some(child),
            agent: agent.to_path_buf(),
            node_netns: node_netns.to_string(),
            pin_dir: pin_dir.to_path_buf(),
            prefix: prefix.to_string(),
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for StandaloneAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pin = self.pin_dir.display().to_string();
        let args = ["--cleanup", "--pin-dir", &pin, "--device-prefix", &self.prefix];
        let _ = agent_command(&self.agent, &self.node_netns, &args).status();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
