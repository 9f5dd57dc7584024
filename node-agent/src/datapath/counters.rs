//! Reading the per-CPU counters of every session and direction.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuHashMap};
use podmirror_crds::model::Direction;

use super::abi::*;
use super::{Datapath, DatapathError, MAP_COUNTERS, SessionCounters};

impl Datapath {
    /// Counters of every session and direction, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<(u32, Direction), SessionCounters>, DatapathError> {
        let map = self.ebpf.map(MAP_COUNTERS).ok_or(DatapathError::Map {
            map: MAP_COUNTERS,
            source: aya::maps::MapError::InvalidName { name: MAP_COUNTERS.into() },
        })?;
        let counters: PerCpuHashMap<&MapData, PmCounterKey, PmCounters> =
            PerCpuHashMap::try_from(map).map_err(|source| DatapathError::Map { map: MAP_COUNTERS, source })?;
        let mut out = BTreeMap::new();
        for entry in counters.iter() {
            let (key, per_cpu) = entry.map_err(|source| DatapathError::Map { map: MAP_COUNTERS, source })?;
            let direction = if key.direction == PM_DIR_OUTBOUND { Direction::Outbound } else { Direction::Inbound };
            let mut sum = SessionCounters::default();
            let mut failures = [0u64; PM_FAIL_MAX];
            let mut skipped = [0u64; PM_SKIP_MAX];
            for c in per_cpu.iter() {
                sum.matched += c.matched;
                sum.copied_packets += c.copied_packets;
                sum.copied_bytes += c.copied_bytes;
                sum.truncated += c.truncated;
                sum.rejected += c.rejected;
                for (acc, f) in failures.iter_mut().zip(c.failures.iter()) {
                    *acc += f;
                }
                for (acc, s) in skipped.iter_mut().zip(c.skipped.iter()) {
                    *acc += s;
                }
            }
            for (reason, n) in PM_FAIL_REASONS.iter().zip(failures) {
                if n > 0 {
                    sum.failures.insert((*reason).to_string(), n);
                }
            }
            for (reason, n) in PM_SKIP_REASONS.iter().zip(skipped) {
                if n > 0 {
                    sum.skipped.insert((*reason).to_string(), n);
                }
            }
            out.insert((key.session_id, direction), sum);
        }
        Ok(out)
    }
}
