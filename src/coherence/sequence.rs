//! Sequences, gaps and epochs: what we know of each origin's numbering, and what a newly
//! received sequence number means (apply, duplicate, or flush because something may have
//! been missed). See the module docs of [`super`], "Sequence numbers", "Epochs" and
//! "First contact with an origin".

use std::collections::HashMap;

use super::{CoherenceCounters, FlushReason};

/// How many epochs of one origin are tracked at once. More than one so that a late message
/// from an origin's previous life (e.g. delivered by the other path after its restart) is
/// recognised as a duplicate instead of flip-flopping the baseline; a message from an epoch
/// that fell out of this window is treated as a new epoch (flush), which is always safe.
pub(super) const EPOCHS_PER_ORIGIN: usize = 4;

/// How many origins are tracked at once. Past it the least recently heard origin is
/// forgotten — safe, since hearing from it again counts as first contact (flush) — so
/// publishers with ever-new ids cannot grow this state without bound.
pub const MAX_ORIGINS: usize = 4096;

/// The sequence state of one epoch of one origin.
#[derive(Debug, Clone, Copy)]
pub(super) struct EpochState {
    epoch: u64,
    last_seq: u64,
    /// Value of `Sequences::use_clock` when this epoch was last seen (for LRU eviction).
    last_used: u64,
}

/// How a sequence number relates to what we know of its origin.
pub(super) enum Verdict {
    /// Next in order: apply.
    Apply,
    /// Already covered (seen, or covered by a flush): nothing new for the numbering; an
    /// invalidation's target is still applied (see [`super`], "Sequence numbers").
    Duplicate,
    /// Something may have been missed: flush.
    Flush(FlushReason),
}

/// Per-origin sequence tracking, bounded in origins and in epochs per origin.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    /// Per origin, the sequence state of its most recently seen epochs.
    pub(super) by_origin: HashMap<String, Vec<EpochState>>,
    /// Monotonic counter ordering epoch uses.
    use_clock: u64,
}

impl Sequences {
    /// Updates the tracking of `origin` with `seq` (an invalidation's own seq when
    /// `is_invalidation`, else a heartbeat's or a grant's last seq) and says what to do.
    /// Counts epoch changes and gaps in `counters`.
    pub(super) fn observe(
        &mut self,
        origin: String,
        epoch: u64,
        seq: u64,
        is_invalidation: bool,
        counters: &mut CoherenceCounters,
    ) -> Verdict {
        self.use_clock += 1;
        let now_used = self.use_clock;
        let fresh = EpochState {
            epoch,
            last_seq: seq,
            last_used: now_used,
        };
        if !self.by_origin.contains_key(&origin) && self.by_origin.len() >= MAX_ORIGINS {
            self.forget_least_recent_origin();
        }
        let epochs = self.by_origin.entry(origin).or_default();
        let Some(state) = epochs.iter_mut().find(|e| e.epoch == epoch) else {
            // First contact with this origin, or a new epoch of it (restart): whatever it
            // sent before may have been lost. Baseline here and flush (see the module docs).
            if !epochs.is_empty() {
                counters.epoch_changes += 1;
            }
            if epochs.len() >= EPOCHS_PER_ORIGIN {
                if let Some(lru) = epochs
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(i, _)| i)
                {
                    epochs.swap_remove(lru);
                }
            }
            epochs.push(fresh);
            return Verdict::Flush(FlushReason::NewOrigin);
        };
        state.last_used = now_used;
        if seq <= state.last_seq {
            // Already seen (invalidation), or nothing new (heartbeat).
            return Verdict::Duplicate;
        }
        let expected_next = is_invalidation && seq - state.last_seq == 1;
        state.last_seq = seq;
        if expected_next {
            Verdict::Apply
        } else {
            // An invalidation skipped some seqs, or a heartbeat announces seqs we never
            // received (a lost tail).
            counters.gaps += 1;
            Verdict::Flush(FlushReason::Gap)
        }
    }

    /// Drops the origin heard from least recently (to make room for a new one).
    fn forget_least_recent_origin(&mut self) {
        let lru = self
            .by_origin
            .iter()
            .map(|(o, es)| (es.iter().map(|e| e.last_used).max().unwrap_or(0), o))
            .min()
            .map(|(_, o)| o.clone());
        if let Some(o) = lru {
            self.by_origin.remove(&o);
        }
    }
}
