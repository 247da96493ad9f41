//! Refresh-ahead in L1: the age of a hit, and the per-node single flight of background
//! reloads (at most one per key at a time on this node).
//!
//! Why its own file: the hit path of `get` stays untouched; only `get_or_load_with` asks for
//! the age, and the in-flight set is refresh-ahead's business alone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::L1Category;

/// A background reload of one key running on this node; the key is free again when this
/// is dropped (the reload ended, however).
#[derive(Debug)]
pub struct RefreshFlight {
    l1: Arc<L1Category>,
    key: String,
}

impl RefreshFlight {
    /// Claims the key's reload on this node; `None` when one is already running.
    pub fn begin(l1: &Arc<L1Category>, key: &str) -> Option<RefreshFlight> {
        let mut running = l1.refreshing.lock().ok()?;
        if !running.insert(key.to_string()) {
            return None;
        }
        Some(RefreshFlight {
            l1: l1.clone(),
            key: key.to_string(),
        })
    }
}

impl Drop for RefreshFlight {
    fn drop(&mut self) {
        if let Ok(mut running) = self.l1.refreshing.lock() {
            running.remove(&self.key);
        }
    }
}

impl L1Category {
    /// A live value of `key` and how long ago this node cached it, counting a hit. `None`
    /// (nothing counted) for a cached "not found" or nothing; an expired entry is dropped
    /// and counted as [`Self::lookup`] does.
    pub async fn lookup_aged(&self, key: &str) -> Option<(Bytes, Duration)> {
        let e = self.cache.get(key).await?;
        if e.expired() {
            self.counters.expirations.fetch_add(1, Ordering::Relaxed);
            self.cache.invalidate(key).await;
            return None;
        }
        if e.is_negative() {
            return None;
        }
        self.counters.hits.incr();
        let age = e.age();
        Some((e.value, age))
    }

    /// Whether a reload of `key` is running on this node.
    pub fn refreshing(&self, key: &str) -> bool {
        self.refreshing.lock().is_ok_and(|r| r.contains(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CategoryConfig;

    #[tokio::test]
    async fn one_flight_per_key_and_the_age_of_a_hit() {
        let l1 = Arc::new(L1Category::new("r", CategoryConfig::default()));
        let first = RefreshFlight::begin(&l1, "k").expect("free");
        assert!(RefreshFlight::begin(&l1, "k").is_none(), "one per key");
        assert!(RefreshFlight::begin(&l1, "other").is_some());
        assert!(l1.refreshing("k"));
        drop(first);
        assert!(!l1.refreshing("k"));
        assert!(RefreshFlight::begin(&l1, "k").is_some(), "free again");
        assert_eq!(l1.lookup_aged("k").await, None);
        l1.put("k", Bytes::from_static(b"v"), Duration::from_secs(60))
            .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (v, age) = l1.lookup_aged("k").await.expect("hit");
        assert_eq!(&v[..], b"v");
        assert!(age >= Duration::from_millis(30), "{age:?}");
    }
}
