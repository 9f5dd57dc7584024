//! `make e2e` must fail loudly, never pass, where Docker or kind are missing.
//! This runs the real runner binary with an empty PATH, so none is found.

use std::process::Command;

#[test]
fn the_kind_runner_fails_loudly_without_docker_and_kind() {
    let out = Command::new(env!("CARGO_BIN_EXE_podmirror-e2e-kind"))
        .env("PATH", "/nonexistent")
        .env_remove("KIND")
        .env_remove("KUBECTL")
        .env("HELM", "/nonexistent/helm")
        .output()
        .expect("the runner starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the runner passed without Docker or kind:\n{stderr}");
    assert!(stderr.contains("e2e: FAILED"), "{stderr}");
    assert!(stderr.contains("docker"), "the message must name Docker:\n{stderr}");
    assert!(stderr.contains("kind"), "the message must name kind:\n{stderr}");
    assert!(stderr.contains("nothing was run"), "{stderr}");
}
