//! `get_or_load`: the cached value, or the caller's loader run once per node for concurrent
//! misses of a key (moka coalesces them), its result cached in L1 and L2 unless an
//! invalidation raced the load. Without the lease it reads the truth and caches nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::HybridCache;
use crate::error::CacheError;
use crate::l1::{Entry, FillTicket, L1Category};

#[derive(Debug, thiserror::Error)]
enum LoadFail<E: std::error::Error + 'static> {
    #[error(transparent)]
    Loader(E),
    /// The value was loaded, but an invalidation raced with the load: return it to this
    /// caller, never cache it.
    #[error("loaded value raced an invalidation")]
    Stale(Bytes),
}

impl HybridCache {
    /// Returns the cached value or runs `loader` once per node for concurrent misses of the
    /// key (moka coalesces them), caching its result in L1 and L2.
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
        let l1 = self.category(category)?.clone();
        if !self.l1_trusted() {
            return self.load_without_lease(&l1, category, key, loader).await;
        }
        if let Some(v) = l1.get(key).await {
            return Ok(v);
        }
        self.check_key(key)?;
        Self::check_ttl(ttl)?;
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        let ticket_cell = OnceLock::new();
        let init = async {
            let ticket = *ticket_cell.get_or_init(|| l1.ticket(key));
            self.load_entry(&l1, category, key, ttl, ticket, loader)
                .await
        };
        let loaded = l1.try_get_with(key, init).await;
        Self::finish_load(&l1, key, ticket_cell.get(), loaded).await
    }

    /// No lease: L1 may be stale. Read the truth (L2, else the loader) and cache nothing in
    /// L1 (moka's coalescing would hand out the L1 entry).
    async fn load_without_lease<F, Fut, E>(
        &self,
        l1: &L1Category,
        category: &str,
        key: &str,
        loader: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.check_key(key)?;
        if let Some(l2) = self.shared.l2_usable_for(category, key) {
            match l2.get(category, key).await {
                Ok(found) => {
                    if let Some(v) = found.value {
                        l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                        return Ok(v);
                    }
                }
                Err(e) => self.l2_error("get", &e),
            }
        }
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        l1.counters.loads.fetch_add(1, Ordering::Relaxed);
        loader().await.map_err(|e| CacheError::Loader(Arc::new(e)))
    }

    /// The coalesced load of one key: L2, else the loader (filling L2 unless another node
    /// changed the key since). `Stale` when an invalidation raced the load.
    async fn load_entry<F, Fut, E>(
        &self,
        l1: &L1Category,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        ticket: FillTicket,
        loader: F,
    ) -> Result<Entry, LoadFail<E>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut generation = None;
        if let Some(l2) = self.shared.l2_usable_for(category, key) {
            match l2.get(category, key).await {
                Ok(found) => {
                    generation = Some(found.generation);
                    if let Some(v) = found.value {
                        l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                        if !l1.ticket_valid(&ticket) {
                            return Err(LoadFail::Stale(v));
                        }
                        return Ok(l1.entry(v, l1.entry_ttl(found.ttl)));
                    }
                }
                Err(e) => self.l2_error("get", &e),
            }
        }
        l1.counters.loads.fetch_add(1, Ordering::Relaxed);
        let value = loader().await.map_err(LoadFail::Loader)?;
        let l2_ttl = ttl.unwrap_or(l1.config().ttl());
        if let (Some(l2), Some(g)) = (self.shared.l2_usable_for(category, key), generation) {
            if l1.ticket_valid(&ticket) {
                match l2.fill(category, key, &value, l2_ttl, g).await {
                    Ok(true) => {}
                    // L2 refused: since the load started, another node wrote the key
                    // (a value or a tombstone) or invalidated the category. Its
                    // invalidation may still be on its way to us; the loaded value is
                    // older than what L2 holds, so it must not enter our L1 either.
                    Ok(false) => return Err(LoadFail::Stale(value)),
                    Err(e) => self.l2_error("fill", &e),
                }
            }
        }
        if !l1.ticket_valid(&ticket) {
            return Err(LoadFail::Stale(value));
        }
        Ok(l1.entry(value, l1.entry_ttl(ttl)))
    }

    /// The outcome of moka's coalesced load, for this caller.
    async fn finish_load<E>(
        l1: &L1Category,
        key: &str,
        ticket: Option<&FillTicket>,
        loaded: Result<Bytes, Arc<LoadFail<E>>>,
    ) -> Result<Bytes, CacheError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match loaded {
            Ok(v) => {
                // An invalidation may have landed between the last check and moka's insert.
                if let Some(t) = ticket {
                    if !l1.ticket_valid(t) {
                        l1.remove_raw(key).await;
                    }
                }
                Ok(v)
            }
            Err(e) => match &*e {
                LoadFail::Stale(v) => {
                    l1.counters
                        .stale_fills_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    Ok(v.clone())
                }
                // Shared by every caller whose miss the failed load coalesced.
                LoadFail::Loader(_) => Err(CacheError::Loader(e)),
            },
        }
    }

    /// Typed `get_or_load` (JSON), the Rust form of the original `@cached(category, ttl)`.
    pub async fn get_or_load_json<T, F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let bytes = self
            .get_or_load(category, key, ttl, || async move {
                let v = loader().await.map_err(JsonLoadError::Loader)?;
                serde_json::to_vec(&v)
                    .map(Bytes::from)
                    .map_err(|e| JsonLoadError::Serde(e.to_string()))
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Serde(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
enum JsonLoadError<E: std::error::Error> {
    #[error("{0}")]
    Loader(E),
    #[error("serialization failed: {0}")]
    Serde(String),
}
