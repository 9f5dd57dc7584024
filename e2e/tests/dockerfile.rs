//! The Dockerfile cannot be built here (no Docker engine), so these tests hold
//! it to what the chart and the workspace expect: the binaries it builds exist
//! as workspace binaries, land where the chart runs them, and the runtime
//! stage is minimal and non-root.

use podmirror_e2e::repo_root;

fn dockerfile() -> String {
    let path = repo_root().join("Dockerfile");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines of the Dockerfile with `\` continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

#[test]
fn builds_both_binaries_with_the_bpf_toolchain() {
    let ins = instructions(&dockerfile());
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    assert!(froms[0].contains("rust:") && froms[0].contains(" AS build"), "{}", froms[0]);
    assert!(ins.iter().any(|i| i == "ARG RUST_VERSION=1.95"), "Rust 1.95 build stage");
    let apt = ins
        .iter()
        .find(|i| i.starts_with("RUN apt-get update") && i.contains("clang-19"))
        .expect("the build stage installs clang-19");
    assert!(apt.contains("libbpf-dev"), "{apt}");
    let build = ins.iter().find(|i| i.contains("cargo build")).expect("a cargo build");
    for package in ["podmirror-operator", "podmirror-agent", "podmirror-collector"] {
        assert!(build.contains(&format!("-p {package}")), "{build}");
        // The package exists in the workspace with a binary of that name.
        let manifests = ["operator/Cargo.toml", "node-agent/Cargo.toml", "collector/Cargo.toml"];
        let found = manifests.iter().any(|m| {
            let text = std::fs::read_to_string(repo_root().join(m)).unwrap_or_default();
            text.contains(&format!("name = \"{package}\""))
        });
        assert!(found, "no workspace package or binary named {package}");
    }
    assert!(build.contains("--release"), "{build}");
}

#[test]
fn the_runtime_stage_is_minimal_and_non_root() {
    let ins = instructions(&dockerfile());
    let runtime_at =
        ins.iter().position(|i| i.starts_with("FROM ") && i.contains(" AS runtime")).expect("a runtime stage");
    let runtime = &ins[runtime_at..];
    assert!(runtime[0].contains("-slim") || runtime[0].contains("distroless"), "minimal base: {}", runtime[0]);
    let copy =
        runtime.iter().find(|i| i.starts_with("COPY --from=build")).expect("binaries copied from the build stage");
    assert!(
        copy.contains("podmirror-operator")
            && copy.contains("podmirror-agent")
            && copy.contains("podmirror-collector")
            && copy.ends_with("/usr/local/bin/"),
        "{copy}"
    );
    let user = runtime.iter().rfind(|i| i.starts_with("USER ")).expect("a USER");
    assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
    assert!(!runtime.iter().any(|i| i.contains("cargo") || i.contains("clang")), "no toolchain at runtime");
}

#[test]
fn the_build_context_leaves_out_build_outputs() {
    let path = repo_root().join(".dockerignore");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for entry in ["target", ".git", ".tools"] {
        assert!(text.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }
}

/// Programs the shipped binaries execute at run time (`Command::new("x")` or
/// the agent's `run("x", ...)` helper), from their non-test sources.
fn programs_executed() -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for dir in ["node-agent/src", "operator/src", "collector/src"] {
        let mut stack = vec![repo_root().join(dir)];
        while let Some(path) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let p = entry.path();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                // tests.rs only runs in tests, never in the image (the
                // netns harness lives in the dev-only testkit crate).
                if p.is_dir() {
                    stack.push(p);
                } else if name.ends_with(".rs") && name != "tests.rs" {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    // Code after `#[cfg(test)]` is test code.
                    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                    for marker in ["Command::new(\"", "run(\""] {
                        for rest in code.split(marker).skip(1) {
                            if let Some(program) = rest.split('"').next() {
                                found.insert(program.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_binaries_run_no_external_program() {
    // The agent speaks netlink itself (no `ip`, `bridge` or `tc` in the
    // image, nothing whose output format could change under it); the
    // runtime stage installs only CA certificates.
    let programs = programs_executed();
    assert!(
        programs.is_empty(),
        "the binaries run {programs:?}: speak to the kernel directly, or add the package to the image and a test here"
    );
    let ins = instructions(&dockerfile());
    let runtime_at =
        ins.iter().position(|i| i.starts_with("FROM ") && i.contains(" AS runtime")).expect("a runtime stage");
    let installs: Vec<&String> = ins[runtime_at..].iter().filter(|i| i.contains("apt-get install")).collect();
    for i in &installs {
        assert!(!i.contains("iproute2"), "iproute2 is no longer needed: {i}");
    }
}

#[test]
fn release_binaries_are_built_without_debug_info() {
    // Debug info would more than double the image (the target is <= 100 MB).
    let text = dockerfile();
    assert!(text.contains("CARGO_PROFILE_RELEASE_DEBUG=0"), "build without debug info");
    assert!(text.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"), "strip the binaries");
}
