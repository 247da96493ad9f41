//! A cache node: the library plus its HTTP API (and, when configured, the RESP front end and
//! gossip), run until a signal arrives.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache::BuildError;
use crate::cluster::Membership;
use crate::config::Config;
use crate::server::http::listener::{fit_connections_to_fd_limit, serve, ConnStats};
use crate::server::http::AppState;
use crate::server::service;
use crate::HybridCache;

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The cache (and its actor tree) could not start.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The HTTP listener failed.
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
}

/// A running node.
pub struct Node {
    cache: HybridCache,
    http_addr: SocketAddr,
    resp_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    conn_stats: Arc<ConnStats>,
}

impl Node {
    /// Binds the HTTP listener, starts the cache and its actor tree, and serves.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(NodeError::Serve)?;
        let resp_listener = match config.resp_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Bind { addr, source })?,
            ),
            None => None,
        };
        let resp_addr = match &resp_listener {
            Some(l) => Some(l.local_addr().map_err(NodeError::Serve)?),
            None => None,
        };
        let mut config = config;
        if config.http_advertise.is_none() {
            config.http_advertise = Some(http_addr.to_string());
        }
        config.http_limits.max_connections =
            fit_connections_to_fd_limit(config.http_limits.max_connections);
        let cache = HybridCache::start(config).await?;
        let membership: Option<Arc<dyn Membership>> = cache.membership();
        let app = service(AppState::new(cache.clone(), membership));
        let (stop, mut stopped) = watch::channel(false);
        if let Some(l) = resp_listener {
            tokio::spawn(crate::server::resp::serve(
                l,
                cache.clone(),
                stopped.clone(),
            ));
        }
        let conn_stats = Arc::new(ConnStats::default());
        let limits = cache.config().http_limits;
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            conn_stats.clone(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        let cfg = cache.config();
        tracing::info!(
            node_id = %cfg.node_id,
            http = %http_addr,
            resp = ?resp_addr,
            gossip = ?cfg.gossip_addr,
            peers = ?cfg.peers,
            redis = cfg.redis.is_some(),
            namespace = %cfg.namespace,
            categories = ?cfg.categories.iter().map(|(n, c)| format!("{n}(ttl={}s,max={})", c.ttl_secs, c.max_entries)).collect::<Vec<_>>(),
            "hybrid-cache node started"
        );
        if cfg.redis.is_none() {
            tracing::info!("no Redis configured: L1 only");
        }
        Ok(Node {
            cache,
            http_addr,
            resp_addr,
            stop,
            server,
            conn_stats,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound RESP address, when the RESP front end is on.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp_addr
    }

    /// Open and refused connection counts of the HTTP server.
    pub fn conn_stats(&self) -> &ConnStats {
        &self.conn_stats
    }

    /// The node's cache.
    pub fn cache(&self) -> &HybridCache {
        &self.cache
    }

    /// Stops serving (in-flight requests finish), then stops the actor tree.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.cache.shutdown().await;
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully. Prefer
    /// [`shutdown_signal`] taken *before* [`Node::start`] with [`Node::run_until`]: a signal
    /// that arrives while the node starts is then not lost.
    pub async fn run_until_signal(self) -> Result<(), NodeError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        signal.await;
        tracing::info!("signal received: shutting down");
        self.shutdown().await;
        Ok(())
    }
}

/// Registers SIGTERM and SIGINT handlers *now* (so a signal sent from here on is not lost)
/// and returns a future that completes on the first of them.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
