//! podmirror node agent library.

pub mod core;
pub mod datapath;
pub mod ifdiscovery;
pub mod kube;
pub mod metrics;
pub mod standalone;
