//! `docs/api.md` is the API reference users read; the generated CRD schemas
//! in `crds/*.yaml` are what the API server enforces. This test ties the two
//! so the reference cannot drift: every `spec`/`status` field path of
//! MirrorFilter and MirrorSession has a row in docs/api.md, no row names a
//! field the schema lacks, and each row's type, default and bounds agree with
//! the schema.
//!
//! The reference's shape (see docs/api.md itself): under a `## <Kind> ...`
//! heading, table rows `| field | type | default | bounds | meaning |` whose
//! first cell holds one or more backticked paths such as
//! `spec.inboundRules[].priority` (`[]` stands for "each item").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// The CRDs the reference covers (MirrorNodeState is internal: docs/architecture.md).
const CRDS: [&str; 2] = ["mirrorfilters.podmirror.io.yaml", "mirrorsessions.podmirror.io.yaml"];

fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// One documented field: the cells of its row.
#[derive(Debug, Clone)]
struct Row {
    type_: String,
    default: String,
    bounds: String,
    whole: String,
}

/// A schema field: its node and whether its parent requires it.
struct Field<'a> {
    schema: &'a Value,
    required: bool,
}

/// Every field path below `prefix` (`spec`, `status`), items of arrays as `[]`.
fn walk<'a>(prefix: &str, schema: &'a Value, out: &mut BTreeMap<String, Field<'a>>) {
    let required: BTreeSet<&str> = schema
        .get("required")
        .and_then(Value::as_sequence)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_mapping) else {
        return;
    };
    for (name, child) in props {
        let Some(name) = name.as_str() else { continue };
        let path = format!("{prefix}.{name}");
        out.insert(path.clone(), Field { schema: child, required: required.contains(name) });
        walk(&path, child, out);
        if let Some(items) = child.get("items") {
            walk(&format!("{path}[]"), items, out);
        }
    }
}

/// The kind and its field paths, read from one generated CRD file.
fn schema_fields(crd: &Value) -> Result<(String, BTreeMap<String, Field<'_>>), String> {
    let kind = crd["spec"]["names"]["kind"].as_str().ok_or("spec.names.kind missing")?.to_string();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut fields = BTreeMap::new();
    for top in ["spec", "status"] {
        let node = root.get("properties").and_then(|p| p.get(top)).ok_or(format!("{kind}: no {top} in the schema"))?;
        walk(top, node, &mut fields);
    }
    Ok((kind, fields))
}

/// Rows of docs/api.md per kind: the tables under headings `## <Kind>...`.
fn documented(markdown: &str, kinds: &[String]) -> BTreeMap<String, BTreeMap<String, Row>> {
    let mut out: BTreeMap<String, BTreeMap<String, Row>> = BTreeMap::new();
    let mut current: Option<&String> = None;
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = kinds.iter().find(|k| heading.trim_start().starts_with(k.as_str()));
            continue;
        }
        let (Some(kind), Some(body)) = (current, line.trim().strip_prefix('|')) else {
            continue;
        };
        let cells: Vec<&str> = body.trim_end_matches('|').split('|').map(str::trim).collect();
        let [first, type_, default, bounds, ..] = cells.as_slice() else {
            continue;
        };
        let row = Row {
            type_: type_.replace('`', ""),
            default: default.replace('`', ""),
            bounds: bounds.replace('`', ""),
            whole: line.replace('`', ""),
        };
        for path in first.split('`').skip(1).step_by(2) {
            if path == "spec" || path == "status" || path.starts_with("spec.") || path.starts_with("status.") {
                out.entry(kind.clone()).or_default().insert(path.to_string(), row.clone());
            }
        }
    }
    out
}

/// A YAML number as the docs write it (`64.0` -> `64`).
fn number(v: &Value) -> Option<String> {
    let f = v.as_f64()?;
    Some(if f.fract() == 0.0 { format!("{}", f as i64) } else { f.to_string() })
}

/// The numbers a cell mentions (`1..=32766` -> {1, 32766}).
fn numbers_in(cell: &str) -> BTreeSet<String> {
    cell.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// What a row must say about one field, as messages naming the path.
fn check_row(kind: &str, path: &str, field: &Field<'_>, row: &Row, problems: &mut Vec<String>) {
    let s = field.schema;
    let mut say = |what: String| problems.push(format!("docs/api.md, {kind} `{path}`: {what}"));
    let type_ = if s.get("x-kubernetes-int-or-string").is_some() {
        "int-or-string"
    } else {
        s.get("type").and_then(Value::as_str).unwrap_or("object")
    };
    if !row.type_.contains(type_) {
        say(format!("the type cell `{}` must mention `{type_}`", row.type_));
    }
    if let Some(default) = s.get("default") {
        let text = match default {
            Value::String(t) => t.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        if !row.default.contains(&text) {
            say(format!("the default cell `{}` must give the schema's default `{text}`", row.default));
        }
    } else if field.required && !row.default.contains("required") {
        say(format!("the default cell `{}` must say `required`", row.default));
    }
    let present = numbers_in(&row.bounds);
    for key in ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"] {
        if let Some(n) = s.get(key).and_then(number)
            && !present.contains(&n)
        {
            say(format!("the bounds cell `{}` must give {key} {n}", row.bounds));
        }
    }
    for value in s.get("enum").and_then(Value::as_sequence).into_iter().flatten() {
        if let Some(v) = value.as_str()
            && !row.whole.contains(v)
        {
            say(format!("the row must name the allowed value `{v}`"));
        }
    }
}

/// Every disagreement between the CRD files and the reference, one line each.
fn problems(crds: &[(String, Value)], markdown: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut schemas = Vec::new();
    for (file, crd) in crds {
        match schema_fields(crd) {
            Ok((kind, fields)) => schemas.push((file, kind, fields)),
            Err(e) => problems.push(format!("crds/{file}: {e}")),
        }
    }
    let kinds: Vec<String> = schemas.iter().map(|(_, k, _)| k.clone()).collect();
    let docs = documented(markdown, &kinds);
    let empty = BTreeMap::new();
    for (file, kind, fields) in &schemas {
        let rows = docs.get(kind).unwrap_or(&empty);
        for (path, field) in fields {
            match rows.get(path) {
                Some(row) => check_row(kind, path, field, row, &mut problems),
                None => problems.push(format!(
                    "docs/api.md does not document {kind} field `{path}` (crds/{file}): add a row \
                     `| \\`{path}\\` | type | default | bounds | meaning |` under a `## {kind} ...` heading"
                )),
            }
        }
        for path in rows.keys().filter(|p| !fields.contains_key(*p)) {
            problems.push(format!(
                "docs/api.md documents {kind} field `{path}`, which crds/{file} does not have: remove or rename the row"
            ));
        }
    }
    problems
}

fn load() -> (Vec<(String, Value)>, String) {
    let root = repo_root();
    let crds = CRDS
        .iter()
        .map(|file| {
            let path = root.join("crds").join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let yaml = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (file.to_string(), yaml)
        })
        .collect();
    let api = root.join("docs").join("api.md");
    let markdown = std::fs::read_to_string(&api).unwrap_or_else(|e| panic!("{}: {e}", api.display()));
    (crds, markdown)
}

#[test]
fn api_reference_documents_every_schema_field_and_nothing_else() {
    let (crds, markdown) = load();
    let problems = problems(&crds, &markdown);
    assert!(problems.is_empty(), "docs/api.md disagrees with crds/*.yaml:\n- {}", problems.join("\n- "));
}

#[test]
fn the_reference_covers_both_kinds_in_depth() {
    // Guards against a walk that silently finds nothing (then every check
    // above would pass vacuously).
    let (crds, markdown) = load();
    let kinds: Vec<String> =
        crds.iter().filter_map(|(_, c)| c["spec"]["names"]["kind"].as_str().map(String::from)).collect();
    assert_eq!(kinds, ["MirrorFilter", "MirrorSession"]);
    let docs = documented(&markdown, &kinds);
    for (kind, path) in [
        ("MirrorFilter", "spec.inboundRules[].destinationPorts.from"),
        ("MirrorSession", "spec.sources[].podSelector.matchExpressions[].key"),
        ("MirrorSession", "status.nodes[].truncated"),
    ] {
        assert!(docs.get(kind).is_some_and(|rows| rows.contains_key(path)), "{kind} `{path}` not found in docs/api.md");
    }
}

#[test]
fn a_missing_or_invented_field_is_reported_by_its_path() {
    let (crds, markdown) = load();
    let without_vni: String =
        markdown.lines().filter(|l| !l.contains("`spec.vni`")).map(|l| format!("{l}\n")).collect();
    let problems = problems(&crds, &without_vni);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("MirrorSession field `spec.vni`"), "{}", problems[0]);

    let invented = markdown.replacen("`spec.vni`", "`spec.vni`<br>`spec.notAField`", 1);
    let problems = self::problems(&crds, &invented);
    assert!(problems.iter().any(|p| p.contains("`spec.notAField`, which")), "{problems:#?}");
}

#[test]
fn a_wrong_bound_or_default_is_reported() {
    let (crds, markdown) = load();
    let lines: Vec<String> = markdown
        .lines()
        .map(|l| if l.contains("`spec.targetPort`") { l.replace("4789", "4790") } else { l.to_string() })
        .collect();
    let problems = problems(&crds, &lines.join("\n"));
    assert!(problems.iter().any(|p| p.contains("`spec.targetPort`") && p.contains("default `4789`")), "{problems:#?}");
}
