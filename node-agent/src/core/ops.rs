//! The narrow interface between the core and the kernel datapath.

use std::collections::BTreeMap;

use podmirror_crds::model::{CompiledSession, Direction};

/// One session as programmed on one interface: the caller-chosen id that is
/// stable for the session's key (counters are keyed by it) and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSlot {
    pub id: u32,
    pub session: CompiledSession,
}

/// Counters of one session in one direction, summed over interfaces/CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Packets whose verdict was Copy (copies decided).
    pub matched: u64,
    /// Copies handed to the network (copies delivered by the node).
    pub copied_packets: u64,
    pub copied_bytes: u64,
    /// Copies cut to fit the path MTU (not counting `packetLength` cuts).
    pub truncated: u64,
    /// Packets whose first matching rule was a Reject.
    pub rejected: u64,
    /// Decided copies that were not sent, by reason.
    pub failures: BTreeMap<String, u64>,
}

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
