//! `podmirror-operator`: the binary edge (flags, logging, tasks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use podmirror_crds::model::quota::QuotaLimits;
use podmirror_operator::clock::SystemClock;
use podmirror_operator::controller::{self, Settings};
use podmirror_operator::http::{self, Health};
use podmirror_operator::leader::Elector;
use podmirror_operator::metrics::Metrics;
use podmirror_operator::plan::cluster::TargetPolicy;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(name = "podmirror-operator", version, about = "podmirror operator")]
struct Args {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Resolved source pods allowed per session (docs/quotas.md, raisable).
    #[arg(long, default_value_t = 10)]
    max_sources_per_session: usize,
    /// Sessions allowed in the cluster (docs/quotas.md, raisable).
    #[arg(long, default_value_t = 20_000)]
    max_sessions_per_cluster: usize,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "podmirror-operator-local")]
    pod_name: String,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "podmirror-system")]
    pod_namespace: String,
    /// Lease duration in seconds; a standby takes over after this long.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Comma-separated CIDRs that `ip` targets must fall in (the chart's
    /// `operator.allowedTargetCIDRs`); empty allows any address.
    #[arg(long, env = "PODMIRROR_ALLOWED_TARGET_CIDRS", default_value = "")]
    allowed_target_cidrs: String,
    /// Log lines as `text` (colours only on a terminal) or `json`.
    #[arg(long, env = "PODMIRROR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Same as `--log-format json` (kept for existing deployments).
    #[arg(long, env = "PODMIRROR_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// The uninstall hook's last step: wait until the cleanup DaemonSet has
    /// cleaned every node, then mark every MirrorSession as not mirrored.
    UninstallWait {
        /// The cleanup DaemonSet.
        #[arg(long)]
        daemonset: String,
        /// Its namespace.
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: String,
        /// Give up (and fail the uninstall loudly) after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); ANSI colours
/// only when stderr is a terminal, never into `kubectl logs`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(if args.log_json { LogFormat::Json } else { args.log_format });
    let target_policy =
        TargetPolicy::parse(&args.allowed_target_cidrs).map_err(|e| anyhow::anyhow!("--allowed-target-cidrs: {e}"))?;
    if let Some(Command::UninstallWait { daemonset, namespace, timeout_seconds }) = &args.command {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        let api: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), namespace);
        podmirror_operator::uninstall::wait_for_cleanup(&api, daemonset, Duration::from_secs(*timeout_seconds)).await?;
        let marked = podmirror_operator::uninstall::mark_sessions(&client).await?;
        tracing::info!(marked, "every node is clean; sessions marked as no longer mirrored");
        return Ok(());
    }

    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (tx, rx) = watch::channel(false);

    let health = Health { metrics: metrics.clone(), ready: ready.clone() };
    let addr = args.metrics_addr;
    let server = tokio::spawn(async move { http::serve(addr, health).await });

    let elector = Elector {
        api: Api::<Lease>::namespaced(client.clone(), &args.pod_namespace),
        identity: args.pod_name.clone(),
        duration: Duration::from_secs(args.lease_seconds.max(3)),
    };
    let election = tokio::spawn(elector.run(tx));

    let settings = Settings {
        limits: QuotaLimits {
            sources_per_session: args.max_sources_per_session,
            sessions_per_cluster: args.max_sessions_per_cluster,
        },
        debounce: Duration::from_millis(250),
        resync: Duration::from_secs(60),
        target_policy,
        clock: Arc::new(SystemClock),
    };
    let control = controller::run(client, settings, metrics, ready, rx, Some(args.pod_name));

    tokio::select! {
        r = control => r.context("control loop")?,
        r = election => r.context("leader election task")?.context("leader election")?,
        r = server => r.context("http server task")?.with_context(|| format!("serving on {addr}"))?,
        r = terminated() => { r.context("waiting for a signal")?; tracing::info!("terminating"); }
    }
    Ok(())
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn terminated() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
