//! The way into the bus from the rest of the node: [`BusHandle`] (the current bus actor,
//! late-bound because the supervisor starts and restarts it, and the gates of its bounded
//! queues), [`publish`] for local changes, and [`tell`] / [`tell_waiting`] for everything
//! else that must respect the mailbox bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::ActorRef;

use super::outbox::Outbox;
use super::{BundledWrite, BusMsg, ChangeKind, PublishError, Target, Via};
use crate::actors::mailbox::MailboxGate;

/// The node's handle on its bus actor. Survives actor restarts (the gates keep their
/// counters; a restarted actor resets the depth).
pub struct BusHandle {
    actor: RwLock<Option<ActorRef<BusMsg>>>,
    /// The running bus's publisher queue, where writers queue their plain changes.
    outbox: RwLock<Option<Arc<Outbox>>>,
    /// The gate of the bus actor's mailbox.
    gate: Arc<MailboxGate>,
    /// The gate of the bus publisher's queue.
    publisher_gate: Arc<MailboxGate>,
    /// Bound of one PUBLISH (the Redis timeout).
    redis_timeout: Duration,
    /// The staleness bound B (strict changes and peer acks wait at most that long).
    staleness_bound: Duration,
    /// Subscriptions dropped because the bus did not keep up (see `bus::connection`).
    subscription_overflows: AtomicU64,
    /// Connections refused because the Redis has persistence on (or would not say).
    persistent_redis_refusals: AtomicU64,
}

impl BusHandle {
    /// A handle with no actor yet; both queues hold at most `capacity` messages.
    pub(crate) fn new(capacity: usize, redis_timeout: Duration, staleness_bound: Duration) -> Self {
        BusHandle {
            actor: RwLock::new(None),
            outbox: RwLock::new(None),
            gate: Arc::new(MailboxGate::new("bus", capacity)),
            publisher_gate: Arc::new(MailboxGate::new("publisher", capacity)),
            redis_timeout,
            staleness_bound,
            subscription_overflows: AtomicU64::new(0),
            persistent_redis_refusals: AtomicU64::new(0),
        }
    }

    /// Counts a subscription dropped because its queue to the bus was full.
    pub(crate) fn note_subscription_overflow(&self) {
        self.subscription_overflows.fetch_add(1, Ordering::Relaxed);
        self.gate.note_refused();
    }

    /// Counts a connection refused because its Redis has persistence on.
    pub(crate) fn note_persistent_redis_refused(&self) {
        self.persistent_redis_refusals
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused because their Redis has persistence on, since start.
    pub(crate) fn persistent_redis_refusals(&self) -> u64 {
        self.persistent_redis_refusals.load(Ordering::Relaxed)
    }

    /// Subscriptions dropped because their queue to the bus was full, since start.
    pub(crate) fn subscription_overflows(&self) -> u64 {
        self.subscription_overflows.load(Ordering::Relaxed)
    }

    /// Test hook: stalls the bus actor until the returned sender fires or is dropped.
    pub(crate) fn hold(&self) -> Option<tokio::sync::oneshot::Sender<()>> {
        let (release, held) = tokio::sync::oneshot::channel();
        self.actor()?.cast(BusMsg::Hold(held)).ok()?;
        Some(release)
    }

    /// Test hook: stalls the bus's publisher until the returned sender fires or is dropped.
    pub(crate) fn hold_publisher(&self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.outbox()?.hold()
    }

    /// Installs (or, with `None`, removes) the running bus actor. Removing it also removes
    /// its outbox: a change is never numbered in a dead bus's sequence.
    pub(crate) fn attach(&self, actor: Option<ActorRef<BusMsg>>) {
        if actor.is_none() {
            self.set_outbox(None);
        }
        if let Ok(mut b) = self.actor.write() {
            *b = actor;
        }
    }

    /// Installs (or removes) the outbox of the running bus (see [`super::outbox`]).
    pub(super) fn set_outbox(&self, outbox: Option<Arc<Outbox>>) {
        if let Ok(mut o) = self.outbox.write() {
            *o = outbox;
        }
    }

    /// Removes `outbox` if it is still the installed one (a stopping bus; its successor
    /// may have installed its own already).
    pub(super) fn clear_outbox(&self, outbox: &Arc<Outbox>) {
        if let Ok(mut o) = self.outbox.write() {
            if o.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, outbox)) {
                *o = None;
            }
        }
    }

    /// The running bus's outbox, if any.
    fn outbox(&self) -> Option<Arc<Outbox>> {
        self.outbox.read().ok()?.clone()
    }

    /// The running bus actor, if any.
    pub(crate) fn actor(&self) -> Option<ActorRef<BusMsg>> {
        self.actor.read().ok()?.clone()
    }

    /// The gate of the bus actor's mailbox.
    pub(crate) fn gate(&self) -> &Arc<MailboxGate> {
        &self.gate
    }

    /// The gate of the publisher's queue.
    pub(crate) fn publisher_gate(&self) -> &Arc<MailboxGate> {
        &self.publisher_gate
    }

    /// Hands a payload a peer sent over QUIC to the bus. Never waits: a full mailbox
    /// flushes instead (see [`tell`]).
    pub(crate) fn inbound_from_peer(&self, payload: Vec<u8>) {
        if let Some(bus) = self.actor() {
            tell(&self.gate, &bus, BusMsg::Inbound(payload, Via::Quic));
        }
    }
}

/// Sends `msg` to the bus if its mailbox has room; otherwise the bus is told to flush
/// ([`BusMsg::Overflow`]) and `false` is returned.
pub(crate) fn tell(gate: &MailboxGate, bus: &ActorRef<BusMsg>, msg: BusMsg) -> bool {
    if !gate.try_reserve() {
        gate.note_refused();
        if gate.request_flush() {
            tracing::warn!("bus mailbox full: flushing L1 on every node");
            if bus.cast(BusMsg::Overflow).is_err() {
                gate.overflow_handled();
            }
        }
        return false;
    }
    if bus.cast(msg).is_err() {
        gate.release();
        return false;
    }
    true
}

/// Sends `msg` to the bus, waiting for room in its mailbox. False if the bus is gone.
pub(crate) async fn tell_waiting(gate: &MailboxGate, bus: &ActorRef<BusMsg>, msg: BusMsg) -> bool {
    gate.reserve().await;
    if bus.cast(msg).is_err() {
        gate.release();
        return false;
    }
    true
}

/// Announces a local change to every other node and waits (bounded) for the outcome.
///
/// `Ok` means Redis accepted the PUBLISH: every node that renews its lease after this point
/// has applied the change first. Without a bus (no Redis, no peers) there is nobody to tell.
/// `write`, a value write to send in the same script as the invalidation, gets its reply
/// before the outcome is known; without a bus it is dropped unsent.
pub async fn publish(
    handle: &BusHandle,
    category: Option<&str>,
    target: Target,
    kind: ChangeKind,
    strict: bool,
    l2_pending: bool,
    write: Option<BundledWrite>,
) -> Result<(), PublishError> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    if !strict && !l2_pending {
        // A plain change: numbered and queued by this task (see `bus::outbox`); without
        // an outbox there is no bus, and nobody to tell.
        let Some(outbox) = handle.outbox() else {
            return Ok(());
        };
        // Not queued: `done` already holds the error, read below.
        let _ = outbox.send_plain(category, target, kind, Some(done), write);
    } else {
        let Some(bus) = handle.actor() else {
            return Ok(());
        };
        let msg = BusMsg::Publish {
            category: category.map(str::to_owned),
            target,
            kind,
            strict,
            l2_pending,
            done: Some(done),
            write,
        };
        if !tell(&handle.gate, &bus, msg) {
            return Err(PublishError::Overloaded);
        }
    }
    // Each publish is bounded by the Redis timeout; allow for a few queued ahead of us, and
    // for a strict change the acks (at most B).
    let mut bound = handle.redis_timeout.max(Duration::from_millis(100)) * 4;
    if strict || l2_pending {
        bound += handle.staleness_bound;
    }
    match tokio::time::timeout(bound, outcome).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(PublishError::Stopped),
        Err(_) => Err(PublishError::Timeout(bound)),
    }
}
