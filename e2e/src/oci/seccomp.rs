//! The container runtime's default seccomp profile (`RuntimeDefault`) as
//! the runtime would hand it to runc for a container with given
//! capabilities.
//!
//! The source is the default profile that Debian's containers-common
//! package ships (`/usr/share/containers/seccomp.json`, the profile CRI-O
//! and podman apply), in the Docker profile format: rules gated on
//! capabilities (`includes`/`excludes`) and architectures are resolved
//! here the way the runtimes do. containerd, the runtime of most clusters,
//! generates the same profile in code and in addition lets a container
//! holding `CAP_BPF` call `bpf()` and one holding `CAP_PERFMON` call
//! `perf_event_open()` (containerd 1.6+); those two rules are added, the
//! rest is taken as shipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::E2eError;

/// Where containers-common installs the default profile.
pub const CONTAINERS_COMMON_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Docker's name of this machine's architecture, as profiles' `arches` use it.
fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn seccomp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

/// Does a rule apply to a container with `caps` on this architecture?
fn applies(rule: &Value, caps: &BTreeSet<String>) -> bool {
    let arch = docker_arch();
    let inc_caps = strings(rule.pointer("/includes/caps"));
    let exc_caps = strings(rule.pointer("/excludes/caps"));
    let inc_arches = strings(rule.pointer("/includes/arches"));
    let exc_arches = strings(rule.pointer("/excludes/arches"));
    inc_caps.iter().all(|c| caps.contains(c))
        && !exc_caps.iter().any(|c| caps.contains(c))
        && (inc_arches.is_empty() || inc_arches.iter().any(|a| a == arch))
        && !exc_arches.iter().any(|a| a == arch)
}

/// The OCI `linux.seccomp` object for `caps` (names with the `CAP_` prefix)
/// from a profile in the Docker format.
pub fn oci_profile(profile: &Value, caps: &BTreeSet<String>) -> Value {
    let arch = seccomp_arch();
    let mut architectures = vec![json!(arch)];
    for m in profile.get("archMap").and_then(Value::as_array).into_iter().flatten() {
        if m.get("architecture").and_then(Value::as_str) == Some(arch) {
            architectures.extend(strings(m.get("subArchitectures")).into_iter().map(Value::from));
        }
    }
    let mut syscalls: Vec<Value> = Vec::new();
    for rule in profile.get("syscalls").and_then(Value::as_array).into_iter().flatten() {
        if !applies(rule, caps) {
            continue;
        }
        let mut out = json!({ "names": rule.get("names").cloned().unwrap_or(json!([])), "action": rule["action"] });
        if let Some(errno) = rule.get("errnoRet") {
            out["errnoRet"] = errno.clone();
        }
        if let Some(args) = rule.get("args").filter(|a| a.as_array().is_some_and(|a| !a.is_empty())) {
            out["args"] = args.clone();
        }
        syscalls.push(out);
    }
    for (cap, call) in [("CAP_BPF", "bpf"), ("CAP_PERFMON", "perf_event_open")] {
        if caps.contains(cap) {
            // One action per syscall: the refusal meant for containers
            // without CAP_SYS_ADMIN gives way to containerd's allow.
            for rule in &mut syscalls {
                if let Some(names) = rule.get_mut("names").and_then(Value::as_array_mut) {
                    names.retain(|n| n.as_str() != Some(call));
                }
            }
            syscalls.retain(|r| r["names"].as_array().is_some_and(|n| !n.is_empty()));
            syscalls.push(json!({ "names": [call], "action": "SCMP_ACT_ALLOW" }));
        }
    }
    let mut oci = json!({
        "defaultAction": profile.get("defaultAction").cloned().unwrap_or(json!("SCMP_ACT_ERRNO")),
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(errno) = profile.get("defaultErrnoRet") {
        oci["defaultErrnoRet"] = errno.clone();
    }
    oci
}

/// The runtime's default profile for `caps`, read from `path`.
pub fn runtime_default(path: &Path, caps: &BTreeSet<String>) -> Result<Value, E2eError> {
    let io = |source| E2eError::Io { path: PathBuf::from(path), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let profile: Value =
        serde_json::from_str(&text).map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    Ok(oci_profile(&profile, caps))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capability_gated_rules_follow_the_containers_capabilities() {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "archMap": [{"architecture": seccomp_arch(), "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}},
                {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["iopl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}}
            ]
        });
        let oci = oci_profile(&profile, &caps(&["CAP_BPF", "CAP_NET_ADMIN"]));
        let names: Vec<String> = oci["syscalls"].as_array().unwrap().iter().map(|r| r["names"].to_string()).collect();
        assert_eq!(names, vec![r#"["read"]"#, r#"["bpf"]"#], "{oci}");
        assert_eq!(oci["syscalls"][1]["action"], "SCMP_ACT_ALLOW", "containerd's CAP_BPF rule replaces the refusal");
        let without_bpf = oci_profile(&profile, &caps(&["CAP_NET_ADMIN"]));
        assert_eq!(without_bpf["syscalls"][1]["action"], "SCMP_ACT_ERRNO", "no CAP_BPF: bpf() refused");
        assert_eq!(oci["defaultErrnoRet"], 38);
        assert_eq!(oci["architectures"].as_array().unwrap().len(), 2);
        assert!(oci["syscalls"][0].get("args").is_none(), "empty args are left out");
    }
}
