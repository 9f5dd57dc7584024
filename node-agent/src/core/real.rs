//! The real datapath behind the core's trait: a thin translation, no logic.

use std::collections::BTreeMap;

use podmirror_crds::model::Direction;

use super::ops::{DatapathOps, SessionCounters, SessionSlot};
use crate::datapath::{Datapath, DatapathError};

impl DatapathOps for Datapath {
    type Error = DatapathError;

    fn attach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        Datapath::attach(self, ifindex)
    }

    fn set_sessions(&mut self, ifindex: u32, sessions: &[SessionSlot]) -> Result<(), DatapathError> {
        Datapath::set_sessions(self, ifindex, sessions)
    }

    fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        Datapath::detach(self, ifindex)
    }

    fn attached(&self) -> Vec<u32> {
        Datapath::attached(self)
    }

    fn counters(&self) -> Result<BTreeMap<(u32, Direction), SessionCounters>, DatapathError> {
        Datapath::counters(self)
    }

    fn release(&mut self, session_id: u32) -> Result<(), DatapathError> {
        Datapath::remove_counters(self, session_id)
    }
}
