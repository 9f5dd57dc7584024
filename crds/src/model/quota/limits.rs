//! Every quota bound of docs/quotas.md: the fixed ones and the defaults of
//! the two an operator may raise.

/// Sources (resolved pods) per session, default (raisable by operator flag).
pub const DEFAULT_SOURCES_PER_SESSION: usize = 10;
/// Sessions per cluster, default (raisable by operator flag).
pub const DEFAULT_SESSIONS_PER_CLUSTER: usize = 20_000;
/// Sessions that may include one pod as a source (fixed).
pub const SESSIONS_PER_SOURCE_POD: usize = 3;
/// Targets per session (fixed, seed: exactly one).
pub const TARGETS_PER_SESSION: usize = 1;
/// Sessions that may send to one Service (fixed).
pub const SESSIONS_PER_SERVICE_TARGET: usize = 200;
/// Sessions that may send to one pod or one IP (fixed).
pub const SESSIONS_PER_POD_OR_IP_TARGET: usize = 10;
/// Filters per session (fixed, seed: one).
pub const FILTERS_PER_SESSION: usize = 1;
/// Sessions that may use one filter (fixed).
pub const SESSIONS_PER_FILTER: usize = 1000;
/// Rules per filter and direction (fixed: 10 inbound + 10 outbound).
pub const RULES_PER_DIRECTION: usize = 10;

/// The limits an operator may raise (`--max-sources-per-session`,
/// `--max-sessions-per-cluster`); every other limit is a constant above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuotaLimits {
    pub sources_per_session: usize,
    pub sessions_per_cluster: usize,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            sources_per_session: DEFAULT_SOURCES_PER_SESSION,
            sessions_per_cluster: DEFAULT_SESSIONS_PER_CLUSTER,
        }
    }
}
