//! Before the first step: where the run goes (a new kind cluster or the
//! user's), the tools it needs (all missing ones named at once), and the
//! cluster's nodes.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use podmirror_e2e::cmd;
use podmirror_e2e::kind::{Cluster, Kubectl};
use podmirror_e2e::tools;

use super::IMAGE;

pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    /// Set on kind runs: the node checks read each node through Docker.
    pub docker: Option<PathBuf>,
    pub kind: Option<PathBuf>,
}

/// Where the scenarios run.
#[derive(Debug, PartialEq)]
pub enum Target {
    /// A kind cluster made for the run (the default where Docker exists).
    Kind,
    /// The cluster `KUBECONFIG` names, with an image it can pull
    /// (`PODMIRROR_E2E_IMAGE=registry/podmirror:tag`): how a user validates a
    /// staging cluster before trusting podmirror in production.
    Existing { kubeconfig: PathBuf, image: String },
}

/// The target `PODMIRROR_E2E_IMAGE` and `KUBECONFIG` ask for.
pub fn target(image: Option<String>, kubeconfig: Option<PathBuf>) -> Result<Target> {
    match (image, kubeconfig) {
        (Some(image), Some(kubeconfig)) => Ok(Target::Existing { kubeconfig, image }),
        (Some(_), None) => bail!("PODMIRROR_E2E_IMAGE is set: also set KUBECONFIG to the cluster to test"),
        (None, _) => Ok(Target::Kind),
    }
}

/// Every missing prerequisite at once, so one run tells the whole story.
pub fn preflight(target: &Target) -> Result<Tools> {
    let kubectl = tools::kubectl();
    let helm = tools::helm();
    let mut found = vec![&kubectl, &helm];
    let (docker, kind) = match target {
        Target::Kind => (Some(tools::docker_with_daemon()), Some(tools::kind())),
        Target::Existing { .. } => (None, None),
    };
    found.extend(docker.iter().chain(kind.iter()));
    let mut missing: Vec<String> = found.iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
    if matches!(target, Target::Kind) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            missing
                .push("root: the uninstall check runs the host's bpftool in each kind node's network namespace".into());
        }
        for tool in ["bpftool", "nsenter"] {
            if tools::on_path(tool).is_none() {
                missing.push(format!("{tool} not on PATH (the uninstall check needs it)"));
            }
        }
    }
    if !missing.is_empty() {
        bail!("prerequisites missing, nothing was run:\n  - {}", missing.join("\n  - "));
    }
    Ok(Tools { kubectl: kubectl?, helm: helm?, docker: docker.transpose()?, kind: kind.transpose()? })
}

/// `registry/podmirror:tag` as the chart's `image.repository` and `image.tag`.
pub fn split_image(image: &str) -> Result<(&str, &str)> {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => Ok((&image[..slash + i], &image[slash + i + 1..])),
        None => bail!("PODMIRROR_E2E_IMAGE={image}: name a tag (registry/podmirror:tag)"),
    }
}

/// The cluster to test: for kind, the image built and a new cluster (gone
/// when the returned [`Cluster`] drops) loaded with it. Also the kubeconfig
/// and the chart's `--set`s for the image.
pub fn cluster(target: &Target, t: &Tools) -> Result<(Option<Cluster>, PathBuf, Vec<String>)> {
    match target {
        Target::Kind => {
            let root = podmirror_e2e::repo_root();
            let (docker, kind) = (t.docker.clone().context("docker")?, t.kind.clone().context("kind")?);
            super::step("build the image");
            cmd::run_visible(&docker, &["build".as_ref(), "-t".as_ref(), IMAGE.as_ref(), root.as_os_str()])?;
            super::step("create the kind cluster");
            let name = format!("pm-e2e-{}", std::process::id());
            let cluster = Cluster::create(kind, &name, &root.join("e2e/kind/cluster.yaml"))?;
            cluster.load_image(IMAGE)?;
            let sets =
                vec!["image.repository=podmirror".to_string(), "image.tag=e2e".into(), "image.pullPolicy=Never".into()];
            let kubeconfig = cluster.kubeconfig.clone();
            Ok((Some(cluster), kubeconfig, sets))
        }
        Target::Existing { kubeconfig, image } => {
            super::step(&format!("use the cluster of {} with image {image}", kubeconfig.display()));
            let (repository, tag) = split_image(image)?;
            let sets = vec![format!("image.repository={repository}"), format!("image.tag={tag}")];
            Ok((None, kubeconfig.clone(), sets))
        }
    }
}

/// Every node, and the workers among them.
pub fn nodes(cluster: Option<&Cluster>, kubectl: &Kubectl) -> Result<(Vec<String>, Vec<String>)> {
    let names = |selector: &[&str]| -> Result<Vec<String>> {
        let mut args = vec!["get", "nodes"];
        args.extend(selector);
        args.extend(["-o", "jsonpath={.items[*].metadata.name}"]);
        Ok(kubectl.run(&args)?.split_whitespace().map(String::from).collect())
    };
    let (nodes, workers) = match cluster {
        Some(c) => {
            let nodes = c.nodes()?;
            let workers = nodes.iter().filter(|n| !n.contains("control-plane")).cloned().collect();
            (nodes, workers)
        }
        None => (names(&[])?, names(&["-l", "!node-role.kubernetes.io/control-plane"])?),
    };
    check_workers(&nodes, &workers, cluster.is_some())?;
    Ok((nodes, workers))
}

/// A kind cluster has two workers (e2e/kind/cluster.yaml); a user's cluster
/// needs one, and with one the cross-node steps stay on it.
fn check_workers(nodes: &[String], workers: &[String], kind: bool) -> Result<()> {
    ensure!(!workers.is_empty(), "no worker node among {nodes:?}");
    if kind {
        ensure!(workers.len() >= 2, "expected two workers, kind made {nodes:?}");
    } else if workers.len() < 2 {
        eprintln!("e2e: one worker only: the cross-node steps run with source and target on the same node");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_into_repository_and_tag() {
        assert_eq!(
            split_image("registry.local:5000/pm/podmirror:v1").ok(),
            Some(("registry.local:5000/pm/podmirror", "v1"))
        );
        assert_eq!(split_image("podmirror:e2e").ok(), Some(("podmirror", "e2e")));
        assert!(split_image("registry.local:5000/podmirror").is_err(), "a registry port is no tag");
    }

    #[test]
    fn the_target_follows_the_environment() {
        assert_eq!(target(None, None).ok(), Some(Target::Kind));
        assert_eq!(target(None, Some("/k".into())).ok(), Some(Target::Kind), "KUBECONFIG alone: still kind");
        assert_eq!(
            target(Some("r/pm:1".into()), Some("/k".into())).ok(),
            Some(Target::Existing { kubeconfig: "/k".into(), image: "r/pm:1".into() })
        );
        assert!(target(Some("r/pm:1".into()), None).is_err(), "an image without a cluster");
    }

    #[test]
    fn kind_needs_two_workers_a_users_cluster_one() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let nodes = names(&["cp", "w1", "w2"]);
        assert!(check_workers(&nodes, &names(&["w1", "w2"]), true).is_ok());
        assert!(check_workers(&nodes, &names(&["w1"]), true).is_err());
        assert!(check_workers(&nodes, &names(&["w1"]), false).is_ok());
        assert!(check_workers(&nodes, &[], false).is_err());
    }
}
