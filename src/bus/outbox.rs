//! The way onto the publisher's queue, for the bus actor and for writers: [`Outbox`].
//!
//! A plain local change (not strict, its L2 write done) needs nothing of the coherence
//! machine but its next sequence number: the machine only counts it, tracks nothing and
//! answers with no action. So the writer's own task numbers it ([`Outbox::send_plain`],
//! with the machine's [`Stamp`]) and queues it for the publisher, instead of a trip through
//! the bus actor's mailbox and a wake-up of the actor. The order the receivers rely on
//! holds because every number, the writer's or the actor's, is taken under the counter's
//! lock and queued before it is released (`coherence/numbering.rs`): numbers reach the
//! pipeline in order, and no heartbeat (which reads the last number) overtakes one.
//! Strict changes and changes whose L2 write failed still go through the actor: the
//! machine tracks them until their acks.

use std::sync::Arc;

use super::port::NodePort;
use super::{BundledWrite, ChangeKind, Done, PublishError, Target};
use crate::actors::mailbox::MailboxGate;
use crate::coherence::Stamp;
use crate::stats::NodeCounters;
use crate::wire::{self, BusMessage};

/// A message for the publisher task.
pub(super) struct Outgoing {
    pub(super) bytes: Vec<u8>,
    /// Full channel name.
    pub(super) channel: String,
    /// Invalidations also go to peers over QUIC when Redis refuses them (or without Redis).
    pub(super) invalidation: bool,
    pub(super) done: Option<Done>,
    /// Report the outcome of this strict change back to the actor.
    pub(super) strict_seq: Option<u64>,
    /// The value write this invalidation announces, sent in the same script.
    pub(super) write: Option<BundledWrite>,
    /// Test hook ([`Outbox::hold`]): not a message; the
    /// publisher sends nothing more until this fires or is dropped.
    pub(super) hold: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// The queue to the publisher task.
pub(super) type Queue = tokio::sync::mpsc::UnboundedSender<Outgoing>;

/// The publisher's queue of one bus actor's life, with that machine's numbering.
pub struct Outbox {
    node: Arc<dyn NodePort>,
    /// The gate that bounds the queue.
    gate: Arc<MailboxGate>,
    queue: Queue,
    stamp: Stamp,
    /// The shared invalidation channel.
    channel: String,
}

impl Outbox {
    pub(super) fn new(
        node: Arc<dyn NodePort>,
        gate: Arc<MailboxGate>,
        queue: Queue,
        stamp: Stamp,
        channel: String,
    ) -> Self {
        Outbox {
            node,
            gate,
            queue,
            stamp,
            channel,
        }
    }

    /// The numbering messages queued here are numbered in.
    pub(super) fn stamp(&self) -> &Stamp {
        &self.stamp
    }

    /// Test hook: the publisher sends nothing more (what is queued stays queued, within the
    /// gate's bound) until the returned sender fires or is dropped. Takes no slot.
    pub(super) fn hold(&self) -> Option<tokio::sync::oneshot::Sender<()>> {
        let (release, held) = tokio::sync::oneshot::channel();
        self.queue
            .send(Outgoing {
                bytes: Vec::new(),
                channel: String::new(),
                invalidation: false,
                done: None,
                strict_seq: None,
                write: None,
                hold: Some(held),
            })
            .ok()?;
        Some(release)
    }

    /// A writer's plain change: numbered and queued under the counter's lock (see the
    /// module docs). `done` gets the outcome: once Redis took the PUBLISH, or why not.
    /// False when it was not queued (`done` has the error; the number it took is a gap,
    /// so every receiver flushes: a refused change is never silently lost).
    pub(crate) fn send_plain(
        &self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        done: Option<Done>,
        write: Option<BundledWrite>,
    ) -> bool {
        NodeCounters::incr(&self.node.counters().invalidations_sent);
        let mut numbered = self.stamp.lock();
        let msg = self
            .stamp
            .invalidation(&mut numbered, category, target, kind);
        let queued = self.queue(&msg, self.channel.clone(), done, None, write);
        drop(numbered);
        queued
    }

    /// Queues `msg` (with `write`, the value write it announces) for the publisher. False when
    /// it was not queued (encoding failed, the queue is full, the publisher stopped): `done`
    /// has the error then, and `write` is dropped unsent. A refused
    /// invalidation already has its sequence number, so peers see the gap and flush; a
    /// refused ping or ack only delays a renewal or a strict release (at most B). A
    /// numbered message is queued under its number's lock (see the module docs).
    pub(super) fn queue(
        &self,
        msg: &BusMessage,
        channel: String,
        done: Option<Done>,
        strict_seq: Option<u64>,
        write: Option<BundledWrite>,
    ) -> bool {
        let fail = |done: Option<Done>, e: PublishError| {
            if let Some(d) = done {
                let _ = d.send(Err(e));
            }
            false
        };
        let bytes = match wire::encode(msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode bus message");
                return fail(done, PublishError::Refused(e.to_string()));
            }
        };
        let gate = &self.gate;
        if !gate.try_reserve() {
            gate.note_refused();
            tracing::warn!("bus publisher queue full: message not sent");
            return fail(done, PublishError::Overloaded);
        }
        let queued = self.queue.send(Outgoing {
            bytes,
            channel,
            invalidation: matches!(msg, BusMessage::Invalidation(_)),
            done,
            strict_seq,
            write,
            hold: None,
        });
        match queued {
            Ok(()) => true,
            Err(e) => {
                gate.release();
                tracing::error!("bus publisher stopped");
                fail(e.0.done, PublishError::Stopped)
            }
        }
    }
}
