//! `kubectl podmirror`: explain, status and live capture for podmirror.
//!
//! - [`explain`]: which session and rule decide a packet (the model's own
//!   evaluation), on live objects or a directory of YAML;
//! - [`status`]: one readable block per session;
//! - [`capture`]: a time-bounded session to the collector, its pcap stream
//!   to a file or stdout, and the cleanup on every exit path.

pub mod capture;
pub mod cli;
pub mod commands;
pub mod error;
pub mod explain;
pub mod live;
pub mod packet;
pub mod status;

pub use error::PluginError;
