//! Near-cache features of issue 26 through the library, against a private `redis-server`
//! (free loopback port) and several caches (nodes) sharing it: TTL jitter, negative
//! caching, fail-safe. Every wait is a bounded poll.

mod support;

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hybrid_cache::config::{CategoryConfig, Config, RedisTarget};
use hybrid_cache::server::node::Node;
use support::{RedisServer, Resp};

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(5);

/// The staleness bound B of the nodes: large enough that a loaded 2-core machine does not
/// lapse the freshness lease (which would turn the fail-safe off) during a test.
const B: Duration = Duration::from_millis(1000);

/// Past B: a change acknowledged on one node has reached the other's L1.
const PAST_B: Duration = Duration::from_millis(1100);

fn namespace(test: &str) -> String {
    format!("nc{}{:08x}", test, rand::random::<u32>())
}

/// A node (library cache + HTTP on a free loopback port) of namespace `ns` on `redis`, with
/// a category `near` of settings `near`.
async fn node(id: &str, ns: &str, redis: &RedisServer, near: CategoryConfig) -> Node {
    let mut config = Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis: Some(RedisTarget::Url {
            url: redis.url(),
            password: None,
        }),
        staleness_bound: B,
        ..Config::default()
    };
    config.categories.insert("near".to_string(), near);
    config.validate().expect("valid config");
    let node = Node::start(config).await.expect("node starts");
    let deadline = tokio::time::Instant::now() + BOUND;
    while !node.cache().lease_held() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lease within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}

fn near(settings: impl FnOnce(&mut CategoryConfig)) -> CategoryConfig {
    let mut c = CategoryConfig {
        ttl_secs: 600,
        max_entries: 1000,
        ..CategoryConfig::default()
    };
    settings(&mut c);
    c
}

/// The remaining TTL (ms) of `key` of category `near` in Redis (generation 0).
fn pttl(redis: &RedisServer, ns: &str, key: &str) -> i64 {
    let k = format!("{ns}:near:0:{key}");
    match redis.command(&[b"PTTL", k.as_bytes()]) {
        Ok(Resp::Int(ms)) => ms,
        other => panic!("PTTL {k}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_spreads_the_l2_ttls_of_keys_written_together() {
    let redis = RedisServer::start();
    let ns = namespace("jit");
    let n = node("j1", &ns, &redis, near(|c| c.ttl_jitter = 0.5)).await;
    let cache = n.cache();
    for i in 0..40 {
        cache
            .set(
                "near",
                &format!("k{i}"),
                "v",
                Some(Duration::from_secs(100)),
            )
            .await
            .unwrap();
    }
    let loaded = cache
        .get_or_load("near", "loaded", None, || async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"v"))
        })
        .await
        .unwrap();
    assert_eq!(&loaded[..], b"v");
    let mut ttls: Vec<i64> = (0..40)
        .map(|i| pttl(&redis, &ns, &format!("k{i}")))
        .collect();
    for t in &ttls {
        // [100 s · (1 − 0.5), 100 s], less the few ms the test took.
        assert!((45_000..=100_000).contains(t), "pttl {t} ms");
    }
    ttls.sort();
    ttls.dedup_by(|a, b| (*a - *b).abs() < 5);
    assert!(ttls.len() >= 20, "expiries spread: {ttls:?}");
    let l = pttl(&redis, &ns, "loaded");
    assert!((295_000..=600_000).contains(&l), "loaded pttl {l} ms");
    n.shutdown().await;
}

/// The raw L2 bytes of `key` of category `near` (generation 0).
fn raw(redis: &RedisServer, ns: &str, key: &str) -> Option<Vec<u8>> {
    let k = format!("{ns}:near:0:{key}");
    match redis.command(&[b"GET", k.as_bytes()]) {
        Ok(Resp::Bulk(b)) => b,
        other => panic!("GET {k}: {other:?}"),
    }
}

/// A loader that counts its calls and finds nothing.
fn not_found(
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce() -> std::future::Ready<Result<Option<Bytes>, std::io::Error>> {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(None))
    }
}

async fn http_get(n: &Node, key: &str) -> (u16, Option<String>) {
    let url = format!("http://{}/v1/cache/near/{key}", n.http_addr());
    let r = reqwest::Client::new().get(url).send().await.expect("GET");
    let source = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_found_is_cached_in_l1_and_l2_and_answers_404() {
    let redis = RedisServer::start();
    let ns = namespace("neg");
    let a = node("a", &ns, &redis, near(|c| c.negative_ttl_secs = Some(30))).await;
    let b = node("b", &ns, &redis, near(|c| c.negative_ttl_secs = Some(30))).await;
    // Loader calls are counted from here: after the first-contact flushes.
    support::settle(&[a.cache(), b.cache()], BOUND).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = a.cache();
    for _ in 0..3 {
        let r = cache.get_or_load_opt("near", "user:9", None, not_found(&calls));
        assert_eq!(r.await.unwrap(), None);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the not-found is cached in L1"
    );
    // In L2 as the negative marker alone, with the negative TTL.
    assert_eq!(raw(&redis, &ns, "user:9"), Some(vec![2u8]));
    let t = pttl(&redis, &ns, "user:9");
    assert!((25_000..=30_000).contains(&t), "pttl {t}");
    // The other node reads it from L2: no load there either.
    let r = b
        .cache()
        .get_or_load_opt("near", "user:9", None, not_found(&calls));
    assert_eq!(r.await.unwrap(), None);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the not-found is shared through L2"
    );
    // A plain read and HTTP answer it as a miss, never as a value.
    assert_eq!(cache.get("near", "user:9").await.unwrap(), None);
    assert_eq!(http_get(&a, "user:9").await.0, 404);
    assert_eq!(http_get(&b, "user:9").await.0, 404);
    assert!(a.cache().stats().await.counters.negative_hits >= 3);
    assert!(b.cache().stats().await.counters.negative_hits >= 2);
    // get_or_load (whose loader always finds) is answered by its loader, uncached.
    let v = cache.get_or_load("near", "user:9", None, || async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"found"))
    });
    assert_eq!(&v.await.unwrap()[..], b"found");
    // A real empty value is a value, not a not-found.
    cache.set("near", "empty", "", None).await.unwrap();
    assert_eq!(
        cache.get("near", "empty").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(raw(&redis, &ns, "empty"), Some(vec![1u8]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_negative_ttl_a_not_found_is_not_cached() {
    let redis = RedisServer::start();
    let ns = namespace("noneg");
    let a = node("a", &ns, &redis, near(|_| {})).await;
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let r = a
            .cache()
            .get_or_load_opt("near", "k", None, not_found(&calls));
        assert_eq!(r.await.unwrap(), None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(raw(&redis, &ns, "k"), None);
    assert_eq!(a.cache().stats().await.counters.negative_hits, 0);
    a.shutdown().await;
}

/// Polls `f` until it holds, for at most `bound`.
async fn eventually<F, Fut>(bound: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_node_removes_a_cached_not_found_within_the_bound() {
    let redis = RedisServer::start();
    let ns = namespace("negw");
    let a = node("a", &ns, &redis, near(|c| c.negative_ttl_secs = Some(600))).await;
    let b = node("b", &ns, &redis, near(|c| c.negative_ttl_secs = Some(600))).await;
    // Loader calls are counted from here: after the first-contact flushes.
    support::settle(&[a.cache(), b.cache()], BOUND).await;
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["set", "glob:1"] {
        let r = a
            .cache()
            .get_or_load_opt("near", key, None, not_found(&calls));
        assert_eq!(r.await.unwrap(), None);
        assert_eq!(a.cache().get("near", key).await.unwrap(), None);
    }
    let r = a
        .cache()
        .get_or_load_opt("near", "set", None, not_found(&calls));
    assert_eq!(r.await.unwrap(), None);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "both not-founds are cached on A"
    );
    // B writes the key: within the bound B, A reads the value, never the not-found.
    b.cache().set("near", "set", "v2", None).await.unwrap();
    let written = tokio::time::Instant::now();
    let a_cache = a.cache().clone();
    let seen = eventually(B, || {
        let a_cache = a_cache.clone();
        async move { a_cache.get("near", "set").await.unwrap().as_deref() == Some(&b"v2"[..]) }
    })
    .await;
    assert!(
        seen,
        "A still answers not-found {:?} after B's write",
        written.elapsed()
    );
    // Once seen, A's get_or_load_opt answers the value without its loader.
    let r = a
        .cache()
        .get_or_load_opt("near", "set", None, not_found(&calls));
    assert_eq!(r.await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // An invalidation by pattern on B removes A's not-found too: A loads again.
    b.cache().invalidate("glob:*", "near").await.unwrap();
    let a_cache = a.cache().clone();
    let calls2 = calls.clone();
    let reloaded = eventually(B, || {
        let (a_cache, calls2) = (a_cache.clone(), calls2.clone());
        async move {
            let before = calls2.load(Ordering::SeqCst);
            let _ = a_cache
                .get_or_load_opt("near", "glob:1", None, not_found(&calls2))
                .await;
            calls2.load(Ordering::SeqCst) > before
        }
    })
    .await;
    assert!(reloaded, "the invalidated not-found kept answering on A");
    a.shutdown().await;
    b.shutdown().await;
}

#[derive(Debug)]
struct DbDown;
impl std::fmt::Display for DbDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("db down")
    }
}
impl std::error::Error for DbDown {}

fn fails() -> impl FnOnce() -> std::future::Ready<Result<Bytes, DbDown>> {
    || std::future::ready(Err(DbDown))
}

fn finds(v: &'static [u8]) -> impl FnOnce() -> std::future::Ready<Result<Bytes, DbDown>> {
    move || std::future::ready(Ok(Bytes::from_static(v)))
}

/// A per-call TTL short enough that the entry expires from L1 and L2 during the test.
const SHORT: Option<Duration> = Some(Duration::from_millis(150));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_answers_the_last_value_after_expiry_but_never_an_invalidated_one() {
    let redis = RedisServer::start();
    let ns = namespace("fs");
    let fail_safe = near(|c| c.fail_safe_max_age_secs = Some(3600));
    let a = node("a", &ns, &redis, fail_safe).await;
    let b = node("b", &ns, &redis, fail_safe).await;
    let off = node("off", &namespace("fsoff"), &redis, near(|_| {})).await;
    for n in [&a, &off] {
        let got = n
            .cache()
            .get_or_load_marked("near", "k", SHORT, finds(b"v1"));
        assert_eq!(
            got.await.unwrap(),
            hybrid_cache::Loaded {
                value: Bytes::from_static(b"v1"),
                stale: false
            }
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.cache().get("near", "k").await.unwrap(),
        None,
        "expired everywhere"
    );
    // The loader fails: the last value, marked stale.
    let got = a
        .cache()
        .get_or_load_marked("near", "k", SHORT, fails())
        .await
        .unwrap();
    assert!(got.stale);
    assert_eq!(&got.value[..], b"v1");
    let plain = a
        .cache()
        .get_or_load("near", "k", SHORT, fails())
        .await
        .unwrap();
    assert_eq!(&plain[..], b"v1");
    assert!(a.cache().stats().await.counters.fail_safe_hits >= 2);
    // Without fail-safe, the error.
    let r = off
        .cache()
        .get_or_load_marked("near", "k", SHORT, fails())
        .await;
    assert!(
        matches!(r, Err(hybrid_cache::CacheError::Loader(_))),
        "{r:?}"
    );

    // An invalidation on another node removes the copy: the error, never the old value.
    for (i, key) in ["inv", "del", "glob:1"].into_iter().enumerate() {
        let got = a
            .cache()
            .get_or_load_marked("near", key, SHORT, finds(b"old"));
        assert!(!got.await.unwrap().stale);
        match i {
            0 => b
                .cache()
                .invalidate_key("near", key)
                .await
                .map(|_| ())
                .unwrap(),
            1 => b.cache().delete("near", key).await.unwrap(),
            _ => b
                .cache()
                .invalidate("glob:*", "near")
                .await
                .map(|_| ())
                .unwrap(),
        }
        // Past B, A has applied it; by then the entry expired too.
        tokio::time::sleep(PAST_B).await;
        let r = a
            .cache()
            .get_or_load_marked("near", key, SHORT, fails())
            .await;
        assert!(
            matches!(r, Err(hybrid_cache::CacheError::Loader(_))),
            "{key}: {r:?}"
        );
    }
    // A write on another node replaces the copy with the new value (never the old one).
    let got = a
        .cache()
        .get_or_load_marked("near", "w", SHORT, finds(b"old"));
    assert!(!got.await.unwrap().stale);
    b.cache().set("near", "w", "new", SHORT).await.unwrap();
    tokio::time::sleep(PAST_B).await;
    let r = a
        .cache()
        .get_or_load_marked("near", "w", SHORT, fails())
        .await;
    assert!(r.as_ref().map_or(true, |l| &l.value[..] != b"old"), "{r:?}");
    for n in [a, b, off] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_and_hard_load_timeouts() {
    let redis = RedisServer::start();
    let ns = namespace("fst");
    let a = node(
        "a",
        &ns,
        &redis,
        near(|c| {
            c.fail_safe_max_age_secs = Some(3600);
            c.load_soft_timeout_ms = Some(50);
            c.load_timeout_ms = 1000;
        }),
    )
    .await;
    let got = a
        .cache()
        .get_or_load_marked("near", "k", SHORT, finds(b"v1"));
    assert!(!got.await.unwrap().stale);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, DbDown>(Bytes::from_static(b"late"))
    };
    // Past the soft timeout: the fail-safe value, stale.
    let got = a
        .cache()
        .get_or_load_marked("near", "k", SHORT, slow)
        .await
        .unwrap();
    assert!(got.stale);
    assert_eq!(&got.value[..], b"v1");
    // No fail-safe value: the hard timeout ends the load with an error.
    let r = a.cache().get_or_load("near", "none", SHORT, slow).await;
    match r {
        Err(hybrid_cache::CacheError::Loader(e)) => {
            assert!(e.to_string().contains("load_timeout_ms"), "{e}")
        }
        other => panic!("expected the hard timeout, got {other:?}"),
    }
    a.shutdown().await;
}
