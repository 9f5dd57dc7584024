//! podmirror's API (`podmirror.io/v1alpha1`) and its pure model.

pub mod api;
pub mod error;
pub mod model;

pub use api::*;
pub use error::ModelError;
