//! `get_or_load`: the cached value, or the caller's loader run once per node for concurrent
//! misses of a key (moka coalesces them), its result cached in L1 and L2 unless an
//! invalidation raced the load. Without the lease it reads the truth and caches nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::fail_safe::LoadTimedOut;
use super::HybridCache;
use crate::error::CacheError;
use crate::l1::{Entry, FillTicket, L1Category, Lookup};

#[derive(Debug, thiserror::Error)]
enum LoadFail<E: std::error::Error + 'static> {
    /// The loader failed (the load started with this ticket).
    #[error("{0}")]
    Loader(#[source] E, FillTicket),
    /// The value (or "not found", `None`) was loaded, but an invalidation raced the load
    /// started with this ticket: return it to the caller that started the load (and to a
    /// joiner that started before any invalidation of the key), never cache it.
    #[error("loaded value raced an invalidation")]
    Stale(Option<Bytes>, FillTicket),
    /// The loader found nothing and the category does not cache "not found".
    #[error("not found (negative caching is off)")]
    NotCached(FillTicket),
    /// Never happens: a caller's loader runs in at most one load.
    #[error("the loader was already used")]
    Spent,
    /// The loader did not answer within the category's `load_timeout_ms` (the load started
    /// with this ticket).
    #[error("load timed out")]
    TimedOut(Duration, FillTicket),
}

/// How many coalesced loads a caller joins before it loads alone: a joined load that an
/// invalidation overtook before the caller started is not the caller's value.
const SHARED_LOAD_ROUNDS: usize = 3;

/// A loader's answer as an L1 entry's answer: `None` for a cached "not found".
fn answer(e: Entry) -> Option<Bytes> {
    (!e.is_negative()).then_some(e.value)
}

impl HybridCache {
    /// [`Self::get_or_load`] whose loader may answer "not found" (`Ok(None)`). With the
    /// category's `negative_ttl_secs` set, that answer is cached (L1 and L2, as a marker no
    /// value can be mistaken for) for that long: later calls, `get` and HTTP `GET` answer
    /// it as a miss without calling the loader. Writes, deletes and invalidations remove
    /// it like any entry. Without the setting, "not found" is not cached. Fail-safe and the
    /// load timeouts apply as in [`Self::get_or_load`].
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use hybrid_cache::config::CategoryConfig;
    /// let users = CategoryConfig { ttl_secs: 600, max_entries: 100,
    ///     negative_ttl_secs: Some(30), ..CategoryConfig::default() };
    /// let mut config = hybrid_cache::config::Config::default();
    /// config.categories.insert("users".into(), users);
    /// let cache = hybrid_cache::HybridCache::builder().config(config).build().await.unwrap();
    /// let lookup = || async { Ok::<_, std::io::Error>(None) }; // the database has no user 9
    /// assert_eq!(cache.get_or_load_opt("users", "user:9", None, lookup).await.unwrap(), None);
    /// // Cached: the loader is not called again within 30 s.
    /// let never = || async { panic!("not called") as Result<Option<bytes::Bytes>, std::io::Error> };
    /// assert_eq!(cache.get_or_load_opt("users", "user:9", None, never).await.unwrap(), None);
    /// cache.set("users", "user:9", "ann", None).await.unwrap(); // a write replaces it
    /// assert_eq!(cache.get("users", "user:9").await.unwrap().as_deref(), Some(&b"ann"[..]));
    /// # });
    /// ```
    pub async fn get_or_load_opt<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<Bytes>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Bytes>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let loaded = self.load_opt_marked(category, key, ttl, loader).await?;
        Ok(loaded.map(|l| l.value))
    }

    /// The cached answer or a load (coalesced per node), without fail-safe.
    pub(super) async fn load_fresh<F, Fut, E>(
        &self,
        l1: Arc<L1Category>,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<Bytes>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Bytes>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        if !self.l1_trusted() {
            return self.load_without_lease(&l1, category, key, loader).await;
        }
        match l1.lookup(key).await {
            Lookup::Value(v) => return Ok(Some(v)),
            Lookup::Negative => return Ok(None),
            Lookup::Absent => {}
        }
        self.check_key(key)?;
        Self::check_ttl(ttl)?;
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        let mut loader = Some(loader);
        for _ in 0..SHARED_LOAD_ROUNDS {
            let ticket = l1.ticket(key);
            let mut ran = false;
            let (slot, ran_ref) = (&mut loader, &mut ran);
            let init = async {
                *ran_ref = true;
                match slot.take() {
                    Some(f) => self.load_entry(&l1, category, key, ttl, ticket, f).await,
                    None => Err(LoadFail::Spent),
                }
            };
            let loaded = l1.try_get_with(key, init).await;
            if ran {
                return Self::finish_load(&l1, key, &ticket, loaded).await;
            }
            if let Some(answer) = Self::joined(&ticket, loaded) {
                return answer;
            }
        }
        // Every load this caller joined was overtaken by an invalidation: load alone.
        match loader.take() {
            Some(f) => self.load_without_lease(&l1, category, key, f).await,
            None => Err(Self::spent()),
        }
    }

    pub(super) fn spent() -> CacheError {
        CacheError::Unavailable("get_or_load: the loader was already used".into())
    }

    /// The outcome of a coalesced load for a caller that joined it with ticket `mine`;
    /// `None` when the load was overtaken by an invalidation before this caller started.
    fn joined<E>(
        mine: &FillTicket,
        loaded: Result<Entry, Arc<LoadFail<E>>>,
    ) -> Option<Result<Option<Bytes>, CacheError>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match loaded {
            // The load's ticket held to its end, and this caller joined before that end.
            Ok(e) => Some(Ok(answer(e))),
            Err(e) => match &*e {
                // No invalidation between the load's start and ours: as good as our own.
                LoadFail::Stale(v, theirs) if theirs == mine => Some(Ok(v.clone())),
                LoadFail::NotCached(theirs) if theirs == mine => Some(Ok(None)),
                LoadFail::Loader(_, theirs) if theirs == mine => Some(Err(CacheError::Loader(e))),
                LoadFail::TimedOut(t, theirs) if theirs == mine => {
                    Some(Err(LoadTimedOut::error(*t)))
                }
                // The load started before an invalidation that this caller saw (a write
                // acknowledged before its call, say): its value, its "not found" and its
                // failure all describe an older state; load again.
                LoadFail::Stale(..)
                | LoadFail::NotCached(_)
                | LoadFail::Loader(..)
                | LoadFail::TimedOut(..) => None,
                LoadFail::Spent => Some(Err(Self::spent())),
            },
        }
    }

    /// No lease: L1 may be stale. Read the truth (L2, else the loader) and cache nothing in
    /// L1 (moka's coalescing would hand out the L1 entry).
    async fn load_without_lease<F, Fut, E>(
        &self,
        l1: &L1Category,
        category: &str,
        key: &str,
        loader: F,
    ) -> Result<Option<Bytes>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Bytes>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.check_key(key)?;
        if let Some(l2) = self.shared.l2_usable_for(category, key) {
            match l2.get(category, key).await {
                Ok(found) => {
                    if let Some(v) = found.value {
                        l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                        return Ok(Some(v));
                    }
                    if found.negative {
                        l1.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                }
                Err(e) => self.l2_error("get", &e),
            }
        }
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        l1.counters.loads.fetch_add(1, Ordering::Relaxed);
        let limit = l1.config().load_timeout();
        match tokio::time::timeout(limit, loader()).await {
            Ok(r) => r.map_err(|e| CacheError::Loader(Arc::new(e))),
            Err(_) => Err(LoadTimedOut::error(limit)),
        }
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
        Fut: std::future::Future<Output = Result<Option<Bytes>, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        // What the fill is conditional on, read before the loader runs (none: no L2 fill).
        let mut guard = None;
        if let Some(l2) = self.shared.l2_usable_for(category, key) {
            match self.read_l2(l2, category, key).await {
                Ok(found) if found.value.is_none() && !found.negative => {
                    // A miss: the loader runs, its fill is conditional on what L2 holds now.
                    match l2.fill_guard(category, key, &found).await {
                        Ok(g) => guard = Some(g),
                        Err(e) => self.l2_error("get", &e),
                    }
                }
                Ok(found) => {
                    if let Some(entry) = Self::l2_entry(l1, found) {
                        if !l1.ticket_valid(&ticket) {
                            return Err(LoadFail::Stale(answer(entry), ticket));
                        }
                        return Ok(entry);
                    }
                }
                Err(e) => self.l2_error("get", &e),
            }
        }
        l1.counters.loads.fetch_add(1, Ordering::Relaxed);
        let limit = l1.config().load_timeout();
        let loaded = match tokio::time::timeout(limit, loader()).await {
            Ok(r) => r.map_err(|e| LoadFail::Loader(e, ticket))?,
            Err(_) => return Err(LoadFail::TimedOut(limit, ticket)),
        };
        let Some(value) = loaded else {
            return self
                .store_not_found(l1, category, key, ttl, ticket, guard)
                .await;
        };
        let ttls = l1.write_ttls(ttl);
        if let (Some(l2), Some(g)) = (self.shared.l2_usable_for(category, key), &guard) {
            if l1.ticket_valid(&ticket) {
                match l2.fill(category, key, &value, ttls.l2, g).await {
                    Ok(true) => {}
                    // L2 refused: since the load started, another node wrote the key
                    // (a value or another tombstone) or invalidated the category (all of
                    // it, or by a glob). Its
                    // invalidation may still be on its way to us; the loaded value is
                    // older than what L2 holds, so it must not enter our L1 either.
                    Ok(false) => return Err(LoadFail::Stale(Some(value), ticket)),
                    Err(e) => self.l2_error("fill", &e),
                }
            }
        }
        if !l1.ticket_valid(&ticket) {
            return Err(LoadFail::Stale(Some(value), ticket));
        }
        Ok(l1.entry(value, ttls.l1))
    }

    /// The L1 entry for what L2 holds (a value or a cached "not found"), counted.
    fn l2_entry(l1: &L1Category, found: crate::l2::L2Value) -> Option<Entry> {
        if let Some(v) = found.value {
            l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
            return Some(l1.tagged_entry(v, l1.fill_ttl(found.ttl), &found.tags));
        }
        if found.negative {
            l1.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Some(l1.negative_entry(l1.fill_ttl(found.ttl)));
        }
        None
    }

    /// The loader found nothing: with `negative_ttl_secs`, cache that (L2 conditionally, like
    /// a value fill, then L1), for at most the per-call `ttl`.
    async fn store_not_found<E>(
        &self,
        l1: &L1Category,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        ticket: FillTicket,
        guard: Option<crate::l2::FillGuard>,
    ) -> Result<Entry, LoadFail<E>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(negative) = l1.config().negative_ttl() else {
            return Err(LoadFail::NotCached(ticket));
        };
        let l2_ttl = ttl.map_or(negative, |t| t.min(negative));
        if let (Some(l2), Some(g)) = (self.shared.l2_usable_for(category, key), &guard) {
            if l1.ticket_valid(&ticket) {
                match l2.fill_negative(category, key, l2_ttl, g).await {
                    Ok(true) => {}
                    // Another node wrote or invalidated the key since the load started.
                    Ok(false) => return Err(LoadFail::Stale(None, ticket)),
                    Err(e) => self.l2_error("fill", &e),
                }
            }
        }
        if !l1.ticket_valid(&ticket) {
            return Err(LoadFail::Stale(None, ticket));
        }
        Ok(l1.negative_entry(l1.entry_ttl(Some(l2_ttl))))
    }

    /// The outcome of moka's coalesced load, for this caller.
    async fn finish_load<E>(
        l1: &L1Category,
        key: &str,
        ticket: &FillTicket,
        loaded: Result<Entry, Arc<LoadFail<E>>>,
    ) -> Result<Option<Bytes>, CacheError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match loaded {
            Ok(e) => {
                // An invalidation may have landed between the last check and moka's insert.
                if !l1.ticket_valid(ticket) {
                    l1.remove_raw(key).await;
                }
                Ok(answer(e))
            }
            Err(e) => match &*e {
                LoadFail::Stale(v, _) => {
                    l1.counters
                        .stale_fills_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    Ok(v.clone())
                }
                LoadFail::NotCached(_) => Ok(None),
                // Shared by every caller whose miss the failed load coalesced.
                LoadFail::Loader(..) => Err(CacheError::Loader(e)),
                LoadFail::TimedOut(t, _) => Err(LoadTimedOut::error(*t)),
                LoadFail::Spent => Err(Self::spent()),
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
