//! Refresh-ahead (issue 26 item 1) through the library: a hit past `refresh_after` answers
//! the cached value at once and one background reload per key in the cluster replaces it;
//! a reload raced by an invalidation, or by a write whose invalidation is still on its way,
//! is dropped. Nodes are caches sharing a private `redis-server` (free loopback port);
//! loaders block on a gate the test opens, so every race is decided by the test, and every
//! wait is a bounded poll.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hybrid_cache::config::{CategoryConfig, Config, RedisTarget};
use hybrid_cache::{HybridCache, LoadOptions, Source};
use support::{RedisServer, Resp};
use tokio::sync::{mpsc, Semaphore};

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(5);

/// The per-call refresh age of the Redis tests.
const AFTER: Duration = Duration::from_millis(200);

/// Past [`AFTER`]: an entry cached before this sleep is due for a refresh.
const PAST_AFTER: Duration = Duration::from_millis(300);

type LoadFuture = Pin<Box<dyn Future<Output = Result<Bytes, std::io::Error>> + Send>>;

/// Loaders that count their calls, say that they started, and answer only once the gate is
/// opened.
struct Gate {
    calls: Arc<AtomicUsize>,
    open: Arc<Semaphore>,
    started_tx: mpsc::UnboundedSender<()>,
    started: mpsc::UnboundedReceiver<()>,
}

impl Gate {
    fn new() -> Gate {
        let (started_tx, started) = mpsc::unbounded_channel();
        Gate {
            calls: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(Semaphore::new(0)),
            started_tx,
            started,
        }
    }

    fn loader(&self, value: &'static str) -> impl FnOnce() -> LoadFuture + Send + 'static {
        let (calls, open, started) = (
            self.calls.clone(),
            self.open.clone(),
            self.started_tx.clone(),
        );
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = started.send(());
                let _permit = open.acquire().await.map_err(std::io::Error::other)?;
                Ok(Bytes::from_static(value.as_bytes()))
            })
        }
    }

    /// Waits (bounded) until a loader of this gate was called.
    async fn started(&mut self) {
        tokio::time::timeout(BOUND, self.started.recv())
            .await
            .expect("the reload starts within the bound")
            .expect("gate alive");
    }

    fn open(&self) {
        self.open.add_permits(1000);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn ready(value: &'static str) -> impl FnOnce() -> LoadFuture + Send + 'static {
    move || Box::pin(async move { Ok(Bytes::from_static(value.as_bytes())) })
}

fn near(settings: impl FnOnce(&mut CategoryConfig)) -> CategoryConfig {
    let mut c = CategoryConfig {
        ttl_secs: 60,
        max_entries: 1000,
        ..CategoryConfig::default()
    };
    settings(&mut c);
    c
}

/// A cache (node) with a category `near`, on `redis` when given, holding its lease.
async fn cache(
    id: &str,
    ns: &str,
    redis: Option<&RedisServer>,
    near: CategoryConfig,
) -> HybridCache {
    let mut config = Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        redis: redis.map(|r| RedisTarget::Url {
            url: r.url(),
            password: None,
        }),
        staleness_bound: Duration::from_millis(1000),
        ..Config::default()
    };
    config.categories.insert("near".to_string(), near);
    let cache = HybridCache::builder()
        .config(config)
        .build()
        .await
        .expect("cache starts");
    poll("the lease", || async { cache.lease_held() }).await;
    cache
}

/// Polls `f` every 10 ms until it holds; fails the test past [`BOUND`].
async fn poll<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn read(c: &HybridCache, key: &str) -> Option<Vec<u8>> {
    c.get("near", key).await.expect("get").map(|b| b.to_vec())
}

fn namespace(test: &str) -> String {
    format!("ra{}{:08x}", test, rand::random::<u32>())
}

/// The raw L2 bytes of `key` of category `near` (generation 0).
fn raw(redis: &RedisServer, ns: &str, key: &str) -> Option<Vec<u8>> {
    let k = format!("{ns}:near:0:{key}");
    match redis.command(&[b"GET", k.as_bytes()]) {
        Ok(Resp::Bulk(b)) => b,
        other => panic!("GET {k}: {other:?}"),
    }
}

/// The token of `key`'s refresh lock in Redis, if held.
fn lock(redis: &RedisServer, ns: &str, key: &str) -> Option<Vec<u8>> {
    let k = format!("{ns}:near:refresh:{key}");
    match redis.command(&[b"GET", k.as_bytes()]) {
        Ok(Resp::Bulk(b)) => b,
        other => panic!("GET {k}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_past_refresh_after_answers_at_once_and_the_reload_replaces_it() {
    let redis = RedisServer::start();
    let ns = namespace("hit");
    let a = cache("a", &ns, Some(&redis), near(|_| {})).await;
    let b = cache("b", &ns, Some(&redis), near(|_| {})).await;
    support::start_up_flushes_done(&[&a, &b]).await;
    let opts = LoadOptions::default().refresh_after(AFTER);
    let first = a.get_or_load_with("near", "k", opts, ready("v1")).await;
    assert_eq!(&first.unwrap().value[..], b"v1");
    let loaded_by = std::time::Instant::now();
    // Young: a hit, no reload.
    let young = LoadOptions::default().refresh_after(Duration::from_secs(30));
    let hit = a
        .get_or_load_with("near", "k", young, ready("unused"))
        .await;
    assert_eq!(&hit.unwrap().value[..], b"v1");
    tokio::time::sleep(PAST_AFTER).await;
    let mut gate = Gate::new();
    // The loader blocks until the gate opens, yet the call answers: the old value, at once.
    let hit = a
        .get_or_load_with("near", "k", opts, gate.loader("v2"))
        .await
        .unwrap();
    assert_eq!(&hit.value[..], b"v1");
    assert!(!hit.stale);
    gate.started().await;
    assert_eq!(read(&a, "k").await.as_deref(), Some(&b"v1"[..]));
    assert!(
        lock(&redis, &ns, "k").is_some(),
        "the key's refresh lock is held"
    );
    gate.open();
    poll("the reloaded value", || async {
        read(&a, "k").await.as_deref() == Some(&b"v2"[..])
    })
    .await;
    // Through the write path: in L2 (the other node reads it there).
    assert_eq!(raw(&redis, &ns, "k"), Some(b"\x01v2".to_vec()));
    assert_eq!(read(&b, "k").await.as_deref(), Some(&b"v2"[..]));
    // The refreshed entry's age restarted: v1 was cached before `loaded_by`, v2 more than
    // PAST_AFTER after it, so a hit that would reload v1 does not reload v2.
    let v1_age = LoadOptions::default().refresh_after(loaded_by.elapsed());
    let again = a.get_or_load_with("near", "k", v1_age, ready("v3")).await;
    assert_eq!(&again.unwrap().value[..], b"v2");
    let k = a.stats().await.counters;
    assert_eq!((k.refreshes_started, k.refreshes_won), (1, 1));
    assert_eq!((k.refreshes_failed, k.refreshes_discarded), (0, 0));
    assert_eq!(gate.calls(), 1);
    // Released once the value is in; a failing reload changes nothing and keeps the lock
    // until it expires (the whole cluster waits before trying again).
    poll("the lock released", || async {
        lock(&redis, &ns, "k").is_none()
    })
    .await;
    tokio::time::sleep(PAST_AFTER).await;
    let failing = || async { Err::<Bytes, _>(std::io::Error::other("db down")) };
    let hit = a.get_or_load_with("near", "k", opts, failing).await;
    assert_eq!(&hit.unwrap().value[..], b"v2");
    poll("the failed reload", || async {
        a.stats().await.counters.refreshes_failed == 1
    })
    .await;
    assert_eq!(read(&a, "k").await.as_deref(), Some(&b"v2"[..]));
    assert!(lock(&redis, &ns, "k").is_some(), "kept after a failure");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_past_refresh_after_run_the_loader_once_in_the_cluster() {
    let redis = RedisServer::start();
    let ns = namespace("two");
    let a = cache("a", &ns, Some(&redis), near(|_| {})).await;
    let b = cache("b", &ns, Some(&redis), near(|_| {})).await;
    support::start_up_flushes_done(&[&a, &b]).await;
    let opts = LoadOptions::default().refresh_after(AFTER);
    let v = a.get_or_load_with("near", "k", opts, ready("v1")).await;
    assert_eq!(&v.unwrap().value[..], b"v1");
    // B fills its L1 from L2; its loader is not called.
    let mut gate = Gate::new();
    let v = b
        .get_or_load_with("near", "k", opts, gate.loader("never"))
        .await;
    assert_eq!(&v.unwrap().value[..], b"v1");
    let (_, source) = b.get_with_source("near", "k").await.unwrap().unwrap();
    assert_eq!(source, Source::L1);
    assert_eq!(gate.calls(), 0);
    tokio::time::sleep(PAST_AFTER).await;
    for node in [&a, &b] {
        let hit = node
            .get_or_load_with("near", "k", opts, gate.loader("v2"))
            .await;
        assert_eq!(&hit.unwrap().value[..], b"v1");
    }
    // Both nodes started a reload; one took the key's lock, the other left it.
    let decided = || async {
        let (ka, kb) = (a.stats().await.counters, b.stats().await.counters);
        (
            ka.refreshes_won + kb.refreshes_won,
            ka.refreshes_lost + kb.refreshes_lost,
        )
    };
    poll("both refreshes decided", || async {
        let (won, lost) = decided().await;
        won + lost == 2
    })
    .await;
    let (won, lost) = decided().await;
    assert_eq!((won, lost), (1, 1), "one reload in the cluster");
    gate.started().await;
    gate.open();
    for node in [&a, &b] {
        poll("the reloaded value on every node", || async {
            read(node, "k").await.as_deref() == Some(&b"v2"[..])
        })
        .await;
    }
    assert_eq!(gate.calls(), 1, "the loader ran once in total");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_racing_the_reload_drops_its_value() {
    let redis = RedisServer::start();
    let ns = namespace("race");
    let a = cache("a", &ns, Some(&redis), near(|_| {})).await;
    let b = cache("b", &ns, Some(&redis), near(|_| {})).await;
    support::start_up_flushes_done(&[&a, &b]).await;
    let opts = LoadOptions::default().refresh_after(AFTER);
    let v = a.get_or_load_with("near", "k", opts, ready("v1")).await;
    assert_eq!(&v.unwrap().value[..], b"v1");
    tokio::time::sleep(PAST_AFTER).await;
    let mut gate = Gate::new();
    let hit = a
        .get_or_load_with("near", "k", opts, gate.loader("v2"))
        .await;
    assert_eq!(&hit.unwrap().value[..], b"v1");
    gate.started().await;
    // The reload is inside its loader: B invalidates the key, and A hears of it.
    b.invalidate_key("near", "k").await.unwrap();
    poll("the invalidation on A", || async {
        read(&a, "k").await.is_none()
    })
    .await;
    gate.open();
    // Ended: dropped (counted), or — what must not happen — installed.
    poll("the reload ended", || async {
        a.stats().await.counters.refreshes_discarded == 1 || read(&a, "k").await.is_some()
    })
    .await;
    assert_eq!(
        read(&a, "k").await,
        None,
        "never served after the invalidation"
    );
    assert_eq!(read(&b, "k").await, None);
    assert_eq!(a.stats().await.counters.refreshes_discarded, 1);
    assert_ne!(raw(&redis, &ns, "k"), Some(b"\x01v2".to_vec()), "not in L2");
    // The next load is an ordinary miss.
    let v = a.get_or_load_with("near", "k", opts, ready("v3")).await;
    assert_eq!(&v.unwrap().value[..], b"v3");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_category_setting_refreshes_once_per_node() {
    let ns = namespace("local");
    let a = cache("a", &ns, None, near(|c| c.refresh_after_secs = Some(1))).await;
    let opts = LoadOptions::default();
    let v = a.get_or_load_with("near", "k", opts, ready("v1")).await;
    assert_eq!(&v.unwrap().value[..], b"v1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut gate = Gate::new();
    for _ in 0..3 {
        let hit = a
            .get_or_load_with("near", "k", opts, gate.loader("v2"))
            .await;
        assert_eq!(&hit.unwrap().value[..], b"v1");
    }
    gate.started().await;
    assert_eq!(a.stats().await.counters.refreshes_started, 1, "one per key");
    gate.open();
    poll("the reloaded value", || async {
        read(&a, "k").await.as_deref() == Some(&b"v2"[..])
    })
    .await;
    assert_eq!(gate.calls(), 1);
    // A local invalidation racing the next reload: its value is dropped.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut gate = Gate::new();
    let hit = a
        .get_or_load_with("near", "k", opts, gate.loader("v3"))
        .await;
    assert_eq!(&hit.unwrap().value[..], b"v2");
    gate.started().await;
    a.invalidate_key("near", "k").await.unwrap();
    gate.open();
    // Ended: dropped (counted), or — what must not happen — installed.
    poll("the reload ended", || async {
        a.stats().await.counters.refreshes_discarded == 1 || read(&a, "k").await.is_some()
    })
    .await;
    assert_eq!(
        read(&a, "k").await,
        None,
        "never served after the invalidation"
    );
    let k = a.stats().await.counters;
    assert_eq!(
        (k.refreshes_started, k.refreshes_won, k.refreshes_lost),
        (2, 2, 0)
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_invalidation_is_still_on_its_way_wins_over_the_reload() {
    let redis = RedisServer::start();
    let ns = namespace("lost");
    let a = cache("a", &ns, Some(&redis), near(|_| {})).await;
    let b = cache("b", &ns, Some(&redis), near(|_| {})).await;
    support::start_up_flushes_done(&[&a, &b]).await;
    let opts = LoadOptions::default().refresh_after(AFTER);
    let v = a.get_or_load_with("near", "k", opts, ready("v1")).await;
    assert_eq!(&v.unwrap().value[..], b"v1");
    tokio::time::sleep(PAST_AFTER).await;
    let mut gate = Gate::new();
    let hit = a
        .get_or_load_with("near", "k", opts, gate.loader("v2"))
        .await;
    assert_eq!(&hit.unwrap().value[..], b"v1");
    gate.started().await;
    // A's bus stalls: B's write reaches L2, its invalidation does not reach A's L1, so A's
    // fill ticket still holds. Only L2's comparison can keep the (older) reload out.
    let release = a.hold_bus().expect("the bus runs");
    b.set("near", "k", "vb", None).await.unwrap();
    assert_eq!(raw(&redis, &ns, "k"), Some(b"\x01vb".to_vec()));
    gate.open();
    poll("the reload ended", || async {
        a.stats().await.counters.refreshes_discarded == 1
            || raw(&redis, &ns, "k") != Some(b"\x01vb".to_vec())
    })
    .await;
    assert_eq!(
        raw(&redis, &ns, "k"),
        Some(b"\x01vb".to_vec()),
        "B's write stays"
    );
    assert_eq!(a.stats().await.counters.refreshes_discarded, 1);
    drop(release);
    poll("B's write on A", || async {
        read(&a, "k").await.as_deref() == Some(&b"vb"[..])
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
