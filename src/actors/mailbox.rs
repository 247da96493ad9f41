//! Count-bounded mailboxes.
//!
//! ractor's mailboxes are unbounded: a producer that outruns its actor (an invalidation
//! storm, a stalled actor) would grow one without limit. Every mailbox of the node is
//! therefore fronted by a [`MailboxGate`]: a producer takes a slot before it sends, the actor
//! gives the slot back when it handles the message. What a producer does when no slot is free
//! depends on what it carries, and it never silently drops a change:
//!
//! - the Redis subscription **waits** ([`MailboxGate::reserve`]) while it queues what it
//!   reads (redis-rs reads the socket by itself) in a queue of the same capacity; when that
//!   queue is full too it drops the subscription, which revokes the lease and flushes on
//!   reconnect (fail closed; see `bus::connection`);
//! - every other producer (peers over QUIC, local writers, the L1 writers' callers) does not
//!   wait: it [asks for a flush](MailboxGate::request_flush) instead, and the first request
//!   sends one extra, ungated message that makes the actor flush, so whatever the dropped
//!   message would have removed is removed by the flush. At most one such message is in
//!   flight, so a mailbox holds at most `capacity + 1` messages plus the few control messages
//!   each actor documents.
//!
//! The order argument: the flag is cleared by the actor *before* it flushes, and a producer
//! that finds the flag already set relies on the pending flush. So every dropped message has
//! a flush that starts after it was dropped; a flush is wider than any removal, and a local
//! write racing it is caught by the facade's remote marks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The slot counter in front of one actor's mailbox.
#[derive(Debug)]
pub struct MailboxGate {
    name: String,
    capacity: usize,
    depth: AtomicUsize,
    overflowed: AtomicBool,
    overflows: AtomicU64,
    room: Notify,
}

impl MailboxGate {
    /// A gate admitting at most `capacity` (at least 1) messages at a time.
    pub fn new(name: impl Into<String>, capacity: usize) -> Self {
        Self {
            name: name.into(),
            capacity: capacity.max(1),
            depth: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
            room: Notify::new(),
        }
    }

    /// Takes a slot if one is free.
    pub fn try_reserve(&self) -> bool {
        self.depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (d < self.capacity).then_some(d + 1)
            })
            .is_ok()
    }

    /// Waits for a free slot and takes it.
    pub async fn reserve(&self) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.try_reserve() {
                return;
            }
            room.await;
        }
    }

    /// Gives a slot back: the actor handled a gated message (or a producer could not send
    /// the message it reserved for).
    pub fn release(&self) {
        let _ = self
            .depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1));
        self.room.notify_waiters();
    }

    /// Forgets every taken slot: the actor was restarted and its old mailbox is gone.
    pub fn reset(&self) {
        self.depth.store(0, Ordering::Release);
        self.overflowed.store(false, Ordering::Release);
        self.room.notify_waiters();
    }

    /// Asks for a flush behind everything in the mailbox. Returns true for the first request
    /// since the actor last flushed: the caller must then send the (ungated) flush message;
    /// otherwise the pending one covers it.
    pub fn request_flush(&self) -> bool {
        !self.overflowed.swap(true, Ordering::AcqRel)
    }

    /// Counts a message the full mailbox refused.
    pub fn note_refused(&self) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a flush was requested and not yet handled (no live actor took it).
    pub fn flush_pending(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Called by the actor when it handles the flush message, *before* flushing.
    pub fn overflow_handled(&self) {
        self.overflowed.store(false, Ordering::Release);
    }

    /// Messages admitted and not yet handled.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages refused since start.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// The mailbox's name (the `mailbox` label of the metrics).
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn admits_up_to_capacity_then_refuses() {
        let g = MailboxGate::new("t", 2);
        assert!(g.try_reserve());
        assert!(g.try_reserve());
        assert!(!g.try_reserve());
        assert_eq!(g.depth(), 2);
        g.release();
        assert!(g.try_reserve());
    }

    #[test]
    fn only_the_first_flush_request_sends_one_until_it_is_handled() {
        let g = MailboxGate::new("t", 1);
        assert!(g.request_flush());
        assert!(!g.request_flush());
        g.overflow_handled();
        assert!(g.request_flush());
        g.note_refused();
        assert_eq!(g.overflows(), 1);
    }

    #[test]
    fn release_never_underflows_and_reset_empties() {
        let g = MailboxGate::new("t", 3);
        g.release();
        assert_eq!(g.depth(), 0);
        assert!(g.try_reserve());
        assert!(g.try_reserve());
        g.reset();
        assert_eq!(g.depth(), 0);
    }

    #[tokio::test]
    async fn reserve_waits_for_a_release() {
        let g = Arc::new(MailboxGate::new("t", 1));
        assert!(g.try_reserve());
        let waiter = {
            let g = g.clone();
            tokio::spawn(async move { g.reserve().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "reserve returned while the mailbox was full"
        );
        g.release();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("reserve did not wake up after a release")
            .expect("waiter task");
        assert_eq!(g.depth(), 1);
    }
}
