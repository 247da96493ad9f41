//! Warm-up (issue 26 item 6) through the library, against a private `redis-server` (free
//! loopback port) and several nodes sharing it: node A serves traffic and records its hot
//! keys in Redis; a node started afterwards preloads the hottest ones into its L1. Every
//! wait is a bounded poll.

mod support;

use std::time::Duration;

use hybrid_cache::config::{CategoryConfig, Config, RedisTarget};
use hybrid_cache::server::node::Node;
use hybrid_cache::Source;
use support::{RedisServer, Resp};

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(10);

/// The category of these tests.
const CAT: &str = "warm";

fn namespace(test: &str) -> String {
    format!("wu{}{:08x}", test, rand::random::<u32>())
}

/// A node of namespace `ns` on `redis` whose category `warm` has `warm_up_keys` (sampling
/// every 100 ms), once it holds its lease.
async fn node(id: &str, ns: &str, redis: &RedisServer, warm_up_keys: u32) -> Node {
    let mut config = Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis: Some(RedisTarget::Url {
            url: redis.url(),
            password: None,
        }),
        staleness_bound: Duration::from_millis(1000),
        ..Config::default()
    };
    let warm = CategoryConfig {
        ttl_secs: 600,
        max_entries: 1000,
        warm_up_keys,
        warm_up_sample_ms: 100,
        ..CategoryConfig::default()
    };
    config.categories.insert(CAT.to_string(), warm);
    config.validate().expect("valid config");
    let node = Node::start(config).await.expect("node starts");
    let lease = eventually(|| async { node.cache().lease_held() }).await;
    assert!(lease, "no lease within {BOUND:?}");
    node
}

/// Polls `check` every 10 ms until it holds or [`BOUND`] passes; returns the last answer.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `key` on `n`, then reads it `hits` times from its L1.
async fn hit(n: &Node, key: &str, hits: usize) {
    n.cache().set(CAT, key, "v1", None).await.unwrap();
    for _ in 0..hits {
        let got = n.cache().get_with_source(CAT, key).await.unwrap();
        assert_eq!(got.map(|(_, s)| s), Some(Source::L1), "{key}");
    }
}

/// The score of `key` in the hot-key ranking of `ns` (0 when absent).
fn score(redis: &RedisServer, ns: &str, key: &str) -> f64 {
    let set = format!("{ns}:hot:{CAT}");
    match redis.command(&[b"ZSCORE", set.as_bytes(), key.as_bytes()]) {
        Ok(Resp::Bulk(Some(b))) => String::from_utf8_lossy(&b).parse().unwrap_or(-1.0),
        Ok(Resp::Bulk(None)) => 0.0,
        other => panic!("ZSCORE {set} {key}: {other:?}"),
    }
}

/// Waits until A's sampler has recorded every hit of `expected` in Redis.
async fn recorded(redis: &RedisServer, ns: &str, expected: &[(&str, usize)]) {
    let all = eventually(|| async {
        expected
            .iter()
            .all(|(k, n)| score(redis, ns, k) == *n as f64)
    })
    .await;
    let scores: Vec<f64> = expected.iter().map(|(k, _)| score(redis, ns, k)).collect();
    assert!(
        all,
        "hot-key ranking not recorded: {scores:?} for {expected:?}"
    );
}

/// `warmed` of category `warm` in `n`'s stats.
async fn warmed(n: &Node) -> u64 {
    n.cache().stats().await.l1_caches[CAT].warmed
}

async fn warmed_reaches(n: &Node, count: u64) -> bool {
    eventually(|| async { warmed(n).await >= count }).await
}

/// What `n`'s L1 holds for `key`, without counting a hit or reading L2.
async fn in_l1(n: &Node, key: &str) -> Option<String> {
    let l1 = n.cache().l1_categories().get(CAT).expect("category");
    let v = l1.peek(key).await?;
    Some(String::from_utf8_lossy(&v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_preloads_the_hottest_keys_and_not_the_cold_ones() {
    let redis = RedisServer::start();
    let ns = namespace("hot");
    let a = node("a", &ns, &redis, 5).await;
    let hot = [("h0", 30), ("h1", 25), ("h2", 20), ("h3", 15), ("h4", 10)];
    for (k, n) in hot {
        hit(&a, k, n).await;
    }
    for i in 0..10 {
        hit(&a, &format!("c{i}"), 1).await;
    }
    recorded(&redis, &ns, &hot).await;

    let b = node("b", &ns, &redis, 3).await;
    assert!(warmed_reaches(&b, 3).await, "B warmed {}", warmed(&b).await);
    for k in ["h0", "h1", "h2"] {
        assert_eq!(in_l1(&b, k).await.as_deref(), Some("v1"), "{k} not warmed");
    }
    for k in ["h3", "h4", "c0", "c9"] {
        assert_eq!(in_l1(&b, k).await, None, "{k} warmed");
    }
    assert_eq!(warmed(&b).await, 3, "more than warm_up_keys");
    // A warmed key answers from L1 without reading L2.
    let got = b.cache().get_with_source(CAT, "h0").await.unwrap();
    assert_eq!(got.map(|(_, s)| s), Some(Source::L1));
    let stats = b.cache().stats().await;
    assert_eq!(stats.counters.hits_l2, 0);
    assert_eq!(stats.counters.warmed, 3);
    let metrics = reqwest::get(format!("http://{}/metrics", b.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hc_warmup_keys_total{category=\"warm\"} 3"),
        "{metrics}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_after_it_was_ranked_is_warmed_new_or_not_at_all() {
    let redis = RedisServer::start();
    let ns = namespace("chg");
    let a = node("a", &ns, &redis, 3).await;
    let hot = [("changed", 5), ("deleted", 5), ("same", 5)];
    for (k, n) in hot {
        hit(&a, k, n).await;
    }
    recorded(&redis, &ns, &hot).await;
    a.cache().set(CAT, "changed", "v2", None).await.unwrap();
    a.cache().delete(CAT, "deleted").await.unwrap();

    let b = node("b", &ns, &redis, 3).await;
    assert!(warmed_reaches(&b, 2).await, "B warmed {}", warmed(&b).await);
    assert_eq!(in_l1(&b, "changed").await.as_deref(), Some("v2"));
    assert_eq!(in_l1(&b, "same").await.as_deref(), Some("v1"));
    assert_eq!(in_l1(&b, "deleted").await, None);
    assert_eq!(b.cache().get(CAT, "deleted").await.unwrap(), None);
    assert_eq!(warmed(&b).await, 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_keys_zero_loads_nothing() {
    let redis = RedisServer::start();
    let ns = namespace("off");
    let a = node("a", &ns, &redis, 3).await;
    let hot = [("k0", 6), ("k1", 4), ("k2", 2)];
    for (k, n) in hot {
        hit(&a, k, n).await;
    }
    recorded(&redis, &ns, &hot).await;

    let off = node("off", &ns, &redis, 0).await;
    // A node with warm-up on, started after it, has warmed: so would `off` have by now.
    let on = node("on", &ns, &redis, 3).await;
    assert!(
        warmed_reaches(&on, 3).await,
        "on warmed {}",
        warmed(&on).await
    );
    assert_eq!(warmed(&off).await, 0);
    let stats = off.cache().stats().await;
    assert_eq!(stats.l1_caches[CAT].size, 0);
    for (k, _) in hot {
        assert_eq!(
            in_l1(&off, k).await,
            None,
            "{k} warmed with warm_up_keys = 0"
        );
    }
    a.shutdown().await;
    off.shutdown().await;
    on.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_warms_up_again_after_it_re_subscribes() {
    let redis = RedisServer::start();
    let ns = namespace("re");
    let a = node("a", &ns, &redis, 2).await;
    let hot = [("k0", 4), ("k1", 3)];
    for (k, n) in hot {
        hit(&a, k, n).await;
    }
    recorded(&redis, &ns, &hot).await;
    let b = node("b", &ns, &redis, 2).await;
    assert!(warmed_reaches(&b, 2).await, "B warmed {}", warmed(&b).await);
    // Cut every subscription: B re-subscribes, flushes its L1 and warms it again.
    let flushes = b.cache().stats().await.counters.coherence_flushes;
    redis
        .command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"])
        .expect("CLIENT KILL");
    assert!(
        warmed_reaches(&b, 4).await,
        "B warmed {} after re-subscribing",
        warmed(&b).await
    );
    assert!(b.cache().stats().await.counters.coherence_flushes > flushes);
    for (k, _) in hot {
        assert_eq!(in_l1(&b, k).await.as_deref(), Some("v1"), "{k}");
    }
    a.shutdown().await;
    b.shutdown().await;
}
