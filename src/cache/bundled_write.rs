//! A `set` in one Redis round trip: the L2 write travels to Redis in the same script as the
//! invalidation that announces it, sent by the bus's publisher in its ordered pipeline (see
//! [`crate::l2::BundledSet`]). Same outcome as the two-step path in `write` (L2, then L1,
//! then the bus), in a different order: L2 and the bus at once, then L1. Every other node
//! drops its copy when it receives the invalidation and reads the new value from L2 (the
//! script wrote it before publishing); this node's L1 takes the value once Redis answered.
//! Used where Redis can run the script (not a Redis Cluster, no `l2_min_replicas`) for
//! untagged values while a bus runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::HybridCache;
use crate::bus::{BundledWrite, ChangeKind};
use crate::error::CacheError;
use crate::l2::{BundleCheck, BundledSet, L2Error, L2};
use crate::pattern::Pattern;
use crate::wire::Target;

/// A write prepared for the bus: the L2 it goes to, the script's arguments, and what its
/// reply is checked against.
pub(super) struct Prepared {
    l2: Arc<L2>,
    set: BundledSet,
    check: BundleCheck,
}

impl HybridCache {
    /// The write of `value` prepared to travel with its invalidation, or `None` where it
    /// takes the two-step path (L2 not writable now, a Redis Cluster, `l2_min_replicas`, no
    /// bus actor).
    pub(super) fn bundle_set(
        &self,
        category: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
        deadline: Option<SystemTime>,
    ) -> Option<Prepared> {
        self.shared.bus.actor()?;
        let l2 = self.shared.l2_writable()?.clone();
        let (set, check) = l2.bundle_set(category, key, value, ttl, deadline)?;
        Some(Prepared { l2, set, check })
    }

    /// The rest of `set` (the key's lock held) for a prepared write. `mark` is the key's
    /// remote mark taken before anything was sent.
    pub(super) async fn set_bundled(
        &self,
        category: &str,
        key: &str,
        value: Bytes,
        l1_ttl: Duration,
        mark: (u64, u64),
        prepared: Prepared,
    ) -> Result<(), CacheError> {
        let Prepared { l2, set, check } = prepared;
        let target = Target::Key(key.to_string());
        let (reply, mut written) = tokio::sync::oneshot::channel();
        let write = BundledWrite { set, reply };
        let announced = self
            .announce_with(Some(category), target.clone(), ChangeKind::Set, Some(write))
            .await;
        // The publisher answers the write before the invalidation's outcome. Nothing here
        // yet means the outcome was not awaited to the end (a timeout of 4× the Redis
        // timeout): the write's own deadline (its start plus one Redis timeout, checked on
        // Redis's clock) has passed by then, so it cannot land later; unknown, so a failure
        // (the key is remembered for replay, as after an L2 timeout).
        let reply = match written.try_recv() {
            Ok(r) => r,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                Err(L2Error::Batch("no reply before the publish bound".into()))
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                Err(L2Error::Batch("the bus did not send the write".into()))
            }
        };
        let in_l2 = match l2.settle_bundled(check, reply).await {
            Ok(()) => true,
            Err(e) => {
                self.l2_error("set", &e);
                self.shared.l2_missed(category, &target);
                false
            }
        };
        if !in_l2 && !self.local_writes_ok() {
            // As on the two-step path: L2 may or may not have it, our L1 must not keep an
            // older copy, and the replay announces the key once Redis answers.
            self.drop_local(category, &Pattern::Exact(key.to_string()))
                .await?;
            return Err(Self::unavailable("write"));
        }
        let put = self
            .put_local(category, key, value, l1_ttl, Vec::new(), mark, in_l2)
            .await;
        put?;
        announced
    }
}
