//! Finding the external programs the tests and the runner drive, and saying
//! clearly why one is missing.

use std::path::{Path, PathBuf};

use crate::{E2eError, cmd, repo_root};

/// `CI=true`: a test that cannot run must fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Looks `name` up on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A tool from (in order) the environment variable `env`, PATH, or the
/// repository's `.tools/bin` where `scripts/install-deps.sh` puts helm and
/// kubectl. The binary must answer `version_args`, so a broken download is
/// reported as such rather than as a failing chart.
pub fn find(name: &'static str, env: &str, version_args: &[&str]) -> Result<PathBuf, E2eError> {
    let candidates = std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(on_path(name))
        .chain(Some(repo_root().join(".tools").join("bin").join(name)));
    for candidate in candidates {
        if is_executable(&candidate) && cmd::run(&candidate, version_args).is_ok() {
            return Ok(candidate);
        }
    }
    Err(E2eError::ToolMissing {
        tool: name,
        hint: format!(
            "looked at ${env}, PATH and {}; run scripts/install-deps.sh",
            repo_root().join(".tools/bin").display()
        ),
    })
}

/// The real helm binary (3.x).
pub fn helm() -> Result<PathBuf, E2eError> {
    find("helm", "HELM", &["version", "--short"])
}

/// kubectl, for the kind runner.
pub fn kubectl() -> Result<PathBuf, E2eError> {
    find("kubectl", "KUBECTL", &["version", "--client"])
}

/// kind. It cannot be installed from a package registry, so it must already
/// be on PATH (or named by $KIND).
pub fn kind() -> Result<PathBuf, E2eError> {
    find("kind", "KIND", &["version"]).map_err(|_| E2eError::ToolMissing {
        tool: "kind",
        hint: "the kind e2e needs the `kind` binary on PATH (or $KIND); it is not \
               installable from the package registries, install it from your distribution \
               or a release and re-run `make e2e`"
            .into(),
    })
}

/// The docker CLI *and* a daemon that answers: `docker --version` alone
/// succeeds on machines without an engine.
pub fn docker_with_daemon() -> Result<PathBuf, E2eError> {
    let docker = on_path("docker").ok_or(E2eError::ToolMissing {
        tool: "docker",
        hint: "the kind e2e needs Docker (CLI and a running engine)".into(),
    })?;
    let info = cmd::run_any(&docker, &["info", "--format", "{{.ServerVersion}}"])?;
    if !info.success || info.stdout.trim().is_empty() {
        return Err(E2eError::ToolMissing {
            tool: "docker daemon",
            hint: format!(
                "`docker info` cannot reach an engine ({}); the kind e2e needs a running Docker",
                info.stderr.trim()
            ),
        });
    }
    Ok(docker)
}

/// For tests: run when the tool exists; otherwise fail under CI, or print a
/// loud SKIPPED line and return None.
pub fn require<T>(what: &str, found: Result<T, E2eError>) -> Option<T> {
    match found {
        Ok(t) => Some(t),
        Err(e) if in_ci() => panic!("CI=true and {what} cannot run: {e}"),
        Err(e) => {
            // Straight to the stderr fd: libtest captures eprintln! of passing tests.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n!!!!!!!!\nSKIPPED: {what}: {e}\n!!!!!!!!\n").as_bytes(),
            );
            None
        }
    }
}
