//! `podmirror-agent`: the node agent binary.
//!
//! Modes: Kubernetes (default; watches this node's MirrorNodeState),
//! `--standalone DIR` (the same YAML from files, no cluster), and `--cleanup`
//! (remove everything the agent ever attached, pinned or created, then exit).

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use podmirror_agent::core::Reconciler;
use podmirror_agent::datapath::{AttachMode, Datapath, DatapathConfig};
use podmirror_agent::metrics::Metrics;
use podmirror_agent::standalone::run as run_standalone;
use podmirror_crds::model::quota::QuotaLimits;

#[derive(Debug, Parser)]
#[command(name = "podmirror-agent", version, about = "podmirror node agent: eBPF traffic mirroring of pod veths")]
struct Cli {
    /// This node's name (the MirrorNodeState to watch, the status entry to own).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,

    /// bpffs directory holding the agent's pinned programs and maps.
    #[arg(long, default_value = "/sys/fs/bpf/podmirror")]
    pin_dir: PathBuf,

    /// Prefix of the devices the agent creates on the node.
    #[arg(long, default_value = "pm")]
    device_prefix: String,

    /// Outer source IPv4 of the copies (default: the first IPv4 of
    /// --node-ips, else the source the route to the target prefers).
    #[arg(long, env = "NODE_IPV4")]
    node_ipv4: Option<Ipv4Addr>,

    /// Outer source IPv6 of the copies (default: the first IPv6 of --node-ips).
    #[arg(long, env = "NODE_IPV6")]
    node_ipv6: Option<Ipv6Addr>,

    /// The node's IPs, comma-separated, as the Downward API's
    /// `status.hostIPs` gives them: the copies' outer source addresses.
    #[arg(long, env = "NODE_IPS", value_delimiter = ',')]
    node_ips: Vec<IpAddr>,

    /// How programs are attached to pod veths: `tcx` (bpf_links, kernel
    /// 6.6+), `clsact` (tc filters: no RCU grace period per attach, so a cold
    /// start with many pods is faster) or `auto` (TCX where the kernel has
    /// it). Veths already attached keep their mode until detached.
    #[arg(long, env = "PODMIRROR_ATTACH_MODE", default_value = "auto")]
    attach_mode: CliAttachMode,

    /// Log lines as `text` (colours only on a terminal) or `json`.
    #[arg(long, env = "PODMIRROR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    /// How often the node's status entry and the counters are refreshed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    status_interval: Duration,

    /// Run without Kubernetes from the MirrorFilter/MirrorSession YAML and
    /// the standalone.yaml mapping in DIR (see node-agent/src/standalone/mod.rs).
    #[arg(long, value_name = "DIR", conflicts_with = "cleanup")]
    standalone: Option<PathBuf>,

    /// Standalone: how often DIR is checked for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,

    /// On SIGTERM/SIGINT, also detach and unpin everything (default: keep the
    /// datapath pinned so mirroring survives an agent restart).
    #[arg(long)]
    cleanup_on_exit: bool,

    /// Remove everything ever attached/pinned/created under --pin-dir and
    /// --device-prefix, then exit.
    #[arg(long)]
    cleanup: bool,

    /// Standalone: validate DIR, print the resolved state and exit without
    /// touching the datapath; the exit status is 1 when a file is invalid or
    /// any session is refused (each reason is printed).
    #[arg(long, requires = "standalone")]
    check: bool,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `--attach-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CliAttachMode {
    Auto,
    Tcx,
    Clsact,
}

impl From<CliAttachMode> for AttachMode {
    fn from(m: CliAttachMode) -> Self {
        match m {
            CliAttachMode::Auto => AttachMode::Auto,
            CliAttachMode::Tcx => AttachMode::Tcx,
            CliAttachMode::Clsact => AttachMode::Clsact,
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); ANSI colours
/// only when stderr is a terminal, never into `kubectl logs`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `30s`, `500ms`, `2m` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?}: expected a duration like 30s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if cli.poll_interval.is_zero() || cli.status_interval.is_zero() {
        bail!("--poll-interval and --status-interval must be greater than zero");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(cli))
}

/// The datapath configuration the flags describe.
fn datapath_config(cli: &Cli) -> DatapathConfig {
    DatapathConfig {
        pin_dir: cli.pin_dir.clone(),
        device_prefix: cli.device_prefix.clone(),
        node_ipv4: cli.node_ipv4.or_else(|| {
            cli.node_ips.iter().find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
        }),
        node_ipv6: cli.node_ipv6.or_else(|| {
            cli.node_ips.iter().find_map(|ip| match ip {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
        }),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; waiting for Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = datapath_config(&cli);
    if cli.cleanup {
        Datapath::remove_all(&cfg).with_context(|| format!("cleanup of {}", cfg.pin_dir.display()))?;
        tracing::info!(pin_dir = %cfg.pin_dir.display(), "removed everything the agent attached, pinned or created");
        return Ok(());
    }
    let Some(dir) = cli.standalone.clone() else {
        // Kubernetes mode (node-agent/src/kube): this node's MirrorNodeState in,
        // the node's status entry out, the same core and datapath.
        let mut opts =
            podmirror_agent::kube::Options::new(cli.node_name.clone().unwrap_or_default(), cli.status_interval);
        opts.attach_mode = cli.attach_mode.into();
        podmirror_agent::kube::serve(&opts, &cfg, cli.metrics_addr, shutdown_signal()).await?;
        return finish(&cli, &cfg);
    };
    let node_name = cli.node_name.clone().unwrap_or_else(|| "standalone".to_string());
    let limits = QuotaLimits::default();
    if cli.check {
        let resolution = run_standalone::check(&dir, &node_name, limits).map_err(anyhow::Error::new)?;
        print!("{}", serde_yaml::to_string(&resolution.node_state).context("cannot print the node state")?);
        for refusal in &resolution.refusals {
            eprintln!("refused: {refusal}");
        }
        // A script running --check (CI) must see a broken reference, a
        // missing consent or a quota refusal: any refused session fails it.
        if !resolution.refusals.is_empty() {
            let n = resolution.refusals.len();
            bail!(
                "--check: {n} session(s) refused in {} (reasons above); the state printed is what would run",
                dir.display()
            );
        }
        return Ok(());
    }
    let opts = run_standalone::Options { dir, node_name, poll_interval: cli.poll_interval, limits };

    let metrics = Metrics::default();
    let listener = podmirror_agent::metrics::bind(cli.metrics_addr).await?;
    tokio::spawn(podmirror_agent::metrics::serve(listener, metrics.clone()));

    let mut datapath =
        Datapath::open(&cfg).with_context(|| format!("cannot open the datapath at {}", cfg.pin_dir.display()))?;
    datapath.set_attach_mode(cli.attach_mode.into());
    let mut reconciler = Reconciler::new(datapath);
    tracing::info!(dir = %opts.dir.display(), metrics = %cli.metrics_addr, "standalone agent running");
    run_standalone::run(&opts, &mut reconciler, &metrics, shutdown_signal()).await;
    drop(reconciler);
    finish(&cli, &cfg)
}

/// After SIGTERM: keep the datapath pinned (mirroring survives an agent
/// restart or upgrade) unless `--cleanup-on-exit` asks to remove it.
fn finish(cli: &Cli, cfg: &DatapathConfig) -> anyhow::Result<()> {
    if cli.cleanup_on_exit {
        Datapath::remove_all(cfg).with_context(|| format!("cleanup of {}", cfg.pin_dir.display()))?;
        tracing::info!("datapath removed (--cleanup-on-exit)");
    } else {
        tracing::info!(pin_dir = %cfg.pin_dir.display(), "exiting; the datapath stays pinned and keeps mirroring");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_garbage() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").unwrap_err().contains("expected a duration"));
    }

    #[test]
    fn cli_follows_the_contract() {
        let cli = Cli::try_parse_from(["podmirror-agent", "--node-name", "n1"]).unwrap();
        assert_eq!(cli.metrics_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(cli.pin_dir, PathBuf::from("/sys/fs/bpf/podmirror"));
        assert_eq!(cli.status_interval, Duration::from_secs(30));
        assert!(cli.standalone.is_none() && !cli.cleanup);
        let err = Cli::try_parse_from(["podmirror-agent", "--standalone", "d", "--cleanup"]).unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
        assert!(Cli::try_parse_from(["podmirror-agent", "--check"]).is_err(), "--check needs --standalone");
        assert_eq!(cli.log_format, LogFormat::Text);
        let json = Cli::try_parse_from(["podmirror-agent", "--log-format", "json"]).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
    }

    #[test]
    fn node_ips_as_the_downward_api_gives_them_set_both_outer_sources() {
        let cli = Cli::try_parse_from(["podmirror-agent", "--node-ips", "172.18.0.2,fd00::2"]).unwrap();
        let cfg = datapath_config(&cli);
        assert_eq!(cfg.node_ipv4, Some("172.18.0.2".parse().unwrap()));
        assert_eq!(cfg.node_ipv6, Some("fd00::2".parse().unwrap()));
        // An explicit per-family flag wins.
        let cli =
            Cli::try_parse_from(["podmirror-agent", "--node-ips", "172.18.0.2", "--node-ipv4", "10.0.0.1"]).unwrap();
        assert_eq!(datapath_config(&cli).node_ipv4, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(datapath_config(&cli).node_ipv6, None);
        assert!(Cli::try_parse_from(["podmirror-agent", "--node-ips", "node-a"]).is_err());
    }
}
