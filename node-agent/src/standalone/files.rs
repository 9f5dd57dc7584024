//! Reading the standalone directory: which files, which documents, which
//! objects. Pure parsing (`parse_objects`) is separate from the directory
//! walk (`load_dir`) so the tests need no files.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use podmirror_crds::api::parse::{FieldError, deserialize_field};
use podmirror_crds::api::{GROUP, MirrorFilter, MirrorSession, VERSION};
use serde::Deserialize;

use super::inventory::{CheckedInventory, INVENTORY_FILE, parse_inventory};
use crate::core::AgentError;

/// An object and where it came from, for messages.
#[derive(Clone, Debug)]
pub struct Sourced<T> {
    pub path: PathBuf,
    /// 0-based index of the YAML document in its file.
    pub document: usize,
    pub object: T,
}

/// Everything read from the directory, before cross-object resolution.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub filters: Vec<Sourced<MirrorFilter>>,
    pub sessions: Vec<Sourced<MirrorSession>>,
    pub inventory: CheckedInventory,
    /// Documents skipped because they are not podmirror objects (kind, file).
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// The field an error names; `(document)` for the value as a whole.
fn field_name(e: &FieldError) -> String {
    if e.path == "." { "(document)".to_owned() } else { e.path.clone() }
}

/// The objects in one file's text; appends to `into`.
pub fn parse_objects(path: &Path, text: &str, into: &mut Loaded) -> Result<(), AgentError> {
    for (document, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let here = |object: &str, field: String, message: String| AgentError::Invalid {
            path: path.to_path_buf(),
            object: if document == 0 { object.to_string() } else { format!("document {}: {object}", document + 1) },
            field,
            message,
        };
        let value = serde_yaml::Value::deserialize(de).map_err(|e| here("YAML", "(document)".into(), e.to_string()))?;
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        // Fields are named by the model's deserializer, as for every podmirror YAML.
        let meta: TypeMeta = deserialize_field(value.clone()).map_err(|e| here("object", field_name(&e), e.reason))?;
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("<unnamed>")
            .to_string();
        let object = format!("{} {name}", meta.kind);
        let group = meta.api_version.split('/').next().unwrap_or_default();
        if group != GROUP {
            into.skipped.push(format!("{} {name} in {}", meta.kind, path.display()));
            continue;
        }
        if meta.api_version != format!("{GROUP}/{VERSION}") {
            return Err(here(
                &object,
                "apiVersion".into(),
                format!("{:?} is not served; use {GROUP}/{VERSION}", meta.api_version),
            ));
        }
        if name == "<unnamed>" {
            return Err(here(&object, "metadata.name".into(), "is required".into()));
        }
        match meta.kind.as_str() {
            "MirrorFilter" => {
                let object_v: MirrorFilter =
                    deserialize_field(value.clone()).map_err(|e| here(&object, field_name(&e), e.reason))?;
                into.filters.push(Sourced { path: path.to_path_buf(), document, object: object_v });
            }
            "MirrorSession" => {
                let object_v: MirrorSession =
                    deserialize_field(value.clone()).map_err(|e| here(&object, field_name(&e), e.reason))?;
                into.sessions.push(Sourced { path: path.to_path_buf(), document, object: object_v });
            }
            other => {
                return Err(here(
                    &object,
                    "kind".into(),
                    format!("{other:?}: the standalone agent reads MirrorFilter and MirrorSession only"),
                ));
            }
        }
    }
    Ok(())
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// The YAML files of `dir`, sorted (hidden and editor temp files skipped).
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| AgentError::File { path: dir.to_path_buf(), message: format!("cannot list directory: {e}") })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_yaml(p) && p.is_file())
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every object of `dir` and its inventory.
pub fn load_dir(dir: &Path) -> Result<Loaded, AgentError> {
    let mut loaded = Loaded::default();
    let mut saw_inventory = false;
    for path in yaml_files(dir)? {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AgentError::File { path: path.clone(), message: format!("cannot read: {e}") })?;
        if path.file_name().and_then(|n| n.to_str()) == Some(INVENTORY_FILE) {
            loaded.inventory = parse_inventory(&path, &text)?;
            saw_inventory = true;
        } else {
            parse_objects(&path, &text, &mut loaded)?;
        }
    }
    if !saw_inventory && !loaded.sessions.is_empty() {
        return Err(AgentError::File {
            path: dir.join(INVENTORY_FILE),
            message: "missing: sessions need the standalone.yaml inventory (see podmirror-agent --help)".into(),
        });
    }
    Ok(loaded)
}

/// What changes when a file of `dir` is edited, added or removed: names,
/// sizes and modification times. Compared each poll.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(files) = yaml_files(dir) else { return Vec::new() };
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, AgentError> {
        let mut loaded = Loaded::default();
        parse_objects(Path::new("dir/x.yaml"), text, &mut loaded).map(|()| loaded)
    }

    const FILTER: &str = "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: f}\n\
                          spec:\n  inboundRules:\n  - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4}\n";

    #[test]
    fn multi_document_files_and_foreign_kinds() {
        let text = format!("{FILTER}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\n---\n");
        let loaded = parse(&text).unwrap();
        assert_eq!(loaded.filters.len(), 1);
        assert_eq!(loaded.filters[0].object.spec.inbound_rules.len(), 1);
        assert_eq!(loaded.skipped, vec!["Service s in dir/x.yaml".to_string()]);
    }

    #[test]
    fn type_errors_name_file_document_object_and_field() {
        let text = format!(
            "{FILTER}---\napiVersion: podmirror.io/v1alpha1\nkind: MirrorSession\nmetadata: {{name: s}}\nspec: {{priority: one}}\n"
        );
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("dir/x.yaml: document 2: MirrorSession s: spec.priority: "), "{msg}");
    }

    #[test]
    fn unknown_podmirror_kind_and_version_are_refused() {
        let msg = parse("apiVersion: podmirror.io/v1alpha1\nkind: MirrorThing\nmetadata: {name: t}\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("MirrorThing t: kind:"), "{msg}");
        let msg =
            parse("apiVersion: podmirror.io/v9\nkind: MirrorFilter\nmetadata: {name: t}\n").unwrap_err().to_string();
        assert!(msg.contains("apiVersion") && msg.contains("v9"), "{msg}");
        let msg = parse("apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nspec: {}\n").unwrap_err().to_string();
        assert!(msg.contains("metadata.name"), "{msg}");
        let msg = parse("kind: [unclosed\n").unwrap_err().to_string();
        assert!(msg.starts_with("dir/x.yaml: YAML"), "{msg}");
    }
}
