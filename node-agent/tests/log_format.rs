//! What `kubectl logs` shows of the agent: no ANSI colour escapes when
//! stderr is not a terminal, and one JSON object per line with
//! `--log-format json` (log pipelines parse them). Runs the real binary on
//! a harmless command (`--cleanup` of a pin dir and device prefix that do
//! not exist), so it needs no root.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn agent_stderr(extra: &[&str]) -> String {
    let pin_dir = std::env::temp_dir().join(format!("pm-logfmt-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_podmirror-agent"))
        .args(["--cleanup", "--device-prefix", "pmzz"])
        .arg("--pin-dir")
        .arg(&pin_dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn text_logs_carry_no_colour_escapes_outside_a_terminal() {
    let text = agent_stderr(&[]);
    assert!(text.contains("removed everything"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escapes in piped logs: {text:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let text = agent_stderr(&["--log-format", "json"]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(v["level"], "INFO", "{line}");
        assert!(v["fields"]["message"].as_str().is_some(), "{line}");
    }
}
