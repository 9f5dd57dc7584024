//! The capture flow: look, create, wait for acceptance, stream, and delete
//! what was created on every way out (stream end, error, Ctrl-C, timeout).

use std::collections::BTreeSet;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::Client;
use podmirror_crds::api::{ConditionReason, MirrorSession};
use podmirror_crds::model::quota::Quota;
use tokio::io::{AsyncRead, AsyncWrite};

use super::cluster::{self, ALLOW_MIRROR_FROM, Collector};
use super::objects::{self, CaptureFilter, CapturePlan, Pods};
use super::{forward, stream};
use crate::cli::{CaptureArgs, KubeFlags};
use crate::error::PluginError;
use crate::explain::select::selects;
use crate::explain::{PodInfo, key_of, namespace_of};
use crate::{live, packet};

/// What the user asked for, with the flags parsed.
#[derive(Clone, Debug)]
pub struct CaptureRequest {
    pub namespace: String,
    pub pods: Pods,
    pub filter: CaptureFilter,
    pub duration: Duration,
    pub priority: Option<u16>,
    pub snaplen: Option<u16>,
    pub collector_namespace: String,
    /// How often, and how long, to look for the session's `Accepted` condition.
    pub poll: Duration,
    pub accept_timeout: Duration,
}

/// Why the capture stopped (when it did not fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    StreamClosed,
    /// The reader of the output pipe went away (e.g. Wireshark was closed).
    ReaderClosed,
    DurationOver,
    Interrupted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureReport {
    pub session: String,
    pub vni: u32,
    pub bytes: u64,
    pub ended: Ended,
}

/// Run one capture. `connect` opens a byte stream to the collector's HTTP
/// port (a port-forward in the binary, a TCP socket in the tests); `stop`
/// resolves on Ctrl-C.
pub async fn capture<C, F, IO, S, W>(
    client: &Client,
    request: &CaptureRequest,
    connect: C,
    stop: S,
    out: &mut W,
    target: &str,
) -> Result<CaptureReport, PluginError>
where
    C: FnOnce(Collector) -> F,
    F: Future<Output = Result<IO, PluginError>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Future<Output = ()>,
    W: AsyncWrite + Unpin,
{
    let namespace = request.namespace.as_str();
    // Polled from here on, so that a Ctrl-C while the objects are being
    // created is kept for the select below instead of killing the process
    // between two creates (the signal handler is installed on first poll).
    tokio::pin!(stop);
    let (pods, collector, sessions) = tokio::select! {
        looked = look(client, request) => looked?,
        () = &mut stop => return Err(PluginError::Interrupted),
    };
    check_consent(&collector, namespace)?;
    let plan = plan(request, &collector, &pods, &sessions)?;
    create_objects(client, &plan).await?;
    announce(&plan);
    let written = AtomicU64::new(0);
    let flow = async {
        cluster::wait_accepted(client, namespace, &plan.name, request.poll, request.accept_timeout)
            .await
            .map_err(|e| with_holders(e, &plan, &pods, &collector, &sessions))?;
        let io = connect(collector.clone()).await?;
        stream::stream_pcap(io, plan.vni, out, target, &written).await
    };
    let outcome = tokio::select! {
        result = flow => result.map(|end| match end {
            stream::StreamEnd::CollectorClosed => Ended::StreamClosed,
            stream::StreamEnd::ReaderClosed => Ended::ReaderClosed,
        }),
        () = tokio::time::sleep(plan.duration) => Ok(Ended::DurationOver),
        () = &mut stop => Ok(Ended::Interrupted),
    };
    cleanup(client, &plan, true).await;
    let ended = outcome?;
    let bytes = written.load(Ordering::Relaxed);
    Ok(CaptureReport { session: format!("{namespace}/{}", plan.name), vni: plan.vni, bytes, ended })
}

/// Read what the capture depends on: the pods, the collector, the sessions.
async fn look(
    client: &Client,
    request: &CaptureRequest,
) -> Result<(Vec<PodInfo>, Collector, Vec<MirrorSession>), PluginError> {
    let namespace = request.namespace.as_str();
    let pods = cluster::capture_pods(client, namespace, &request.pods).await?;
    let collector = cluster::find_collector(client, &request.collector_namespace).await?;
    let sessions = cluster::existing_sessions(client, namespace).await?;
    Ok((pods, collector, sessions))
}

/// Refuse a collector that does not consent to mirroring from `namespace`.
fn check_consent(collector: &Collector, namespace: &str) -> Result<(), PluginError> {
    if collector.allows(namespace) {
        return Ok(());
    }
    // The operator would accept the session but never resolve its
    // target (TargetNotConsented): a capture that streams nothing.
    Err(PluginError::CollectorUnusable {
        namespace: collector.namespace.clone(),
        name: collector.service.clone(),
        reason: format!(
            "it does not allow mirroring from namespace {namespace} (add {namespace} to its annotation \
             {ALLOW_MIRROR_FROM}, e.g. kubectl annotate service -n {} {} {ALLOW_MIRROR_FROM}='*')",
            collector.namespace, collector.service
        ),
    })
}

/// Create the filter, then the session; a failed session create deletes
/// the filter again.
async fn create_objects(client: &Client, plan: &CapturePlan) -> Result<(), PluginError> {
    let filter = objects::filter_object(plan)?;
    cluster::create(client, &plan.namespace, &filter).await?;
    if let Err(e) = cluster::create(client, &plan.namespace, &objects::session_object(plan)).await {
        cleanup(client, plan, false).await;
        return Err(e);
    }
    Ok(())
}

fn announce(plan: &CapturePlan) {
    eprintln!(
        "capturing {} with session {}/{} (VNI {}) for {}s; Ctrl-C stops",
        describe(&plan.pods),
        plan.namespace,
        plan.name,
        plan.vni,
        plan.duration.as_secs()
    );
}

/// Delete the session (when created) and the filter. Failures are reported
/// with the command that finishes the job, never hidden.
async fn cleanup(client: &Client, plan: &CapturePlan, session_created: bool) {
    let ns = &plan.namespace;
    let mut kinds = vec!["MirrorFilter"];
    if session_created {
        kinds.insert(0, "MirrorSession");
    }
    for kind in kinds {
        if let Err(e) = cluster::delete(client, ns, kind, &plan.name).await {
            eprintln!(
                "warning: could not delete {kind} {ns}/{}: {e}\n  delete it with: kubectl delete -n {ns} {} {}",
                plan.name,
                kind.to_lowercase(),
                plan.name
            );
        }
    }
}

/// Decide name, VNI and priority against the sessions already there.
pub fn plan(
    request: &CaptureRequest,
    collector: &Collector,
    pods: &[PodInfo],
    sessions: &[MirrorSession],
) -> Result<CapturePlan, PluginError> {
    if let Some(n) = request.snaplen
        && !(64..=9216).contains(&n)
    {
        return Err(PluginError::bad("--snaplen", format!("{n} is out of range 64..=9216")));
    }
    let vnis: BTreeSet<i64> = sessions.iter().map(|s| i64::from(s.spec.vni)).collect();
    let vni = objects::free_vni(&vnis)?;
    let priorities: BTreeSet<i64> = pod_sessions(request, pods, sessions).map(|s| i64::from(s.spec.priority)).collect();
    let priority = objects::free_priority(request.priority, &priorities)?;
    Ok(CapturePlan {
        name: format!("podmirror-capture-{vni}"),
        namespace: request.namespace.clone(),
        pods: request.pods.clone(),
        filter: request.filter.clone(),
        duration: request.duration,
        priority,
        vni,
        snaplen: request.snaplen,
        collector_namespace: collector.namespace.clone(),
        collector_service: collector.service.clone(),
    })
}

/// The sessions of the namespace that include one of the captured pods.
fn pod_sessions<'a>(
    request: &'a CaptureRequest,
    pods: &'a [PodInfo],
    sessions: &'a [MirrorSession],
) -> impl Iterator<Item = &'a MirrorSession> {
    sessions
        .iter()
        .filter(move |s| namespace_of(s) == request.namespace && pods.iter().any(|p| selects(s, p).unwrap_or(false)))
}

/// Name, in a refusal, the sessions that hold the quota's places.
fn with_holders(
    error: PluginError,
    plan: &CapturePlan,
    pods: &[PodInfo],
    collector: &Collector,
    sessions: &[MirrorSession],
) -> PluginError {
    let PluginError::Refused { session, reason, message, .. } = error else {
        return error;
    };
    let on_pod =
        |s: &MirrorSession| namespace_of(s) == plan.namespace && pods.iter().any(|p| selects(s, p).unwrap_or(false));
    let on_collector = |s: &MirrorSession| {
        s.spec.target.service.as_ref().is_some_and(|t| {
            t.name == collector.service && t.namespace.clone().unwrap_or_else(|| namespace_of(s)) == collector.namespace
        })
    };
    let holds: &dyn Fn(&MirrorSession) -> bool = match &reason {
        ConditionReason::Quota(Quota::SessionsPerSourcePod | Quota::PriorityClash | Quota::SourceIsTarget) => &on_pod,
        ConditionReason::Quota(Quota::SessionsPerServiceTarget | Quota::VniClash) => &on_collector,
        _ => &|_| false,
    };
    let holders = sessions
        .iter()
        .filter(|s| holds(s) && s.metadata.name.as_deref() != Some(plan.name.as_str()))
        .map(|s| key_of(s).to_string())
        .collect();
    PluginError::Refused { session, reason, message, holders }
}

fn describe(pods: &Pods) -> String {
    match pods {
        Pods::Named(name) => format!("pod {name}"),
        Pods::Selected(labels) => format!("pods {}", cluster::selector_text(labels)),
    }
}

/// The binary's entry: flags to request, a port-forward, Ctrl-C, the output.
pub async fn from_cli(kube: &KubeFlags, args: &CaptureArgs) -> Result<(), PluginError> {
    let pods = match (&args.pod, &args.selector) {
        (Some(name), None) => Pods::Named(name.clone()),
        (None, Some(selector)) => Pods::Selected(objects::parse_selector(selector)?),
        _ => {
            return Err(PluginError::bad("POD/-l", "give a pod name or -l SELECTOR, not both"));
        }
    };
    let (client, default_ns) = live::client(kube.kubeconfig.as_deref(), kube.context.as_deref()).await?;
    let request = CaptureRequest {
        namespace: kube.namespace.clone().unwrap_or(default_ns),
        pods,
        filter: CaptureFilter {
            inbound: args.inbound,
            outbound: args.outbound,
            protocol: args.proto.as_deref().map(packet::parse_protocol).transpose()?,
            port: args.port,
        },
        duration: objects::parse_duration(&args.duration)?,
        priority: args.priority,
        snaplen: args.snaplen,
        collector_namespace: args.collector_namespace.clone(),
        poll: Duration::from_millis(500),
        accept_timeout: Duration::from_secs(30),
    };
    let connect = |collector| forward::open(client.clone(), collector);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if args.write == "-" && std::io::stdout().is_terminal() {
        return Err(PluginError::bad(
            "-w",
            "stdout is a terminal, and pcap is binary: give -w FILE, or pipe it (| wireshark -k -i -, | tcpdump -r -)",
        ));
    }
    let report = if args.write == "-" {
        capture(&client, &request, connect, stop, &mut tokio::io::stdout(), "stdout").await?
    } else {
        let mut file = tokio::fs::File::create(&args.write)
            .await
            .map_err(|source| PluginError::Output { target: args.write.clone(), source })?;
        capture(&client, &request, connect, stop, &mut file, &args.write).await?
    };
    let why = match report.ended {
        Ended::StreamClosed => "the collector ended the stream",
        Ended::ReaderClosed => "the reader of the output went away",
        Ended::DurationOver => "--duration is over",
        Ended::Interrupted => "interrupted",
    };
    eprintln!("stopped ({why}); session {} deleted; {} bytes of pcap written", report.session, report.bytes);
    Ok(())
}
