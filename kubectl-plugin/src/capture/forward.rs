//! A port-forward to one running collector pod (kube's portforward API, the
//! same as `kubectl port-forward`), as a byte stream for the HTTP client.

use std::pin::Pin;
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Portforwarder};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::cluster::{Collector, selector_text};
use crate::error::{Call, PluginError};

/// The forwarded connection; dropping it ends the port-forward.
pub struct Forwarded {
    forwarder: Portforwarder,
    stream: DuplexStream,
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

impl AsyncRead for Forwarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Forwarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Forward to the `http` port of a running pod behind the collector Service.
pub async fn open(client: Client, collector: Collector) -> Result<Forwarded, PluginError> {
    let namespace = collector.namespace.as_str();
    let api = Api::<Pod>::namespaced(client, namespace);
    let list_call = Call { verb: "list", resource: "pods", namespace, name: None };
    let pods = api
        .list(&ListParams::default().labels(&selector_text(&collector.selector)))
        .await
        .map_err(|e| list_call.error(e))?;
    let running = pods
        .items
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| PluginError::CollectorUnusable {
            namespace: namespace.to_owned(),
            name: collector.service.clone(),
            reason: "no running collector pod behind it (kubectl get pods -n podmirror-system)".to_owned(),
        })?;
    let call = Call { verb: "create", resource: "pods/portforward", namespace, name: Some(&running) };
    let mut forwarder = api.portforward(&running, &[collector.http_port]).await.map_err(|e| call.error(e))?;
    let stream = forwarder
        .take_stream(collector.http_port)
        .ok_or_else(|| PluginError::Stream(format!("port-forward to {running} gave no stream")))?;
    Ok(Forwarded { forwarder, stream })
}
