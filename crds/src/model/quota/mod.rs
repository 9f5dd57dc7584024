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
//!
//! The files: `limits` (every bound), `facts` (what is evaluated),
//! `admission` (the order of admission), `placement` (what is admitted,
//! indexed), `checks` (one function per group of rules), `refusal` (why, as
//! data, rendered into the sentence of the `Accepted` condition).

mod admission;
mod checks;
mod facts;
mod limits;
mod placement;
mod refusal;

pub use super::pod_set::{PodId, PodSet};
pub use super::types::FilterKey;
pub use admission::{QuotaReport, QuotaVerdict, evaluate_quotas};
pub use facts::{QuotaInput, ResolvedTarget, RuleCounts, SessionQuotaFacts, SessionQuotaInput, TargetId};
pub use limits::*;
pub use refusal::{Quota, QuotaRefusal, Refusal};
