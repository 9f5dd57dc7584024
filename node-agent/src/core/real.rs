//! The real datapath behind the core's trait: a thin translation, no logic.

use std::collections::BTreeMap;

use podmirror_crds::model::Direction;

use super::ops::{DatapathOps, SessionCounters, SessionSlot};
use crate::datapath::{Datapath, DatapathError, DatapathSession};

impl DatapathOps for Datapath {
    type Error = DatapathError;

    fn attach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        Datapath::attach(self, ifindex)
    }

    fn set_sessions(&mut self, ifindex: u32, sessions: &[SessionSlot]) -> Result<(), DatapathError> {
        let sessions: Vec<DatapathSession> =
            sessions.iter().map(|s| DatapathSession { id: s.id, session: s.session.clone() }).collect();
        Datapath::set_sessions(self, ifindex, &sessions)
    }

    fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        Datapath::detach(self, ifindex)
    }

    fn attached(&self) -> Vec<u32> {
        Datapath::attached(self)
    }

    fn counters(&self) -> Result<BTreeMap<(u32, Direction), SessionCounters>, DatapathError> {
        Ok(Datapath::counters(self)?
            .into_iter()
            .map(|(key, c)| {
                let counters = SessionCounters {
                    matched: c.matched,
                    copied_packets: c.copied_packets,
                    copied_bytes: c.copied_bytes,
                    truncated: c.truncated,
                    rejected: c.rejected,
                    failures: c.failures,
                };
                (key, counters)
            })
            .collect())
    }

    fn release(&mut self, session_id: u32) -> Result<(), DatapathError> {
        Datapath::remove_counters(self, session_id)
    }
}
