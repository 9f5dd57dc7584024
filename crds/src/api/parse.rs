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

/// Deserialize one value into `T`, naming the failing field.
pub fn from_value<T: DeserializeOwned>(
    value: serde_yaml::Value,
    at: &str,
) -> Result<T, ModelError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            at.to_owned()
        } else {
            format!("{at}: {path}")
        };
        ModelError::invalid(field, err.into_inner().to_string())
    })
}

fn typed(value: serde_yaml::Value, at: &str) -> Result<ApiObject, ModelError> {
    let text_of = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let api_version = text_of("apiVersion");
    let kind = text_of("kind");
    if api_version != format!("{GROUP}/{VERSION}") {
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

fn document_value(
    document: serde_yaml::Deserializer<'_>,
    at: &str,
) -> Result<serde_yaml::Value, ModelError> {
    use serde::Deserialize;
    serde_yaml::Value::deserialize(document)
        .map_err(|err| ModelError::invalid(at, format!("not valid YAML: {err}")))
}
