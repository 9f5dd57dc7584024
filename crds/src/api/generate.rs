//! The CRD manifests, rendered deterministically: `crdgen` writes them into
//! `crds/`, and the drift test compares the checked-in files with them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{MirrorFilter, MirrorNodeState, MirrorSession};

/// Every CRD of the API, in a fixed order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![MirrorFilter::crd(), MirrorSession::crd(), MirrorNodeState::crd()]
}

/// The file a CRD is kept in: `<plural>.<group>.yaml`, i.e. its `metadata.name`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.spec.names.plural.clone() + "." + &crd.spec.group)
}

/// `(file name, YAML text)` for every CRD. Output is a pure function of the
/// Rust types (serde_yaml keeps struct field order, schemars uses BTreeMaps).
pub fn render_all() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all_crds()
        .iter()
        .map(|crd| {
            let body = serde_yaml::to_string(crd)?;
            Ok((file_name(crd), format!("{HEADER}{body}")))
        })
        .collect()
}

/// The banner of every generated file: where it comes from and how to remake it.
pub const HEADER: &str = "# Generated from crds/src/api by `make crds` (crdgen). Do not edit by hand.\n";
