//! The pure model of podmirror: rule compilation, packet evaluation (docs/matching.md),
//! quotas (docs/quotas.md) and the desired-state planner (`plan`). No I/O: the
//! operator, the agent and the tests share it.

pub mod compile;
pub mod evaluate;
pub mod plan;
pub mod pod_set;
pub mod quota;
pub mod schedule;
pub mod selector;
pub mod shaping;
pub mod types;

pub use evaluate::{evaluate, rule_matches};
pub use shaping::{FlowShare, RateCap};
pub use types::*;
