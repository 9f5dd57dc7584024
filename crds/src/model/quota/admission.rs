//! The order of admission: incumbents keep their place, then their changes,
//! then newcomers oldest first. What is refused is what is new.

use std::collections::BTreeMap;

use super::checks::check;
use super::facts::{QuotaInput, SessionQuotaFacts, SessionQuotaInput};
use super::placement::Placement;
use super::refusal::QuotaRefusal;
use crate::model::types::SessionKey;

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
