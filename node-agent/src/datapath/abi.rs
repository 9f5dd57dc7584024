//! The Rust mirror of every C struct that crosses a map (`bpf/pm_abi.h`).
//!
//! `#[repr(C)]`, same field order and explicit padding as the C side; the
//! tests at the bottom assert sizes and offsets against the C layout, so a
//! change on one side without the other fails the build's tests. Addresses are
//! in network byte order (IPv4 in `w[0]`), ports and lengths in host order.

// Names follow the C header on purpose: grep finds both sides.

/// Slots per interface: the quota of sessions per source pod.
pub const PM_MAX_SESSIONS: usize = podmirror_crds::model::quota::SESSIONS_PER_SOURCE_POD;
/// Rules per direction: the quota of rules per filter direction.
pub const PM_MAX_RULES: usize = podmirror_crds::model::quota::RULES_PER_DIRECTION;
/// One direction's rule table of an interface: every session's rules.
pub const PM_MAX_IFACE_RULES: usize = PM_MAX_SESSIONS * PM_MAX_RULES;
/// Host-side veths per node.
pub const PM_MAX_IFACES: usize = 4096;
/// Entries of `pm_iftab`: an interface's new state goes into a free slot
/// before the interface's entry flips to it, hence the spares.
pub const PM_IFACE_SLOTS: usize = PM_MAX_IFACES + 64;
/// Ifindexes below this find their slot in the array `pm_ifslot`, the others
/// in the hash `pm_ifbig`.
pub const PM_IFINDEX_DIRECT: usize = 65536;
/// Endpoints of one session's target (a Service's ready endpoints).
pub const PM_MAX_ENDPOINTS: usize = 1024;
/// Slots of a session's Maglev lookup table (prime, >= 16 per endpoint).
pub const PM_LUT_SIZE: usize = 16381;

pub const PM_DIR_INBOUND: u32 = 0;
pub const PM_DIR_OUTBOUND: u32 = 1;

pub const PM_FAMILY_IPV4: u8 = 4;
pub const PM_FAMILY_IPV6: u8 = 6;

pub const PM_ACTION_ACCEPT: u8 = 1;
pub const PM_ACTION_REJECT: u8 = 2;

pub const PM_RULE_ANY_PROTO: u8 = 1 << 0;
pub const PM_RULE_SPORTS: u8 = 1 << 1;
pub const PM_RULE_DPORTS: u8 = 1 << 2;

pub const PM_SESS_SAMPLE: u8 = 1 << 0;
pub const PM_SESS_RATE: u8 = 1 << 1;

/// `PM_SKIP_*` in index order: why an Accepted packet was not copied on purpose.
pub const PM_SKIP_REASONS: [&str; PM_SKIP_MAX] = ["rate_limit", "flow_sampling"];
pub const PM_SKIP_MAX: usize = 2;

pub const PM_ENCAP_VXLAN: u8 = 0;
pub const PM_ENCAP_GRE: u8 = 1;
pub const PM_ENCAP_GENEVE: u8 = 2;
pub const PM_ENCAP_ERSPAN: u8 = 3;

pub const PM_VERDICT_NOT_IP: u32 = 0;
pub const PM_VERDICT_NO_MATCH: u32 = 1;
pub const PM_VERDICT_COPY: u32 = 2;
pub const PM_VERDICT_REJECT: u32 = 3;
pub const PM_VERDICT_UNSAMPLED: u32 = 4;

/// `PM_FAIL_*` in index order: the reasons a copy can be lost.
pub const PM_FAIL_REASONS: [&str; PM_FAIL_MAX] =
    ["clone", "no_target", "fib", "trim", "encap", "write", "mtu", "redirect"];
pub const PM_FAIL_MAX: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmAddr {
    pub w: [u32; 4],
}

/// One compiled rule (the CIDRs as masked network and mask, see
/// `encode::pair_words`) and where it came from (`slot`: the session's index in
/// `PmIface::sessions`; `index`: the rule's in that session's list).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmRule {
    /// Source and destination word k side by side: `net[2k]`, `net[2k + 1]`.
    pub net: [u32; 8],
    pub mask: [u32; 8],
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub protocol: u8,
    pub flags: u8,
    pub action: u8,
    pub slot: u8,
    pub index: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmSession {
    pub id: u32,
    pub vni: u32,
    pub cut_len: u16,
    pub target_port: u16,
    pub encap: u8,
    pub flags: u8,
    pub pad: [u8; 2],
    pub sample_below: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmEndpoint {
    pub addr: PmAddr,
    pub family: u32,
}

/// A session's endpoints and Maglev table (`pm_lbs`, keyed by session id).
/// 52 KiB: keep it boxed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmLb {
    pub n_endpoints: u32,
    pub lut_size: u32,
    pub seq: u64,
    pub endpoints: [PmEndpoint; PM_MAX_ENDPOINTS],
    pub lut: [u16; PM_LUT_SIZE],
    pub pad: [u16; 3],
}

impl PmLb {
    pub fn boxed() -> Box<PmLb> {
        Box::new(PmLb {
            n_endpoints: 0,
            lut_size: 0,
            seq: 0,
            endpoints: [PmEndpoint::default(); PM_MAX_ENDPOINTS],
            lut: [0; PM_LUT_SIZE],
            pad: [0; 3],
        })
    }
}

/// One interface's state (a `pm_iftab` slot): `rules[dir]` holds the
/// direction's walk, the `n4[dir]` IPv4 rules first, then the `n6[dir]` IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmIface {
    pub generation: u32,
    pub n_sessions: u8,
    pub n4: [u8; 2],
    pub n6: [u8; 2],
    pub pad: [u8; 3],
    pub sessions: [PmSession; PM_MAX_SESSIONS],
    pub rules: [[PmRule; PM_MAX_IFACE_RULES]; 2],
}

impl Default for PmIface {
    fn default() -> Self {
        PmIface {
            generation: 0,
            n_sessions: 0,
            n4: [0; 2],
            n6: [0; 2],
            pad: [0; 3],
            sessions: [PmSession::default(); PM_MAX_SESSIONS],
            rules: [[PmRule::default(); PM_MAX_IFACE_RULES]; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PmCounterKey {
    pub session_id: u32,
    pub direction: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmCounters {
    pub matched: u64,
    pub copied_packets: u64,
    pub copied_bytes: u64,
    pub truncated: u64,
    pub rejected: u64,
    pub failures: [u64; PM_FAIL_MAX],
    pub skipped: [u64; PM_SKIP_MAX],
}

/// A session's rate cap (`pm_rates`); times in ticks of 1/64 ns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmRate {
    pub pkt_tat: u64,
    pub byte_tat: u64,
    pub pkt_cost: u64,
    pub byte_cost: u64,
    pub burst: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmConfig {
    pub copy_ifindex: u32,
    pub copy_mark: u32,
    pub node_ip4: PmAddr,
    pub node_ip6: PmAddr,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmXfer {
    pub pending: u32,
    pub session_id: u32,
    pub direction: u32,
    pub vni: u32,
    pub cut_len: u16,
    pub target_port: u16,
    pub sport: u16,
    pub encap: u8,
    pub target_family: u8,
    pub target: PmAddr,
    pub flow_hash: u32,
    pub seq: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmDecision {
    pub verdict: u32,
    pub slot: u32,
    pub rule: u32,
    pub family: u32,
    pub protocol: u32,
    pub has_ports: u32,
    pub sport: u32,
    pub dport: u32,
    pub xfer: PmXfer,
}

// SAFETY (all impls): plain-old-data `repr(C)` structs of integers with no
// implicit padding (asserted in the tests below), valid for any bit pattern.
unsafe impl aya::Pod for PmAddr {}
unsafe impl aya::Pod for PmRule {}
unsafe impl aya::Pod for PmSession {}
unsafe impl aya::Pod for PmIface {}
unsafe impl aya::Pod for PmEndpoint {}
unsafe impl aya::Pod for PmLb {}
unsafe impl aya::Pod for PmCounterKey {}
unsafe impl aya::Pod for PmCounters {}
unsafe impl aya::Pod for PmRate {}
unsafe impl aya::Pod for PmConfig {}
unsafe impl aya::Pod for PmXfer {}
unsafe impl aya::Pod for PmDecision {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// `#define PM_NAME value` of bpf/pm_abi.h (decimal or `(1 << n)`).
    fn c_defines() -> std::collections::BTreeMap<String, u64> {
        include_str!("../../bpf/pm_abi.h")
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("#define ")?;
                let (name, value) = rest.split_once(char::is_whitespace)?;
                let value = value.split("/*").next()?.trim();
                let value = match value.strip_prefix("(1 <<") {
                    Some(shift) => 1u64 << shift.trim_end_matches(')').trim().parse::<u32>().ok()?,
                    None => value.parse().ok()?,
                };
                let name = name.to_string();
                Some((name, value))
            })
            .collect()
    }

    #[test]
    fn every_constant_of_the_c_abi_has_the_rust_value() {
        let rust: &[(&str, u64)] = &[
            ("PM_MAX_SESSIONS", PM_MAX_SESSIONS as u64),
            ("PM_MAX_RULES", PM_MAX_RULES as u64),
            ("PM_MAX_ENDPOINTS", PM_MAX_ENDPOINTS as u64),
            ("PM_MAX_IFACE_RULES", PM_MAX_IFACE_RULES as u64),
            ("PM_MAX_IFACES", PM_MAX_IFACES as u64),
            ("PM_IFACE_SLOTS", PM_IFACE_SLOTS as u64),
            ("PM_IFINDEX_DIRECT", PM_IFINDEX_DIRECT as u64),
            ("PM_LUT_SIZE", PM_LUT_SIZE as u64),
            ("PM_DIR_INBOUND", PM_DIR_INBOUND.into()),
            ("PM_DIR_OUTBOUND", PM_DIR_OUTBOUND.into()),
            ("PM_FAMILY_IPV4", PM_FAMILY_IPV4.into()),
            ("PM_FAMILY_IPV6", PM_FAMILY_IPV6.into()),
            ("PM_ACTION_ACCEPT", PM_ACTION_ACCEPT.into()),
            ("PM_ACTION_REJECT", PM_ACTION_REJECT.into()),
            ("PM_RULE_ANY_PROTO", PM_RULE_ANY_PROTO.into()),
            ("PM_RULE_SPORTS", PM_RULE_SPORTS.into()),
            ("PM_RULE_DPORTS", PM_RULE_DPORTS.into()),
            ("PM_SESS_SAMPLE", PM_SESS_SAMPLE.into()),
            ("PM_SESS_RATE", PM_SESS_RATE.into()),
            ("PM_SKIP_MAX", PM_SKIP_MAX as u64),
            ("PM_ENCAP_VXLAN", PM_ENCAP_VXLAN.into()),
            ("PM_ENCAP_GRE", PM_ENCAP_GRE.into()),
            ("PM_ENCAP_GENEVE", PM_ENCAP_GENEVE.into()),
            ("PM_ENCAP_ERSPAN", PM_ENCAP_ERSPAN.into()),
            ("PM_FAIL_MAX", PM_FAIL_MAX as u64),
            ("PM_VERDICT_NOT_IP", PM_VERDICT_NOT_IP.into()),
            ("PM_VERDICT_NO_MATCH", PM_VERDICT_NO_MATCH.into()),
            ("PM_VERDICT_COPY", PM_VERDICT_COPY.into()),
            ("PM_VERDICT_REJECT", PM_VERDICT_REJECT.into()),
            ("PM_VERDICT_UNSAMPLED", PM_VERDICT_UNSAMPLED.into()),
        ];
        let c = c_defines();
        for (name, value) in rust {
            assert_eq!(c.get(*name), Some(value), "{name}: bpf/pm_abi.h and datapath/abi.rs disagree");
        }
        // The failure and skip reasons are indexes into the Rust name tables.
        let fails = c.keys().filter(|k| k.starts_with("PM_FAIL_") && *k != "PM_FAIL_MAX").count();
        assert_eq!(fails, PM_FAIL_MAX, "one name in PM_FAIL_REASONS per PM_FAIL_* reason");
        let skips = c.keys().filter(|k| k.starts_with("PM_SKIP_") && *k != "PM_SKIP_MAX").count();
        assert_eq!(skips, PM_SKIP_MAX, "one name in PM_SKIP_REASONS per PM_SKIP_* reason");
    }

    // The expected numbers are the C layout of bpf/pm_abi.h (x86_64 and
    // bpf agree: natural alignment, no packing).
    #[test]
    fn rule_layout_matches_c() {
        assert_eq!(size_of::<PmRule>(), 80);
        assert_eq!(offset_of!(PmRule, mask), 32);
        assert_eq!(offset_of!(PmRule, sport_lo), 64);
        assert_eq!(offset_of!(PmRule, dport_hi), 70);
        assert_eq!(offset_of!(PmRule, protocol), 72);
        assert_eq!(offset_of!(PmRule, slot), 75);
        assert_eq!(offset_of!(PmRule, index), 76);
    }

    #[test]
    fn session_and_iface_layout_matches_c() {
        assert_eq!(offset_of!(PmSession, cut_len), 8);
        assert_eq!(offset_of!(PmSession, target_port), 10);
        assert_eq!(offset_of!(PmSession, encap), 12);
        assert_eq!(offset_of!(PmSession, flags), 13);
        assert_eq!(offset_of!(PmSession, sample_below), 16);
        assert_eq!(size_of::<PmSession>(), 20);
        assert_eq!(offset_of!(PmIface, n_sessions), 4);
        assert_eq!(offset_of!(PmIface, n4), 5);
        assert_eq!(offset_of!(PmIface, n6), 7);
        assert_eq!(offset_of!(PmIface, sessions), 12);
        assert_eq!(offset_of!(PmIface, rules), 72);
        assert_eq!(size_of::<PmIface>(), 72 + 2 * PM_MAX_IFACE_RULES * 80);
    }

    #[test]
    fn endpoint_and_lb_layout_matches_c() {
        assert_eq!(size_of::<PmEndpoint>(), 20);
        assert_eq!(offset_of!(PmEndpoint, family), 16);
        assert_eq!(offset_of!(PmLb, seq), 8);
        assert_eq!(offset_of!(PmLb, endpoints), 16);
        assert_eq!(offset_of!(PmLb, lut), 20496);
        assert_eq!(offset_of!(PmLb, pad), 20496 + 2 * PM_LUT_SIZE);
        assert_eq!(size_of::<PmLb>(), 53264);
    }

    #[test]
    fn counters_config_xfer_decision_layout_matches_c() {
        assert_eq!(size_of::<PmCounterKey>(), 8);
        assert_eq!(size_of::<PmCounters>(), 8 * (5 + PM_FAIL_MAX + PM_SKIP_MAX));
        assert_eq!(size_of::<PmCounters>(), 120);
        assert_eq!(offset_of!(PmCounters, failures), 40);
        assert_eq!(offset_of!(PmCounters, skipped), 104);
        assert_eq!(size_of::<PmRate>(), 40);
        assert_eq!(offset_of!(PmRate, burst), 32);
        assert_eq!(size_of::<PmConfig>(), 40);
        assert_eq!(offset_of!(PmConfig, node_ip6), 24);
        assert_eq!(offset_of!(PmXfer, cut_len), 16);
        assert_eq!(offset_of!(PmXfer, sport), 20);
        assert_eq!(offset_of!(PmXfer, encap), 22);
        assert_eq!(offset_of!(PmXfer, target_family), 23);
        assert_eq!(offset_of!(PmXfer, target), 24);
        assert_eq!(offset_of!(PmXfer, flow_hash), 40);
        assert_eq!(offset_of!(PmXfer, seq), 44);
        assert_eq!(size_of::<PmXfer>(), 48);
        assert_eq!(offset_of!(PmDecision, xfer), 32);
        assert_eq!(size_of::<PmDecision>(), 80);
        assert_eq!(PM_FAIL_REASONS.len(), PM_FAIL_MAX);
    }
}
