//! Prometheus exporter (being written): serves the daemon's counters on `--metrics ADDR`.
use std::{net::SocketAddr, sync::Arc, time::Duration};

pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics listener {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("metrics: {0}")]
    Other(String),
}

#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// How many flows (heaviest by bytes) get per-flow series.
    pub top_flows: usize,
    /// How long series of a vanished interface, pod or flow keep their last value.
    pub grace: Duration,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self { top_flows: 100, grace: Duration::from_secs(300) }
    }
}

pub struct MetricsServer {
    listener: std::net::TcpListener,
}

impl MetricsServer {
    /// Bind now (before the daemon enters a network namespace, so the address is the host's).
    pub fn bind(addr: &str) -> Result<MetricsServer, MetricsError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr: addr.into(), source })?;
        Ok(MetricsServer { listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serve `/metrics` until `shutdown` resolves.
    pub async fn serve(
        self,
        source: Arc<dyn crate::api::Backend>,
        opts: MetricsOptions,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), MetricsError> {
        let _ = (source, opts, self.listener);
        shutdown.await;
        Err(MetricsError::Other("not implemented yet".into()))
    }
}
