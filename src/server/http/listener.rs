//! The accept loop of the node's HTTP server: the connection cap, hyper's HTTP/1.1 settings,
//! one task per connection, and the graceful drain on shutdown.
//!
//! Why its own file: the request limits (`limits.rs`) are tower layers inside the router,
//! while this loop sits outside it and hands each request to [`HitFirst`] (the L1-hit `GET`
//! answered before routing, everything else to the router).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hit_first::HitFirst;
use crate::config::HttpLimits;

/// File descriptors kept free for Redis, gossip, logs and the listener itself.
pub const FD_RESERVE: u64 = 256;
/// How long a graceful shutdown waits for open connections before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of the connection layer (read by metrics and tests).
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
}

/// Raises the soft open-file limit to the hard one and returns the connection cap that fits
/// under it: `min(max_connections, soft limit − FD_RESERVE)`.
pub fn fit_connections_to_fd_limit(max_connections: usize) -> usize {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fit = soft.saturating_sub(FD_RESERVE).max(16);
    let cap = (max_connections as u64).min(fit) as usize;
    if cap < max_connections {
        tracing::warn!(
            max_connections,
            fd_limit = soft,
            cap,
            "max_connections lowered to fit the open-file limit (raise `ulimit -n` to allow more)"
        );
    }
    cap
}

/// Serves `app` on `listener` until `shutdown` completes, with the connection cap and the
/// header read timeout of `limits`; then drains open connections (bounded by 10 s): each
/// finishes the request it is serving and closes (idle keep-alive ones at once).
///
/// Each connection watches a child [`CancellationToken`] of its own, and a [`TaskTracker`]
/// counts them for the drain: polling a connection touches only its own token, where one
/// shared shutdown channel (hyper-util's `GracefulShutdown`) took that channel's lock on
/// every poll of every connection.
pub async fn serve(
    listener: TcpListener,
    app: HitFirst,
    limits: HttpLimits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    let builder = http1_builder(&limits);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: close at once (the client sees EOF/RST instead of hanging).
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.answer(req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let stop = stopping.child_token();
        let stats = stats.clone();
        stats.open.fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = stop.cancelled() => {
                    // Finish the request in flight (if any), then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; dropping them");
    }
}

/// The HTTP/1.1 connection settings of a node: keep-alive, and the header read timeout
/// (which also reaps idle keep-alive connections). Also the bare-hyper floor of the
/// benchmark (`examples/hyper_floor.rs`), so that it measures the same setup.
pub fn http1_builder(limits: &HttpLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
}
