//! A kind cluster that exists for one e2e run (deleted on drop, even when a
//! step fails), and kubectl/docker bound to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{E2eError, cmd};

/// The cluster, deleted when dropped unless `PODMIRROR_E2E_KEEP=1`.
pub struct Cluster {
    pub name: String,
    pub kind: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// `kind create cluster` with `config` (one control plane, two workers).
    /// The kubeconfig goes to its own file so the user's is left alone.
    pub fn create(kind: PathBuf, name: &str, config: &Path) -> Result<Cluster, E2eError> {
        let kubeconfig = std::env::temp_dir().join(format!("{name}.kubeconfig"));
        // Delete a leftover of an earlier run of the same name first.
        let _ = cmd::run_any(&kind, &["delete", "cluster", "--name", name]);
        let cluster = Cluster { name: name.to_string(), kind, kubeconfig };
        cmd::run(
            &cluster.kind,
            &[
                "create".as_ref(),
                "cluster".as_ref(),
                "--name".as_ref(),
                name.as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--kubeconfig".as_ref(),
                cluster.kubeconfig.as_os_str(),
                "--wait".as_ref(),
                "180s".as_ref(),
            ],
        )?;
        Ok(cluster)
    }

    /// Makes a local image available on every node.
    pub fn load_image(&self, image: &str) -> Result<(), E2eError> {
        cmd::run(&self.kind, &["load", "docker-image", image, "--name", &self.name]).map(|_| ())
    }

    /// The node containers' names (= Kubernetes node names).
    pub fn nodes(&self) -> Result<Vec<String>, E2eError> {
        let out = cmd::run(&self.kind, &["get", "nodes", "--name", &self.name])?;
        let mut nodes: Vec<String> = out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        nodes.sort();
        Ok(nodes)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var("PODMIRROR_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("e2e: keeping kind cluster {} (kubeconfig {})", self.name, self.kubeconfig.display());
            return;
        }
        if let Err(e) = cmd::run(&self.kind, &["delete", "cluster", "--name", &self.name]) {
            eprintln!("e2e: could not delete kind cluster {}: {e}", self.name);
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// kubectl against the cluster.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<String> {
        let mut all = vec![format!("--kubeconfig={}", self.kubeconfig.display())];
        all.extend(args.iter().map(|s| s.to_string()));
        all
    }

    pub fn run(&self, args: &[&str]) -> Result<String, E2eError> {
        cmd::run(&self.bin, &self.args(args))
    }

    pub fn run_any(&self, args: &[&str]) -> Result<cmd::Output, E2eError> {
        cmd::run_any(&self.bin, &self.args(args))
    }

    /// `kubectl apply -f -` of `yaml` in `namespace`.
    pub fn apply(&self, namespace: &str, yaml: &str) -> Result<(), E2eError> {
        let args = self.args(&["apply", "-n", namespace, "-f", "-"]);
        let out = cmd::run_with_stdin(&self.bin, &args, Some(yaml))?;
        if out.success {
            Ok(())
        } else {
            Err(E2eError::CommandFailed {
                command: cmd::describe(&self.bin, &args),
                status: out.status,
                stderr: out.stderr,
            })
        }
    }

    /// A jsonpath query on one object.
    pub fn jsonpath(&self, namespace: &str, object: &str, path: &str) -> Result<String, E2eError> {
        let query = format!("jsonpath={path}");
        self.run(&["get", "-n", namespace, object, "-o", &query]).map(|s| s.trim().to_string())
    }
}

/// Polls `probe` until it returns `Ok(Some(_))`, up to `timeout`. The last
/// reason it gave is the error message, so a timeout says what was missing.
pub fn eventually<T>(
    step: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Result<T, String>, E2eError>,
) -> Result<T, E2eError> {
    let start = Instant::now();
    let mut last = String::from("never checked");
    while start.elapsed() < timeout {
        match probe()? {
            Ok(t) => return Ok(t),
            Err(why) => last = why,
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Err(E2eError::Step { step: step.to_string(), reason: format!("not true after {}s: {last}", timeout.as_secs()) })
}
