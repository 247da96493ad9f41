//! Refresh-ahead (stale-while-revalidate): [`HybridCache::get_or_load_with`]. A hit on an
//! entry older than `refresh_after` answers the cached value at once and starts one
//! background reload of the key: one per node (an in-flight set in L1) and, with Redis, one
//! in the cluster (a short `SET NX PX` lock). The reload's value replaces the key everywhere
//! like a `set` (L2, this node's L1, an invalidation to every other node).
//!
//! **Never past an invalidation.** The reload takes a fill ticket before it starts and reads
//! what L2 holds for the key (the generation and the value) before it calls the loader. Its
//! value is dropped when the ticket was voided (any write, delete or invalidation of the key
//! reached this node meanwhile), and L2 takes it only if the key still holds what the reload
//! read (a script compares generation and value), so a change made anywhere after the reload
//! started always wins. A refresh only starts while the node holds its freshness lease, as
//! every L1 hit requires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fail_safe::Loaded;
use super::HybridCache;
use crate::error::CacheError;
use crate::l1::{FillTicket, L1Category, RefreshFlight};
use crate::l2::L2;
use crate::pattern::Pattern;
use crate::wire::Target;

/// Per-call settings of [`HybridCache::get_or_load_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The L2 TTL of a loaded value (as `get_or_load`'s `ttl`); `None`: the category TTL.
    pub ttl: Option<Duration>,
    /// Refresh-ahead for this call: a hit on an entry at least this old starts a background
    /// reload. `None`: the category's `refresh_after_secs` (off when unset).
    pub refresh_after: Option<Duration>,
}

impl LoadOptions {
    /// The L2 TTL of a loaded value.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Refresh-ahead age for this call (overrides the category's `refresh_after_secs`).
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.refresh_after = Some(age);
        self
    }
}

/// A background reload of [`HybridCache::get_or_load_opt_with`] that found nothing.
#[derive(Debug, thiserror::Error)]
enum Reload<E: std::error::Error + 'static> {
    #[error(transparent)]
    Loader(E),
    #[error("the loader found nothing")]
    NotFound,
}

/// How one background reload ended.
enum Outcome {
    /// The value replaced the key (L2, L1, peers told).
    Installed,
    /// Another node holds the key's refresh lock.
    Lost,
    /// The loader failed or timed out, or Redis did.
    Failed,
    /// A write or invalidation of the key raced the reload: its value was dropped.
    Discarded,
}

/// Tells the refresh locks of this process's nodes apart (tokens are informative only).
static REFRESH_SEQ: AtomicU64 = AtomicU64::new(0);

impl HybridCache {
    /// [`Self::get_or_load_marked`] with per-call [`LoadOptions`] and refresh-ahead.
    ///
    /// With `refresh_after` (the call's, else the category's `refresh_after_secs`), a hit on
    /// an entry this node cached at least that long ago answers it at once and starts a
    /// background reload with `loader` — at most one per key on this node, and with Redis
    /// one in the cluster (the node that takes the key's lock, held `min(load_timeout_ms,
    /// ttl)`). The reloaded value replaces the key like a `set`, unless a write, delete or
    /// invalidation of the key raced the reload: then it is dropped, never served. Hence the
    /// loader must be `Send + 'static` (the other `get_or_load*` forms take borrowing
    /// loaders and never refresh ahead). A miss loads as `get_or_load_marked` does.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use hybrid_cache::LoadOptions;
    /// let cache = hybrid_cache::HybridCache::builder().build().await.unwrap();
    /// let opts = LoadOptions::default().refresh_after(Duration::from_millis(50));
    /// let v1 = || async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"v1")) };
    /// assert_eq!(&cache.get_or_load_with("menus", "m", opts, v1).await.unwrap().value[..], b"v1");
    /// tokio::time::sleep(Duration::from_millis(60)).await;
    /// let v2 = || async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"v2")) };
    /// // Old enough: answered at once, reloaded in the background.
    /// assert_eq!(&cache.get_or_load_with("menus", "m", opts, v2).await.unwrap().value[..], b"v1");
    /// # });
    /// ```
    pub async fn get_or_load_with<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        opts: LoadOptions,
        loader: F,
    ) -> Result<Loaded, CacheError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let l1 = self.category(category)?.clone();
        if let Some((value, due)) = self.aged_hit(&l1, key, &opts).await {
            if due {
                self.start_refresh(l1, category, key, opts.ttl, value.clone(), loader);
            }
            return Ok(Loaded {
                value,
                stale: false,
            });
        }
        self.get_or_load_marked(category, key, opts.ttl, loader)
            .await
    }

    /// [`Self::get_or_load_with`] whose loader may answer "not found" (`Ok(None)`), cached
    /// as [`Self::get_or_load_opt`] caches it (the category's `negative_ttl_secs`); the
    /// answer is `None` then. A background reload that finds nothing leaves the value in
    /// place (it ends as a failed refresh): a key removed at the source is removed from
    /// the cache by its invalidation or its TTL, as for any write to the source.
    pub async fn get_or_load_opt_with<F, Fut, E>(
        &self,
        category: &str,
        key: &str,
        opts: LoadOptions,
        loader: F,
    ) -> Result<Option<Loaded>, CacheError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Option<Bytes>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let l1 = self.category(category)?.clone();
        if let Some((value, due)) = self.aged_hit(&l1, key, &opts).await {
            if due {
                let found = move || async move {
                    match loader().await {
                        Ok(Some(v)) => Ok(v),
                        Ok(None) => Err(Reload::NotFound),
                        Err(e) => Err(Reload::Loader(e)),
                    }
                };
                self.start_refresh(l1, category, key, opts.ttl, value.clone(), found);
            }
            return Ok(Some(Loaded {
                value,
                stale: false,
            }));
        }
        self.load_opt_marked(category, key, opts.ttl, loader).await
    }

    /// A value hit with refresh-ahead on (the call's or the category's `refresh_after`)
    /// while the lease holds: the value, and whether it is old enough to reload.
    async fn aged_hit(
        &self,
        l1: &L1Category,
        key: &str,
        opts: &LoadOptions,
    ) -> Option<(Bytes, bool)> {
        let after = opts.refresh_after.or_else(|| l1.config().refresh_after())?;
        if !self.l1_trusted() {
            return None;
        }
        let (value, age) = l1.lookup_aged(key).await?;
        Some((value, age >= after))
    }

    /// Spawns the key's reload unless one is running on this node.
    fn start_refresh<F, Fut, E>(
        &self,
        l1: Arc<L1Category>,
        category: &str,
        key: &str,
        ttl: Option<Duration>,
        old: Bytes,
        loader: F,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(flight) = RefreshFlight::begin(&l1, key) else {
            return;
        };
        // Before anything is read: an invalidation from here on voids the reload.
        let ticket = l1.ticket(key);
        l1.counters
            .refreshes_started
            .fetch_add(1, Ordering::Relaxed);
        let (this, category, key) = (self.clone(), category.to_string(), key.to_string());
        tokio::spawn(async move {
            let _flight = flight;
            let job = Refresh {
                l1: &l1,
                category: &category,
                key: &key,
                ttl,
                ticket,
            };
            let outcome = match this.shared.l2.is_some() {
                true => this.refresh_shared(&job, old, loader).await,
                false => this.refresh_local(&job, loader).await,
            };
            let counter = match outcome {
                Outcome::Installed => return,
                Outcome::Lost => &l1.counters.refreshes_lost,
                Outcome::Failed => &l1.counters.refreshes_failed,
                Outcome::Discarded => &l1.counters.refreshes_discarded,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// Without Redis: reload, and fill this node's L1 unless the ticket was voided.
    async fn refresh_local<F, Fut, E>(&self, job: &Refresh<'_>, loader: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        job.l1
            .counters
            .refreshes_won
            .fetch_add(1, Ordering::Relaxed);
        let Some(value) = Self::reload(job.l1, loader).await else {
            return Outcome::Failed;
        };
        let ttl = job.l1.write_ttls(job.ttl).l1;
        match job.l1.fill(job.key, value, ttl, &job.ticket).await {
            true => Outcome::Installed,
            false => Outcome::Discarded,
        }
    }

    /// With Redis: the cluster lock, a snapshot of L2, the loader, then the conditional
    /// replace ([`Self::install`]).
    async fn refresh_shared<F, Fut, E>(&self, job: &Refresh<'_>, old: Bytes, loader: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(l2) = self.shared.l2_usable_for(job.category, job.key).cloned() else {
            return Outcome::Failed;
        };
        let cfg = job.l1.config();
        let hold = cfg.load_timeout().min(cfg.ttl());
        let token = format!(
            "{}:{}",
            self.shared.instance,
            REFRESH_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match l2.refresh_lock(job.category, job.key, &token, hold).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Lost,
            Err(e) => {
                self.l2_error("refresh_lock", &e);
                return Outcome::Failed;
            }
        }
        job.l1
            .counters
            .refreshes_won
            .fetch_add(1, Ordering::Relaxed);
        let found = match l2.get(job.category, job.key).await {
            Ok(found) => found,
            Err(e) => {
                self.l2_error("get", &e);
                return Outcome::Failed;
            }
        };
        let expected = match (found.value, found.negative) {
            (Some(v), _) if v == old => Some(v),
            (None, false) => None,
            // L2 holds another value or a "not found": the key changed; its invalidation
            // is on its way here.
            _ => return Outcome::Discarded,
        };
        let Some(value) = Self::reload(job.l1, loader).await else {
            return Outcome::Failed;
        };
        let outcome = self
            .install(job, &l2, found.generation, expected, value)
            .await;
        if let Outcome::Installed = outcome {
            // The next refresh of the key may start as soon as the new value is due.
            if let Err(e) = l2.refresh_unlock(job.category, job.key, &token).await {
                self.l2_error("refresh_unlock", &e);
            }
        }
        outcome
    }

    /// Writes the reloaded value like a `set` — L2 (only if unchanged since the snapshot),
    /// this node's L1 (only if the ticket holds), then the invalidation to every other node.
    async fn install(
        &self,
        job: &Refresh<'_>,
        l2: &Arc<L2>,
        generation: i64,
        expected: Option<Bytes>,
        value: Bytes,
    ) -> Outcome {
        let _order = self.shared.key_locks.lock(job.category, job.key).await;
        if !job.l1.ticket_valid(&job.ticket) {
            return Outcome::Discarded;
        }
        let ttls = job.l1.write_ttls(job.ttl);
        let target = Target::Key(job.key.to_string());
        let replaced = l2
            .replace(
                job.category,
                job.key,
                &value,
                ttls.l2,
                generation,
                expected.as_deref(),
            )
            .await;
        match replaced {
            Ok(true) => {}
            Ok(false) => return Outcome::Discarded,
            Err(e) => {
                // It may have landed: announce it once Redis answers, and drop our copy.
                self.l2_error("refresh", &e);
                self.shared.l2_missed(job.category, &target);
                let exact = Pattern::Exact(job.key.to_string());
                let _ = self.drop_local(job.category, &exact).await;
                return Outcome::Failed;
            }
        }
        job.l1.fill(job.key, value, ttls.l1, &job.ticket).await;
        let told = self
            .announce(Some(job.category), target, crate::bus::ChangeKind::Set)
            .await;
        if let Err(e) = told {
            tracing::warn!(error = %e, "refresh-ahead: the reloaded value is in L2 but its invalidation was not published");
            return Outcome::Failed;
        }
        Outcome::Installed
    }

    /// The loader, bounded by `load_timeout_ms` and counted as a load; `None` on an error.
    async fn reload<F, Fut, E>(l1: &L1Category, loader: F) -> Option<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        l1.counters.loads.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(l1.config().load_timeout(), loader()).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(category = l1.name(), error = %e, "refresh-ahead: loader failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// One background reload: the key, its write TTL and the ticket taken when it started.
struct Refresh<'a> {
    l1: &'a Arc<L1Category>,
    category: &'a str,
    key: &'a str,
    ttl: Option<Duration>,
    ticket: FillTicket,
}
