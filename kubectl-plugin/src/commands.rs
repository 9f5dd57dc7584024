//! Each subcommand from parsed arguments to text on stdout.

use podmirror_crds::model::Direction;

use crate::cli::{Cli, Command, ExplainArgs, KubeFlags, StatusArgs};
use crate::error::PluginError;
use crate::explain::{explain, offline, render};
use crate::{capture, live, packet, status};

pub async fn run(cli: Cli) -> Result<(), PluginError> {
    match cli.command {
        Command::Explain(args) => {
            print!("{}", explain_text(&cli.kube, &args).await?);
            Ok(())
        }
        Command::Status(args) => {
            print!("{}", status_text(&cli.kube, &args).await?);
            Ok(())
        }
        Command::Capture(args) => capture::run::from_cli(&cli.kube, &args).await,
    }
}

/// `explain`, offline (`-f DIR`) or live.
pub async fn explain_text(kube: &KubeFlags, args: &ExplainArgs) -> Result<String, PluginError> {
    let direction = if args.inbound { Direction::Inbound } else { Direction::Outbound };
    let packet = packet::packet(&args.proto, &args.src, &args.dst)?;
    let (snapshot, namespace) = match &args.dir {
        Some(dir) => (offline::load_dir(dir)?, kube.namespace.clone().unwrap_or_else(|| "default".to_owned())),
        None => {
            let (client, default_ns) = live::client(kube.kubeconfig.as_deref(), kube.context.as_deref()).await?;
            let namespace = kube.namespace.clone().unwrap_or(default_ns);
            (live::snapshot(&client, &namespace, &args.pod).await?, namespace)
        }
    };
    let explanation =
        explain(&snapshot, &namespace, &args.pod, direction, packet).map_err(|e| match (e, &args.dir) {
            (PluginError::PodNotFound { namespace, name }, Some(dir)) => {
                PluginError::PodNotInFiles { dir: dir.clone(), namespace, name }
            }
            (e, _) => e,
        })?;
    Ok(render::render(&explanation))
}

async fn status_text(kube: &KubeFlags, args: &StatusArgs) -> Result<String, PluginError> {
    let (client, default_ns) = live::client(kube.kubeconfig.as_deref(), kube.context.as_deref()).await?;
    let namespace = kube.namespace.clone().unwrap_or(default_ns);
    let scope = (!args.all_namespaces).then_some(namespace.as_str());
    let rows = live::status_rows(&client, scope, args.session.as_deref()).await?;
    status::render(&rows, args.output)
}
