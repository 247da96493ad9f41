//! The connection task: keeps one subscriber connection with two channels on it, the shared
//! invalidation channel and this node's own ping channel (same connection, so a ping's echo
//! arrives after every invalidation Redis processed before it), and reconnects with
//! exponential backoff (backon).
//!
//! **Backpressure.** redis-rs reads the subscription socket by itself and forwards every
//! message into an unbounded channel, so not reading would not make Redis buffer (and drop
//! us at its output-buffer limit): the node's memory would grow instead. The task therefore
//! keeps reading, into a queue bounded by the bus mailbox's capacity, while it hands the
//! queue's head to the bus as the mailbox has room. A full queue is a gap: the subscription
//! is dropped (counted), the bus gets `LinkDown` (lease revoked) and the reconnection flushes
//! L1 before a lease is granted again (fail closed).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use ractor::ActorRef;

use super::handle::{tell_waiting, BusHandle};
use super::{BusMsg, BusState, Via};
use crate::actors::mailbox::MailboxGate;
use crate::config::RedisTarget;
use crate::l2::topology::Subscription;
use crate::l2::L2Conn;

/// How a subscription's pump ended.
enum PumpEnd {
    /// The bus actor is gone: the task ends.
    BusGone,
    /// The subscription ended (or is to be dropped): hand the bus what was read before,
    /// then tell it why.
    Down(&'static str, VecDeque<BusMsg>),
}

/// Hands `queue` to the bus in order, waiting for room. False if the bus is gone.
async fn deliver(queue: VecDeque<BusMsg>, gate: &MailboxGate, bus: &ActorRef<BusMsg>) -> bool {
    for msg in queue {
        if !tell_waiting(gate, bus, msg).await {
            return false;
        }
    }
    true
}

/// Reads `sub` into a queue of at most the mailbox's capacity (after `first`, the
/// `LinkUp`) and hands the queue's head to the bus whenever its mailbox has room. A message
/// that finds the queue full ends the pump (the subscription is dropped by the caller).
async fn pump(
    sub: &mut Subscription,
    first: BusMsg,
    handle: &BusHandle,
    bus: &ActorRef<BusMsg>,
) -> PumpEnd {
    let gate = handle.gate();
    let cap = gate.capacity();
    let mut queue: VecDeque<BusMsg> = VecDeque::with_capacity(cap + 1);
    queue.push_back(first);
    loop {
        tokio::select! {
            biased;
            () = gate.reserve(), if !queue.is_empty() => {
                let Some(msg) = queue.pop_front() else {
                    gate.release();
                    continue;
                };
                if bus.cast(msg).is_err() {
                    gate.release();
                    return PumpEnd::BusGone;
                }
            }
            next = sub.next() => match next {
                Some(payload) if queue.len() <= cap => {
                    queue.push_back(BusMsg::Inbound(payload, Via::Redis));
                }
                Some(_) => {
                    handle.note_subscription_overflow();
                    tracing::warn!(
                        queued = queue.len(),
                        "bus not keeping up with the subscription: dropping it (L1 lease revoked)"
                    );
                    return PumpEnd::Down("subscription queue full", queue);
                }
                None => return PumpEnd::Down("subscription closed", queue),
            }
        }
    }
}

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
    allow_persistent: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    let target = redis?;
    Some(tokio::spawn(async move {
        let gate = handle.gate();
        let mut delays = backoff();
        loop {
            match subscribe(&target, &channels, timeout, allow_persistent).await {
                Ok((mut sub, cm)) => {
                    delays = backoff();
                    let end = pump(&mut sub, BusMsg::LinkUp(cm, gen), &handle, &myself).await;
                    // Closed before waiting for the bus: nothing more is read meanwhile.
                    drop(sub);
                    let PumpEnd::Down(reason, queue) = end else {
                        return;
                    };
                    if !deliver(queue, gate, &myself).await {
                        return;
                    }
                    if !tell_waiting(gate, &myself, BusMsg::LinkDown(reason.into(), gen)).await {
                        return;
                    }
                }
                Err(e) => {
                    if let crate::l2::L2Error::Persistent(why) = &e {
                        handle.note_persistent_redis_refused();
                        tracing::error!(error = %why, "L2 Redis refused (no lease); retrying");
                    } else {
                        tracing::debug!(error = %e, "redis connect failed; retrying");
                    }
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
/// slot in a cluster) and opens the matching command connection. Unless `allow_persistent`,
/// the server(s) must have persistence off (see [`crate::l2::topology::persistence`]):
/// otherwise, or when that cannot be checked, the connection is dropped before `LinkUp`, so
/// this Redis is neither installed as L2 nor grants the lease (fail closed).
async fn subscribe(
    target: &RedisTarget,
    channels: &[String; 2],
    timeout: Duration,
    allow_persistent: bool,
) -> Result<(crate::l2::topology::Subscription, L2Conn), crate::l2::L2Error> {
    let (sub, mut conn) =
        crate::l2::topology::subscribe(target, channels.as_slice(), timeout).await?;
    if !allow_persistent {
        let bound = timeout.max(Duration::from_millis(500));
        tokio::time::timeout(
            bound,
            crate::l2::topology::persistence::check(&mut conn, target),
        )
        .await
        .map_err(|_| crate::l2::L2Error::Timeout(bound))??;
    }
    Ok((sub, conn))
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
            cfg.allow_persistent_redis,
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
