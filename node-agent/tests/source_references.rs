//! The comments of the eBPF C sources and of `build.rs` name Rust items and
//! files that keep each side in step ("mirrored in Rust by ..."); a renamed
//! or moved item must not leave them pointing at nothing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};

fn agent_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files whose comments are checked.
fn commented_files() -> Vec<PathBuf> {
    let mut files = vec![agent_dir().join("build.rs")];
    for entry in fs::read_dir(agent_dir().join("bpf")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "h" || e == "c" || e == "md") {
            files.push(path);
        }
    }
    files
}

/// Does `file` (a module's source) define or re-export `item`?
fn defines(file: &Path, item: &str) -> bool {
    let text = fs::read_to_string(file).unwrap_or_default();
    let kinds = ["fn", "mod", "struct", "enum", "const", "static", "type", "trait"];
    kinds.iter().any(|k| text.contains(&format!("{k} {item}")) || text.contains(&format!("{k} {item}<")))
        || text.lines().any(|l| l.trim_start().starts_with("pub use") && l.contains(item))
}

/// Resolves `a::b::c` from `src`: modules as files, then at most one item.
fn resolves(src: &Path, path: &str) -> Result<(), String> {
    let segments: Vec<&str> = path.split("::").collect();
    let mut dir = src.to_path_buf();
    let mut module = src.join("lib.rs");
    for (i, seg) in segments.iter().enumerate() {
        let (as_file, as_dir) = (dir.join(format!("{seg}.rs")), dir.join(seg).join("mod.rs"));
        if as_file.exists() || as_dir.exists() {
            module = if as_file.exists() { as_file } else { as_dir };
            dir = dir.join(seg);
        } else if i + 1 == segments.len() && defines(&module, seg) {
            return Ok(());
        } else {
            return Err(format!("no module or item {seg:?} in {}", module.display()));
        }
    }
    Ok(())
}

/// Rust paths (`crate::module::item`) and this repository's source files
/// (`src/x.rs`, `tests/x.rs`) named in a comment.
fn references(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '/' || c == '.' || c == '-'))
        .map(|t| t.trim_end_matches(['.', ':']))
        .filter(|t| {
            let rust =
                t.starts_with("podmirror_agent::") || t.starts_with("podmirror_crds::") || t.starts_with("datapath::");
            // Paths into this repository (other projects' files, such as
            // aya's test/integration-test/build.rs, are not checked).
            let ours =
                ["src/", "tests/", "datapath/", "node-agent/", "crds/", "operator/"].iter().any(|p| t.starts_with(p));
            rust || (t.ends_with(".rs") && ours)
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn comments_name_rust_items_and_files_that_exist() {
    let root = agent_dir().join("..");
    let mut broken = Vec::new();
    let mut seen = 0;
    for file in commented_files() {
        let text = fs::read_to_string(&file).unwrap();
        for reference in references(&text) {
            seen += 1;
            let outcome = if let Some(path) = reference.strip_prefix("podmirror_crds::") {
                resolves(&root.join("crds/src"), path)
            } else if reference.contains("::") {
                resolves(&agent_dir().join("src"), reference.trim_start_matches("podmirror_agent::"))
            } else {
                let candidates =
                    [agent_dir().join(&reference), agent_dir().join("src").join(&reference), root.join(&reference)];
                if candidates.iter().any(|c| c.exists()) { Ok(()) } else { Err("no such file".into()) }
            };
            if let Err(why) = outcome {
                broken.push(format!("{}: {reference}: {why}", file.display()));
            }
        }
    }
    assert!(seen >= 4, "only {seen} references found: the scan is broken");
    assert!(broken.is_empty(), "stale references:\n{}", broken.join("\n"));
}

/// The resolver itself: what the stale comments used to say fails.
#[test]
fn the_old_stale_references_do_not_resolve() {
    let src = agent_dir().join("src");
    assert!(resolves(&src, "datapath::program").is_err());
    assert!(resolves(&src, "datapath::flow_hash").is_err());
    assert!(resolves(&src, "datapath::flow::flow_hash").is_ok());
    assert!(resolves(&agent_dir().join("../crds/src"), "model::evaluate").is_ok());
}
