//! The crate's one error type. Each variant names the command, file or object
//! that failed, so a red e2e run says where to look.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("{tool} not found: {hint}")]
    ToolMissing { tool: &'static str, hint: String },

    #[error("`{command}` could not start: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` exited with {status}:\n{stderr}")]
    CommandFailed { command: String, status: String, stderr: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("manifest document {index} ({what}): {reason}")]
    Manifest { index: usize, what: String, reason: String },

    #[error("{file}: {reason}")]
    Readme { file: PathBuf, reason: String },

    #[error("e2e step `{step}` failed: {reason}")]
    Step { step: String, reason: String },
}
