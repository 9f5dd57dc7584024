//! Everything the binary's Kubernetes mode does, behind one call, so `main`
//! stays flag parsing: connect, open (or adopt) the pinned datapath, serve
//! metrics, run until SIGTERM, and leave the datapath pinned.

use std::future::Future;
use std::net::SocketAddr;

use ::kube::Client;

use super::run::{Options, run};
use crate::core::{AgentError, Reconciler};
use crate::datapath::{Datapath, DatapathConfig};
use crate::metrics::Metrics;

pub async fn serve(
    opts: &Options,
    cfg: &DatapathConfig,
    metrics_addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    if opts.node_name.is_empty() {
        return Err(AgentError::Config {
            object: "podmirror-agent".into(),
            field: "--node-name".into(),
            message: "the Kubernetes mode needs the node's name (--node-name or NODE_NAME)".into(),
        });
    }
    let client = Client::try_default()
        .await
        .map_err(|e| AgentError::DatapathGlobal { op: "connect to the Kubernetes API", message: e.to_string() })?;
    let metrics = Metrics::default();
    let listener = crate::metrics::bind(metrics_addr).await?;
    tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
    let mut datapath = Datapath::open(cfg)
        .map_err(|e| AgentError::DatapathGlobal { op: "open", message: format!("{}: {e}", cfg.pin_dir.display()) })?;
    datapath.set_attach_mode(opts.attach_mode);
    let mut reconciler = Reconciler::new(datapath);
    tracing::info!(node = %opts.node_name, metrics = %metrics_addr, "Kubernetes mode running");
    run(client, opts, &mut reconciler, &metrics, shutdown).await;
    Ok(())
}
