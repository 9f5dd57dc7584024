//! Runs a container of the rendered chart under a real OCI runtime (runc)
//! with exactly what Kubernetes would give it: the securityContext
//! (capabilities, user, no_new_privs, read-only root, RuntimeDefault
//! seccomp), host network (here: a network namespace the test made),
//! hostPath volume mounts with their propagation, and runc's own defaults
//! for the rest (masked paths, a read-only `/proc/sys`), as containerd
//! applies them. The image is the host's `/usr` and `/etc` read-only, with
//! the binary under test at the path the chart's `command` names.

pub mod container;
pub mod seccomp;

pub use container::{RuncContainer, cap_number};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};
use serde_yaml::Value;

use crate::manifest::Container;
use crate::{E2eError, cmd};

/// What the caller decides beyond the rendered container.
#[derive(Debug, Default)]
pub struct Launch {
    /// The network namespace that stands for the node's (hostNetwork).
    pub netns_path: PathBuf,
    /// The host directory holding the binary the container's command names.
    pub binary_dir: PathBuf,
    /// Values of the Downward API fields (`spec.nodeName`, `status.hostIPs`, ...).
    pub field_values: Vec<(String, String)>,
    /// Arguments appended to the chart's.
    pub extra_args: Vec<String>,
    /// Extra read-only bind mounts: (host path, container path).
    pub extra_mounts: Vec<(PathBuf, String)>,
}

/// What running a rendered container here needs besides root: runc, helm
/// and the containers-common seccomp profile (the runtime's default). None,
/// with a loud SKIPPED (a panic under CI=true), when one is missing.
pub fn runtime_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let runc =
        crate::tools::require(&format!("{test}: needs runc"), crate::tools::find("runc", "RUNC", &["--version"]))?;
    let helm = crate::tools::require(&format!("{test}: needs helm"), crate::tools::helm())?;
    let profile = Path::new(seccomp::CONTAINERS_COMMON_PROFILE);
    let found = if profile.exists() {
        Ok(())
    } else {
        let source =
            std::io::Error::new(std::io::ErrorKind::NotFound, "Debian package golang-github-containers-common");
        Err(E2eError::Io { path: profile.to_path_buf(), source })
    };
    crate::tools::require(&format!("{test}: needs the containers-common seccomp profile"), found)?;
    Some((runc, helm))
}

fn bad(what: &str, reason: impl Into<String>) -> E2eError {
    E2eError::Manifest { index: 0, what: what.to_string(), reason: reason.into() }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> E2eError + '_ {
    move |source| E2eError::Io { path: path.to_path_buf(), source }
}

/// The capabilities a root container ends up with: the added ones after
/// dropping ALL (the only shape the chart uses), `CAP_`-prefixed.
pub fn effective_capabilities(container: &Container<'_>) -> Result<BTreeSet<String>, E2eError> {
    if !container.dropped_capabilities().contains("ALL") {
        return Err(bad(container.name(), "capabilities must drop ALL"));
    }
    Ok(container.added_capabilities().iter().map(|c| format!("CAP_{}", c.to_uppercase())).collect())
}

/// The container's environment: plain values, and Downward API fields from `launch`.
fn environment(container: &Container<'_>, launch: &Launch) -> Result<Vec<Json>, E2eError> {
    let mut env = vec![json!("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")];
    for e in container.value.get("env").and_then(Value::as_sequence).into_iter().flatten() {
        let name =
            e.get("name").and_then(Value::as_str).ok_or_else(|| bad(container.name(), "env entry without name"))?;
        let value = match (e.get("value").and_then(Value::as_str), container.env_field_ref(name)) {
            (Some(v), _) => v.to_string(),
            (None, Some(field)) => {
                launch.field_values.iter().find(|(f, _)| f == field).map(|(_, v)| v.clone()).ok_or_else(|| {
                    bad(container.name(), format!("no value given for the Downward API field {field}"))
                })?
            }
            (None, None) => {
                return Err(bad(container.name(), format!("env {name}: only values and fieldRefs are supported")));
            }
        };
        env.push(json!(format!("{name}={value}")));
    }
    Ok(env)
}

/// Bind mounts of the container's hostPath volumes.
fn volume_mounts(container: &Container<'_>, pod_spec: &Value) -> Result<Vec<Json>, E2eError> {
    let mut mounts = Vec::new();
    for m in container.value.get("volumeMounts").and_then(Value::as_sequence).into_iter().flatten() {
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        let dest =
            m.get("mountPath").and_then(Value::as_str).ok_or_else(|| bad(name, "volumeMount without mountPath"))?;
        let volume = pod_spec
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| bad(name, "no such volume"))?;
        let source = volume
            .get("hostPath")
            .and_then(|h| h.get("path"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name, "only hostPath volumes are supported"))?;
        let mut options =
            vec!["rbind", if m.get("readOnly").and_then(Value::as_bool) == Some(true) { "ro" } else { "rw" }];
        options.push(match m.get("mountPropagation").and_then(Value::as_str) {
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            _ => "rprivate",
        });
        mounts.push(json!({ "destination": dest, "type": "bind", "source": source, "options": options }));
    }
    Ok(mounts)
}

/// Writes `dir/config.json` (from `runc spec`, adjusted) and `dir/rootfs`
/// for `container` of `pod_spec`, as `launch` says.
pub fn write_bundle(
    runc: &Path,
    dir: &Path,
    pod_spec: &Value,
    container: &Container<'_>,
    launch: &Launch,
) -> Result<(), E2eError> {
    make_rootfs(&dir.join("rootfs"))?;
    let config_path = dir.join("config.json");
    let mut config = runc_spec(runc, dir, &config_path)?;

    let security = container.value.get("securityContext").ok_or_else(|| bad(container.name(), "no securityContext"))?;
    if security.get("privileged").and_then(Value::as_bool) == Some(true) {
        return Err(bad(container.name(), "privileged containers are not run here"));
    }
    let caps = effective_capabilities(container)?;
    let command = container.command_line();
    let program = command.first().ok_or_else(|| bad(container.name(), "no command"))?;

    config["root"] = json!({ "path": "rootfs", "readonly": security.get("readOnlyRootFilesystem").and_then(Value::as_bool) == Some(true) });
    set_process(&mut config["process"], container, security, launch, &caps)?;
    set_linux(&mut config["linux"], container, security, launch, &caps)?;
    add_mounts(&mut config, container, pod_spec, launch, program)?;
    let text = serde_json::to_string_pretty(&config).map_err(|e| bad("config.json", e.to_string()))?;
    std::fs::write(&config_path, text).map_err(io(&config_path))
}

/// The image: empty mount points, and the merged-/usr links into them.
fn make_rootfs(rootfs: &Path) -> Result<(), E2eError> {
    for d in ["usr", "etc", "proc", "sys", "dev", "tmp", "run", "mnt"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(io(rootfs))?;
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        let link = rootfs.join(l);
        if !link.exists() {
            std::os::unix::fs::symlink(format!("usr/{l}"), &link).map_err(io(&link))?;
        }
    }
    Ok(())
}

/// runc's default config for `dir`, freshly generated and read back.
fn runc_spec(runc: &Path, dir: &Path, config_path: &Path) -> Result<Json, E2eError> {
    let _ = std::fs::remove_file(config_path);
    cmd::run(runc, &["spec".as_ref(), "--bundle".as_ref(), dir.as_os_str()])?;
    let text = std::fs::read_to_string(config_path).map_err(io(config_path))?;
    serde_json::from_str(&text).map_err(|e| bad("runc spec", e.to_string()))
}

/// `process`: command, environment, user, no_new_privs and capabilities.
fn set_process(
    process: &mut Json,
    container: &Container<'_>,
    security: &Value,
    launch: &Launch,
    caps: &BTreeSet<String>,
) -> Result<(), E2eError> {
    let mut args: Vec<String> = container.command_line().iter().map(|s| s.to_string()).collect();
    args.extend(launch.extra_args.iter().cloned());
    let uid = security.get("runAsUser").and_then(Value::as_u64).unwrap_or(0);
    process["terminal"] = json!(false);
    process["args"] = json!(args);
    process["env"] = json!(environment(container, launch)?);
    process["cwd"] = json!("/");
    process["user"] = json!({ "uid": uid, "gid": security.get("runAsGroup").and_then(Value::as_u64).unwrap_or(0) });
    process["noNewPrivileges"] =
        json!(security.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false));
    let cap_list: Vec<&String> = caps.iter().collect();
    process["capabilities"] = json!({ "bounding": cap_list, "effective": cap_list, "permitted": cap_list });
    // runc spec lowers RLIMIT_NOFILE; kubelet leaves rlimits to the node.
    if let Some(p) = process.as_object_mut() {
        p.remove("rlimits");
    }
    Ok(())
}

/// `linux`: the test's network namespace, and the seccomp profile asked for.
fn set_linux(
    linux: &mut Json,
    container: &Container<'_>,
    security: &Value,
    launch: &Launch,
    caps: &BTreeSet<String>,
) -> Result<(), E2eError> {
    if let Some(ns) = linux.get_mut("namespaces").and_then(Json::as_array_mut) {
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({ "type": "network", "path": launch.netns_path }));
    }
    match security.get("seccompProfile").and_then(|p| p.get("type")).and_then(Value::as_str) {
        Some("RuntimeDefault") => {
            linux["seccomp"] = seccomp::runtime_default(Path::new(seccomp::CONTAINERS_COMMON_PROFILE), caps)?
        }
        Some("Unconfined") | None => {}
        Some(other) => return Err(bad(container.name(), format!("seccompProfile {other} is not supported here"))),
    }
    Ok(())
}

/// `mounts`: the host's `/usr` and `/etc`, the binary's directory, the
/// hostPath volumes and the caller's extra mounts.
fn add_mounts(
    config: &mut Json,
    container: &Container<'_>,
    pod_spec: &Value,
    launch: &Launch,
    program: &str,
) -> Result<(), E2eError> {
    let mounts = config["mounts"].as_array_mut().ok_or_else(|| bad("runc spec", "no mounts"))?;
    // The host's cgroup v1 hierarchy cannot be mounted per container here;
    // nothing the agent does reads it.
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    for d in ["/usr", "/etc"] {
        mounts.push(json!({ "destination": d, "type": "bind", "source": d, "options": ["rbind", "ro"] }));
    }
    let program_dir = Path::new(program).parent().and_then(Path::to_str).unwrap_or("/usr/local/bin");
    mounts.push(
        json!({ "destination": program_dir, "type": "bind", "source": launch.binary_dir, "options": ["rbind", "ro"] }),
    );
    mounts.extend(volume_mounts(container, pod_spec)?);
    for (host, dest) in &launch.extra_mounts {
        mounts.push(json!({ "destination": dest, "type": "bind", "source": host, "options": ["rbind", "ro"] }));
    }
    Ok(())
}
