//! The connection task: keeps one subscriber connection with two channels on it, the shared
//! invalidation channel and this node's own ping channel (same connection, so a ping's echo
//! arrives after every invalidation Redis processed before it), and reconnects with
//! exponential backoff (backon). It waits for room in the actor's mailbox rather than drop
//! a payload: it stops reading, Redis buffers (and past its pub/sub output limit drops the
//! subscription, which revokes the lease).

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use ractor::ActorRef;

use super::handle::{tell_waiting, BusHandle};
use super::{BusMsg, BusState, Via};
use crate::config::RedisTarget;
use crate::l2::L2Conn;

fn backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(250))
        .without_max_times()
        .build()
}

/// Starts the connection task of generation `gen`; `None` without Redis.
pub(super) fn spawn_connection(
    myself: ActorRef<BusMsg>,
    handle: Arc<BusHandle>,
    redis: Option<RedisTarget>,
    timeout: Duration,
    channels: [String; 2],
    gen: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    let target = redis?;
    Some(tokio::spawn(async move {
        let gate = handle.gate();
        let mut delays = backoff();
        loop {
            match subscribe(&target, &channels, timeout).await {
                Ok((mut sub, cm)) => {
                    delays = backoff();
                    if !tell_waiting(gate, &myself, BusMsg::LinkUp(cm, gen)).await {
                        return;
                    }
                    while let Some(payload) = sub.next().await {
                        // Waits while the mailbox is full: we stop reading, Redis buffers.
                        let inbound = BusMsg::Inbound(payload, Via::Redis);
                        if !tell_waiting(gate, &myself, inbound).await {
                            return;
                        }
                    }
                    let down = BusMsg::LinkDown("subscription closed".into(), gen);
                    if !tell_waiting(gate, &myself, down).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis connect failed; retrying");
                    let down = BusMsg::LinkDown(e.to_string(), gen);
                    if !tell_waiting(gate, &myself, down).await {
                        return;
                    }
                }
            }
            let delay = delays.next().unwrap_or(Duration::from_millis(250));
            tokio::time::sleep(delay).await;
        }
    }))
}

/// Subscribes on the configured topology (see [`crate::l2::topology`]: classic pub/sub on
/// one server or the Sentinel-named primary, sharded pub/sub on the owner of the channels'
/// slot in a cluster) and opens the matching command connection.
async fn subscribe(
    target: &RedisTarget,
    channels: &[String; 2],
    timeout: Duration,
) -> Result<(crate::l2::topology::Subscription, L2Conn), crate::l2::L2Error> {
    crate::l2::topology::subscribe(target, channels.as_slice(), timeout).await
}

impl BusState {
    /// Starts a connection task of the current generation.
    pub(super) fn connect(&self, myself: &ActorRef<BusMsg>) -> Option<tokio::task::JoinHandle<()>> {
        let cfg = self.node.config();
        spawn_connection(
            myself.clone(),
            self.handle.clone(),
            cfg.redis.clone(),
            cfg.redis_timeout,
            [self.channel.clone(), self.ping_channel.clone()],
            self.conn_gen,
        )
    }

    /// Drops the connection task; the next tick starts one of a new generation.
    pub(super) fn restart_connection_later(&mut self) {
        if let Some(t) = self.conn_task.take() {
            t.abort();
        }
        self.conn_gen += 1;
        self.conn_task = None;
    }
}
