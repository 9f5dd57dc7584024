//! podmirror operator: watches sessions, filters, pods, services, endpoint
//! slices and nodes; decides with the pure [`plan`]; writes session and filter
//! status and one `MirrorNodeState` per node ([`sync`]), as the leader
//! ([`leader`]) of its replicas.

pub mod clock;
pub mod controller;
pub mod error;
pub mod http;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod sync;
pub mod trim;
pub mod uninstall;

pub use error::Error;
