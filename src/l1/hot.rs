//! Warm-up support of one category's L1: which keys are hot, and preloading without evicting.
//!
//! Why its own file: it is the only L1 code that exists for warm-up (`warm_up_keys`). With
//! warm-up on, each entry carries a [`Heat`] (a shared relaxed counter) that an L1 hit bumps:
//! no mailbox, no lock, one atomic add. A sampler (the facade's warm-up task) takes the
//! counts every `warm_up_sample_ms` and sends the top keys to Redis. With warm-up off, entries
//! carry no counter and a hit pays one branch.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{entry_weight, FillTicket, L1Category};

/// Hits of one L1 entry since the last sample; clones share the count.
#[derive(Clone, Debug, Default)]
pub struct Heat(Arc<AtomicU32>);

impl Heat {
    /// Counts one hit.
    #[inline]
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The hits since the last call, resetting the count.
    pub fn take(&self) -> u32 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

impl L1Category {
    /// The `n` entries with the most hits since the last call, most hits first, resetting
    /// every entry's count. Entries without hits are left out. Empty with warm-up off.
    pub fn take_hottest(&self, n: usize) -> Vec<(String, u32)> {
        let mut hot: Vec<(Arc<String>, u32)> = self
            .cache
            .iter()
            .filter_map(|(k, e)| {
                let hits = e.heat()?.take();
                (hits > 0).then_some((k, hits))
            })
            .collect();
        let most_first = |a: &(Arc<String>, u32), b: &(Arc<String>, u32)| b.1.cmp(&a.1);
        if n == 0 {
            return Vec::new();
        }
        if hot.len() > n {
            hot.select_nth_unstable_by(n - 1, most_first);
            hot.truncate(n);
        }
        hot.sort_unstable_by(most_first);
        hot.into_iter().map(|(k, h)| (k.to_string(), h)).collect()
    }

    /// What the category can take before moka evicts anything, in entry weights (pending
    /// maintenance applied first).
    pub async fn free_weight(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.max_bytes().saturating_sub(self.cache.weighted_size())
    }

    /// The weight of an entry for `key` and `value` (see [`Self::free_weight`]).
    pub fn weight(&self, key: &str, value: &Bytes) -> u64 {
        let floor = self.max_bytes().div_ceil(self.config.max_entries.max(1));
        u64::from(entry_weight(key, value, floor))
    }

    /// Whether L1 holds an entry for `key` (live or not yet expired by maintenance).
    pub fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }

    /// A warm-up fill: like [`Self::fill`] (refused when an invalidation overtook the read
    /// that fetched it), counted in `warmed` when inserted, its hit count starting at zero.
    pub async fn warm_fill(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        tags: &[String],
        ticket: &FillTicket,
    ) -> bool {
        let entry = self.tagged_entry(value, ttl, tags);
        let filled = self.fill_entry(key, entry, ticket).await;
        if filled {
            self.counters.warmed.fetch_add(1, Ordering::Relaxed);
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CategoryConfig;

    fn cat(warm_up_keys: u32, max_entries: u64) -> L1Category {
        L1Category::new(
            "h",
            CategoryConfig {
                ttl_secs: 600,
                max_entries,
                max_bytes: Some(max_entries * 1024),
                warm_up_keys,
                ..CategoryConfig::default()
            },
        )
    }

    #[tokio::test]
    async fn hits_are_counted_per_entry_and_taken_most_first() {
        let c = cat(3, 100);
        let v = Bytes::from_static(b"v");
        for k in ["a", "b", "c", "d", "idle"] {
            c.put(k, v.clone(), Duration::from_secs(60)).await;
        }
        for (k, n) in [("a", 5), ("b", 9), ("c", 1), ("d", 7)] {
            for _ in 0..n {
                assert!(c.get(k).await.is_some());
            }
        }
        let top = c.take_hottest(3);
        assert_eq!(
            top,
            vec![
                ("b".to_string(), 9),
                ("d".to_string(), 7),
                ("a".to_string(), 5)
            ]
        );
        // Taken: the counts start again from zero.
        c.get("c").await;
        assert_eq!(c.take_hottest(3), vec![("c".to_string(), 1)]);
        assert!(c.take_hottest(0).is_empty());
        // A fill from L2 counts the read that missed.
        let t = c.ticket("e");
        assert!(c.fill("e", v.clone(), Duration::from_secs(60), &t).await);
        assert_eq!(c.take_hottest(3), vec![("e".to_string(), 1)]);
    }

    #[tokio::test]
    async fn without_warm_up_entries_carry_no_counter() {
        let c = cat(0, 100);
        c.put("a", Bytes::from_static(b"v"), Duration::from_secs(60))
            .await;
        c.get("a").await;
        assert!(c.take_hottest(10).is_empty());
        let e = c.cache.get("a").await.expect("entry");
        assert!(e.heat().is_none());
    }

    #[tokio::test]
    async fn warm_fills_count_respect_tickets_and_see_the_room_left() {
        let c = cat(10, 4);
        let v = Bytes::from_static(b"v");
        let w = c.weight("k", &v);
        assert_eq!(
            w, 1024,
            "a small entry weighs the floor (max_bytes / max_entries)"
        );
        assert_eq!(c.free_weight().await, 4 * 1024);
        let t = c.ticket("k");
        assert!(
            c.warm_fill("k", v.clone(), Duration::from_secs(60), &[], &t)
                .await
        );
        assert!(c.contains("k"));
        assert_eq!(c.free_weight().await, 3 * 1024);
        let t = c.ticket("gone");
        c.remove("gone").await;
        assert!(
            !c.warm_fill("gone", v, Duration::from_secs(60), &[], &t)
                .await
        );
        assert!(!c.contains("gone"));
        assert_eq!(c.counters.warmed.load(Ordering::Relaxed), 1);
        assert_eq!(c.counters.stale_fills_rejected.load(Ordering::Relaxed), 1);
        // Warmed entries start cold.
        assert!(c.take_hottest(10).is_empty());
    }

    #[tokio::test]
    async fn a_warmed_entry_keeps_its_tags_for_tag_invalidations() {
        let c = cat(10, 4);
        let v = Bytes::from_static(b"v");
        let tags = ["user:1".to_string()];
        let t = c.ticket("k");
        assert!(
            c.warm_fill("k", v, Duration::from_secs(60), &tags, &t)
                .await
        );
        assert_eq!(c.invalidate_tag("user:1").await, 1);
        assert!(
            !c.contains("k"),
            "a tag invalidation removes a warmed entry carrying the tag"
        );
    }
}
