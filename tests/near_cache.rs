//! Near-cache features of issue 26 through the library, against a private `redis-server`
//! (free loopback port) and several caches (nodes) sharing it: TTL jitter, negative
//! caching, fail-safe. Every wait is a bounded poll.

mod support;

use std::time::Duration;

use hybrid_cache::config::{CategoryConfig, Config, RedisTarget};
use hybrid_cache::HybridCache;
use support::{RedisServer, Resp};

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(5);

fn namespace(test: &str) -> String {
    format!("nc{}{:08x}", test, rand::random::<u32>())
}

/// A cache (node) of namespace `ns` on `redis`, whose `near` category has TTL 600 s and the
/// near-cache settings `near`.
async fn node(id: &str, ns: &str, redis: &RedisServer, near: CategoryConfig) -> HybridCache {
    let mut config = Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        redis: Some(RedisTarget::Url {
            url: redis.url(),
            password: None,
        }),
        staleness_bound: Duration::from_millis(200),
        ..Config::default()
    };
    config.categories.insert("near".to_string(), near);
    config.validate().expect("valid config");
    let cache = HybridCache::start(config).await.expect("cache starts");
    let deadline = tokio::time::Instant::now() + BOUND;
    while !cache.lease_held() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lease within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache
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
    let cache = node("j1", &ns, &redis, near(|c| c.ttl_jitter = 0.5)).await;
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
    cache.shutdown().await;
}
