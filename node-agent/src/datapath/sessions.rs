//! Programming interfaces: sessions, endpoint tables, rate caps and counter
//! entries of each host-side veth.

use aya::maps::{HashMap, MapData, PerCpuHashMap, PerCpuValues};

use super::abi::*;
use super::{
    BPF_NOEXIST, Datapath, DatapathError, DatapathSession, MAP_COUNTERS, MAP_LBS, MAP_RATES, encode, is_not_found,
    map_mut,
};

impl Datapath {
    /// Replace the sessions of `ifindex` in one flip of its table entry (a
    /// packet sees the old set or the new, never a mix; see `ifaces`). An
    /// empty list removes them. At most 3 sessions; a refused list leaves the
    /// interface as it was.
    pub fn set_sessions(&mut self, ifindex: u32, sessions: &[DatapathSession]) -> Result<(), DatapathError> {
        if sessions.is_empty() {
            return self.forget_iface(ifindex);
        }
        self.generation = self.generation.wrapping_add(1);
        let (iface, ids) = encode::encode_iface(sessions, self.generation)?;
        let tables = lbs_of(sessions)?;
        // Counters first, so that the first copied packet already has its entry.
        let nr_cpus = aya::util::nr_cpus().map_err(|(what, e)| DatapathError::Invalid {
            field: "possible CPUs".into(),
            reason: format!("{what}: {e}"),
        })?;
        {
            let mut counters: PerCpuHashMap<&mut MapData, PmCounterKey, PmCounters> =
                map_mut(&mut self.ebpf, MAP_COUNTERS)?;
            for id in &ids {
                for d in [PM_DIR_INBOUND, PM_DIR_OUTBOUND] {
                    let key = PmCounterKey { session_id: *id, direction: d };
                    if counters.get(&key, 0).is_err() {
                        let zeros = PerCpuValues::try_from(vec![PmCounters::default(); nr_cpus]).map_err(|e| {
                            DatapathError::Invalid { field: "possible CPUs".into(), reason: e.to_string() }
                        })?;
                        // BPF_NOEXIST: a packet may have created it meanwhile.
                        let _ = counters.insert(key, zeros, BPF_NOEXIST);
                    }
                }
            }
        }
        // Endpoint tables before the sessions that use them (a packet never
        // finds a session without its table). Keyed by session id: the
        // interfaces sharing a session share its table.
        {
            let mut lbs: HashMap<&mut MapData, u32, PmLb> = map_mut(&mut self.ebpf, MAP_LBS)?;
            for (ds, lb) in sessions.iter().filter(|s| s.session.enabled).zip(tables) {
                lbs.insert(ds.id, lb.as_ref(), 0).map_err(|source| DatapathError::Map { map: MAP_LBS, source })?;
            }
        }
        self.set_rates(sessions)?;
        self.ifaces.set(&mut self.ebpf, ifindex, &iface)
    }

    /// The rate caps of these sessions. A cap that did not change keeps its
    /// buckets (rewriting them would grant a fresh burst on every update of
    /// any interface sharing the session).
    fn set_rates(&mut self, sessions: &[DatapathSession]) -> Result<(), DatapathError> {
        let mut rates: HashMap<&mut MapData, u32, PmRate> = map_mut(&mut self.ebpf, MAP_RATES)?;
        let err = |source| DatapathError::Map { map: MAP_RATES, source };
        for ds in sessions.iter().filter(|s| s.session.enabled) {
            match &ds.session.rate_limit {
                Some(cap) => {
                    let want = encode::encode_rate(cap);
                    let same = rates.get(&ds.id, 0).is_ok_and(|r| {
                        (r.pkt_cost, r.byte_cost, r.burst) == (want.pkt_cost, want.byte_cost, want.burst)
                    });
                    if !same {
                        rates.insert(ds.id, want, 0).map_err(err)?;
                    }
                }
                None => match rates.remove(&ds.id) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => return Err(err(source)),
                },
            }
        }
        Ok(())
    }

    pub(super) fn forget_iface(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.ifaces.remove(&mut self.ebpf, ifindex)
    }

    /// Drop the counters and endpoint table of a session no interface uses
    /// any more.
    pub fn remove_counters(&mut self, session_id: u32) -> Result<(), DatapathError> {
        let mut lbs: HashMap<&mut MapData, u32, PmLb> = map_mut(&mut self.ebpf, MAP_LBS)?;
        match lbs.remove(&session_id) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(source) => return Err(DatapathError::Map { map: MAP_LBS, source }),
        }
        let mut rates: HashMap<&mut MapData, u32, PmRate> = map_mut(&mut self.ebpf, MAP_RATES)?;
        match rates.remove(&session_id) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(source) => return Err(DatapathError::Map { map: MAP_RATES, source }),
        }
        let mut counters: PerCpuHashMap<&mut MapData, PmCounterKey, PmCounters> =
            map_mut(&mut self.ebpf, MAP_COUNTERS)?;
        for d in [PM_DIR_INBOUND, PM_DIR_OUTBOUND] {
            match counters.remove(&PmCounterKey { session_id, direction: d }) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => return Err(DatapathError::Map { map: MAP_COUNTERS, source }),
            }
        }
        Ok(())
    }
}

/// The endpoint tables of the enabled sessions, all encoded before any is
/// written (a refused session leaves the maps as they were).
fn lbs_of(sessions: &[DatapathSession]) -> Result<Vec<Box<PmLb>>, DatapathError> {
    sessions.iter().filter(|s| s.session.enabled).map(|s| encode::encode_lb(&s.session)).collect()
}
