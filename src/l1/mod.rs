//! One category's L1: a bounded moka cache with per-entry expiry and stale-fill protection.
//!
//! Readers use [`L1Category::get`] directly on the shared moka handle: no mailbox, no global
//! lock. Writers (local writes, the category actor's removals) and fills from L2 or a loader
//! go through the other methods.
//!
//! **Stale-fill race.** A fill (an L2 read or a loader) that started before an invalidation of
//! its key must not put its older value into L1 afterwards. Every fill takes a
//! [`FillTicket`] before it starts: a snapshot of the generation of the key's stripe and of the
//! category-wide generation. Invalidations bump the generation *before* removing entries, and
//! a fill is only inserted while its ticket is still current.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::config::CategoryConfig;
use crate::pattern::Pattern;

mod counters;
mod entry;
mod fail_safe;
mod hot;
mod map;
mod refresh;
mod tags;
mod ttl;
pub use counters::CategoryCounters;
pub use entry::{Entry, Stamp};
pub use fail_safe::FailSafe;
pub use hot::Heat;
pub use map::CategoryMap;
pub use refresh::RefreshFlight;
pub use tags::{EntryTags, TagIndex};
pub use ttl::JitterRng;
#[cfg(test)]
use ttl::{jittered, WriteTtls};

const STRIPES: usize = 64;

/// Bytes charged per entry on top of its key and value: moka's per-entry bookkeeping
/// (node, deque links, frequency sketch share; ~100 bytes), the `String` key header (24),
/// the [`Entry`] (value handle, cached-at stamp and a handle to the rare fields, 48) and the
/// `Bytes` shared header (~32), rounded up (an entry with an own deadline, a "not found", a
/// hit counter or tags adds one shared allocation of about 64). Measured against RSS by
/// `tests/memory_bound.rs`.
pub const ENTRY_OVERHEAD: u64 = 256;

/// Byte budget of a category built without one (an equal share of the default node cap).
pub const DEFAULT_CATEGORY_MAX_BYTES: u64 = crate::config::DEFAULT_L1_MAX_BYTES / 5;

/// The weight of one entry: what it really holds, but at least `floor` (so that the byte
/// capacity also bounds the entry count: `max_bytes / floor <= max_entries`).
fn entry_weight(key: &str, value: &Bytes, floor: u64) -> u32 {
    let real = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD;
    u32::try_from(real.max(floor)).unwrap_or(u32::MAX)
}

/// What an entry holds: key + value + [`ENTRY_OVERHEAD`], plus its tags and their index
/// pairs ([`EntryTags::weight`]).
fn real_bytes(key: &str, entry: &Entry) -> u64 {
    let tags = entry.tags().map_or(0, |t| t.weight(key.len()));
    key.len() as u64 + entry.value.len() as u64 + ENTRY_OVERHEAD + tags
}

/// What L1 holds for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A value.
    Value(Bytes),
    /// A cached "not found" (negative caching): a miss that needs no L2 read or load.
    Negative,
    /// Nothing (or nothing live).
    Absent,
}

/// Snapshot taken before a fill starts; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillTicket {
    stripe: usize,
    stripe_gen: u64,
    category_gen: u64,
}

/// The L1 of one category.
pub struct L1Category {
    name: String,
    config: CategoryConfig,
    cache: Cache<String, Entry>,
    stripes: [AtomicU64; STRIPES],
    category_gen: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    /// Draws of the `ttl_jitter` spread.
    jitter: JitterRng,
    /// tag → keys of the tagged entries.
    tag_index: Arc<TagIndex>,
    /// Last values kept past their expiry (`fail_safe_max_age_secs`), when on.
    fail_safe: Option<FailSafe>,
    /// Keys with a refresh-ahead reload running on this node.
    refreshing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Hit, miss, eviction and expiry counters of this category.
    pub counters: Arc<CategoryCounters>,
}

impl std::fmt::Debug for L1Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1Category")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

impl L1Category {
    /// A new, empty L1 for a category.
    ///
    /// The cache is bounded by weight: `max_bytes` (default [`DEFAULT_CATEGORY_MAX_BYTES`]),
    /// each entry weighing its key + value + [`ENTRY_OVERHEAD`] but at least
    /// `max_bytes / max_entries`, so both the byte and the entry bound hold.
    pub fn new(name: &str, config: CategoryConfig) -> L1Category {
        let counters = Arc::new(CategoryCounters::default());
        let listener_counters = counters.clone();
        let tag_index = Arc::new(TagIndex::default());
        let listener_index = tag_index.clone();
        let max_bytes = config.max_bytes.unwrap_or(DEFAULT_CATEGORY_MAX_BYTES);
        let config = CategoryConfig {
            max_bytes: Some(max_bytes),
            ..config
        };
        let floor = max_bytes.div_ceil(config.max_entries.max(1));
        let cache = Cache::builder()
            .name(name)
            .max_capacity(max_bytes)
            .weigher(move |k: &String, e: &Entry| {
                let tags = e.tags().map_or(0, |t| t.weight(k.len()));
                entry_weight(k, &e.value, floor)
                    .saturating_add(u32::try_from(tags).unwrap_or(u32::MAX))
            })
            .time_to_live(config.ttl())
            .eviction_listener(move |k: Arc<String>, v: Entry, cause| {
                listener_counters
                    .bytes
                    .fetch_sub(real_bytes(&k, &v) as i64, Ordering::Relaxed);
                if let Some(t) = v.tags() {
                    listener_index.removed(&k, t);
                }
                match cause {
                    RemovalCause::Size => {
                        listener_counters.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                    RemovalCause::Expired => {
                        listener_counters
                            .expirations
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                }
            })
            .build();
        L1Category {
            name: name.to_string(),
            config,
            cache,
            stripes: std::array::from_fn(|_| AtomicU64::new(0)),
            category_gen: AtomicU64::new(0),
            hasher: Default::default(),
            jitter: JitterRng::seeded(rand::random()),
            tag_index,
            fail_safe: config
                .fail_safe_max_age()
                .map(|age| FailSafe::new(age, max_bytes, config.max_entries)),
            refreshing: Default::default(),
            counters,
        }
    }

    /// The category's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The category's settings.
    pub fn config(&self) -> CategoryConfig {
        self.config
    }

    /// The L1 lifetime of an entry written with `ttl`: `min(ttl, category ttl)`.
    pub fn entry_ttl(&self, ttl: Option<Duration>) -> Duration {
        match ttl {
            Some(t) => t.min(self.config.ttl()),
            None => self.config.ttl(),
        }
    }

    /// An entry for `value` whose L1 lifetime is `ttl` (already capped by [`Self::entry_ttl`]).
    ///
    /// The value is copied into an allocation of its exact size: a `Bytes` sliced from a
    /// larger buffer (an HTTP body is a slice of hyper's ~8 KiB read buffer, a RESP argument a
    /// slice of the connection's buffer) would otherwise keep that whole buffer alive for as
    /// long as the entry lives (~5,000 B per 110-byte entry measured with heaptrack, issue #17).
    pub fn entry(&self, value: Bytes, ttl: Duration) -> Entry {
        Entry::new(
            Bytes::copy_from_slice(&value),
            self.own_deadline(ttl),
            self.config.warm_up().then(Heat::default),
            None,
        )
    }

    /// A cached "not found" living `ttl` (at most the category TTL).
    pub fn negative_entry(&self, ttl: Duration) -> Entry {
        Entry::negative(self.own_deadline(ttl))
    }

    /// The deadline an entry living `ttl` carries: none when moka's category TTL ends it.
    fn own_deadline(&self, ttl: Duration) -> Option<Stamp> {
        (ttl < self.config.ttl()).then(|| Stamp::after(ttl))
    }

    /// The hot path: a lock-free read of the shared moka handle. A cached "not found" reads
    /// as `None` here (see [`Self::lookup`]).
    #[inline]
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        match self.lookup(key).await {
            Lookup::Value(v) => Some(v),
            Lookup::Negative | Lookup::Absent => None,
        }
    }

    /// What L1 holds for `key`, counting a hit, a negative hit or an expiry.
    #[inline]
    pub async fn lookup(&self, key: &str) -> Lookup {
        let Some(e) = self.cache.get(key).await else {
            return Lookup::Absent;
        };
        if e.expired() {
            // Logically gone: drop it, or moka's coalescing load (`get_or_load`) would
            // hand it out again instead of loading. A fresh value racing in is only turned
            // into a miss.
            self.counters.expirations.fetch_add(1, Ordering::Relaxed);
            self.cache.invalidate(key).await;
            return Lookup::Absent;
        }
        if e.is_negative() {
            self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Negative;
        }
        self.counters.hits.incr();
        if let Some(h) = e.heat() {
            h.hit();
        }
        Lookup::Value(e.value)
    }

    /// Read without touching hit counters (a cached "not found" reads as `None`).
    pub async fn peek(&self, key: &str) -> Option<Bytes> {
        let e = self.cache.get(key).await?;
        (!e.expired() && !e.is_negative()).then_some(e.value)
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// Takes a ticket before starting a fill of `key`.
    pub fn ticket(&self, key: &str) -> FillTicket {
        let stripe = self.stripe(key);
        FillTicket {
            stripe,
            // Acquire pairs with the Release bump in invalidations.
            stripe_gen: self.stripes[stripe].load(Ordering::Acquire),
            category_gen: self.category_gen.load(Ordering::Acquire),
        }
    }

    /// Whether no invalidation of the ticket's key happened since it was taken.
    pub fn ticket_valid(&self, t: &FillTicket) -> bool {
        self.stripes[t.stripe].load(Ordering::Acquire) == t.stripe_gen
            && self.category_gen.load(Ordering::Acquire) == t.category_gen
    }

    /// Inserts a filled value unless an invalidation raced with the fill. Returns whether it
    /// was inserted.
    pub async fn fill(&self, key: &str, value: Bytes, ttl: Duration, ticket: &FillTicket) -> bool {
        let entry = self.entry(value, ttl);
        // The read that missed is demand too.
        if let Some(h) = entry.heat() {
            h.hit();
        }
        self.fill_entry(key, entry, ticket).await
    }

    /// [`Self::fill`] of a built entry (a value or a cached "not found").
    pub async fn fill_entry(&self, key: &str, entry: Entry, ticket: &FillTicket) -> bool {
        if !self.ticket_valid(ticket) {
            self.counters
                .stale_fills_rejected
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.insert_entry(key, entry).await;
        // An invalidation may have landed between the check and the insert: undo.
        if !self.ticket_valid(ticket) {
            self.cache.invalidate(key).await;
            self.forget_copy(key);
            self.counters
                .stale_fills_rejected
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Moka's coalescing loader: concurrent callers of one key share one `init` future. The
    /// future's `Err` is not cached; the facade's `get_or_load` uses that to keep stale loads out of L1.
    pub async fn try_get_with<F, E>(&self, key: &str, init: F) -> Result<Entry, Arc<E>>
    where
        F: std::future::Future<Output = Result<Entry, E>>,
        E: Send + Sync + 'static,
    {
        let counters = &self.counters;
        let counted = async move {
            let r = init.await;
            if let Ok(e) = &r {
                counters
                    .bytes
                    .fetch_add(real_bytes(key, e) as i64, Ordering::Relaxed);
                if let Some(t) = e.tags() {
                    self.tag_index.add(key, t);
                }
                self.keep_copy(key, e);
            }
            r
        };
        let value = self.cache.try_get_with_by_ref(key, counted).await;
        self.evict_if_over_budget().await;
        value
    }

    /// Writes a value (a local `set`): invalidates in-flight fills of the key first.
    pub async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        self.put_tagged(key, value, ttl, &[]).await;
    }

    pub(super) async fn insert_entry(&self, key: &str, entry: Entry) {
        self.counters
            .bytes
            .fetch_add(real_bytes(key, &entry) as i64, Ordering::Relaxed);
        // Before the entry is in: a tagged entry in the cache is always in the index.
        if let Some(t) = entry.tags() {
            self.tag_index.add(key, t);
        }
        self.keep_copy(key, &entry);
        self.cache.insert(key.to_string(), entry).await;
        self.evict_if_over_budget().await;
    }

    /// Moka evicts in deferred maintenance, after a batch of writes: with large values that
    /// batch alone could hold many times the budget. Run it as soon as the bytes held pass
    /// the budget by more than 1/16 (small values rarely get there: their floor weight
    /// evicts them first), so the overshoot stays within 1/16 of the budget plus one value.
    async fn evict_if_over_budget(&self) {
        let max = self.max_bytes();
        let held = self.counters.bytes.load(Ordering::Relaxed).max(0) as u64;
        if held > max + max / 16 {
            self.cache.run_pending_tasks().await;
        }
    }

    /// Bytes held by live entries (key + value + [`ENTRY_OVERHEAD`] each).
    pub async fn bytes(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.counters.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// The byte budget of this category.
    pub fn max_bytes(&self) -> u64 {
        self.config.max_bytes.unwrap_or(DEFAULT_CATEGORY_MAX_BYTES)
    }

    pub(super) fn bump_key(&self, key: &str) {
        let s = self.stripe(key);
        self.stripes[s].fetch_add(1, Ordering::AcqRel);
    }

    /// Removes one key (and its fail-safe copy). Returns whether it was present.
    pub async fn remove(&self, key: &str) -> bool {
        self.bump_key(key);
        self.forget_copy(key);
        self.cache.remove(key).await.is_some()
    }

    /// Removes a key without voiding in-flight fills (undoing our own racing insert).
    pub async fn remove_raw(&self, key: &str) {
        self.forget_copy(key);
        self.cache.invalidate(key).await;
    }

    /// Removes every entry (and fail-safe copy) matching `pattern`; returns how many
    /// entries were removed.
    pub async fn invalidate(&self, pattern: &Pattern) -> u64 {
        match pattern {
            Pattern::Exact(k) => u64::from(self.remove(k).await),
            Pattern::All => self.flush().await,
            Pattern::Tag(t) => self.invalidate_tag(t).await,
            Pattern::Glob(_) => {
                self.category_gen.fetch_add(1, Ordering::AcqRel);
                let keys: Vec<Arc<String>> = self
                    .cache
                    .iter()
                    .filter(|(k, _)| pattern.matches(k))
                    .map(|(k, _)| k)
                    .collect();
                let mut n = 0;
                for k in keys {
                    if self.cache.remove(k.as_str()).await.is_some() {
                        n += 1;
                    }
                }
                // After the generation bump: a fill that kept a copy before it undoes
                // itself (its ticket is void), one that kept it after is removed here.
                if let Some(f) = &self.fail_safe {
                    f.remove_matching(pattern);
                }
                n
            }
        }
    }

    /// Drops everything (restart, reconnect, coherence gap). Returns entries removed.
    pub async fn flush(&self) -> u64 {
        self.category_gen.fetch_add(1, Ordering::AcqRel);
        if let Some(f) = &self.fail_safe {
            f.clear();
        }
        self.cache.run_pending_tasks().await;
        let before = self.cache.iter().count() as u64;
        self.cache.invalidate_all();
        self.cache.run_pending_tasks().await;
        before
    }

    /// Current number of live entries (pending maintenance applied first).
    pub async fn size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(ttl: u64, max: u64) -> L1Category {
        L1Category::new(
            "t",
            CategoryConfig {
                ttl_secs: ttl,
                max_entries: max,
                ..CategoryConfig::default()
            },
        )
    }

    #[tokio::test]
    async fn entry_ttl_is_min_of_call_and_category() {
        let c = cat(600, 10);
        assert_eq!(
            c.entry_ttl(Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            c.entry_ttl(Some(Duration::from_secs(9000))),
            Duration::from_secs(600)
        );
        assert_eq!(c.entry_ttl(None), Duration::from_secs(600));
    }

    fn jittered_cat(jitter: f64) -> L1Category {
        L1Category::new(
            "j",
            CategoryConfig {
                ttl_secs: 600,
                max_entries: 1000,
                ttl_jitter: jitter,
                ..CategoryConfig::default()
            },
        )
    }

    #[tokio::test]
    async fn keys_written_together_get_distinct_expiries_within_the_jitter_range() {
        let c = jittered_cat(0.2);
        let (lo, hi) = (Duration::from_secs(480), Duration::from_secs(600));
        let earliest = Stamp::after(lo);
        for i in 0..200 {
            let t = c.write_ttls(None);
            assert_eq!(t.l1, t.l2, "no per-call ttl: one lifetime for both levels");
            assert!(t.l1 > lo && t.l1 <= hi, "{t:?}");
            c.put(&format!("k{i}"), Bytes::from_static(b"v"), t.l1)
                .await;
        }
        let latest = Stamp::after(hi);
        let mut expiries = Vec::new();
        for i in 0..200 {
            let e = c.cache.get(&format!("k{i}")).await.expect("entry");
            let at = e
                .expires_at()
                .expect("a jittered entry carries its deadline");
            assert!(at >= earliest && at <= latest);
            expiries.push(at);
        }
        expiries.sort();
        expiries.dedup();
        // Deadlines are whole milliseconds: 200 draws over 120 s share one now and then.
        assert!(expiries.len() >= 195, "keys expire at their own times");
        // A per-call TTL shorter than the category's: both levels spread by one draw.
        let t = c.write_ttls(Some(Duration::from_secs(100)));
        assert!(t.l2 > Duration::from_secs(80) && t.l2 <= Duration::from_secs(100));
        assert_eq!(t.l1, t.l2);
        // A longer one: L2 keeps it (spread), L1 is capped by the category TTL (spread).
        let t = c.write_ttls(Some(Duration::from_secs(6000)));
        assert!(t.l2 > Duration::from_secs(4800) && t.l2 <= Duration::from_secs(6000));
        assert!(t.l1 > lo && t.l1 <= hi);
        // Fills from L2 follow the remaining TTL, capped by the spread category TTL.
        assert_eq!(
            c.fill_ttl(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        let f = c.fill_ttl(None);
        assert!(f > lo && f <= hi);
    }

    #[tokio::test]
    async fn jitter_is_replayable_from_a_seed_and_off_by_default() {
        let (a, b) = (jittered_cat(0.5), jittered_cat(0.5));
        a.seed_jitter(99);
        b.seed_jitter(99);
        let xs: Vec<WriteTtls> = (0..50).map(|_| a.write_ttls(None)).collect();
        let ys: Vec<WriteTtls> = (0..50).map(|_| b.write_ttls(None)).collect();
        assert_eq!(xs, ys);
        let rng = JitterRng::seeded(99);
        let expected = jittered(Duration::from_secs(600), 0.5, rng.unit());
        assert_eq!(xs[0].l1, expected);
        let off = cat(600, 10);
        for _ in 0..10 {
            let t = off.write_ttls(None);
            assert_eq!(
                (t.l1, t.l2),
                (Duration::from_secs(600), Duration::from_secs(600))
            );
        }
    }

    #[tokio::test]
    async fn per_entry_expiry() {
        let c = cat(600, 10);
        c.put("a", Bytes::from_static(b"1"), Duration::from_millis(50))
            .await;
        c.put("b", Bytes::from_static(b"2"), Duration::from_secs(60))
            .await;
        assert_eq!(c.get("a").await.as_deref(), Some(&b"1"[..]));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(c.get("a").await, None);
        assert_eq!(c.get("b").await.as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test]
    async fn capacity_is_bounded() {
        let c = cat(600, 20);
        for i in 0..500 {
            c.put(
                &format!("k{i}"),
                Bytes::from_static(b"v"),
                Duration::from_secs(60),
            )
            .await;
        }
        assert!(c.size().await <= 20, "size {}", c.size().await);
        assert!(c.counters.evictions.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn bytes_are_bounded_and_counted() {
        let c = L1Category::new(
            "b",
            CategoryConfig {
                ttl_secs: 600,
                max_entries: 1000,
                max_bytes: Some(1024 * 1024),
                ..CategoryConfig::default()
            },
        );
        let big = Bytes::from(vec![7u8; 100 * 1024]);
        for i in 0..40 {
            c.put(&format!("k{i}"), big.clone(), Duration::from_secs(60))
                .await;
        }
        let held = c.bytes().await;
        assert!(held <= 1024 * 1024, "held {held}");
        assert!(held >= 5 * 100 * 1024, "held {held}");
        assert!(c.size().await <= 10);
        assert!(c.counters.evictions.load(Ordering::Relaxed) >= 30);
        c.put("k0", Bytes::from_static(b"small"), Duration::from_secs(60))
            .await;
        c.flush().await;
        assert_eq!(c.bytes().await, 0);
        // The floor weight keeps the entry bound too: 1 MiB / 10 entries.
        let c = L1Category::new(
            "n",
            CategoryConfig {
                ttl_secs: 600,
                max_entries: 10,
                max_bytes: Some(1024 * 1024),
                ..CategoryConfig::default()
            },
        );
        for i in 0..100 {
            c.put(
                &format!("k{i}"),
                Bytes::from_static(b"v"),
                Duration::from_secs(60),
            )
            .await;
        }
        assert!(c.size().await <= 10, "size {}", c.size().await);
    }

    #[tokio::test]
    async fn stale_fill_is_rejected_after_invalidation() {
        let c = cat(600, 10);
        let t = c.ticket("k");
        c.remove("k").await;
        assert!(
            !c.fill("k", Bytes::from_static(b"old"), Duration::from_secs(60), &t)
                .await
        );
        assert_eq!(c.get("k").await, None);
        let t = c.ticket("k");
        assert!(
            c.fill("k", Bytes::from_static(b"new"), Duration::from_secs(60), &t)
                .await
        );
        assert_eq!(c.get("k").await.as_deref(), Some(&b"new"[..]));
    }

    #[tokio::test]
    async fn glob_and_flush_invalidate_and_count() {
        let c = cat(600, 100);
        for k in ["menu:1", "menu:2", "role:1"] {
            c.put(k, Bytes::from_static(b"v"), Duration::from_secs(60))
                .await;
        }
        let t = c.ticket("other");
        assert_eq!(c.invalidate(&Pattern::glob("menu:*").unwrap()).await, 2);
        assert!(
            !c.ticket_valid(&t),
            "glob invalidation must void in-flight fills"
        );
        assert_eq!(c.get("role:1").await.as_deref(), Some(&b"v"[..]));
        assert_eq!(c.invalidate(&Pattern::All).await, 1);
        assert_eq!(c.size().await, 0);
    }
}
