//! The narrow interface between the core and the kernel datapath.

use std::collections::BTreeMap;

use podmirror_crds::model::Direction;

// The core speaks the datapath library's own value types: one definition of
// a programmed session and of its counters, so the two cannot drift apart.
/// One session as programmed on one interface (id stable per session key).
pub use crate::datapath::DatapathSession as SessionSlot;
/// Counters of one session in one direction, summed over interfaces and CPUs.
pub use crate::datapath::SessionCounters;

/// What the core needs from a datapath. Implemented by `datapath::Datapath`
/// (see `core::real`) and by a recording fake in the core's tests.
pub trait DatapathOps {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Attach the program to both hooks of `ifindex`; idempotent.
    fn attach(&mut self, ifindex: u32) -> Result<(), Self::Error>;
    /// Replace the sessions of `ifindex` atomically (at most 3, priority order).
    fn set_sessions(&mut self, ifindex: u32, sessions: &[SessionSlot]) -> Result<(), Self::Error>;
    /// Remove the program and state of `ifindex`.
    fn detach(&mut self, ifindex: u32) -> Result<(), Self::Error>;
    /// Interfaces the datapath currently has attached (including adopted pins).
    fn attached(&self) -> Vec<u32>;
    /// Counters keyed by (session id, direction).
    fn counters(&self) -> Result<BTreeMap<(u32, Direction), SessionCounters>, Self::Error>;
    /// A session id is no longer used: drop its counters so that the next
    /// session given this id starts from zero.
    fn release(&mut self, _session_id: u32) -> Result<(), Self::Error> {
        Ok(())
    }
}
