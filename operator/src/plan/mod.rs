//! The operator's planning: the shared pure planner of the model
//! (`podmirror_crds::model::plan`, which the standalone agent runs too) and
//! the session and filter status the operator renders from its plans.

pub use podmirror_crds::model::plan::*;

pub mod status;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ip_target;
#[cfg(test)]
mod tests_programmed;
#[cfg(test)]
mod tests_schedule;
