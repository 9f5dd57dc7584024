//! The pure model of podmirror: rule compilation, packet evaluation (SPEC §2)
//! and quotas (SPEC §3). No I/O: the operator, the agent and the tests share it.

pub mod compile;
pub mod evaluate;
pub mod pod_set;
pub mod quota;
pub mod shaping;
pub mod types;

pub use evaluate::{evaluate, rule_matches};
pub use shaping::{FlowShare, RateCap};
pub use types::*;
