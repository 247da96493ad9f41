//! Warm-up (`warm_up_keys`): a node that starts or re-subscribes preloads the hottest keys
//! of a category from L2, so a restart does not send every request to the database at once.
//!
//! Two tasks per node with warm-up on (and Redis configured), outside the read path:
//! - a sampler per category: every `warm_up_sample_ms` it takes the L1 entries' hit counts
//!   since the last sample ([`L1Category::take_hottest`]) and adds the top `warm_up_keys` to
//!   the category's ranking in Redis ([`L2::record_hot`]);
//! - the warm-up: after every full L1 flush (the one of each re-subscription, the first at
//!   start, and the coherence flushes: first contact with another node, a gap, an isolation
//!   ended), it waits until the node may read L2 (lease held, replay hold over, L2
//!   available) and no flush came for [`SETTLE`], then reads the `warm_up_keys`
//!   best-ranked keys' values through the normal L2 read, in batches, and fills L1 under
//!   fill tickets: a value an invalidation (or a flush) overtook is refused, like any fill.
//!   It fills only the room the category has left, so it never evicts an entry to load one.
//!
//! Why after every flush and not only at re-subscription: a node flushes its L1 on first
//! contact with each other node (it cannot know what that node sent before), so a fresh
//! node's L1 is flushed again within a heartbeat of its start, and every node's L1 is
//! flushed when another node restarts. The settle period lets the first-contact flushes of
//! a start pass before the warm-up.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::state::Shared;
use crate::l1::{FillTicket, L1Category};
use crate::stats::NodeCounters;

/// Keys read from L2 at once (one round of concurrent reads on the multiplexed connection).
const BATCH: usize = 64;
/// The ranking keeps this many times `warm_up_keys` members, so keys climbing the ranking
/// are not cut before they get there.
const KEEP_FACTOR: usize = 4;
/// How long a warm-up waits for the node to be allowed to read L2 after a re-subscription.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How often it checks meanwhile.
const READY_POLL: Duration = Duration::from_millis(20);
/// How long no flush must come before a warm-up starts: more than two heartbeat intervals
/// (200 ms each), so a fresh node has heard every live node (each first contact flushes).
const SETTLE: Duration = Duration::from_millis(500);

/// Starts the warm-up and the samplers of a node with Redis and a category with warm-up on;
/// nothing otherwise.
pub(super) fn spawn(shared: &Arc<Shared>) {
    if shared.l2.is_none() {
        return;
    }
    let warm: Vec<String> = shared
        .categories
        .iter()
        .filter(|(_, l1)| l1.config().warm_up())
        .map(|(name, _)| name.clone())
        .collect();
    if warm.is_empty() {
        return;
    }
    let node = Arc::downgrade(shared);
    let flushes = shared.warm_up.subscribe();
    let mut tasks = vec![tokio::spawn(warm_up_loop(node.clone(), flushes)).abort_handle()];
    for category in warm {
        tasks.push(tokio::spawn(sample_loop(node.clone(), category)).abort_handle());
    }
    shared.warm_up.keep(tasks);
}

async fn warm_up_loop(node: Weak<Shared>, mut flushes: watch::Receiver<u64>) {
    while flushes.changed().await.is_ok() {
        let round = *flushes.borrow_and_update();
        let Some(shared) = node.upgrade() else {
            return;
        };
        if shared.wait_until_readable(&flushes, round).await {
            shared.warm_up_all().await;
        }
    }
}

async fn sample_loop(node: Weak<Shared>, category: String) {
    let Some(every) = node
        .upgrade()
        .and_then(|s| Some(s.categories.get(&category)?.config().warm_up_sample()))
    else {
        return;
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = node.upgrade() else {
            return;
        };
        shared.record_hot(&category).await;
    }
}

impl Shared {
    /// Waits (bounded) until L2 may be read (lease held, link up, replay hold over, L2
    /// available) and no flush came for [`SETTLE`]. False when a flush newer than `round`
    /// came meanwhile (its own warm-up follows) or the wait ran out.
    async fn wait_until_readable(&self, flushes: &watch::Receiver<u64>, round: u64) -> bool {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        let settled = tokio::time::Instant::now() + SETTLE;
        loop {
            if *flushes.borrow() != round {
                return false;
            }
            let readable = self.lease.held()
                && self.link_up.load(Ordering::Relaxed)
                && !self.l2_hold.load(Ordering::Acquire)
                && self.l2.as_ref().is_some_and(|l2| l2.available());
            if readable && tokio::time::Instant::now() >= settled {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("warm-up skipped: L2 did not become readable within {READY_WAIT:?}");
                return false;
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Warms every category with warm-up on.
    async fn warm_up_all(&self) {
        for (name, l1) in &self.categories {
            if l1.config().warm_up() {
                let warmed = self.warm_up_category(name, l1).await;
                tracing::info!(category = %name, warmed, "warm-up done");
            }
        }
    }

    /// Preloads `category`'s best-ranked keys that L1 lacks, while they fit; returns how
    /// many were filled.
    pub(super) async fn warm_up_category(&self, category: &str, l1: &Arc<L1Category>) -> u64 {
        let Some(l2) = &self.l2 else {
            return 0;
        };
        let cfg = l1.config();
        let want = u64::from(cfg.warm_up_keys).min(cfg.max_entries) as usize;
        let keys = match l2.hottest(category, want).await {
            Ok(keys) => keys,
            Err(e) => {
                self.warm_up_error("hot-key ranking", &e);
                return 0;
            }
        };
        let mut warmed = 0;
        for batch in keys.chunks(BATCH) {
            let reads = batch
                .iter()
                .filter(|k| self.warmable(l1, k))
                .map(|k| self.warm_read(category, l1, k));
            let values = futures::future::join_all(reads).await;
            let mut room = l1.free_weight().await;
            for (key, ticket, value, ttl, tags) in values.into_iter().flatten() {
                let weight = l1.weight(key, &value);
                if weight > room {
                    // Full: warm-up never evicts an entry to load one.
                    return warmed;
                }
                if l1
                    .warm_fill(key, value, l1.fill_ttl(ttl), &tags, &ticket)
                    .await
                {
                    room -= weight;
                    warmed += 1;
                }
            }
        }
        warmed
    }

    /// A ranked key worth reading: a valid key this L1 does not hold yet.
    fn warmable(&self, l1: &L1Category, key: &str) -> bool {
        !key.is_empty() && key.len() <= self.config.max_key_bytes && !l1.contains(key)
    }

    /// One key's value from L2, read like a miss does: only while L2 may be read for the key,
    /// with the fill ticket taken before the read.
    async fn warm_read<'k>(
        &self,
        category: &str,
        l1: &L1Category,
        key: &'k str,
    ) -> Option<(&'k str, FillTicket, Bytes, Option<Duration>, Vec<String>)> {
        let l2 = self.l2_usable_for(category, key)?;
        let ticket = l1.ticket(key);
        match l2.get(category, key).await {
            // With its tags, so that a tag invalidation finds the warmed entry too.
            Ok(found) => found.value.map(|v| (key, ticket, v, found.ttl, found.tags)),
            Err(e) => {
                self.warm_up_error("read", &e);
                None
            }
        }
    }

    /// The sampler's round: adds this node's hottest keys since the last round to
    /// `category`'s ranking in Redis.
    pub(super) async fn record_hot(&self, category: &str) {
        let (Some(l1), Some(l2)) = (self.categories.get(category), &self.l2) else {
            return;
        };
        if !l2.available() {
            // Keep the counts for a round that can send them.
            return;
        }
        let n = l1.config().warm_up_keys as usize;
        let top = l1.take_hottest(n);
        if top.is_empty() {
            return;
        }
        if let Err(e) = l2.record_hot(category, &top, n * KEEP_FACTOR).await {
            self.warm_up_error("hot-key sample", &e);
        }
    }

    fn warm_up_error(&self, what: &str, e: &crate::l2::L2Error) {
        NodeCounters::incr(&self.counters.l2_errors);
        tracing::debug!(what, error = %e, "warm-up: L2 call failed");
    }
}
