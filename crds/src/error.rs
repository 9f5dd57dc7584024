//! The crate's one error type: what is wrong with an object, named by field.

/// A model-level rejection. `field` is the JSON path the user wrote
/// (e.g. `spec.inboundRules[2].destinationCIDR`) so the operator can put the
/// message into a condition verbatim and the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A field's value breaks a bound of docs/api.md (the same bounds the CRD's
    /// schema and CEL rules enforce in the API server).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl ModelError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The field path this error is about.
    pub fn field(&self) -> &str {
        match self {
            ModelError::Invalid { field, .. } => field,
        }
    }
}
