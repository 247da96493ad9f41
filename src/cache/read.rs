//! The read path: L1 while the freshness lease is held (no mailbox, no lock), then L2
//! (filling L1), failing closed when neither can answer within the staleness bound. An L2
//! read under the lease uses the category generation this node knows, without Lua, when
//! nothing put it in doubt (see `known_gen`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{HybridCache, Source};
use crate::error::CacheError;
use crate::l1::{L1Category, Lookup};
use crate::stats::NodeCounters;

impl HybridCache {
    /// L1 is served only under the freshness lease (see [`crate::coherence`]); without Redis
    /// the lease is always held. The opt-in `serve_stale_on_outage` also serves it while
    /// Redis is unreachable (but never while isolated).
    #[inline]
    pub(super) fn l1_trusted(&self) -> bool {
        self.shared.lease.held() || self.shared.serving_stale()
    }

    /// Whether a change may be acknowledged without L2 (no Redis, or the opt-in).
    pub(super) fn local_writes_ok(&self) -> bool {
        self.shared.l2.is_none() || self.shared.serving_stale()
    }

    pub(super) fn unavailable(what: &str) -> CacheError {
        CacheError::Unavailable(format!(
            "{what}: redis (L2) is unreachable and this node's L1 lease has lapsed, so it \
             cannot answer within the staleness bound"
        ))
    }

    pub(super) fn category(&self, category: &str) -> Result<&Arc<L1Category>, CacheError> {
        self.shared
            .categories
            .get(category)
            .ok_or_else(|| CacheError::UnknownCategory(category.chars().take(64).collect()))
    }

    pub(super) fn check_key(&self, key: &str) -> Result<(), CacheError> {
        if key.is_empty() {
            return Err(CacheError::InvalidKey("empty key".into()));
        }
        if key.len() > self.shared.config.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                len: key.len(),
                max: self.shared.config.max_key_bytes,
            });
        }
        Ok(())
    }

    pub(super) fn check_ttl(ttl: Option<Duration>) -> Result<(), CacheError> {
        match ttl {
            Some(t) if t.is_zero() => Err(CacheError::InvalidTtl("ttl must be > 0".into())),
            Some(t) if t > Duration::from_secs(10 * 365 * 24 * 3600) => {
                Err(CacheError::InvalidTtl("ttl too large".into()))
            }
            _ => Ok(()),
        }
    }

    /// The value of `key` when this node's L1 answers by itself: a live value under the
    /// freshness lease (counted as a hit). `None` otherwise (a miss, a cached "not found",
    /// no lease) without asking L2 or counting a miss: the caller then calls [`Self::get`]
    /// or [`Self::get_or_load`], which answer as they would have (a cached "not found" is
    /// counted again by that call). For bindings whose hit path should not build a load
    /// (the Python package's `@cached`).
    pub async fn get_l1(&self, category: &str, key: &str) -> Result<Option<Bytes>, CacheError> {
        let l1 = self.category(category)?;
        if !self.l1_trusted() {
            return Ok(None);
        }
        match l1.lookup(key).await {
            Lookup::Value(v) => Ok(Some(v)),
            Lookup::Negative | Lookup::Absent => Ok(None),
        }
    }

    /// Reads a value: L1, then L2 (filling L1). `None` on a miss.
    pub async fn get(&self, category: &str, key: &str) -> Result<Option<Bytes>, CacheError> {
        let l1 = self.category(category)?;
        if self.l1_trusted() {
            match l1.lookup(key).await {
                Lookup::Value(v) => return Ok(Some(v)),
                Lookup::Negative => return Ok(None),
                Lookup::Absent => {}
            }
        }
        Ok(Box::pin(self.get_miss(l1, category, key))
            .await?
            .map(|(v, _)| v))
    }

    /// Like [`HybridCache::get`], also telling which level answered.
    pub async fn get_with_source(
        &self,
        category: &str,
        key: &str,
    ) -> Result<Option<(Bytes, Source)>, CacheError> {
        let l1 = self.category(category)?;
        if self.l1_trusted() {
            match l1.lookup(key).await {
                Lookup::Value(v) => return Ok(Some((v, Source::L1))),
                // A cached "not found" answers as a miss (HTTP 404).
                Lookup::Negative => return Ok(None),
                Lookup::Absent => {}
            }
        }
        // Kept out of this future's state so the hit path stays small.
        Box::pin(self.get_miss(l1, category, key)).await
    }

    async fn get_miss(
        &self,
        l1: &Arc<L1Category>,
        category: &str,
        key: &str,
    ) -> Result<Option<(Bytes, Source)>, CacheError> {
        self.check_key(key)?;
        let mut l2_failed = self.shared.l2.is_some();
        if let Some(l2) = self.shared.l2_usable_for(category, key) {
            let ticket = l1.ticket(key);
            match self.read_l2(l2, category, key).await {
                Ok(found) => {
                    l2_failed = false;
                    if let Some(v) = found.value {
                        l1.counters.hits_l2.fetch_add(1, Ordering::Relaxed);
                        // A tagged value keeps its tags in L1 (a tag invalidation finds it).
                        let entry = l1.tagged_entry(v.clone(), l1.fill_ttl(found.ttl), &found.tags);
                        l1.fill_entry(key, entry, &ticket).await;
                        return Ok(Some((v, Source::L2)));
                    }
                    if found.negative {
                        l1.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                        let entry = l1.negative_entry(l1.fill_ttl(found.ttl));
                        l1.fill_entry(key, entry, &ticket).await;
                        return Ok(None);
                    }
                }
                Err(e) => self.l2_error("get", &e),
            }
        }
        if l2_failed && !self.shared.serving_stale() {
            // Not a miss we can vouch for: L2 (the truth) did not answer.
            return Err(Self::unavailable("read"));
        }
        l1.counters.misses.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// Reads `key` from L2: at the known generation (`GET` + `PTTL`, no Lua) when an L1 hit
    /// of `category` could be served right now (the lease holds, the category is not
    /// strict) and nothing put the generation in doubt since it was learned; with the read
    /// script otherwise (learning the generation it resolves). A fast reply is answered
    /// only if the lease still holds and no doubt arose while it was in flight.
    pub(super) async fn read_l2(
        &self,
        l2: &Arc<crate::l2::L2>,
        category: &str,
        key: &str,
    ) -> Result<crate::l2::L2Value, crate::l2::L2Error> {
        let gens = &self.shared.known_gens;
        let at = gens.snapshot();
        let allowed = self.shared.lease.held() && !self.shared.is_strict(category);
        let bucket = l2.bucket(key);
        if let Some(g) = gens.fast_generation(category, bucket, allowed, at) {
            if let Some(found) = l2.get_at(category, key, g).await? {
                if gens.unchanged(at) && self.shared.lease.held() {
                    NodeCounters::incr(&self.shared.counters.l2_fast_reads);
                    return Ok(found);
                }
            }
        }
        let found = l2.get(category, key).await?;
        gens.learn(category, bucket, found.generation, at);
        Ok(found)
    }

    /// L2 reads answered at a known category generation, without the read script, since
    /// the node started.
    pub fn l2_fast_reads(&self) -> u64 {
        self.shared.counters.l2_fast_reads.load(Ordering::Relaxed)
    }

    pub(super) fn l2_error(&self, op: &str, e: &crate::l2::L2Error) {
        NodeCounters::incr(&self.shared.counters.l2_errors);
        tracing::debug!(op, error = %e, "L2 call failed; continuing with L1");
    }

    /// Typed read (JSON).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        category: &str,
        key: &str,
    ) -> Result<Option<T>, CacheError> {
        match self.get(category, key).await? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| CacheError::Serde(e.to_string())),
            None => Ok(None),
        }
    }
}
