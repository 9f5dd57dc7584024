//! The I/O steps of the kind e2e scenarios (apply, exec, logs) on one test
//! namespace. What decides each scenario is in [`crate::checks`]; what a
//! node holds before and after, in [`crate::node_state`].

use std::net::IpAddr;
use std::time::Duration;

use crate::kind::{Kubectl, eventually};
use crate::{E2eError, repo_root};

/// Replaces every `{{key}}` of `template`. A placeholder left over is an
/// error, so a typo in a manifest cannot produce a half-filled object.
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, E2eError> {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    // Comments may mention placeholders; only the YAML body must be filled.
    let body: String = out.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    match body.find("{{") {
        Some(at) => Err(E2eError::Step {
            step: "render manifest".into(),
            reason: format!("unfilled placeholder near `{}`", &body[at..(at + 30).min(body.len())]),
        }),
        None => Ok(out),
    }
}

/// A manifest template of `e2e/manifests/`.
pub fn template(name: &str) -> Result<String, E2eError> {
    let path = repo_root().join("e2e").join("manifests").join(name);
    std::fs::read_to_string(&path).map_err(|source| E2eError::Io { path, source })
}

/// One session of `manifests/session.yaml` and the filter it uses.
pub struct SessionParams<'a> {
    pub session: &'a str,
    pub filter: &'a str,
    pub priority: u32,
    pub vni: u32,
    /// The source pod's name.
    pub source: &'a str,
    /// Table 5's source CIDR (the client) and destination CIDR (the source pod).
    pub client_ip: IpAddr,
    pub source_ip: IpAddr,
    /// The `target:` value, inline YAML (`{pod: {name: x}}`, `{service: ...}`).
    pub target: &'a str,
}

/// The test namespace and the tools image of a run.
pub struct Ctx<'a> {
    pub kubectl: &'a Kubectl,
    pub namespace: String,
    /// An image with sh, nc (OpenBSD flavour) and tcpdump.
    pub tools_image: String,
}

impl Ctx<'_> {
    /// Starts a pod on `node` running `command`, waits until it is Ready and
    /// returns its IP.
    pub fn pod(&self, name: &str, role: &str, node: &str, command: &[&str]) -> Result<IpAddr, E2eError> {
        let command = serde_json::to_string(command)
            .map_err(|e| E2eError::Step { step: format!("pod {name}"), reason: e.to_string() })?;
        let yaml = render(
            &template("pods.yaml")?,
            &[("name", name), ("role", role), ("node", node), ("image", &self.tools_image), ("command", &command)],
        )?;
        self.kubectl.apply(&self.namespace, &yaml)?;
        self.kubectl.run(&[
            "wait",
            "-n",
            &self.namespace,
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=180s",
        ])?;
        let ip = self.kubectl.jsonpath(&self.namespace, &format!("pod/{name}"), "{.status.podIP}")?;
        ip.parse().map_err(|_| E2eError::Step {
            step: format!("pod {name}"),
            reason: format!("status.podIP `{ip}` is not an IP"),
        })
    }

    /// The seed filter (table 5 with real IPs) and a session using it.
    pub fn session(&self, p: &SessionParams<'_>) -> Result<(), E2eError> {
        let yaml = render(
            &template("session.yaml")?,
            &[
                ("session", p.session),
                ("filter", p.filter),
                ("priority", &p.priority.to_string()),
                ("vni", &p.vni.to_string()),
                ("source", p.source),
                ("client_ip", &p.client_ip.to_string()),
                ("source_ip", &p.source_ip.to_string()),
                ("target", p.target),
            ],
        )?;
        self.kubectl.apply(&self.namespace, &yaml)
    }

    /// Waits until the session's `status.phase` is `phase`.
    pub fn wait_phase(&self, session: &str, phase: &str) -> Result<(), E2eError> {
        eventually(&format!("session {session} phase {phase}"), Duration::from_secs(180), || {
            let got = self.kubectl.jsonpath(&self.namespace, &format!("mirrorsession/{session}"), "{.status.phase}")?;
            Ok(if got == phase { Ok(()) } else { Err(format!("phase is `{got}`")) })
        })
    }

    /// A condition of a session: (status, reason, message).
    pub fn condition(&self, session: &str, kind: &str) -> Result<(String, String, String), E2eError> {
        let obj = format!("mirrorsession/{session}");
        let get = |field: &str| {
            self.kubectl.jsonpath(
                &self.namespace,
                &obj,
                &format!("{{.status.conditions[?(@.type==\"{kind}\")].{field}}}"),
            )
        };
        Ok((get("status")?, get("reason")?, get("message")?))
    }

    /// Types `lines` into one TCP connection from `client` to `ip:1234`, one
    /// line a second (so each is its own segment, as in the seed).
    pub fn send_lines(&self, client: &str, ip: IpAddr, lines: &[&str]) -> Result<(), E2eError> {
        let script: String = lines.iter().map(|l| format!("echo '{l}'; sleep 1; ")).collect();
        let sh = format!("({script}) | nc -w 3 {ip} 1234");
        self.kubectl.run(&["exec", "-n", &self.namespace, client, "--", "sh", "-c", &sh]).map(|_| ())
    }

    /// Logs of a pod (or `deployment/x`, `pod/x`).
    pub fn logs(&self, pod: &str) -> Result<String, E2eError> {
        self.kubectl.run(&["logs", "-n", &self.namespace, pod])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_and_refuses_leftovers() {
        assert_eq!(render("a: {{x}}", &[("x", "1")]).expect("filled"), "a: 1");
        assert!(render("a: {{x}}\nb: {{y}}", &[("x", "1")]).is_err());
        assert!(render("# {{doc}}\na: 1", &[]).is_ok(), "comments may keep placeholders");
    }
}
