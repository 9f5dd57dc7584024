//! podmirror's end-to-end support: the chart checks run by `cargo test`
//! (`tests/chart.rs`, a real helm binary) and the kind runner of `make e2e`
//! (`src/bin/kind/`).
//!
//! Everything that decides (is this manifest hardened, which RBAC rules does it
//! grant, which flows did a collector see) is a pure function over text here,
//! tested on its own; the modules that run programs (`cmd`, `tools`, `kind`)
//! stay thin.

pub mod bpfobj;
pub mod checks;
pub mod cmd;
pub mod error;
pub mod kind;
pub mod manifest;
pub mod node_state;
pub mod oci;
pub mod rbac;
pub mod readme;
pub mod scenario;
pub mod tcpdump;
pub mod tools;

pub use error::E2eError;

use std::path::PathBuf;

/// The workspace root (this crate lives in `<root>/e2e`).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("podmirror")
}
