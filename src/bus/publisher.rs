//! The publisher task: sends our messages in the order the coherence machine numbered them
//! (what queued up meanwhile as one pipeline; an authoritative write in the same script as
//! its invalidation), on the command connection, through the control breaker of [`crate::l2`]
//! (never the data breaker), so the actor itself never waits on Redis. An invalidation
//! Redis refused (or any, without Redis) also goes to the peers over QUIC. Also the actor's
//! side of the queue ([`BusState::send`], through the [`Outbox`](super::outbox::Outbox) the
//! writers queue their plain changes on) and its QUIC path ([`BusState::send_peer`]).

use std::sync::Arc;

use ractor::ActorRef;

use super::handle::{tell_waiting, BusHandle};
use super::outbox::{Outgoing, Queue};
use super::port::NodePort;
use super::{BusMsg, BusState, Done, PublishError};
use crate::l2::Outbound;
use crate::stats::NodeCounters;
use crate::wire::{self, BusMessage};
use crate::wire_auth::ClusterKey;

/// Most invalidations sent in one pipelined round trip.
const PUBLISH_BATCH: usize = 256;

/// Publishes the messages in the order the actor numbered them: whatever queued up while
/// the previous round trip was in flight goes out as one pipeline (one round trip for many
/// concurrent writes), and each message's own outcome (its receiver count) goes to its writer.
pub(super) fn spawn_publisher(
    node: Arc<dyn NodePort>,
    handle: Arc<BusHandle>,
    myself: ActorRef<BusMsg>,
    key: Option<Arc<ClusterKey>>,
) -> (Queue, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    let task = tokio::spawn(async move {
        let mut batch: Vec<Outgoing> = Vec::with_capacity(PUBLISH_BATCH);
        while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            let mut holds = Vec::new();
            batch.retain_mut(|o| match o.hold.take() {
                Some(h) => {
                    holds.push(h);
                    false
                }
                None => true,
            });
            // The queue is bounded by the publisher gate (see `Outbox::queue`); a hold
            // took no slot.
            for _ in 0..batch.len() {
                handle.publisher_gate().release();
            }
            for held in holds {
                let _ = held.await;
            }
            if batch.is_empty() {
                continue;
            }
            if let Some(k) = &key {
                for o in &mut batch {
                    o.bytes = crate::wire_auth::seal(k, &o.bytes);
                }
            }
            let results = publish_batch(node.as_ref(), &mut batch).await;
            if !report(node.as_ref(), &handle, &myself, &mut batch, results).await {
                return;
            }
        }
    });
    (tx, task)
}

/// One pipelined round trip of `batch`; one outcome per message. Each bundled write gets
/// its own reply here, before its invalidation's outcome is reported.
async fn publish_batch(
    node: &dyn NodePort,
    batch: &mut [Outgoing],
) -> Vec<Result<u64, PublishError>> {
    let Some(l2) = node.l2() else {
        for o in batch.iter_mut() {
            if let Some(w) = o.write.take() {
                let _ = w.reply.send(Err(crate::l2::L2Error::NotConnected));
            }
        }
        return vec![Ok(0); batch.len()];
    };
    let items: Vec<Outbound<'_>> = batch
        .iter()
        .map(|o| Outbound {
            channel: o.channel.as_str(),
            payload: &o.bytes[..],
            write: o.write.as_ref().map(|w| &w.set),
        })
        .collect();
    let sent = l2.send_batch(&items).await;
    drop(items);
    match sent {
        Ok(delivered) => batch
            .iter_mut()
            .zip(delivered)
            .map(|(o, d)| {
                if let (Some(w), Some(written)) = (o.write.take(), d.written) {
                    let _ = w.reply.send(written);
                }
                d.receivers.map_err(|e| {
                    tracing::debug!(error = %e, "publish failed");
                    PublishError::Refused(e.to_string())
                })
            })
            .collect(),
        Err(e) => {
            // Receivers see the gap at our next heartbeat and flush; the writers are told.
            tracing::debug!(error = %e, n = batch.len(), "publish failed");
            let why = e.to_string();
            for o in batch.iter_mut() {
                if let Some(w) = o.write.take() {
                    let _ = w.reply.send(Err(crate::l2::L2Error::Batch(why.clone())));
                }
            }
            vec![Err(PublishError::Refused(why)); batch.len()]
        }
    }
}

/// Sends refused invalidations to the peers and each outcome to its writer (a strict one
/// to the actor first). False when the actor is gone.
async fn report(
    node: &dyn NodePort,
    handle: &BusHandle,
    myself: &ActorRef<BusMsg>,
    batch: &mut Vec<Outgoing>,
    results: Vec<Result<u64, PublishError>>,
) -> bool {
    for (o, result) in batch.drain(..).zip(results) {
        if o.invalidation && (result.is_err() || node.l2().is_none()) {
            if let Some(g) = node.peers() {
                g.broadcast(o.bytes);
                NodeCounters::incr(&node.counters().peer_messages_sent);
            }
        }
        if let Some(seq) = o.strict_seq {
            let published = BusMsg::Published {
                seq,
                result: result.clone(),
            };
            if !tell_waiting(handle.gate(), myself, published).await {
                return false;
            }
        }
        if let Some(done) = o.done {
            let _ = done.send(result.map(|_| ()));
        }
    }
    true
}

impl BusState {
    /// Seals and sends `msg` over QUIC to one peer, or to every live peer.
    pub(super) fn send_peer(&self, to: Option<&str>, msg: &BusMessage) {
        let Some(g) = self.node.peers() else {
            return;
        };
        let mut bytes = match wire::encode(msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode bus message");
                return;
            }
        };
        if let Some(k) = &self.key {
            bytes = crate::wire_auth::seal(k, &bytes);
        }
        NodeCounters::incr(&self.node.counters().peer_messages_sent);
        match to {
            Some(peer) => g.send_to(peer, bytes),
            None => g.broadcast(bytes),
        }
    }

    /// Queues `msg` on its channel: pings on our ping channel, the rest on the shared one.
    pub(super) fn send(&self, msg: &BusMessage, done: Option<Done>) {
        let channel = if matches!(msg, BusMessage::Ping { .. }) {
            self.ping_channel.clone()
        } else {
            self.channel.clone()
        };
        self.outbox.queue(msg, channel, done, None, None);
    }
}
