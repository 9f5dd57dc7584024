//! The plugin's errors: each one says what is wrong and what to do about it,
//! because the reader is a person at a terminal, not a controller.

use std::path::PathBuf;

use podmirror_crds::ModelError;
use podmirror_crds::api::ConditionReason;

/// Everything a command can fail with. Messages end with the next step.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "podmirror is not installed in this cluster: the API server does not serve {resource}.podmirror.io \
         (install it: helm install podmirror charts/podmirror, or kubectl apply -f crds/)"
    )]
    NotInstalled { resource: String },

    #[error(
        "you may not {verb} {resource} in namespace {namespace}: {message} \
         (check with: kubectl auth can-i {verb} {resource} -n {namespace}; ask your cluster admin for a Role \
         that allows it)"
    )]
    Forbidden { verb: String, resource: String, namespace: String, message: String },

    #[error("pod {namespace}/{name} not found (kubectl get pods -n {namespace})")]
    PodNotFound { namespace: String, name: String },

    #[error(
        "pod {namespace}/{name} is in none of the files of {dir} \
         (explain -f needs it as a Pod object or in standalone.yaml's pods, with its labels)"
    )]
    PodNotInFiles { dir: PathBuf, namespace: String, name: String },

    #[error("no pod in namespace {namespace} matches the selector {selector:?}")]
    NoPodSelected { namespace: String, selector: String },

    #[error("session {namespace}/{name} not found (kubectl get mirrorsessions -n {namespace})")]
    SessionNotFound { namespace: String, name: String },

    #[error(
        "no podmirror collector in namespace {namespace}: no Service labelled {label} \
         (install it with the chart's collector enabled, or pass --collector-namespace)"
    )]
    NoCollector { namespace: String, label: String },

    #[error("collector Service {namespace}/{name}: {reason}")]
    CollectorUnusable { namespace: String, name: String, reason: String },

    #[error("{}", refused_message(.session, .reason, .message, .holders))]
    Refused {
        session: String,
        reason: ConditionReason,
        message: String,
        /// Sessions that hold the places of the quota, as far as we can see.
        holders: Vec<String>,
    },

    #[error(
        "session {session} was not accepted within {seconds}s: no Accepted condition yet \
         (is podmirror-operator running? kubectl get pods -n podmirror-system)"
    )]
    NotAccepted { session: String, seconds: u64 },

    #[error("interrupted before anything was created")]
    Interrupted,

    #[error("{what}: {reason}")]
    BadArgument { what: String, reason: String },

    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },

    #[error("{object}: {source}")]
    Invalid {
        object: String,
        #[source]
        source: ModelError,
    },

    #[error("capture stream from the collector: {0}")]
    Stream(String),

    #[error("writing the capture to {target}: {source}")]
    Output {
        target: String,
        #[source]
        source: std::io::Error,
    },

    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),

    #[error("kubeconfig: {0}")]
    Config(String),
}

fn refused_message(session: &str, reason: &ConditionReason, message: &str, holders: &[String]) -> String {
    let mut text = format!("session {session} was refused ({reason}): {message}");
    if !holders.is_empty() {
        text.push_str(&format!("; held by: {}", holders.join(", ")));
    }
    text.push_str(" (free a place by deleting one of them, or ask for the quota to be raised)");
    text
}

impl PluginError {
    pub fn bad(what: impl Into<String>, reason: impl Into<String>) -> Self {
        PluginError::BadArgument { what: what.into(), reason: reason.into() }
    }
}

/// What a request was about, so an API error can be turned into a sentence.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    pub verb: &'a str,
    /// The plural resource, e.g. `mirrorsessions.podmirror.io` or `pods`.
    pub resource: &'a str,
    pub namespace: &'a str,
    /// The object's name for get/delete, `None` for list/create.
    pub name: Option<&'a str>,
}

impl Call<'_> {
    /// Translate an API error: 403 means missing rights, a 404 on a podmirror
    /// collection means the CRDs are missing, a 404 on a pod that it is gone.
    pub fn error(&self, err: kube::Error) -> PluginError {
        let kube::Error::Api(status) = &err else {
            return PluginError::Kube(err);
        };
        let podmirror = self.resource.ends_with(".podmirror.io");
        // A missing object's 404 names it in `details`; a resource the API
        // server does not serve at all (no CRD) names nothing.
        let names_object = status.details.as_ref().is_some_and(|d| !d.name.is_empty());
        match status.code {
            403 => PluginError::Forbidden {
                verb: self.verb.to_owned(),
                resource: self.resource.to_owned(),
                namespace: self.namespace.to_owned(),
                message: status.message.clone(),
            },
            404 if podmirror && (self.name.is_none() || !names_object) => {
                PluginError::NotInstalled { resource: self.resource.trim_end_matches(".podmirror.io").to_owned() }
            }
            404 if self.resource == "pods" => PluginError::PodNotFound {
                namespace: self.namespace.to_owned(),
                name: self.name.unwrap_or_default().to_owned(),
            },
            404 if self.resource == "mirrorsessions.podmirror.io" => PluginError::SessionNotFound {
                namespace: self.namespace.to_owned(),
                name: self.name.unwrap_or_default().to_owned(),
            },
            _ => PluginError::Kube(err),
        }
    }
}
