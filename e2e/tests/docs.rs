//! The repository explains itself: nothing in it points outside it, and every
//! relative link in its Markdown leads to a file it holds.
//!
//! A clone of the project has no product contract beside it, so a tracked
//! file that links the sibling `shared` folder, or cites the contract by its
//! name, sends the reader nowhere. Citations go to `docs/*.md` instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use podmirror_e2e::repo_root;

/// The outside folder and the contract's name, assembled so that this file
/// does not match its own search (nor a `grep` for them over the tree).
fn outside_folder() -> String {
    concat!("..", "/shar", "ed").to_string()
}
fn contract_word() -> String {
    concat!("SP", "EC").to_string()
}

/// The files git tracks (what a clone holds). Falls back to a walk of the
/// tree, minus build output and tools, where there is no git repository.
fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git").arg("-C").arg(root).args(["ls-files", "-z"]).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|p| root.join(p))
            .filter(|p| p.is_file())
            .collect(),
        _ => {
            eprintln!("note: `git ls-files` failed; walking {} instead", root.display());
            let mut files = Vec::new();
            walk(root, &mut files);
            files
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".git" | ".tools")) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Where `line` cites the contract or its folder: the offending needle.
fn outside_reference(line: &str) -> Option<String> {
    let folder = outside_folder();
    if line.contains(&folder) {
        return Some(folder);
    }
    let word = contract_word();
    let bytes = line.as_bytes();
    line.match_indices(&word).find_map(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + word.len()).copied();
        // A whole word: `AF_UNSPEC`, `TC_ACT_UNSPEC` are not citations.
        (!before.is_some_and(is_word_byte) && !after.is_some_and(is_word_byte)).then(|| word.clone())
    })
}

/// `file:line: needle` for every outside reference in the given files.
fn outside_references(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if let Some(needle) = outside_reference(line) {
                let rel = file.strip_prefix(root).unwrap_or(file);
                found.push(format!("{}:{}: `{needle}` in: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_tracked_file_points_outside_the_repository() {
    let root = repo_root();
    let files = tracked_files(&root);
    assert!(files.len() > 50, "only {} files found under {}", files.len(), root.display());
    let found = outside_references(&root, &files);
    assert!(
        found.is_empty(),
        "these lines point outside the repository; cite a docs/*.md file instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_search_finds_citations_and_spares_kernel_names() {
    let word = contract_word();
    let folder = outside_folder();
    assert!(outside_reference(&format!("see {word} §3")).is_some());
    assert!(outside_reference(&format!("[{word}.md]({folder}/{word}.md)")).is_some());
    assert!(outside_reference(&format!("({word})")).is_some());
    assert!(outside_reference(&format!("msg.push(libc::AF_UN{word} as u8);")).is_none());
    assert!(outside_reference(&format!("TC_ACT_UN{word}")).is_none());
    assert!(outside_reference(&format!("const IFLA_AF_{word}: u16 = 26;")).is_none());
    assert!(outside_reference("spec.priority (docs/api.md)").is_none());
}

/// Relative link targets of a Markdown text: `](target)`, anchors dropped.
fn relative_links(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split('#').next().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_relative_markdown_link_resolves() {
    let root = repo_root();
    let docs = root.join("docs");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in tracked_files(&root).iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let dir = file.parent().unwrap_or(&root);
        for link in relative_links(&text) {
            checked += 1;
            let target = dir.join(&link);
            let inside = target.canonicalize().is_ok_and(|t| t.starts_with(&root));
            if !target.exists() || !inside {
                let rel = file.strip_prefix(&root).unwrap_or(file);
                broken.push(format!("{}: link `{link}` leads nowhere in the repository", rel.display()));
            }
        }
    }
    assert!(checked > 10, "only {checked} links found: is the docs/ folder there ({})?", docs.display());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_sends_users_to_docs() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap_or_default();
    assert!(readme.contains("](docs/README.md)"), "README.md must link docs/README.md");
    for page in ["concepts", "api", "matching", "quotas", "wire-format", "operations", "architecture"] {
        let path = root.join("docs").join(format!("{page}.md"));
        assert!(path.is_file(), "{} is missing", path.display());
        let index = std::fs::read_to_string(root.join("docs/README.md")).unwrap_or_default();
        assert!(index.contains(&format!("]({page}.md)")), "docs/README.md must link {page}.md");
    }
}
