//! podmirror's collector: receives the copies the agents send (VXLAN over
//! UDP, GRE), and hands each to the sinks chosen by flags: rotating pcap
//! files per VNI, a live pcap stream over HTTP, and the replay of the
//! mirrored HTTP/1.x requests to a test server (docs/collector.md).

pub mod config;
pub mod decode;
pub mod dispatch;
pub mod filesink;
pub mod frame;
pub mod http;
pub mod input;
pub mod metrics;
pub mod pcap;
pub mod recordfile;
pub mod replay;
mod run;
pub mod stream;
pub mod tcring;
pub mod xdp;

pub use run::{Running, StartError, start};
