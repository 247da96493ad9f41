//! The tag index of one category's L1: tag → the keys whose entry carries it.
//!
//! Kept exact by two rules. A key is added *before* its tagged entry enters the cache, so a
//! tagged entry in the cache is always in the index (an invalidation of the tag finds it).
//! A key is forgotten when its entry leaves the cache (moka's removal listener: eviction,
//! expiry, replacement, explicit removal), but only if the entry that left is the one the
//! index knows: every tagged insert has its own id, so the late notification of a replaced
//! entry cannot remove the newer entry that took its place. The index is therefore bounded
//! by the cache itself: at most [`crate::tag::MAX_TAGS`] pairs per entry.
//!
//! An invalidation takes the tag's whole key set out of the index; an insert racing it is
//! either serialized with it (the category actor writes) or a fill whose ticket the
//! invalidation voids (see [`super::L1Category::fill_entry`]). If the index cannot be
//! trusted (its lock was poisoned by a panic), [`TagIndex::take`] says so and the category
//! is flushed instead (fail closed).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Bytes charged per (tag, key) pair of the index on top of the tag and key text.
const PAIR_OVERHEAD: u64 = 64;

/// The tags one entry carries, with the id of the write that carried them.
#[derive(Debug)]
pub struct EntryTags {
    id: u64,
    names: Box<[String]>,
}

impl EntryTags {
    /// The tags of a new entry (checked already); `None` for none.
    pub fn new(names: &[String]) -> Option<Arc<EntryTags>> {
        if names.is_empty() {
            return None;
        }
        Some(Arc::new(EntryTags {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            names: names.into(),
        }))
    }

    /// The tag names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// What the tags cost an entry of a `key_len`-byte key: their text in the entry, and
    /// one index pair per tag (the tag, a copy of the key, the maps' bookkeeping).
    pub fn weight(&self, key_len: usize) -> u64 {
        self.names
            .iter()
            .map(|t| 2 * t.len() as u64 + key_len as u64 + PAIR_OVERHEAD)
            .sum()
    }
}

/// tag → key → id of the tagged entry of that key.
#[derive(Debug, Default)]
pub struct TagIndex {
    map: Mutex<HashMap<String, HashMap<String, u64>>>,
}

impl TagIndex {
    /// `key` is about to hold an entry carrying `tags` (call before inserting it).
    pub fn add(&self, key: &str, tags: &EntryTags) {
        // Poisoned: `take` reports it, and the category is flushed instead.
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        for t in tags.names() {
            map.entry(t.clone())
                .or_default()
                .insert(key.to_string(), tags.id);
        }
    }

    /// An entry of `key` carrying `tags` left the cache: forget it, unless a newer entry of
    /// the key (another id) is what the index knows now.
    pub fn removed(&self, key: &str, tags: &EntryTags) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        for t in tags.names() {
            if let Some(keys) = map.get_mut(t) {
                if keys.get(key) == Some(&tags.id) {
                    keys.remove(key);
                    if keys.is_empty() {
                        map.remove(t);
                    }
                }
            }
        }
    }

    /// Takes every key carrying `tag` out of the index; `None` when the index cannot be
    /// trusted (the caller flushes).
    pub fn take(&self, tag: &str) -> Option<Vec<String>> {
        let mut map = self.map.lock().ok()?;
        Some(
            map.remove(tag)
                .map(|keys| keys.into_keys().collect())
                .unwrap_or_default(),
        )
    }

    /// Number of (tag, key) pairs held.
    pub fn pairs(&self) -> usize {
        self.map
            .lock()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }
}

impl super::L1Category {
    /// [`Self::entry`] carrying `tags` (checked already; none: an untagged entry).
    pub fn tagged_entry(&self, value: Bytes, ttl: Duration, tags: &[String]) -> Entry {
        self.entry(value, ttl).with_tags(EntryTags::new(tags))
    }

    /// [`Self::put`] of a value carrying `tags` (a local `set_with_tags`).
    pub async fn put_tagged(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) {
        self.bump_key(key);
        let entry = self.tagged_entry(value, ttl, tags);
        self.insert_entry(key, entry).await;
    }

    /// Removes every entry carrying `tag` (and every fail-safe copy of the category: the
    /// copies do not keep their tags). Voids in-flight fills of the whole category first,
    /// like a glob: a fill of a tagged value read before the invalidation is not in the
    /// index yet. An index that cannot be trusted flushes the category (fail closed).
    pub(super) async fn invalidate_tag(&self, tag: &str) -> u64 {
        self.category_gen.fetch_add(1, Ordering::AcqRel);
        let Some(keys) = self.tag_index.take(tag) else {
            tracing::warn!(category = %self.name, "L1 tag index unusable: flushing the category");
            return self.flush().await;
        };
        if let Some(f) = &self.fail_safe {
            f.clear();
        }
        let mut n = 0;
        for k in keys {
            // Whatever the key holds now goes: at worst a newer, untagged value (a miss).
            if self.cache.remove(k.as_str()).await.is_some() {
                n += 1;
            }
        }
        n
    }

    /// (tag, key) pairs in the tag index (tests: the index is bounded by the cache).
    pub fn tag_pairs(&self) -> usize {
        self.tag_index.pairs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Arc<EntryTags> {
        let v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        EntryTags::new(&v).expect("non-empty")
    }

    #[test]
    fn take_returns_the_keys_of_a_tag_once() {
        let ix = TagIndex::default();
        ix.add("k1", &tags(&["u:1", "t:7"]));
        ix.add("k2", &tags(&["u:1"]));
        ix.add("k3", &tags(&["u:2"]));
        let mut got = ix.take("u:1").unwrap();
        got.sort();
        assert_eq!(got, vec!["k1", "k2"]);
        assert!(ix.take("u:1").unwrap().is_empty());
        assert_eq!(ix.take("t:7").unwrap(), vec!["k1"]);
        assert_eq!(ix.take("u:2").unwrap(), vec!["k3"]);
        assert!(EntryTags::new(&[]).is_none());
    }

    #[test]
    fn a_late_removal_of_a_replaced_entry_keeps_the_newer_entry() {
        let ix = TagIndex::default();
        let old = tags(&["u:1"]);
        let new = tags(&["u:1"]);
        ix.add("k", &old);
        ix.add("k", &new);
        // moka notifies the replacement of `old` after `new` is in.
        ix.removed("k", &old);
        assert_eq!(ix.take("u:1").unwrap(), vec!["k"]);
        // The entry that left is the one the index knows: forgotten, the map shrinks.
        ix.add("k", &new);
        ix.removed("k", &new);
        assert_eq!(ix.pairs(), 0);
        assert!(ix.take("u:1").unwrap().is_empty());
    }
}

#[cfg(test)]
mod category_tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::config::CategoryConfig;
    use crate::l1::L1Category;
    use crate::pattern::Pattern;

    fn cat(max_entries: u64) -> L1Category {
        L1Category::new(
            "t",
            CategoryConfig {
                ttl_secs: 600,
                max_entries,
                ..CategoryConfig::default()
            },
        )
    }

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_tag_removes_its_entries_only_and_voids_fills() {
        let c = cat(100);
        let (v, ttl) = (Bytes::from_static(b"v"), Duration::from_secs(60));
        c.put_tagged("perm", v.clone(), ttl, &tags(&["user:1"]))
            .await;
        c.put_tagged("menu", v.clone(), ttl, &tags(&["user:1", "tenant:7"]))
            .await;
        c.put_tagged("other", v.clone(), ttl, &tags(&["user:2"]))
            .await;
        c.put("plain", v.clone(), ttl).await;
        // A fill from L2 of a tagged value keeps its tags.
        let t = c.ticket("filled");
        let e = c.tagged_entry(v.clone(), ttl, &tags(&["user:1"]));
        assert!(c.fill_entry("filled", e, &t).await);
        // A fill that started before the invalidation must not land after it.
        let late = c.ticket("late");
        assert_eq!(c.invalidate(&Pattern::Tag("user:1".into())).await, 3);
        for k in ["perm", "menu", "filled"] {
            assert_eq!(c.get(k).await, None, "{k}");
        }
        for k in ["other", "plain"] {
            assert!(c.get(k).await.is_some(), "{k} survives");
        }
        let e = c.tagged_entry(v.clone(), ttl, &tags(&["user:1"]));
        assert!(!c.fill_entry("late", e, &late).await);
        // A key rewritten without the tag is not found by it any more.
        c.put_tagged("k", v.clone(), ttl, &tags(&["user:3"])).await;
        c.put("k", v.clone(), ttl).await;
        assert_eq!(c.invalidate(&Pattern::Tag("user:3".into())).await, 0);
        assert!(c.get("k").await.is_some());
    }

    #[tokio::test]
    async fn the_index_is_bounded_by_the_cache() {
        let c = cat(20);
        for i in 0..500 {
            let t = tags(&["all", &format!("k{i}")]);
            c.put_tagged(
                &format!("k{i}"),
                Bytes::from_static(b"v"),
                Duration::from_secs(60),
                &t,
            )
            .await;
        }
        let live = c.size().await as usize;
        assert!(live <= 20);
        assert_eq!(c.tag_pairs(), 2 * live, "evicted entries leave the index");
        assert_eq!(c.invalidate(&Pattern::Tag("all".into())).await, live as u64);
        assert_eq!(c.size().await, 0);
        c.size().await;
        assert_eq!(c.tag_pairs(), 0);
    }
}
