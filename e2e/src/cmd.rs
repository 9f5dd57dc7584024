//! Running external programs (helm, kubectl, kind, docker) with their command
//! line kept for the error message.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::E2eError;

/// The captured result of a command that ran to completion.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// Renders a command line for messages.
pub fn describe<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.as_ref().to_string_lossy());
    }
    line
}

/// Runs `program args`, returning its output whatever its exit status.
pub fn run_any<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Result<Output, E2eError> {
    run_with_stdin(program, args, None)
}

/// Runs `program args` and fails unless it exits 0.
pub fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Result<String, E2eError> {
    let out = run_any(program, args)?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(E2eError::CommandFailed { command: describe(program, args), status: out.status, stderr: out.stderr })
    }
}

/// Runs `program args` with `stdin` fed to it (e.g. `kubectl apply -f -`).
pub fn run_with_stdin<S: AsRef<OsStr>>(program: &Path, args: &[S], stdin: Option<&str>) -> Result<Output, E2eError> {
    let spawn_err = |source| E2eError::Spawn { command: describe(program, args), source };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok(Output {
        success: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `program args` with its output going to ours (long builds show
/// progress), failing unless it exits 0.
pub fn run_visible<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Result<(), E2eError> {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|source| E2eError::Spawn { command: describe(program, args), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(E2eError::CommandFailed {
            command: describe(program, args),
            status: status.to_string(),
            stderr: "(see the output above)".into(),
        })
    }
}
