//! The last step of `helm uninstall` (`podmirror-operator uninstall-wait`,
//! run by the chart's post-delete hook Job in the project's own image):
//! wait until the cleanup DaemonSet has removed the datapath on every node,
//! then say so on every MirrorSession, whose status no operator or agent
//! will update again: phase `Pending`, `Programmed` False with reason
//! `Uninstalled`, and no per-node entries (their counters would read as
//! live otherwise). Sessions are the user's objects and stay.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use podmirror_crds::api::{ConditionReason, MirrorSession};
use serde_json::json;

/// Is the cleanup done on every node the DaemonSet runs on? `Err` says
/// what is still missing.
pub fn cleanup_done(ds: &DaemonSet) -> Result<(), String> {
    let status = ds.status.as_ref().ok_or("the DaemonSet has no status yet")?;
    let generation = ds.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("the DaemonSet controller has not seen the latest spec yet".into());
    }
    let desired = status.desired_number_scheduled;
    let ready = status.number_ready;
    if ready < desired {
        return Err(format!("{ready} of {desired} nodes cleaned up"));
    }
    Ok(())
}

/// The conditions of a session after the uninstall: `Programmed` False
/// (reason `Uninstalled`), the others as they were.
pub fn uninstalled_conditions(previous: &[Condition], now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = previous.iter().filter(|c| c.type_ != "Programmed").cloned().collect();
    let generation = previous.iter().find_map(|c| c.observed_generation);
    out.push(Condition {
        type_: "Programmed".into(),
        status: "False".into(),
        reason: ConditionReason::Uninstalled.to_string(),
        message: "podmirror was uninstalled: no agent mirrors this session any more".into(),
        last_transition_time: now.clone(),
        observed_generation: generation,
    });
    out
}

/// Waits (polling every 2 s) until [`cleanup_done`], at most `timeout`.
pub async fn wait_for_cleanup(api: &Api<DaemonSet>, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let why = match api.get(name).await {
            Ok(ds) => match cleanup_done(&ds) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            },
            Err(e) => format!("cannot read daemonset/{name}: {e}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("daemonset/{name}: cleanup not finished after {timeout:?}: {why}");
        }
        tracing::info!(daemonset = name, "waiting: {why}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Marks every MirrorSession of the cluster as no longer mirrored.
pub async fn mark_sessions(client: &Client) -> anyhow::Result<usize> {
    let all: Api<MirrorSession> = Api::all(client.clone());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut marked = 0;
    for session in all.list(&ListParams::default()).await?.items {
        let Some(status) = session.status.as_ref() else { continue };
        let ns = session.namespace().unwrap_or_default();
        let conditions = uninstalled_conditions(status.conditions.as_deref().unwrap_or_default(), &now);
        let phase =
            if status.phase == Some(podmirror_crds::api::SessionPhase::Invalid) { "Invalid" } else { "Pending" };
        let patch =
            json!({ "status": { "phase": phase, "conditions": conditions, "nodes": null, "mirroredPackets": null } });
        let api: Api<MirrorSession> = Api::namespaced(client.clone(), &ns);
        let params = PatchParams { field_manager: Some("podmirror-operator".into()), ..PatchParams::default() };
        match api.patch_status(&session.name_any(), &params, &Patch::Merge(&patch)).await {
            Ok(_) => marked += 1,
            Err(e) => {
                tracing::warn!(session = %format!("{ns}/{}", session.name_any()), error = %e, "cannot mark as uninstalled")
            }
        }
    }
    Ok(marked)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;

    fn ds(generation: i64, observed: i64, desired: i32, ready: i32) -> DaemonSet {
        let mut ds = DaemonSet::default();
        ds.metadata.generation = Some(generation);
        ds.status = Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            number_ready: ready,
            ..DaemonSetStatus::default()
        });
        ds
    }

    #[test]
    fn cleanup_is_done_only_when_every_scheduled_node_is_ready() {
        assert!(cleanup_done(&ds(1, 1, 3, 3)).is_ok());
        assert_eq!(cleanup_done(&ds(1, 1, 3, 2)).unwrap_err(), "2 of 3 nodes cleaned up");
        assert!(cleanup_done(&ds(2, 1, 3, 3)).unwrap_err().contains("latest spec"));
        assert!(cleanup_done(&DaemonSet::default()).unwrap_err().contains("no status"));
    }

    #[test]
    fn only_programmed_changes_after_the_uninstall() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let cond = |t: &str, s: &str| Condition {
            type_: t.into(),
            status: s.into(),
            reason: "X".into(),
            message: String::new(),
            last_transition_time: t0.clone(),
            observed_generation: Some(4),
        };
        let after = uninstalled_conditions(&[cond("Accepted", "True"), cond("Programmed", "True")], &now);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0], cond("Accepted", "True"));
        assert_eq!((after[1].type_.as_str(), after[1].status.as_str()), ("Programmed", "False"));
        assert_eq!(after[1].reason, "Uninstalled");
        assert_eq!(after[1].observed_generation, Some(4));
    }
}
