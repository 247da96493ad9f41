//! The RESP front end (`--resp ADDR`, `HC_RESP`, config key `resp`): the node speaks the
//! Redis protocol, RESP2 and RESP3, so any service with a Redis client gets a coherent near
//! cache without new code. A Redis key is `category/key`.
//!
//! Like HTTP it is a thin front end: it parses, authenticates and calls the facade
//! ([`crate::HybridCache`]), so coherence, limits and errors are the same on both.
//! - [`codec`]: request framing with hard bounds (never trusts a declared length);
//! - [`reply`]: replies in the connection's protocol version;
//! - `conn`: one task per connection, pipelined;
//! - `session`: what a command sees (the facade and the connection's state);
//! - `keys` (GET/SET/DEL/MGET/EXISTS) and `server` (PING/HELLO/AUTH/CLIENT/INFO/COMMAND…):
//!   the commands, one file per group (the shape of tokio's mini-redis).

pub mod codec;
mod conn;
mod keys;
pub mod reply;
mod server;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::HybridCache;

/// Connection ids, as `CLIENT ID` and `HELLO` report them.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Accepts RESP clients on `listener` until `stop` turns true; each connection runs in its
/// own task and ends at the next read once the node stops.
///
/// Each connection watches a child token of its own (not the shared `stop` channel, whose
/// lock a poll would take on every command of every connection).
pub async fn serve(listener: TcpListener, cache: HybridCache, mut stop: watch::Receiver<bool>) {
    let stopping = CancellationToken::new();
    // Cancelled (children included) when this loop ends, however it ends.
    let _stop_connections = stopping.clone().drop_guard();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let cache = cache.clone();
                let stop = stopping.child_token();
                tokio::spawn(async move {
                    if let Err(e) = conn::serve(stream, cache, id, stop).await {
                        tracing::debug!(%peer, error = %e, "RESP connection closed");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "RESP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
