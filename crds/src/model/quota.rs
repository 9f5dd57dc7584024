//! The quotas and the uniqueness rules of docs/quotas.md, decided for the whole
//! cluster at once.
//!
//! The operator resolves every MirrorSession into [`SessionQuotaFacts`] (who
//! it mirrors, where to, with which filter, priority and VNI) and hands all of
//! them to [`evaluate_quotas`]. The answer is one [`QuotaVerdict`] per session.
//!
//! The one principle behind the order of admission: *what is refused is what
//! is new*. Sessions accepted before ("incumbents") are placed first with the
//! facts they were last accepted with, so nothing another session does can
//! push them out. Then each incumbent whose facts changed tries its new facts;
//! if they break a quota the change is refused and the session keeps mirroring
//! as last accepted. Newcomers come last, oldest first (creation time, then
//! namespace/name), and take whatever room is left.
//!
//! Cost: every check and every placement touches only the session's own
//! sources, targets and filter in ordered indexes, so a run over n sessions is
//! O(n·k·log n) with k the (bounded) sources per session, never quadratic.
//!
//! Disabled sessions count like enabled ones: a session holds its slots while
//! it exists, so flipping `enabled` never needs a quota check that could fail.
//! For that reason `enabled` is not part of the facts compared here.
//!
//! An incumbent whose facts did not change is not checked again: it stays
//! accepted even if a limit was lowered since (or its filter now has too many
//! rules, which the CRD schema prevents anyway). Only its next change is
//! measured against the limits of the day.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

pub use super::pod_set::{PodId, PodSet};
pub use super::types::FilterKey;
use super::types::{Direction, SessionKey};

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

/// Where a session sends its copies, as far as quotas care: the identity the
/// per-target limits and the VNI uniqueness are counted on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetId {
    /// A Service (limit [`SESSIONS_PER_SERVICE_TARGET`]).
    Service { namespace: String, name: String },
    /// A single pod (limit [`SESSIONS_PER_POD_OR_IP_TARGET`]).
    Pod(PodId),
    /// A collector outside the cluster (limit [`SESSIONS_PER_POD_OR_IP_TARGET`]).
    Ip(IpAddr),
}

impl TargetId {
    /// The per-target session limit of this kind of target.
    pub fn session_limit(&self) -> usize {
        match self {
            TargetId::Service { .. } => SESSIONS_PER_SERVICE_TARGET,
            TargetId::Pod(_) | TargetId::Ip(_) => SESSIONS_PER_POD_OR_IP_TARGET,
        }
    }

    fn per_target_quota(&self) -> Quota {
        match self {
            TargetId::Service { .. } => Quota::SessionsPerServiceTarget,
            TargetId::Pod(_) | TargetId::Ip(_) => Quota::SessionsPerPodOrIpTarget,
        }
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetId::Service { namespace, name } => write!(f, "service {namespace}/{name}"),
            TargetId::Pod(pod) => pod.fmt(f),
            TargetId::Ip(ip) => write!(f, "IP {ip}"),
        }
    }
}

/// One resolved target: its identity and the pods that would receive the
/// copies (the pod itself, a Service's endpoint pods, the pod owning an IP if
/// any). The pods are what "a source may not be a target" is checked on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedTarget {
    pub id: TargetId,
    pub pods: PodSet,
}

impl ResolvedTarget {
    pub fn service(
        namespace: impl Into<String>,
        name: impl Into<String>,
        endpoint_pods: impl IntoIterator<Item = PodId>,
    ) -> Self {
        ResolvedTarget {
            id: TargetId::Service { namespace: namespace.into(), name: name.into() },
            pods: endpoint_pods.into_iter().collect(),
        }
    }

    pub fn pod(pod: PodId) -> Self {
        ResolvedTarget { id: TargetId::Pod(pod.clone()), pods: PodSet::from([pod]) }
    }

    pub fn ip(ip: IpAddr) -> Self {
        ResolvedTarget { id: TargetId::Ip(ip), pods: PodSet::new() }
    }
}

/// The quota-relevant facts of one session, as resolved now or as last
/// accepted. Two snapshots are equal exactly when the quotas would see no
/// difference between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionQuotaFacts {
    /// Names of the MirrorFilters (in the session's namespace) it uses; the
    /// API allows one, a longer list is refused by [`Quota::FiltersPerSession`].
    pub filters: Vec<String>,
    pub priority: u16,
    pub vni: u32,
    /// Resolved source pods.
    pub sources: PodSet,
    /// Resolved targets; the API allows one, more is [`Quota::TargetsPerSession`].
    /// Empty while the target does not resolve (not a quota matter).
    pub targets: Vec<ResolvedTarget>,
}

/// One session as the operator sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionQuotaInput {
    pub key: SessionKey,
    /// `metadata.creationTimestamp` as Unix seconds: newcomers are admitted
    /// oldest first, ties broken by namespace/name.
    pub created: i64,
    /// The facts of the current spec and the current cluster.
    pub current: SessionQuotaFacts,
    /// The facts it was last accepted with (kept by the operator), or `None`
    /// for a session never accepted.
    pub last_accepted: Option<SessionQuotaFacts>,
}

/// Rule counts of one filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleCounts {
    pub inbound: usize,
    pub outbound: usize,
}

impl RuleCounts {
    pub fn get(&self, direction: Direction) -> usize {
        match direction {
            Direction::Inbound => self.inbound,
            Direction::Outbound => self.outbound,
        }
    }
}

/// Everything [`evaluate_quotas`] decides on.
#[derive(Clone, Debug, Default)]
pub struct QuotaInput {
    pub sessions: Vec<SessionQuotaInput>,
    /// Rule counts of the filters that exist; a filter missing here counts 0
    /// rules (its absence is `FilterResolved=False`, not a quota).
    pub filter_rules: BTreeMap<FilterKey, RuleCounts>,
    pub limits: QuotaLimits,
}

/// Which limit (or uniqueness rule) of docs/quotas.md refused a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quota {
    SourcesPerSession,
    SessionsPerSourcePod,
    TargetsPerSession,
    SessionsPerServiceTarget,
    SessionsPerPodOrIpTarget,
    FiltersPerSession,
    SessionsPerFilter,
    RulesPerFilter(Direction),
    SessionsPerCluster,
    /// A pod that is a source of any session may not be a target (seed).
    SourceIsTarget,
    /// Session priority must be unique among the sessions of a source pod.
    PriorityClash,
    /// VNI must be unique per target.
    VniClash,
}

impl Quota {
    /// A stable CamelCase name, fit for a condition reason or a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Quota::SourcesPerSession => "SourcesPerSession",
            Quota::SessionsPerSourcePod => "SessionsPerSourcePod",
            Quota::TargetsPerSession => "TargetsPerSession",
            Quota::SessionsPerServiceTarget => "SessionsPerServiceTarget",
            Quota::SessionsPerPodOrIpTarget => "SessionsPerPodOrIPTarget",
            Quota::FiltersPerSession => "FiltersPerSession",
            Quota::SessionsPerFilter => "SessionsPerFilter",
            Quota::RulesPerFilter(Direction::Inbound) => "InboundRulesPerFilter",
            Quota::RulesPerFilter(Direction::Outbound) => "OutboundRulesPerFilter",
            Quota::SessionsPerCluster => "SessionsPerCluster",
            Quota::SourceIsTarget => "SourceIsTarget",
            Quota::PriorityClash => "PriorityClash",
            Quota::VniClash => "VNIClash",
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Why one session (or one change of it) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRefusal {
    pub quota: Quota,
    /// The limit (1 for the uniqueness rules).
    pub limit: usize,
    /// The count admitting it would have reached (above `limit`).
    pub would_be: usize,
    /// The session already holding the place, for clashes and for a source
    /// used as a target.
    pub conflicts_with: Option<SessionKey>,
    /// One sentence for the `Accepted` condition's message.
    pub message: String,
}

/// The decision for one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaVerdict {
    /// Its current facts fit: mirror as currently specified.
    Accepted,
    /// Never accepted, and its facts do not fit: it mirrors nothing.
    Refused(QuotaRefusal),
    /// Accepted before; its change does not fit, so the change is refused and
    /// it keeps mirroring with its `last_accepted` facts.
    RefusedChange(QuotaRefusal),
}

impl QuotaVerdict {
    pub fn refusal(&self) -> Option<&QuotaRefusal> {
        match self {
            QuotaVerdict::Accepted => None,
            QuotaVerdict::Refused(r) | QuotaVerdict::RefusedChange(r) => Some(r),
        }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self, QuotaVerdict::Accepted)
    }
}

/// The outcome for the whole cluster: one verdict per session key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaReport {
    pub verdicts: BTreeMap<SessionKey, QuotaVerdict>,
}

impl QuotaReport {
    pub fn verdict(&self, key: &SessionKey) -> Option<&QuotaVerdict> {
        self.verdicts.get(key)
    }

    /// The facts `session` mirrors with after this report: its current ones
    /// when accepted, its last accepted ones when its change was refused,
    /// none when it was refused outright (or is not in the report).
    pub fn in_effect<'s>(&self, session: &'s SessionQuotaInput) -> Option<&'s SessionQuotaFacts> {
        match self.verdicts.get(&session.key)? {
            QuotaVerdict::Accepted => Some(&session.current),
            QuotaVerdict::RefusedChange(_) => session.last_accepted.as_ref(),
            QuotaVerdict::Refused(_) => None,
        }
    }
}

/// Decide every session of the cluster against the quotas and the uniqueness
/// rules of docs/quotas.md. Pure and deterministic: the order of `input.sessions`
/// does not matter. Keys are expected to be unique; should one repeat, the
/// greatest entry (by its derived order) is taken, so even then the result
/// does not depend on input order.
pub fn evaluate_quotas(input: &QuotaInput) -> QuotaReport {
    let sessions = unique_by_key(&input.sessions);
    let mut placed = Placement::default();
    let mut verdicts = BTreeMap::new();

    // Incumbents keep their place unconditionally: their last accepted facts
    // were admitted once, and nothing another session does may undo that
    // (not even a limit lowered since, which only stops new admissions).
    let mut incumbents: Vec<(&SessionQuotaInput, &SessionQuotaFacts)> =
        sessions.iter().filter_map(|s| s.last_accepted.as_ref().map(|last| (*s, last))).collect();
    incumbents.sort_by(|(a, _), (b, _)| admission_order(a, b));
    for (session, last) in &incumbents {
        placed.insert(&session.key, last);
    }

    apply_changes(&incumbents, &mut placed, &mut verdicts, input);
    admit_newcomers(&sessions, &mut placed, &mut verdicts, input);
    QuotaReport { verdicts }
}

/// Each incumbent's change, oldest first, against everyone else's place. An
/// unchanged incumbent has nothing new to check. A change that does not fit
/// is retried after the others, since another incumbent's accepted change may
/// have freed what it needs; every round that retries has accepted at least
/// one change, so there are at most as many rounds as changed incumbents
/// (in practice one or two).
fn apply_changes<'a>(
    incumbents: &[(&'a SessionQuotaInput, &'a SessionQuotaFacts)],
    placed: &mut Placement<'a>,
    verdicts: &mut BTreeMap<SessionKey, QuotaVerdict>,
    input: &QuotaInput,
) {
    let mut pending: Vec<(&SessionQuotaInput, &SessionQuotaFacts)> = Vec::new();
    for &(session, last) in incumbents {
        if session.current == *last {
            verdicts.insert(session.key.clone(), QuotaVerdict::Accepted);
        } else {
            pending.push((session, last));
        }
    }
    loop {
        let mut refused = Vec::new();
        let mut progress = false;
        for (session, last) in pending {
            placed.remove(&session.key, last);
            match check(&session.key, &session.current, placed, input, false) {
                Ok(()) => {
                    placed.insert(&session.key, &session.current);
                    verdicts.insert(session.key.clone(), QuotaVerdict::Accepted);
                    progress = true;
                }
                Err(refusal) => {
                    placed.insert(&session.key, last);
                    refused.push((session, last, refusal));
                }
            }
        }
        if !progress || refused.is_empty() {
            for (session, _, refusal) in refused {
                verdicts.insert(session.key.clone(), QuotaVerdict::RefusedChange(refusal.into_change()));
            }
            return;
        }
        pending = refused.into_iter().map(|(session, last, _)| (session, last)).collect();
    }
}

/// Newcomers, oldest first, into what room is left.
fn admit_newcomers<'a>(
    sessions: &[&'a SessionQuotaInput],
    placed: &mut Placement<'a>,
    verdicts: &mut BTreeMap<SessionKey, QuotaVerdict>,
    input: &QuotaInput,
) {
    let mut newcomers: Vec<&SessionQuotaInput> =
        sessions.iter().copied().filter(|s| s.last_accepted.is_none()).collect();
    newcomers.sort_by(|a, b| admission_order(a, b));
    for session in newcomers {
        match check(&session.key, &session.current, placed, input, true) {
            Ok(()) => {
                placed.insert(&session.key, &session.current);
                verdicts.insert(session.key.clone(), QuotaVerdict::Accepted);
            }
            Err(refusal) => {
                verdicts.insert(session.key.clone(), QuotaVerdict::Refused(refusal));
            }
        }
    }
}
/// Creation time, then namespace/name: the "newer" session of docs/quotas.md.
fn admission_order(a: &SessionQuotaInput, b: &SessionQuotaInput) -> std::cmp::Ordering {
    a.created.cmp(&b.created).then_with(|| a.key.cmp(&b.key))
}

fn unique_by_key(sessions: &[SessionQuotaInput]) -> Vec<&SessionQuotaInput> {
    let mut by_key: BTreeMap<&SessionKey, &SessionQuotaInput> = BTreeMap::new();
    for session in sessions {
        by_key
            .entry(&session.key)
            .and_modify(|kept| {
                if session > *kept {
                    *kept = session;
                }
            })
            .or_insert(session);
    }
    by_key.into_values().collect()
}

/// The admitted sessions, indexed by everything a quota counts on. Holders
/// are sets so that removing one session (to try its change) is exact even
/// if, against expectations, two incumbents share a unique slot.
#[derive(Default)]
struct Placement<'a> {
    total: usize,
    /// Source pod uid -> sessions that mirror it.
    by_source: BTreeMap<&'a str, BTreeSet<&'a SessionKey>>,
    /// (source pod uid, session priority) -> holders.
    by_source_priority: BTreeMap<(&'a str, u16), BTreeSet<&'a SessionKey>>,
    /// Pod uid receiving copies -> sessions sending to it.
    by_target_pod: BTreeMap<&'a str, BTreeSet<&'a SessionKey>>,
    /// Target identity -> number of sessions sending to it.
    by_target: BTreeMap<&'a TargetId, usize>,
    /// (target, VNI) -> holders.
    by_target_vni: BTreeMap<(&'a TargetId, u32), BTreeSet<&'a SessionKey>>,
    /// Filter -> number of sessions using it.
    by_filter: BTreeMap<FilterKey, usize>,
}

impl<'a> Placement<'a> {
    fn insert(&mut self, key: &'a SessionKey, facts: &'a SessionQuotaFacts) {
        self.total += 1;
        for pod in &facts.sources {
            self.by_source.entry(pod.uid()).or_default().insert(key);
            self.by_source_priority.entry((pod.uid(), facts.priority)).or_default().insert(key);
        }
        for target in &facts.targets {
            *self.by_target.entry(&target.id).or_default() += 1;
            self.by_target_vni.entry((&target.id, facts.vni)).or_default().insert(key);
            for pod in &target.pods {
                self.by_target_pod.entry(pod.uid()).or_default().insert(key);
            }
        }
        for filter in distinct_filters(key, facts) {
            *self.by_filter.entry(filter).or_default() += 1;
        }
    }

    fn remove(&mut self, key: &'a SessionKey, facts: &'a SessionQuotaFacts) {
        self.total = self.total.saturating_sub(1);
        for pod in &facts.sources {
            remove_holder(&mut self.by_source, &pod.uid(), key);
            remove_holder(&mut self.by_source_priority, &(pod.uid(), facts.priority), key);
        }
        for target in &facts.targets {
            decrement(&mut self.by_target, &&target.id);
            remove_holder(&mut self.by_target_vni, &(&target.id, facts.vni), key);
            for pod in &target.pods {
                remove_holder(&mut self.by_target_pod, &pod.uid(), key);
            }
        }
        for filter in distinct_filters(key, facts) {
            decrement(&mut self.by_filter, &filter);
        }
    }

    fn source_sessions(&self, uid: &str) -> usize {
        self.by_source.get(uid).map_or(0, BTreeSet::len)
    }

    fn first_holder<K: Ord>(map: &BTreeMap<K, BTreeSet<&'a SessionKey>>, slot: &K) -> Option<SessionKey> {
        map.get(slot).and_then(|holders| holders.first()).map(|k| (*k).clone())
    }
}

/// A session's filters as cluster-wide keys, each once (a filter named twice
/// is still one use of it).
fn distinct_filters(key: &SessionKey, facts: &SessionQuotaFacts) -> BTreeSet<FilterKey> {
    facts.filters.iter().map(|f| FilterKey::new(key.namespace.clone(), f.clone())).collect()
}

fn remove_holder<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, slot: &K, holder: V) {
    if let Some(holders) = map.get_mut(slot) {
        holders.remove(&holder);
        if holders.is_empty() {
            map.remove(slot);
        }
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, slot: &K) {
    if let Some(count) = map.get_mut(slot) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(slot);
        }
    }
}

impl QuotaRefusal {
    fn new(quota: Quota, limit: usize, would_be: usize, conflicts_with: Option<SessionKey>, message: String) -> Self {
        QuotaRefusal { quota, limit, would_be, conflicts_with, message }
    }

    fn into_change(mut self) -> Self {
        self.message = format!("change refused, the session keeps mirroring as last accepted: {}", self.message);
        self
    }
}

/// Would `facts` fit beside everything `placed`? The first broken rule wins,
/// checked from the session's own shape outwards to what it shares.
/// `counts_new_slot` is false for an incumbent's change: it already holds one
/// of the cluster's session slots.
fn check(
    key: &SessionKey,
    facts: &SessionQuotaFacts,
    placed: &Placement<'_>,
    input: &QuotaInput,
    counts_new_slot: bool,
) -> Result<(), QuotaRefusal> {
    check_own_shape(key, facts, input)?;
    check_sources(facts, placed)?;
    check_targets(facts, placed)?;
    check_filters(key, facts, placed)?;
    if counts_new_slot && placed.total >= input.limits.sessions_per_cluster {
        let (limit, would_be) = (input.limits.sessions_per_cluster, placed.total + 1);
        return Err(QuotaRefusal::new(
            Quota::SessionsPerCluster,
            limit,
            would_be,
            None,
            format!("sessions per cluster: admitting it would make {would_be} sessions, the limit is {limit}"),
        ));
    }
    Ok(())
}

/// Limits on the session alone: filters, targets, rules, sources, and a
/// session that would mirror into one of its own sources.
fn check_own_shape(key: &SessionKey, facts: &SessionQuotaFacts, input: &QuotaInput) -> Result<(), QuotaRefusal> {
    let filters = facts.filters.len();
    if filters > FILTERS_PER_SESSION {
        return Err(QuotaRefusal::new(
            Quota::FiltersPerSession,
            FILTERS_PER_SESSION,
            filters,
            None,
            format!("filters per session: it names {filters} filters, the limit is {FILTERS_PER_SESSION}"),
        ));
    }
    let targets = facts.targets.len();
    if targets > TARGETS_PER_SESSION {
        return Err(QuotaRefusal::new(
            Quota::TargetsPerSession,
            TARGETS_PER_SESSION,
            targets,
            None,
            format!("targets per session: it names {targets} targets, the limit is {TARGETS_PER_SESSION}"),
        ));
    }
    for filter in distinct_filters(key, facts) {
        let counts = input.filter_rules.get(&filter).copied().unwrap_or_default();
        for direction in Direction::ALL {
            let rules = counts.get(direction);
            if rules > RULES_PER_DIRECTION {
                let list = match direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                };
                return Err(QuotaRefusal::new(
                    Quota::RulesPerFilter(direction),
                    RULES_PER_DIRECTION,
                    rules,
                    None,
                    format!("rules per filter: filter {filter} has {rules} {list} rules, the limit is {RULES_PER_DIRECTION}"),
                ));
            }
        }
    }
    let sources = facts.sources.len();
    let limit = input.limits.sources_per_session;
    if sources > limit {
        return Err(QuotaRefusal::new(
            Quota::SourcesPerSession,
            limit,
            sources,
            None,
            format!("sources per session: it resolves to {sources} pods, the limit is {limit}"),
        ));
    }
    let own_target = facts.targets.iter().flat_map(|t| &t.pods).find(|pod| facts.sources.contains(pod));
    if let Some(pod) = own_target {
        return Err(QuotaRefusal::new(
            Quota::SourceIsTarget,
            0,
            1,
            None,
            format!("a source may not be a target: {pod} is both a source and the target of this session"),
        ));
    }
    Ok(())
}

/// Per source pod: not a target elsewhere, at most 3 sessions, priority unique.
fn check_sources(facts: &SessionQuotaFacts, placed: &Placement<'_>) -> Result<(), QuotaRefusal> {
    for pod in &facts.sources {
        if let Some(other) = Placement::first_holder(&placed.by_target_pod, &pod.uid()) {
            return Err(QuotaRefusal::new(
                Quota::SourceIsTarget,
                0,
                1,
                Some(other.clone()),
                format!("a source may not be a target: {pod} already receives the copies of session {other}"),
            ));
        }
        let would_be = placed.source_sessions(pod.uid()) + 1;
        if would_be > SESSIONS_PER_SOURCE_POD {
            return Err(QuotaRefusal::new(
                Quota::SessionsPerSourcePod,
                SESSIONS_PER_SOURCE_POD,
                would_be,
                None,
                format!(
                    "sessions per source pod: {pod} would be mirrored by {would_be} sessions, the limit is {SESSIONS_PER_SOURCE_POD}"
                ),
            ));
        }
        if let Some(other) = Placement::first_holder(&placed.by_source_priority, &(pod.uid(), facts.priority)) {
            return Err(QuotaRefusal::new(
                Quota::PriorityClash,
                1,
                2,
                Some(other.clone()),
                format!(
                    "session priority {} must be unique among the sessions of a source pod: session {other} already mirrors {pod} at that priority",
                    facts.priority
                ),
            ));
        }
    }
    Ok(())
}

/// Per target: its pods are no one's source, its session limit, VNI unique.
fn check_targets(facts: &SessionQuotaFacts, placed: &Placement<'_>) -> Result<(), QuotaRefusal> {
    for target in &facts.targets {
        for pod in &target.pods {
            if let Some(other) = Placement::first_holder(&placed.by_source, &pod.uid()) {
                return Err(QuotaRefusal::new(
                    Quota::SourceIsTarget,
                    0,
                    1,
                    Some(other.clone()),
                    format!(
                        "a source may not be a target: {pod} (behind {}) is a source of session {other}",
                        target.id
                    ),
                ));
            }
        }
        let limit = target.id.session_limit();
        let would_be = placed.by_target.get(&target.id).copied().unwrap_or(0) + 1;
        if would_be > limit {
            return Err(QuotaRefusal::new(
                target.id.per_target_quota(),
                limit,
                would_be,
                None,
                format!(
                    "sessions per target: {} would receive from {would_be} sessions, the limit is {limit}",
                    target.id
                ),
            ));
        }
        if let Some(other) = Placement::first_holder(&placed.by_target_vni, &(&target.id, facts.vni)) {
            return Err(QuotaRefusal::new(
                Quota::VniClash,
                1,
                2,
                Some(other.clone()),
                format!(
                    "VNI {} must be unique per target: session {other} already sends VNI {} to {}",
                    facts.vni, facts.vni, target.id
                ),
            ));
        }
    }
    Ok(())
}

/// Per filter: at most 1000 sessions use it.
fn check_filters(key: &SessionKey, facts: &SessionQuotaFacts, placed: &Placement<'_>) -> Result<(), QuotaRefusal> {
    for filter in distinct_filters(key, facts) {
        let would_be = placed.by_filter.get(&filter).copied().unwrap_or(0) + 1;
        if would_be > SESSIONS_PER_FILTER {
            return Err(QuotaRefusal::new(
                Quota::SessionsPerFilter,
                SESSIONS_PER_FILTER,
                would_be,
                None,
                format!(
                    "sessions per filter: filter {filter} would be used by {would_be} sessions, the limit is {SESSIONS_PER_FILTER}"
                ),
            ));
        }
    }
    Ok(())
}
