//! `get_or_load` with fail-safe and load timeouts: the loader's answer, or — when it fails,
//! passes the hard timeout (`load_timeout_ms`) or the soft one (`load_soft_timeout_ms`) and
//! the category has `fail_safe_max_age_secs` — the last value this node held for the key,
//! marked stale ([`Loaded::stale`]).
//!
//! **Never a rejected value.** The copy is kept by L1 ([`crate::l1::FailSafe`]) and removed
//! by everything that removes an L1 entry: a write or delete on any node (through the
//! invalidation, within B), an invalidation, a coherence flush. It is served only while the
//! node holds its freshness lease (with the lease lapsed, invalidations may have been
//! missed), so a stale answer is at most as old as the guarantee already allows plus the
//! copy's age, never a value a write or invalidation acknowledged before t − B replaced.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::HybridCache;
use crate::error::CacheError;
use crate::l1::L1Category;

/// What `get_or_load_marked` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The value.
    pub value: Bytes,
    /// `true` when the loader failed or was too slow and this is the fail-safe copy: the
    /// last value this node held for the key (`X-Cache: STALE` over HTTP).
    pub stale: bool,
}

/// The loader did not answer within the category's `load_timeout_ms` (in
/// [`CacheError::Loader`]).
#[derive(Debug, thiserror::Error)]
#[error("the loader did not answer within {0:?} (load_timeout_ms)")]
pub struct LoadTimedOut(pub Duration);

impl LoadTimedOut {
    pub(super) fn error(limit: Duration) -> CacheError {
        CacheError::Loader(Arc::new(LoadTimedOut(limit)))
    }
}

impl HybridCache {
    /// Returns the cached value or runs `loader` once per node for concurrent misses of the
    /// key (moka coalesces them), caching its result in L1 and L2.
    ///
    /// Every caller takes its own fill ticket before it joins a pending load; a joiner whose
    /// ticket differs from the load's (an invalidation landed between the load's start and
    /// the joiner's) does not take a value that invalidation rejected: it loads again.
    ///
    /// Every loader call is bounded by the category's `load_timeout_ms` (default 30 s). With
    /// `fail_safe_max_age_secs`, a failed or timed-out load answers the fail-safe value
    /// instead of the error; [`Self::get_or_load_marked`] tells which it was.
    ///
    /// A key that holds a cached "not found" (see [`Self::get_or_load_opt`]) is loaded by
    /// `loader` without caching its result (the "not found" stays until it expires or a
    /// write or invalidation removes it).
    pub async fn get_or_load<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        Ok(self
            .get_or_load_marked(category, key, ttl, loader)
            .await?
            .value)
    }

    /// [`Self::get_or_load`] that says whether the answer is the fail-safe value
    /// ([`Loaded::stale`]): the loader failed, timed out, or passed `load_soft_timeout_ms`
    /// (the load is then abandoned), and the category keeps the last value for
    /// `fail_safe_max_age_secs`. A value a write or invalidation removed is never answered:
    /// the error is.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use hybrid_cache::config::{CategoryConfig, Config};
    /// let prices = CategoryConfig { ttl_secs: 1, max_entries: 100,
    ///     fail_safe_max_age_secs: Some(3600), ..CategoryConfig::default() };
    /// let mut config = Config::default();
    /// config.categories.insert("prices".into(), prices);
    /// let cache = hybrid_cache::HybridCache::builder().config(config).build().await.unwrap();
    /// let ok = || async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"9.99")) };
    /// assert!(!cache.get_or_load_marked("prices", "sku:1", None, ok).await.unwrap().stale);
    /// tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // L1 entry expired
    /// let down = || async { Err::<bytes::Bytes, _>(std::io::Error::other("db down")) };
    /// let got = cache.get_or_load_marked("prices", "sku:1", None, down).await.unwrap();
    /// assert!(got.stale);
    /// assert_eq!(&got.value[..], b"9.99");
    /// # });
    /// ```
    pub async fn get_or_load_marked<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Loaded, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let slot = std::sync::Mutex::new(Some(loader));
        let take = || slot.lock().ok().and_then(|mut s| s.take());
        let found = self
            .load_opt_marked(category, key, ttl, || {
                let f = take();
                async move {
                    match f {
                        Some(f) => f().await.map(Some),
                        None => Ok(None),
                    }
                }
            })
            .await?;
        if let Some(loaded) = found {
            return Ok(loaded);
        }
        // A cached "not found": this loader always finds; ask it, cache nothing.
        let f = take().ok_or_else(Self::spent)?;
        let l1 = self.category(category)?;
        l1.counters.loads.fetch_add(1, Ordering::Relaxed);
        let limit = l1.config().load_timeout();
        match tokio::time::timeout(limit, f()).await {
            Ok(r) => r
                .map(|value| Loaded {
                    value,
                    stale: false,
                })
                .map_err(|e| CacheError::Loader(Arc::new(e))),
            Err(_) => Err(LoadTimedOut::error(limit)),
        }
    }

    /// The cached answer or a load; on a loader failure, timeout or soft timeout, the
    /// fail-safe value when there is one.
    pub(super) async fn load_opt_marked<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<Loaded>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Bytes>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let l1 = self.category(category)?.clone();
        let load = self.load_fresh(l1.clone(), category, key, ttl, loader);
        let fresh = match l1.config().load_soft_timeout() {
            Some(soft) if l1.config().fail_safe_max_age().is_some() => {
                let mut load = std::pin::pin!(load);
                match tokio::time::timeout(soft, &mut load).await {
                    Ok(r) => r,
                    Err(_) => match self.fail_safe_answer(&l1, key) {
                        // The load is abandoned (dropped); the next call loads again.
                        Some(stale) => return Ok(Some(stale)),
                        None => load.await,
                    },
                }
            }
            _ => load.await,
        };
        match fresh {
            Ok(v) => Ok(v.map(|value| Loaded {
                value,
                stale: false,
            })),
            Err(e @ CacheError::Loader(_)) => self.fail_safe_answer(&l1, key).map(Some).ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// The key's fail-safe copy, counted, while the node holds its freshness lease.
    fn fail_safe_answer(&self, l1: &L1Category, key: &str) -> Option<Loaded> {
        if !self.l1_trusted() {
            return None;
        }
        let value = l1.fail_safe_copy(key)?;
        l1.counters.fail_safe_hits.fetch_add(1, Ordering::Relaxed);
        Some(Loaded { value, stale: true })
    }
}
