//! The write path: `set` and `delete`. A change goes to L2 first (so a peer that drops its
//! L1 entry reads the new value), then into L1 (an untagged value directly, a tagged one and
//! every removal through the category actor), then onto the bus; writes of one key on one
//! node are serialized (L2 and L1 change in the same order).
//! Where Redis can run it, an untagged `set` sends the L2 write and the announcement as one
//! script instead (`bundled_write`): one round trip, then the L1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::HybridCache;
use crate::actors::CategoryMsg;
use crate::error::CacheError;
use crate::l2::L2;
use crate::pattern::Pattern;
use crate::wire::Target;

impl HybridCache {
    /// Writes a value. `ttl` is the L2 TTL; the L1 lifetime is `min(ttl, category ttl)`.
    /// Every other node drops its L1 copy of the key.
    pub async fn set(
        &self,
        category: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.set_inner(category, key, value.into(), ttl, None, Vec::new())
            .await
    }

    /// [`HybridCache::set`] of a value carrying `tags` (at most [`crate::tag::MAX_TAGS`] of
    /// `[A-Za-z0-9_.:-]`, see [`crate::tag`]): [`HybridCache::invalidate_tag`] of any of them
    /// removes it, on every node and in L2. A later write of the key replaces its tags.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = hybrid_cache::HybridCache::builder().build().await.unwrap();
    /// cache.set_with_tags("permissions", "u:7", "rw", None, &["user:7"]).await.unwrap();
    /// cache.set_with_tags("menus", "u:7", "[]", None, &["user:7", "tenant:1"]).await.unwrap();
    /// cache.set("roles", "u:7", "admin", None).await.unwrap();
    /// cache.invalidate_tag("user:7").await.unwrap();
    /// assert_eq!(cache.get("permissions", "u:7").await.unwrap(), None);
    /// assert_eq!(cache.get("menus", "u:7").await.unwrap(), None);
    /// assert!(cache.get("roles", "u:7").await.unwrap().is_some());
    /// # });
    /// ```
    pub async fn set_with_tags<S: AsRef<str>>(
        &self,
        category: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
        tags: &[S],
    ) -> Result<(), CacheError> {
        let tags = crate::tag::check_all(tags)?;
        self.set_inner(category, key, value.into(), ttl, None, tags)
            .await
    }

    /// [`HybridCache::set`] that takes effect no later than `deadline` (wall clock) or not at
    /// all ([`CacheError::DeadlineExceeded`]): a caller that gives up at its deadline knows
    /// the write cannot land afterwards and overwrite a newer value. Without it, a write
    /// held up inside a paused process (waiting for the key's lock, say) applies when the
    /// process resumes, whenever that is. Redis checks the deadline on its own clock, so
    /// clients, nodes and Redis need NTP-synchronised clocks. HTTP: `x-hc-deadline-ms`.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::{Duration, SystemTime};
    /// let cache = hybrid_cache::HybridCache::builder().build().await.unwrap();
    /// let soon = SystemTime::now() + Duration::from_secs(2);
    /// cache.set_before("roles", "admin", "rw", None, soon).await.unwrap();
    /// let past = SystemTime::now() - Duration::from_secs(1);
    /// assert!(cache.set_before("roles", "admin", "ro", None, past).await.is_err());
    /// assert_eq!(cache.get("roles", "admin").await.unwrap().as_deref(), Some(&b"rw"[..]));
    /// # });
    /// ```
    pub async fn set_before(
        &self,
        category: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
        deadline: std::time::SystemTime,
    ) -> Result<(), CacheError> {
        self.set_inner(category, key, value.into(), ttl, Some(deadline), Vec::new())
            .await
    }

    /// [`HybridCache::set_with_tags`] with the deadline of [`HybridCache::set_before`]
    /// (HTTP: `PUT …?tags=a,b` with `x-hc-deadline-ms`).
    pub async fn set_with_tags_before<S: AsRef<str>>(
        &self,
        category: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
        tags: &[S],
        deadline: std::time::SystemTime,
    ) -> Result<(), CacheError> {
        let tags = crate::tag::check_all(tags)?;
        self.set_inner(category, key, value.into(), ttl, Some(deadline), tags)
            .await
    }

    /// Writes `value` carrying `tags` (checked already).
    pub(super) async fn set_inner(
        &self,
        category: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        deadline: Option<std::time::SystemTime>,
        tags: Vec<String>,
    ) -> Result<(), CacheError> {
        let l1 = self.category(category)?.clone();
        self.check_key(key)?;
        Self::check_ttl(ttl)?;
        if value.len() > self.shared.config.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: value.len(),
                max: self.shared.config.max_value_bytes,
            });
        }
        let ttls = l1.write_ttls(ttl);
        let l2_ttl = ttls.l2;
        let _order = self.shared.key_locks.lock(category, key).await;
        if deadline.is_some_and(|d| std::time::SystemTime::now() >= d) {
            // Nothing changed yet, anywhere: refuse rather than apply it after the caller
            // gave up.
            return Err(CacheError::DeadlineExceeded);
        }
        let mark = self.shared.remote.snapshot(category, key);
        if tags.is_empty() {
            if let Some(write) = self.bundle_set(category, key, &value, l2_ttl, deadline) {
                return self
                    .set_bundled(category, key, value, ttls.l1, mark, write)
                    .await;
            }
        }
        let (bytes, tag_list) = (&value, &tags);
        let target = Target::Key(key.to_string());
        let in_l2 = self
            .l2_change("set", category, &target, |l2| async move {
                if tag_list.is_empty() {
                    l2.set(category, key, bytes, l2_ttl, deadline).await
                } else {
                    l2.set_tagged(category, key, bytes, tag_list, l2_ttl, deadline)
                        .await
                }
            })
            .await;
        if !in_l2 && !self.local_writes_ok() {
            // L2 may or may not have it (a timeout): our L1 must not keep an older copy,
            // and the replay will announce the key once Redis answers.
            self.drop_local(category, &Pattern::Exact(key.to_string()))
                .await?;
            return Err(Self::unavailable("write"));
        }
        let put = self
            .put_local(category, key, value, ttls.l1, tags, mark, in_l2)
            .await;
        let announced = self
            .announce(Some(category), target, crate::bus::ChangeKind::Set)
            .await;
        put?;
        announced
    }

    /// The L1 half of a write whose L2 half is done (`in_l2`: applied there). `mark` is the
    /// key's remote mark taken before the L2 write.
    ///
    /// An untagged value goes straight into moka, as a fill does, without the category
    /// actor's hop. Nothing the actor ordered is lost:
    /// - Other writes of the key on this node are ordered by the key's lock, held here.
    /// - A fill that started before this write cannot land after it: the put voids the key's
    ///   fill tickets before it inserts.
    /// - A peer's change of the key marks it before its invalidation is handed to the actor,
    ///   and the mark is checked below, after the insert. Either the check sees the mark and
    ///   drops our copy, or the invalidation reaches the actor after our insert and removes
    ///   it. The actor's mailbox order never mattered here: the L1 messages follow Redis's
    ///   replies, not the order in which Redis applied the changes.
    /// - A flush for lost changes (a full mailbox, a coherence gap) marks every key first:
    ///   the same check. A restarted actor's flush needs no mark of its own: the peers'
    ///   invalidations its predecessor lost were marked when they arrived.
    ///
    /// A tagged value still goes through the actor. A tag invalidation takes the tag's keys
    /// out of the index, then removes them from moka. The actor keeps a tagged put from
    /// landing in between, where its entry would stay in moka without an index entry, out of
    /// reach of the next invalidation of its tag. On an error from the actor the category is
    /// flushed (fail closed) and the error returned.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn put_local(
        &self,
        category: &str,
        key: &str,
        value: Bytes,
        ttl: Duration,
        tags: Vec<String>,
        mark: (u64, u64),
        in_l2: bool,
    ) -> Result<(), CacheError> {
        let put = if tags.is_empty() {
            self.category(category)?.put(key, value, ttl).await;
            Ok(())
        } else {
            self.shared
                .ask(category, |reply| CategoryMsg::Put {
                    key: key.to_string(),
                    value: value.clone(),
                    ttl,
                    tags: tags.clone(),
                    reply,
                })
                .await
        };
        if put.is_err() {
            // Our L1 may still hold the older value: flush it (fail closed). The change is
            // in L2, so it is announced all the same; the writer gets the error.
            self.shared.flush_behind(category);
        } else if in_l2 && self.shared.remote.snapshot(category, key) != mark {
            // A peer's change of this key raced ours (see `RemoteMarks`): L2 decides. A
            // failure queues a flush instead (inside `drop_local`).
            let _ = self
                .drop_local(category, &Pattern::Exact(key.to_string()))
                .await;
        }
        put
    }

    /// Applies one change to L2 when it is usable. A change L2 did not get is remembered for
    /// replay when Redis returns. Returns whether L2 applied it.
    pub(super) async fn l2_change<F, Fut>(
        &self,
        op: &str,
        category: &str,
        target: &Target,
        change: F,
    ) -> bool
    where
        F: FnOnce(Arc<L2>) -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::l2::L2Error>>,
    {
        let applied = match self.shared.l2_writable() {
            Some(l2) => match change(l2.clone()).await {
                Ok(()) => true,
                Err(e) => {
                    self.l2_error(op, &e);
                    false
                }
            },
            None => false,
        };
        if !applied {
            self.shared.l2_missed(category, target);
        }
        applied
    }

    /// Removes entries matching `pattern` from this node's L1 (through the category's actor);
    /// returns how many were removed. When the actor cannot take it, a flush of the category
    /// is queued instead (fail closed) and the error returned.
    pub(super) async fn drop_local(
        &self,
        category: &str,
        pattern: &Pattern,
    ) -> Result<u64, CacheError> {
        let removed = self
            .shared
            .ask(category, |reply| CategoryMsg::Invalidate {
                pattern: pattern.clone(),
                reply: Some(reply),
            })
            .await;
        if removed.is_err() {
            self.shared.flush_behind(category);
        }
        removed
    }

    /// Deletes a key from L2 and from every node's L1. Absent keys are fine.
    pub async fn delete(&self, category: &str, key: &str) -> Result<(), CacheError> {
        self.category(category)?;
        self.check_key(key)?;
        let _order = self.shared.key_locks.lock(category, key).await;
        let target = Target::Key(key.to_string());
        let in_l2 = self
            .l2_change("delete", category, &target, |l2| async move {
                l2.delete(category, key).await
            })
            .await;
        // Even when this fails (a flush is queued then), L2 changed: announce it.
        let dropped = self
            .drop_local(category, &Pattern::Exact(key.to_string()))
            .await;
        if !in_l2 && !self.local_writes_ok() {
            // Redis is down: acknowledged only if every peer acks it (each keeps it for
            // replay into L2, and reads L2 only after that).
            self.announce_to_peers(Some(category), target, crate::bus::ChangeKind::Delete)
                .await
                .map_err(|_| Self::unavailable("delete"))?;
            return dropped.map(|_| ());
        }
        self.announce(Some(category), target, crate::bus::ChangeKind::Delete)
            .await?;
        dropped.map(|_| ())
    }

    /// Typed write (JSON).
    pub async fn set_json<T: Serialize>(
        &self,
        category: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(value).map_err(|e| CacheError::Serde(e.to_string()))?;
        self.set(category, key, bytes, ttl).await
    }
}
