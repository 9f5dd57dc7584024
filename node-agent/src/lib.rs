//! podmirror node agent library.

pub mod core;
pub mod ifdiscovery;
pub mod metrics;
pub mod standalone;
pub mod datapath;
pub mod testbed;
pub mod kube;
