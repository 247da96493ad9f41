//! The category generations this node knows, so an L2 hit can skip the Lua read script
//! (`GET` + `PTTL` of the data key at the known generation, one pipelined round trip).
//!
//! A known generation is learned from the reply of the read script (which resolves it
//! atomically with the data). It is trusted only while nothing cast doubt on it since the
//! script was *sent*: every category-wide change (`invalidate("*")`, a glob, a tag, a
//! category-`*` change) the bus applies, every L1 flush (coherence gap, overflow, reconnect),
//! every local category-wide invalidation, the end of a replay into L2, a lease revocation
//! and a link change bump one doubt counter, *before* the L1 writers see the change. A
//! generation learned at an older count is not used; the next miss runs the script again
//! and learns the new one. So once this node processed the invalidation that bumped a
//! generation, no read at the old generation is answered (a fast read in flight re-checks
//! the count and the lease after its reply, and falls back to the script if either moved).
//!
//! The fast read is taken only where an L1 hit could be served right now (the freshness
//! lease holds), and its pipeline reads the generation too ([`crate::l2::L2::get_at`]): a
//! bump already in Redis but not yet announced (its node still working, or dead) makes the
//! read fall back to the script, so a value written at the new generation is never answered
//! by its predecessor. Strict categories always use the script.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::l2::topology::CLUSTER_BUCKETS;

/// A generation and the doubt count at which its script read was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    generation: i64,
    doubt: u64,
}

/// Known generations of every configured category, per bucket (a Redis Cluster splits each
/// category into buckets with a generation each, see [`crate::l2::topology::KeyLayout`];
/// elsewhere only bucket 0 is used).
pub(super) struct KnownGens {
    doubt: AtomicU64,
    known: HashMap<String, Vec<RwLock<Option<Known>>>>,
}

/// The doubt count taken before an L2 read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Doubt(u64);

impl KnownGens {
    pub(super) fn new<'a>(categories: impl Iterator<Item = &'a String>) -> KnownGens {
        KnownGens {
            doubt: AtomicU64::new(0),
            known: categories
                .map(|c| {
                    let buckets = (0..CLUSTER_BUCKETS).map(|_| RwLock::new(None)).collect();
                    (c.clone(), buckets)
                })
                .collect(),
        }
    }

    /// Something may have moved a generation (or hidden that it moved): forget them all.
    pub(super) fn doubt(&self) {
        self.doubt.fetch_add(1, Ordering::SeqCst);
    }

    /// The doubt count now; take it before sending a read.
    pub(super) fn snapshot(&self) -> Doubt {
        Doubt(self.doubt.load(Ordering::SeqCst))
    }

    /// Whether nothing cast doubt since `at`.
    pub(super) fn unchanged(&self, at: Doubt) -> bool {
        self.snapshot() == at
    }

    /// The read script sent at `at` resolved `generation` for `category`'s `bucket`.
    pub(super) fn learn(&self, category: &str, bucket: usize, generation: i64, at: Doubt) {
        if let Some(slot) = self.known.get(category).and_then(|b| b.get(bucket)) {
            if let Ok(mut k) = slot.write() {
                *k = Some(Known {
                    generation,
                    doubt: at.0,
                });
            }
        }
    }

    /// The generation a read of `category`'s `bucket` sent now (doubt count `at`) may use
    /// without the script: `None` unless `fast_allowed` (lease held, not strict) and a
    /// generation was learned at this very doubt count.
    pub(super) fn fast_generation(
        &self,
        category: &str,
        bucket: usize,
        fast_allowed: bool,
        at: Doubt,
    ) -> Option<i64> {
        if !fast_allowed {
            return None;
        }
        let k = (*self.known.get(category)?.get(bucket)?.read().ok()?)?;
        (k.doubt == at.0).then_some(k.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gens() -> KnownGens {
        let names = ["users".to_string(), "roles".to_string()];
        KnownGens::new(names.iter())
    }

    #[test]
    fn nothing_known_means_script() {
        let g = gens();
        assert_eq!(g.fast_generation("users", 0, true, g.snapshot()), None);
    }

    #[test]
    fn learned_generation_is_used_only_when_allowed() {
        let g = gens();
        let at = g.snapshot();
        g.learn("users", 0, 7, at);
        assert_eq!(g.fast_generation("users", 0, true, g.snapshot()), Some(7));
        // Lease lapsed or strict category: the script.
        assert_eq!(g.fast_generation("users", 0, false, g.snapshot()), None);
        // Another category learned nothing; an unknown one never.
        assert_eq!(g.fast_generation("roles", 0, true, g.snapshot()), None);
        assert_eq!(g.fast_generation("nope", 0, true, g.snapshot()), None);
        // Cluster buckets have generations of their own: one learned says nothing of another.
        g.learn("users", 3, 9, at);
        assert_eq!(g.fast_generation("users", 3, true, g.snapshot()), Some(9));
        assert_eq!(g.fast_generation("users", 4, true, g.snapshot()), None);
        assert_eq!(g.fast_generation("users", 0, true, g.snapshot()), Some(7));
    }

    #[test]
    fn doubt_after_learning_forces_the_script() {
        let g = gens();
        let at = g.snapshot();
        g.learn("users", 0, 7, at);
        // The bus applied a category-wide change (or a flush): the generation may have moved.
        g.doubt();
        assert_eq!(g.fast_generation("users", 0, true, g.snapshot()), None);
        assert!(!g.unchanged(at));
        // The next script read relearns it.
        let again = g.snapshot();
        g.learn("users", 0, 8, again);
        assert_eq!(g.fast_generation("users", 0, true, g.snapshot()), Some(8));
    }

    #[test]
    fn a_script_read_overtaken_by_doubt_teaches_nothing() {
        let g = gens();
        // The script was sent at `at`; the bump's invalidation was processed before its
        // reply (which may carry the old generation).
        let at = g.snapshot();
        g.doubt();
        g.learn("users", 0, 7, at);
        assert_eq!(g.fast_generation("users", 0, true, g.snapshot()), None);
    }

    #[test]
    fn a_fast_read_in_flight_sees_doubt_that_arrived_meanwhile() {
        let g = gens();
        let at = g.snapshot();
        g.learn("users", 0, 7, at);
        let sent = g.snapshot();
        assert_eq!(g.fast_generation("users", 0, true, sent), Some(7));
        g.doubt();
        assert!(!g.unchanged(sent), "the reply must not be answered");
    }
}
