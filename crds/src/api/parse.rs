//! Reading podmirror objects from YAML text (the standalone agent's files,
//! the examples), with errors that name the document and the field.

use serde::de::DeserializeOwned;

use super::{GROUP, MirrorFilter, MirrorNodeState, MirrorSession, VERSION};
use crate::error::ModelError;

/// One YAML document, typed when it is a podmirror object.
#[derive(Clone, Debug)]
pub enum ApiObject {
    Filter(Box<MirrorFilter>),
    Session(Box<MirrorSession>),
    NodeState(Box<MirrorNodeState>),
    /// Anything else (a Pod, a Service): left to the caller.
    Other {
        api_version: String,
        kind: String,
    },
}

/// Every document of a multi-document YAML text, in order. Empty documents
/// (a trailing `---`) are skipped.
///
/// Errors name the document (counted from 1) and the field, e.g.
/// `document 2: spec.inboundRules[0].action: unknown variant ...`.
pub fn parse_yaml_documents(text: &str) -> Result<Vec<ApiObject>, ModelError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = format!("document {}", index + 1);
        let value = document_value(document, &at)?;
        if value.is_null() {
            continue;
        }
        objects.push(typed(value, &at)?);
    }
    Ok(objects)
}

/// Why a value did not deserialize, and where in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The failing field's path (`spec.inboundRules[0].action`), or `.` for
    /// the value as a whole.
    pub path: String,
    pub reason: String,
}

/// Deserialize one value into `T`, keeping the failing field's path (the one
/// place that knows how: the standalone agent's files use it too).
pub fn deserialize_field<T: DeserializeOwned>(value: serde_yaml::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value)
        .map_err(|err| FieldError { path: err.path().to_string(), reason: err.into_inner().to_string() })
}

/// Deserialize one value into `T`, naming the failing field after `at`.
pub fn from_value<T: DeserializeOwned>(value: serde_yaml::Value, at: &str) -> Result<T, ModelError> {
    deserialize_field(value).map_err(|e| {
        let field = if e.path == "." { at.to_owned() } else { format!("{at}: {}", e.path) };
        ModelError::invalid(field, e.reason)
    })
}

fn typed(value: serde_yaml::Value, at: &str) -> Result<ApiObject, ModelError> {
    let text_of = |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let api_version = text_of("apiVersion");
    let kind = text_of("kind");
    let served = format!("{GROUP}/{VERSION}");
    if api_version != served {
        // Another version of our own group is a mistake, not someone else's object.
        if api_version.split('/').next() == Some(GROUP) {
            return Err(ModelError::invalid(
                format!("{at}: apiVersion"),
                format!("{api_version:?} is not served; use {served}"),
            ));
        }
        return Ok(ApiObject::Other { api_version, kind });
    }
    Ok(match kind.as_str() {
        "MirrorFilter" => ApiObject::Filter(Box::new(from_value(value, at)?)),
        "MirrorSession" => ApiObject::Session(Box::new(from_value(value, at)?)),
        "MirrorNodeState" => ApiObject::NodeState(Box::new(from_value(value, at)?)),
        _ => {
            return Err(ModelError::invalid(
                format!("{at}: kind"),
                format!("{kind:?} is not a kind of {GROUP}/{VERSION}"),
            ));
        }
    })
}

fn document_value(document: serde_yaml::Deserializer<'_>, at: &str) -> Result<serde_yaml::Value, ModelError> {
    use serde::Deserialize;
    serde_yaml::Value::deserialize(document).map_err(|err| ModelError::invalid(at, format!("not valid YAML: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_typed_by_api_version_and_kind() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n\
            apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: f}\nspec: {}\n---\n";
        let objects = parse_yaml_documents(text).expect("valid");
        assert_eq!(objects.len(), 2, "the empty trailing document is skipped");
        assert!(matches!(&objects[0], ApiObject::Other { kind, .. } if kind == "Pod"));
        assert!(matches!(&objects[1], ApiObject::Filter(f) if f.metadata.name.as_deref() == Some("f")));
    }

    #[test]
    fn errors_name_the_document_and_the_field() {
        let text = "apiVersion: v1\nkind: Pod\n---\napiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\n\
            metadata: {name: s}\nspec: {priority: one}\n";
        let err = parse_yaml_documents(text).expect_err("priority is not a number");
        assert_eq!(err.field(), "document 2: spec.priority", "{err}");

        let err = parse_yaml_documents("apiVersion: podmirror.io/v1\nkind: MirrorFilter\n").expect_err("version");
        assert_eq!(err.field(), "document 1: apiVersion");
        let err = parse_yaml_documents("apiVersion: podmirror.io/v1alpha1\nkind: MirrorFiltre\n").expect_err("kind");
        assert_eq!(err.field(), "document 1: kind");
        let err = parse_yaml_documents("a: [unclosed").expect_err("syntax");
        assert!(err.to_string().starts_with("document 1: not valid YAML"), "{err}");
    }
}
