//! `podmirror-agent --standalone DIR --check`, run as a user scripts it in
//! CI (the built binary, no root): exit 0 only when every file loads and
//! every session is accepted; otherwise non-zero with the reason on stderr.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AGENT: &str = env!("CARGO_BIN_EXE_podmirror-agent");

/// A copy of the seed scenario in a temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn seed(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("pmcheck-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed-scenario");
        for name in ["filter.yaml", "session.yaml", "standalone.yaml"] {
            fs::copy(example.join(name), dir.join(name)).unwrap();
        }
        Dir(dir)
    }

    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = fs::read_to_string(self.0.join(name)).unwrap();
        assert!(text.contains(from), "{name} has no {from:?}");
        fs::write(self.0.join(name), text.replacen(from, to, 1)).unwrap();
    }

    fn check(&self) -> (Output, String, String) {
        let out = Command::new(AGENT).arg("--standalone").arg(&self.0).arg("--check").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stdout, stderr)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn session_name(dir: &Dir) -> String {
    let text = fs::read_to_string(dir.0.join("session.yaml")).unwrap();
    let session: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    session["metadata"]["name"].as_str().unwrap().to_owned()
}

#[test]
fn check_accepts_the_seed_scenario() {
    let dir = Dir::seed("good");
    let (out, stdout, stderr) = dir.check();
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stdout.contains(&format!("name: {}", session_name(&dir))), "{stdout}");
    assert!(!stderr.contains("refused"), "{stderr}");
}

/// The case: a session whose filter does not exist used to print
/// "refused" and exit 0.
#[test]
fn check_fails_on_a_session_whose_filter_does_not_exist() {
    let dir = Dir::seed("nofilter");
    dir.edit("session.yaml", "name: mirror-filter-a", "name: no-such-filter");
    let (out, stdout, stderr) = dir.check();
    assert!(!out.status.success(), "a broken reference must fail --check\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("refused:") && stderr.contains("spec.filterRef.name") && stderr.contains("no-such-filter"),
        "{stderr}"
    );
    assert!(stderr.contains("1 session(s) refused"), "{stderr}");
}

#[test]
fn check_fails_on_a_missing_source_pod_and_on_a_bad_file() {
    let dir = Dir::seed("nopod");
    dir.edit("standalone.yaml", "name: ecs-source", "name: renamed-source");
    let (out, _, stderr) = dir.check();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("spec.sources[0].podName") && stderr.contains("ecs-source"), "{stderr}");

    let dir = Dir::seed("badfile");
    fs::write(
        dir.0.join("broken.yaml"),
        "apiVersion: podmirror.io/v1alpha1\nkind: MirrorFilter\nmetadata: {name: b}\nspec: {inboundRules: 3}\n",
    )
    .unwrap();
    let (out, _, stderr) = dir.check();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.yaml") && stderr.contains("spec.inboundRules"), "{stderr}");
}
