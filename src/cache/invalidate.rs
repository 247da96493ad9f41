//! Invalidation (by glob, by exact key, by tag, per category or everywhere) and the announcement of
//! every change to the other nodes: over Redis, or to every peer over QUIC when Redis did
//! not take it.

use super::HybridCache;
use crate::bus::{ChangeKind, PublishError};
use crate::error::CacheError;
use crate::pattern::Pattern;
use crate::wire::Target;

impl HybridCache {
    /// Invalidates `pattern` (exact key, `*` or glob) in `category` (`*` = every category),
    /// in L2 and in every node's L1. Returns the number of local L1 entries removed.
    ///
    /// `pattern` is a glob in the grammar of [`crate::pattern`] (`"*"` = the whole category);
    /// to invalidate one key whatever characters it holds, use
    /// [`HybridCache::invalidate_key`].
    pub async fn invalidate(&self, pattern: &str, category: &str) -> Result<u64, CacheError> {
        let target = match Pattern::glob(pattern)? {
            Pattern::All => Target::Everything,
            // A glob without wildcards spells one key (`get_roles:\[1, 2\]`).
            Pattern::Exact(k) => Target::Key(k),
            Pattern::Glob(g) => Target::Glob(g.as_str().to_string()),
            // Never from a glob; kept for completeness.
            Pattern::Tag(t) => Target::Tag(t),
        };
        self.invalidate_target(category, target).await
    }

    /// Invalidates exactly `key` (compared as bytes, never read as a pattern) in `category`
    /// (`*` = every category), in L2 and in every node's L1. Returns the number of local L1
    /// entries removed.
    pub async fn invalidate_key(&self, category: &str, key: &str) -> Result<u64, CacheError> {
        self.check_key(key)?;
        self.invalidate_target(category, Target::Key(key.to_string()))
            .await
    }

    /// Invalidates every entry carrying `tag` ([`HybridCache::set_with_tags`]), in every
    /// category, in L2 and in every node's L1, with the same guarantee as a key
    /// invalidation. Returns the number of local L1 entries removed.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        crate::tag::check(tag)?;
        self.invalidate_target("*", Target::Tag(tag.to_string()))
            .await
    }

    async fn invalidate_target(&self, category: &str, target: Target) -> Result<u64, CacheError> {
        let parsed = target.to_pattern()?;
        let names: Vec<String> = if category == "*" {
            self.shared.categories.keys().cloned().collect()
        } else {
            self.category(category)?;
            vec![category.to_string()]
        };
        let mut removed = 0;
        let mut all_in_l2 = true;
        let mut local_error = None;
        for name in &names {
            let parsed = &parsed;
            all_in_l2 &= self
                .l2_change("invalidate", name, &target, |l2| async move {
                    l2.invalidate_pattern(name, parsed).await
                })
                .await;
            if !matches!(target, Target::Key(_)) {
                // `*` bumped the generation: no read at the old one from here on.
                self.shared.known_gens.doubt();
            }
            // A failure queues a flush of the category; the change is announced all the same.
            match self.drop_local(name, parsed).await {
                Ok(n) => removed += n,
                Err(e) => local_error = Some(e),
            }
        }
        let scope = (category != "*").then_some(category);
        if !all_in_l2 && !self.local_writes_ok() {
            // Redis is down: acknowledged only if every peer acks it (see `delete`).
            self.announce_to_peers(scope, target, ChangeKind::Invalidate)
                .await
                .map_err(|_| Self::unavailable("invalidation"))?;
        } else {
            self.announce(scope, target, ChangeKind::Invalidate).await?;
        }
        match local_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Tells every other node. The change is acknowledged only if Redis took the publish
    /// (or there is no Redis, or the opt-in accepts local changes): otherwise the caller
    /// gets an error, and the receivers' gap detection and leases cover the lost message.
    pub(super) async fn announce(
        &self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
    ) -> Result<(), CacheError> {
        self.announce_with(category, target, kind, None).await
    }

    /// [`Self::announce`] with the value write it announces, sent in the same script (see
    /// `bundled_write`).
    pub(super) async fn announce_with(
        &self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
        write: Option<crate::bus::BundledWrite>,
    ) -> Result<(), CacheError> {
        let strict = self.touches_strict(category);
        let bus = &self.shared.bus;
        match crate::bus::publish(bus, category, target, kind, strict, false, write).await {
            Ok(()) => Ok(()),
            Err(_) if self.local_writes_ok() => Ok(()),
            Err(e) => Err(CacheError::Unavailable(format!(
                "the change reached L2 but its invalidation was not published: {e}"
            ))),
        }
    }

    /// A removal L2 did not take (Redis down): sent to every peer over QUIC; `Ok` once each
    /// of them acked it (see [`crate::coherence`], the peer lease). Without gossip peers
    /// there is nobody to vouch for it: an error.
    pub(super) async fn announce_to_peers(
        &self,
        category: Option<&str>,
        target: Target,
        kind: ChangeKind,
    ) -> Result<(), PublishError> {
        if self.shared.gossip().is_none() {
            return Err(PublishError::NotAcknowledged);
        }
        let strict = self.touches_strict(category);
        crate::bus::publish(&self.shared.bus, category, target, kind, strict, true, None).await
    }

    /// Whether a change of `category` (`None` = every category) is strict: a `*`-category
    /// change is strict if it touches a strict category.
    fn touches_strict(&self, category: Option<&str>) -> bool {
        match category {
            Some(c) => self.shared.is_strict(c),
            None => self
                .shared
                .categories
                .keys()
                .any(|c| self.shared.is_strict(c)),
        }
    }
}
