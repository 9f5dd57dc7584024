//! The I/O side of a pass: compute the writes (pure) and carry them out.

pub mod execute;
pub mod writes;

pub use execute::{Executor, FIELD_MANAGER};
pub use writes::{FINALIZER, Kind, Seen, Write, writes};
