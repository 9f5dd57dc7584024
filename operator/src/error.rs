//! The operator's one error type. Every variant names the object or field.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {object}: {field} is missing")]
    MissingField { kind: &'static str, object: String, field: &'static str },

    #[error("{action} {kind} {object}: {source}")]
    Kube {
        action: &'static str,
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },

    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("lease {lease}: {reason}")]
    Lease { lease: String, reason: String },
}

impl Error {
    /// A short label for the `podmirror_reconcile_errors_total{reason}` metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::MissingField { .. } => "missing_field",
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 409 => "conflict",
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 404 => "not_found",
            Error::Kube { source: kube::Error::Api(_), .. } => "api",
            Error::Kube { .. } => "client",
            Error::Serialize { .. } => "serialize",
            Error::Lease { .. } => "lease",
        }
    }
}
