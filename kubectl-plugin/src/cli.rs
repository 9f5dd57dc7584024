//! The command line, as `kubectl podmirror --help` shows it.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::status::Output;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl podmirror",
    bin_name = "kubectl podmirror",
    version,
    about = "Explain, inspect and capture podmirror traffic mirroring from kubectl",
    long_about = "Explain, inspect and capture podmirror traffic mirroring from kubectl.\n\n\
        podmirror copies the packets of selected pods to a collector (MirrorSession + MirrorFilter).\n\
        This plugin answers three questions without exec rights or a privileged container:\n  \
        explain  which session and rule would copy (or not) a given packet, and why\n  \
        status   what each session is doing, per node\n  \
        capture  show me this pod's packets now, as a pcap stream",
    after_help = "Examples:\n  \
        kubectl podmirror explain ecs-source --in --proto tcp --src 192.168.0.161:40000 --dst 192.168.0.230:1234\n  \
        kubectl podmirror explain ecs-source -f examples/seed-scenario/ --in --proto tcp --src 192.168.0.161:40000 --dst 192.168.0.230:1234\n  \
        kubectl podmirror status -A\n  \
        kubectl podmirror capture my-pod --proto tcp --port 8080 -w my-pod.pcap --duration 2m\n  \
        kubectl podmirror capture -l app=shop -w - | wireshark -k -i -\n\n\
        Documentation: docs/kubectl-plugin.md"
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// The kubectl flags every command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeFlags {
    /// Namespace of the pod or session (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true, help_heading = "Kubernetes options")]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, help_heading = "Kubernetes options")]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, help_heading = "Kubernetes options")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Which session and rule decide a packet on a pod, and why (a dry run of the datapath).
    #[command(long_about = "Which of the pod's sessions and which rule decide a packet, and why.\n\n\
            The same evaluation the datapath runs: the pod's enabled, accepted sessions by priority, \
            in each the filter's rules of that direction by priority; the first matching rule decides \
            (Accept copies, Reject does not). Sessions that take no part are listed with the reason \
            (disabled, refused, not selecting this pod, ...).\n\n\
            Reads the live objects of the pod's namespace, or with -f a directory of YAML like the \
            standalone agent's (MirrorFilter/MirrorSession files, Pod objects, standalone.yaml).")]
    #[command(group(ArgGroup::new("direction").required(true).args(["inbound", "outbound"])))]
    Explain(ExplainArgs),
    /// Phase, conditions, target and per-node counters of sessions.
    Status(StatusArgs),
    /// Stream a pod's packets as pcap through a temporary session to the collector.
    #[command(long_about = "Stream a pod's packets as pcap, live.\n\n\
            Creates a MirrorFilter and a time-bounded MirrorSession in the pod's namespace that \
            mirror the pod to the podmirror collector, streams the collector's capture of that \
            session (pcap) to a file or stdout through a port-forward, and deletes both objects \
            when the stream ends, on Ctrl-C and when --duration is over. Needs the rights to create \
            mirrorsessions and mirrorfilters in the namespace and to port-forward to the collector; \
            never execs into the pod.")]
    Capture(CaptureArgs),
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The pod the packet is seen on.
    pub pod: String,
    /// The pod receives the packet.
    #[arg(long = "in")]
    pub inbound: bool,
    /// The pod sends the packet.
    #[arg(long = "out")]
    pub outbound: bool,
    /// tcp, udp, icmp, icmpv6, sctp or an IP protocol number.
    #[arg(long)]
    pub proto: String,
    /// Source address, IP or IP:PORT ([IPv6]:PORT).
    #[arg(long)]
    pub src: String,
    /// Destination address, IP or IP:PORT ([IPv6]:PORT).
    #[arg(long)]
    pub dst: String,
    /// Read the objects from this directory instead of the cluster.
    #[arg(short = 'f', long = "filename", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One session; all sessions of the namespace when omitted.
    pub session: Option<String>,
    /// Sessions of every namespace.
    #[arg(short = 'A', long, conflicts_with = "session")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("what").required(true).args(["pod", "selector"])))]
pub struct CaptureArgs {
    /// The pod to capture.
    pub pod: Option<String>,
    /// Capture every pod matching this label selector (e.g. app=shop).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Only packets the pod receives (default: both directions).
    #[arg(long = "in")]
    pub inbound: bool,
    /// Only packets the pod sends (default: both directions).
    #[arg(long = "out")]
    pub outbound: bool,
    /// Only this protocol: tcp, udp, icmp, icmpv6, sctp or a number (default: all).
    #[arg(long)]
    pub proto: Option<String>,
    /// Only packets from or to this port (needs --proto tcp, udp or sctp).
    #[arg(long)]
    pub port: Option<u16>,
    /// Write the pcap here; `-` is stdout (e.g. `| wireshark -k -i -`).
    #[arg(short = 'w', long = "write", value_name = "FILE", default_value = "-")]
    pub write: String,
    /// Stop after this long: 90s, 5m, 1h.
    #[arg(long, default_value = "5m")]
    pub duration: String,
    /// Namespace of the podmirror collector.
    #[arg(long, default_value = "podmirror-system")]
    pub collector_namespace: String,
    /// Session priority; by default the lowest free one, so that existing sessions keep their copies.
    #[arg(long)]
    pub priority: Option<u16>,
    /// Keep only this many bytes of each frame (64..=9216).
    #[arg(long)]
    pub snaplen: Option<u16>,
}
