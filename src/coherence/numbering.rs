//! Our own sequence numbers, and the invalidations stamped with them.
//!
//! Every message of ours that names a position in our sequence (an invalidation's own
//! number, a heartbeat's or a peer grant's last number) reads one counter, [`Numbering`].
//! The counter lives outside the machine's `&mut` state so that a writer can number a
//! plain change itself ([`Stamp`]) without a trip through the bus actor.
//!
//! # The rule that keeps the order
//! A number is taken under the counter's lock, and the message carrying it is queued for
//! sending **before the lock is released** ([`Numbered`] is that lock). So:
//! - numbers enter the send queue in increasing order, whoever took them (a writer's task
//!   or the bus actor): a receiver never sees a gap that is not a loss;
//! - whoever reads the last number ([`Numbered::last`]: a heartbeat, a peer grant) reads
//!   it after the message with that number was queued: no heartbeat overtakes a numbered
//!   invalidation in the pipeline (it would make every receiver flush for nothing, and a
//!   lost message behind it would be detected one heartbeat late).
//!
//! A number taken and never queued (a full queue, a refused message) is a gap: every
//! receiver flushes at our next message, which is the fail-closed answer to a lost change.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::wire::{BusMessage, ChangeKind, Invalidation, Target};

/// The counter of our sequence numbers within one epoch (0 = none taken yet). Cloning
/// shares it.
#[derive(Debug, Clone, Default)]
pub struct Numbering(Arc<Mutex<u64>>);

/// The counter, locked: numbers are taken through it, and whoever holds it queues the
/// numbered message before dropping it (see the module docs).
#[derive(Debug)]
pub struct Numbered<'a>(MutexGuard<'a, u64>);

impl Numbering {
    /// Locks the counter. Never held across an `.await`; a panic while held leaves a
    /// consistent counter (one integer), so a poisoned lock is taken over.
    pub fn lock(&self) -> Numbered<'_> {
        Numbered(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Numbered<'_> {
    /// Takes the next number.
    pub fn take(&mut self) -> u64 {
        *self.0 = self.0.saturating_add(1);
        *self.0
    }

    /// The last number taken.
    pub fn last(&self) -> u64 {
        *self.0
    }
}

/// What a writer needs to number and build a plain (non-strict) invalidation of ours
/// without the machine: our id, our epoch and the shared counter. Obtained from
/// [`Coherence::stamp`](super::Coherence::stamp); valid for that machine's epoch only.
#[derive(Debug, Clone)]
pub struct Stamp {
    origin: Arc<str>,
    epoch: u64,
    numbering: Numbering,
}

impl Stamp {
    pub(super) fn new(origin: &str, epoch: u64, numbering: Numbering) -> Self {
        Stamp {
            origin: Arc::from(origin),
            epoch,
            numbering,
        }
    }

    /// Locks the counter (see [`Numbered`]).
    pub fn lock(&self) -> Numbered<'_> {
        self.numbering.lock()
    }

    /// The next plain invalidation: `category`'s `target` changed by `kind`, numbered
    /// through `numbered` (which must be this stamp's counter, locked).
    pub fn invalidation(
        &self,
        numbered: &mut Numbered<'_>,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
    ) -> BusMessage {
        BusMessage::Invalidation(Invalidation {
            origin: self.origin.to_string(),
            origin_epoch: self.epoch,
            seq: numbered.take(),
            category: category.map(str::to_owned),
            target,
            kind,
            sent_at_ms: crate::wire::unix_ms(),
            ack_to: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// What the publisher's queue receives in these tests.
    enum Sent {
        Change(u64),
        Heartbeat(u64),
    }

    /// Writers on several threads number and queue under the lock while another thread
    /// reads the last number and queues a heartbeat with it (as the bus actor does): in the
    /// queue, changes come in increasing order with none missing, and no heartbeat names a
    /// number whose change is not ahead of it.
    #[test]
    fn numbers_reach_the_queue_in_order_and_no_heartbeat_overtakes_them() {
        const WRITERS: u64 = 4;
        const EACH: u64 = 2_000;
        let numbering = Numbering::default();
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            for _ in 0..WRITERS {
                let (numbering, tx) = (numbering.clone(), tx.clone());
                s.spawn(move || {
                    for _ in 0..EACH {
                        let mut numbered = numbering.lock();
                        let seq = numbered.take();
                        tx.send(Sent::Change(seq)).expect("queue open");
                    }
                });
            }
            let (numbering, tx) = (numbering.clone(), tx.clone());
            s.spawn(move || {
                for _ in 0..EACH {
                    let last = numbering.lock().last();
                    tx.send(Sent::Heartbeat(last)).expect("queue open");
                }
            });
        });
        drop(tx);
        let mut expected = 1;
        for sent in rx {
            match sent {
                Sent::Change(seq) => {
                    assert_eq!(seq, expected, "a change out of order");
                    expected += 1;
                }
                Sent::Heartbeat(last) => {
                    assert!(last < expected, "heartbeat {last} ahead of its change");
                }
            }
        }
        assert_eq!(expected, WRITERS * EACH + 1);
    }
}
