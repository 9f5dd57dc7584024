//! The one fake datapath of the agent's unit tests: records every call,
//! keeps what is attached and programmed, and fails to attach where told.
//! Each programmed session reports `matched` = its id, so counter paths
//! have something to carry.

use std::collections::{BTreeMap, BTreeSet};

use podmirror_crds::model::Direction;

use super::{DatapathOps, SessionCounters, SessionSlot};

/// A datapath that records calls and can be told to fail on an interface.
#[derive(Default)]
pub struct FakeDatapath {
    pub attached: BTreeSet<u32>,
    pub sessions: BTreeMap<u32, Vec<SessionSlot>>,
    /// Every call, in order (`attach 5`, `set 5 [1, 2]`, `detach 5`).
    pub calls: Vec<String>,
    /// Interfaces whose attach fails.
    pub fail_on: BTreeSet<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("fake failure on {0}")]
pub struct FakeError(pub u32);

impl DatapathOps for FakeDatapath {
    type Error = FakeError;
    fn attach(&mut self, ifindex: u32) -> Result<(), FakeError> {
        self.calls.push(format!("attach {ifindex}"));
        if self.fail_on.contains(&ifindex) {
            return Err(FakeError(ifindex));
        }
        self.attached.insert(ifindex);
        Ok(())
    }
    fn set_sessions(&mut self, ifindex: u32, sessions: &[SessionSlot]) -> Result<(), FakeError> {
        self.calls.push(format!("set {ifindex} {:?}", sessions.iter().map(|s| s.id).collect::<Vec<_>>()));
        assert!(sessions.len() <= 3, "the core must never send more than 3 sessions");
        self.sessions.insert(ifindex, sessions.to_vec());
        Ok(())
    }
    fn detach(&mut self, ifindex: u32) -> Result<(), FakeError> {
        self.calls.push(format!("detach {ifindex}"));
        self.attached.remove(&ifindex);
        self.sessions.remove(&ifindex);
        Ok(())
    }
    fn attached(&self) -> Vec<u32> {
        self.attached.iter().copied().collect()
    }
    fn counters(&self) -> Result<BTreeMap<(u32, Direction), SessionCounters>, FakeError> {
        Ok(self
            .sessions
            .values()
            .flatten()
            .map(|s| ((s.id, Direction::Inbound), SessionCounters { matched: s.id as u64, ..Default::default() }))
            .collect())
    }
}
