//! The endpoint of a flow among a target's endpoints: a Maglev lookup table
//! (Eisenbud et al., NSDI 2016) computed here and stored per session in the
//! `pm_lbs` map; the C side reads `endpoints[lut[flow_hash % lut_size]]`.
//!
//! Why Maglev: one map lookup and one array read per copied packet, whatever
//! the number of endpoints (rendezvous hashing would walk them all in eBPF),
//! near-perfect balance (every endpoint owns `lut_size / n` slots, give or
//! take one), and a change of the endpoint set moves about `1/n` of the
//! flows. The table depends only on the set of addresses, never on their
//! order or on the node, so every node and a restarted agent agree.

use std::net::IpAddr;

use super::abi::{PM_LUT_SIZE, PM_MAX_ENDPOINTS};

/// An endpoint set and its lookup table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointTable {
    endpoints: Vec<IpAddr>,
    lut: Vec<u16>,
}

/// More endpoints than one session's table holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{count} endpoints exceed the datapath's {max} per session")]
pub struct TooManyEndpoints {
    pub count: usize,
    pub max: usize,
}

/// The endpoints as the datapath indexes them: sorted, without duplicates.
pub fn ordered(targets: &[IpAddr]) -> Vec<IpAddr> {
    let mut endpoints = targets.to_vec();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// A stable 64-bit hash of an address (FNV-1a, then the splitmix64
/// finalizer so that near addresses get unrelated permutations).
fn address_hash(addr: &IpAddr) -> u64 {
    let bytes: Vec<u8> = match addr {
        IpAddr::V4(a) => std::iter::once(4).chain(a.octets()).collect(),
        IpAddr::V6(a) => std::iter::once(6).chain(a.octets()).collect(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Maglev population: each endpoint in turn takes the next free slot of its
/// own permutation (offset + j * skip mod M, M prime) until the table is full.
fn populate(endpoints: &[IpAddr]) -> Vec<u16> {
    const EMPTY: u16 = u16::MAX;
    let m = PM_LUT_SIZE as u64;
    let perms: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            let h = address_hash(e);
            ((h & 0xffff_ffff) % m, (h >> 32) % (m - 1) + 1)
        })
        .collect();
    let mut next = vec![0u64; endpoints.len()];
    let mut lut = vec![EMPTY; PM_LUT_SIZE];
    let mut filled = 0;
    while filled < PM_LUT_SIZE {
        for (i, (offset, skip)) in perms.iter().enumerate() {
            let mut slot = ((offset + next[i] * skip) % m) as usize;
            while lut[slot] != EMPTY {
                next[i] += 1;
                slot = ((offset + next[i] * skip) % m) as usize;
            }
            // i < PM_MAX_ENDPOINTS <= u16::MAX, checked by `new`.
            lut[slot] = i as u16;
            next[i] += 1;
            filled += 1;
            if filled == PM_LUT_SIZE {
                break;
            }
        }
    }
    lut
}

impl EndpointTable {
    /// The table of `targets` (any order, duplicates ignored); `None` when
    /// there is no endpoint.
    pub fn new(targets: &[IpAddr]) -> Result<Option<EndpointTable>, TooManyEndpoints> {
        let endpoints = ordered(targets);
        if endpoints.len() > PM_MAX_ENDPOINTS {
            return Err(TooManyEndpoints { count: endpoints.len(), max: PM_MAX_ENDPOINTS });
        }
        if endpoints.is_empty() {
            return Ok(None);
        }
        let lut = populate(&endpoints);
        Ok(Some(EndpointTable { endpoints, lut }))
    }

    /// The endpoint of a flow with this `flow::flow_hash`, as the C side
    /// picks it.
    pub fn pick(&self, hash: u32) -> IpAddr {
        let idx = self.lut[hash as usize % self.lut.len()] as usize;
        self.endpoints[idx]
    }

    pub fn endpoints(&self) -> &[IpAddr] {
        &self.endpoints
    }

    pub fn lut(&self) -> &[u16] {
        &self.lut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn endpoints(range: std::ops::Range<u8>) -> Vec<IpAddr> {
        range.map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, i / 8, 10 + i))).collect()
    }

    /// Flow hashes as the datapath computes them would do, but any well
    /// mixed 32-bit values exercise the table the same way.
    fn hashes(n: u32) -> impl Iterator<Item = u32> {
        (0..n).map(|i| {
            let mut h = i.wrapping_mul(0x9e37_79b1);
            h ^= h >> 16;
            h = h.wrapping_mul(0x85eb_ca6b);
            h ^ (h >> 13)
        })
    }

    fn table(eps: &[IpAddr]) -> EndpointTable {
        EndpointTable::new(eps).expect("within bounds").expect("endpoints")
    }

    #[test]
    fn forty_endpoints_share_slots_and_flows_evenly() {
        let t = table(&endpoints(0..40));
        let mut slots: BTreeMap<u16, usize> = BTreeMap::new();
        for s in t.lut() {
            *slots.entry(*s).or_default() += 1;
        }
        assert_eq!(slots.len(), 40);
        let (min, max) = (slots.values().min().copied(), slots.values().max().copied());
        let ideal = PM_LUT_SIZE / 40;
        assert!(min >= Some(ideal - 2) && max <= Some(ideal + 2), "slots per endpoint {min:?}..{max:?}, ideal {ideal}");
        let mut flows: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for h in hashes(400_000) {
            *flows.entry(t.pick(h)).or_default() += 1;
        }
        assert_eq!(flows.len(), 40);
        let (min, max) = (flows.values().min().copied().unwrap_or(0), flows.values().max().copied().unwrap_or(0));
        // 10,000 flows per endpoint expected: within 5% of it.
        assert!(min >= 9_500 && max <= 10_500, "flows per endpoint {min}..{max}");
    }

    /// Count the flows whose endpoint changes between two endpoint sets.
    fn moved(before: &EndpointTable, after: &EndpointTable) -> usize {
        hashes(200_000).filter(|h| before.pick(*h) != after.pick(*h)).count()
    }

    #[test]
    fn adding_or_removing_one_of_forty_moves_about_one_flow_in_forty() {
        let forty = endpoints(0..40);
        let t40 = table(&forty);
        // Added: the newcomer takes about 1/41 of the flows, nothing else moves much.
        let t41 = table(&endpoints(0..41));
        let added = moved(&t40, &t41);
        assert!(added <= 200_000 * 3 / (2 * 41), "adding moved {added} of 200000 flows");
        assert!(added >= 200_000 / (2 * 41), "the new endpoint got only {added} flows");
        // Removed (one from the middle): its 1/40 must move, little more.
        let mut thirty_nine = forty.clone();
        thirty_nine.remove(17);
        let t39 = table(&thirty_nine);
        let removed = moved(&t40, &t39);
        let owned = hashes(200_000).filter(|h| t40.pick(*h) == forty[17]).count();
        assert!(removed >= owned, "flows of the removed endpoint must all move");
        assert!(removed <= 200_000 * 3 / (2 * 40), "removing moved {removed} of 200000 flows");
    }

    #[test]
    fn order_and_duplicates_do_not_change_the_table() {
        let mut eps = endpoints(0..12);
        let a = table(&eps);
        eps.reverse();
        eps.push(eps[0]);
        assert_eq!(a, table(&eps));
    }

    #[test]
    fn bounds_are_explicit() {
        assert_eq!(EndpointTable::new(&[]), Ok(None));
        let one = table(&endpoints(0..1));
        assert!(hashes(100).all(|h| one.pick(h) == one.endpoints()[0]));
        let many: Vec<IpAddr> =
            (0..=PM_MAX_ENDPOINTS as u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))).collect();
        let err = EndpointTable::new(&many).expect_err("too many");
        assert_eq!(err, TooManyEndpoints { count: PM_MAX_ENDPOINTS + 1, max: PM_MAX_ENDPOINTS });
        assert!(err.to_string().contains("1025 endpoints exceed"), "{err}");
        let full = table(&many[..PM_MAX_ENDPOINTS]);
        assert_eq!(full.endpoints().len(), PM_MAX_ENDPOINTS);
    }
}
