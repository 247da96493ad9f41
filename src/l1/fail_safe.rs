//! Fail-safe copies: the last value L1 held for each key of a category with
//! `fail_safe_max_age_secs`, kept past the entry's expiry for at most that age, so that
//! `get_or_load` can answer it (marked stale) when the loader fails.
//!
//! Why its own store: L1 entries must leave at their TTL (the bound and the documented TTL
//! hold), while the copy must outlive them; and every removal of L1 (a write, a delete, an
//! invalidation, a coherence flush) removes the copy too, so a value an invalidation
//! rejected is never answered. The copies share the entries' buffers (`Bytes` handles).

use std::time::Duration;

use bytes::Bytes;

use super::{Entry, L1Category};
use crate::pattern::Pattern;

/// The copies of one category, bounded by count and age.
pub struct FailSafe {
    copies: moka::sync::Cache<String, Bytes>,
}

impl FailSafe {
    /// Copies live `max_age` after they were kept; they weigh what L1 entries weigh (key +
    /// value + [`super::ENTRY_OVERHEAD`], at least `max_bytes / max_entries`) and are bounded
    /// by the category's byte budget `max_bytes`, so at most `max_entries` of them.
    pub fn new(max_age: Duration, max_bytes: u64, max_entries: u64) -> FailSafe {
        let floor = max_bytes.div_ceil(max_entries.max(1));
        FailSafe {
            copies: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |k: &String, v: &Bytes| super::entry_weight(k, v, floor))
                .time_to_live(max_age)
                .build(),
        }
    }

    /// Keeps `value` as the key's copy (its age starts now).
    pub fn keep(&self, key: &str, value: &Bytes) {
        self.copies.insert(key.to_string(), value.clone());
    }

    /// The key's copy, if one is younger than the maximum age.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.copies.get(key)
    }

    /// Removes the key's copy.
    pub fn remove(&self, key: &str) {
        self.copies.invalidate(key);
    }

    /// Removes every copy whose key matches `pattern`.
    pub fn remove_matching(&self, pattern: &Pattern) {
        match pattern {
            Pattern::Exact(k) => self.remove(k),
            // Copies do not keep their tags: a tag removes them all (fail closed).
            Pattern::All | Pattern::Tag(_) => self.clear(),
            Pattern::Glob(_) => {
                let keys: Vec<_> = self
                    .copies
                    .iter()
                    .filter(|(k, _)| pattern.matches(k))
                    .map(|(k, _)| k)
                    .collect();
                for k in keys {
                    self.copies.invalidate(k.as_str());
                }
            }
        }
    }

    /// Removes every copy.
    pub fn clear(&self) {
        self.copies.invalidate_all();
    }
}

impl L1Category {
    /// A value entering L1 becomes the key's fail-safe copy; a cached "not found" drops it.
    pub(super) fn keep_copy(&self, key: &str, entry: &Entry) {
        if let Some(f) = &self.fail_safe {
            if entry.is_negative() {
                f.remove(key);
            } else {
                f.keep(key, &entry.value);
            }
        }
    }

    pub(super) fn forget_copy(&self, key: &str) {
        if let Some(f) = &self.fail_safe {
            f.remove(key);
        }
    }

    /// The key's fail-safe copy: the last value L1 held for it, cached at most
    /// `fail_safe_max_age_secs` ago and removed by no write or invalidation since.
    pub fn fail_safe_copy(&self, key: &str) -> Option<Bytes> {
        self.fail_safe.as_ref()?.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_age_out_and_follow_removals() {
        let f = FailSafe::new(Duration::from_millis(80), 1 << 20, 100);
        for k in ["menu:1", "menu:2", "role:1"] {
            f.keep(k, &Bytes::from_static(b"v"));
        }
        assert_eq!(f.get("menu:1").as_deref(), Some(&b"v"[..]));
        f.remove_matching(&Pattern::glob("menu:*").unwrap());
        assert_eq!(f.get("menu:1"), None);
        assert_eq!(f.get("menu:2"), None);
        assert!(f.get("role:1").is_some());
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(f.get("role:1"), None, "older than the maximum age");
        // Bounded by the byte budget: 64 KiB for 100 KiB values keeps none of them.
        let f = FailSafe::new(Duration::from_secs(60), 64 * 1024, 100);
        for i in 0..20 {
            f.keep(&format!("k{i}"), &Bytes::from(vec![0u8; 100 * 1024]));
        }
        f.copies.run_pending_tasks();
        assert!(f.copies.weighted_size() <= 64 * 1024);
    }
}
