//! The datapath's error: every variant names what it was doing and on what.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Loading or verifying the eBPF object failed; `hint` says the likely
    /// cause (no BPF permission, no bpffs).
    #[error("loading the eBPF datapath failed: {source}{hint}")]
    Load {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        hint: String,
    },
    #[error("eBPF program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("attaching {program} to interface {ifindex} ({hook}): {reason}")]
    Attach { program: &'static str, ifindex: u32, hook: &'static str, reason: String },
    #[error("interface {ifindex}: {reason}")]
    Interface { ifindex: u32, reason: String },
    #[error("pin {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("device {name}: {reason}")]
    Device { name: String, reason: String },
    /// A session the datapath cannot program; the interface keeps what it had.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("BPF_PROG_TEST_RUN: {0}")]
    TestRun(String),
}

impl DatapathError {
    pub(crate) fn load(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        let text = source.to_string().to_lowercase();
        let eperm = {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&source);
            let mut found = false;
            while let Some(e) = cur {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    found |= matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
                }
                cur = e.source();
            }
            found || text.contains("operation not permitted") || text.contains("permission denied")
        };
        let hint = if eperm {
            " (no BPF permission: run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)".to_string()
        } else {
            String::new()
        };
        DatapathError::Load { source: Box::new(source), hint }
    }
}
