//! podmirror's API (`podmirror.io/v1alpha1`) and its pure model.

pub mod model;
