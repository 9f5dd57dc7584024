//! The node agent's error enum: every error names the object or field that
//! caused it, so a log line or a status condition is actionable on its own.

use std::path::PathBuf;

use podmirror_crds::model::SessionKey;

use super::PodKey;

/// Errors of the agent core, the standalone mode and interface discovery.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A datapath call failed for one interface; other interfaces are unaffected.
    #[error("datapath {op} on ifindex {ifindex}: {message}")]
    Datapath { op: &'static str, ifindex: u32, message: String },

    /// A datapath call that is not about one interface (open, counters, cleanup).
    #[error("datapath {op}: {message}")]
    DatapathGlobal { op: &'static str, message: String },

    /// The datapath holds at most this many sessions per interface (docs/quotas.md:
    /// sessions per source pod).
    #[error("pod {pod}: {count} sessions include it, at most {max} are allowed per source pod")]
    TooManySessions { pod: PodKey, count: usize, max: usize },

    /// A session's target has more endpoints than the datapath's table
    /// holds; only this session is left out, the pod's others still run.
    #[error("session {session}: targets: {count} endpoints exceed the datapath's {max} per session")]
    TooManyEndpoints { session: SessionKey, count: usize, max: usize },

    /// Two pods of the desired state resolved to the same host interface.
    #[error("pod {pod}: host interface ifindex {ifindex} is already used by pod {other}")]
    InterfaceClash { pod: PodKey, other: PodKey, ifindex: u32 },

    /// Two sessions of one pod share a priority (docs/quotas.md: unique per source pod).
    #[error("pod {pod}: sessions {first} and {second} share priority {priority}")]
    PriorityClash { pod: PodKey, first: Box<SessionKey>, second: Box<SessionKey>, priority: u16 },

    /// A standalone file could not be read.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },

    /// A standalone file was read but its content is invalid; `field` is the
    /// path of the offending field inside the document.
    #[error("{}: {object}: {field}: {message}", path.display())]
    Invalid { path: PathBuf, object: String, field: String, message: String },

    /// A session of a node's desired state that does not compile here; the
    /// pods' other sessions still run.
    #[error("MirrorNodeState {node}: {field}: {message}")]
    SessionConfig { node: String, session: SessionKey, field: String, message: String },

    /// A cross-object check of the standalone configuration failed (quotas,
    /// references between files).
    #[error("{object}: {field}: {message}")]
    Config { object: String, field: String, message: String },

    /// The host-side interface of a pod could not be found.
    #[error("pod {pod}: cannot find its host interface: {message}")]
    Discovery { pod: String, message: String },

    /// An I/O error at an edge (metrics server, signals).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
