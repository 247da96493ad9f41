//! Warm-up (issue 26 item 6) through the library, against a private `redis-server` (free
//! loopback port) and several nodes sharing it: node A serves traffic and records its hot
//! keys in Redis; a node started afterwards preloads the hottest ones into its L1. Every
//! wait is a bounded poll.
//!
//! A node warms up after each full L1 flush, and a fresh node is flushed again on first
//! contact with each other node (and every node when another one starts), so a node may
//! warm up more than once in a test: the checks are on what L1 ends up holding, and on
//! `warmed` being a multiple of what one warm-up loads.

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
    node_with(id, ns, redis, |c| c.warm_up_keys = warm_up_keys).await
}

/// [`node`] with category settings changed by `settings`.
async fn node_with(
    id: &str,
    ns: &str,
    redis: &RedisServer,
    settings: impl FnOnce(&mut CategoryConfig),
) -> Node {
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
    let mut warm = CategoryConfig {
        ttl_secs: 600,
        max_entries: 1000,
        warm_up_sample_ms: 100,
        ..CategoryConfig::default()
    };
    settings(&mut warm);
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
    hit_value(n, key, "v1", hits).await
}

/// [`hit`] with `value`.
async fn hit_value(n: &Node, key: &str, value: &str, hits: usize) {
    let value = bytes::Bytes::copy_from_slice(value.as_bytes());
    n.cache().set(CAT, key, value, None).await.unwrap();
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

/// Waits until `n`'s L1 holds exactly `present` (key, value) and none of `absent`.
async fn l1_holds(n: &Node, present: &[(&str, &str)], absent: &[&str]) {
    let held = eventually(|| async {
        for (k, v) in present {
            if in_l1(n, k).await.as_deref() != Some(*v) {
                return false;
            }
        }
        for k in absent {
            if in_l1(n, k).await.is_some() {
                return false;
            }
        }
        true
    })
    .await;
    let mut seen = Vec::new();
    for k in present
        .iter()
        .map(|(k, _)| *k)
        .chain(absent.iter().copied())
    {
        seen.push((k, in_l1(n, k).await));
    }
    assert!(held, "L1 of {}: {seen:?}", n.cache().config().node_id);
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
    let cold: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for k in &cold {
        hit(&a, k, 1).await;
    }
    recorded(&redis, &ns, &hot).await;

    let b = node("b", &ns, &redis, 3).await;
    assert!(warmed_reaches(&b, 3).await, "B warmed {}", warmed(&b).await);
    let mut not_hottest = vec!["h3", "h4"];
    not_hottest.extend(cold.iter().map(String::as_str));
    l1_holds(
        &b,
        &[("h0", "v1"), ("h1", "v1"), ("h2", "v1")],
        &not_hottest,
    )
    .await;
    // A warmed key answers from L1 without reading L2.
    let got = b.cache().get_with_source(CAT, "h0").await.unwrap();
    assert_eq!(got.map(|(_, s)| s), Some(Source::L1));
    let stats = b.cache().stats().await;
    assert_eq!(stats.counters.hits_l2, 0);
    assert_eq!(stats.l1_caches[CAT].size, 3);
    let n = stats.l1_caches[CAT].warmed;
    assert!(
        n >= 3 && n % 3 == 0,
        "each warm-up loads the 3 hottest: {n}"
    );
    assert_eq!(stats.counters.warmed, n);
    let metrics = reqwest::get(format!("http://{}/metrics", b.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("hc_warmup_keys_total{category=\"warm\"} "))
        .unwrap_or_else(|| panic!("no hc_warmup_keys_total: {metrics}"));
    let m: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(m >= n && m % 3 == 0, "{line}");
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
    l1_holds(&b, &[("changed", "v2"), ("same", "v1")], &["deleted"]).await;
    assert_eq!(b.cache().get(CAT, "deleted").await.unwrap(), None);
    let n = warmed(&b).await;
    assert!(
        n % 2 == 0,
        "each warm-up loads the 2 keys that still have a value: {n}"
    );
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
    l1_holds(&on, &[("k0", "v1"), ("k1", "v1"), ("k2", "v1")], &[]).await;
    assert_eq!(warmed(&off).await, 0);
    assert_eq!(off.cache().stats().await.l1_caches[CAT].size, 0);
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
    let before = b.cache().stats().await.counters;
    redis
        .command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"])
        .expect("CLIENT KILL");
    let again = eventually(|| async {
        let c = b.cache().stats().await.counters;
        c.redis_reconnects > before.redis_reconnects && c.warmed >= before.warmed + 2
    })
    .await;
    assert!(
        again,
        "B did not warm up after re-subscribing: {:?}",
        b.cache().stats().await.counters
    );
    l1_holds(&b, &[("k0", "v1"), ("k1", "v1")], &[]).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_fills_only_the_room_left_and_never_evicts() {
    let redis = RedisServer::start();
    let ns = namespace("room");
    let a = node("a", &ns, &redis, 5).await;
    let big = "x".repeat(10 * 1024);
    let hot = [("h0", 9), ("h1", 8), ("h2", 7), ("h3", 6), ("h4", 5)];
    for (k, n) in hot {
        hit_value(&a, k, &big, n).await;
    }
    recorded(&redis, &ns, &hot).await;
    // Room for three of the 10 KiB values (each weighs its bytes + 256).
    let b = node_with("b", &ns, &redis, |c| {
        c.warm_up_keys = 5;
        c.max_bytes = Some(32 * 1024);
    })
    .await;
    assert!(warmed_reaches(&b, 3).await, "B warmed {}", warmed(&b).await);
    let big = big.as_str();
    l1_holds(&b, &[("h0", big), ("h1", big), ("h2", big)], &["h3", "h4"]).await;
    let stats = b.cache().stats().await;
    let n = stats.l1_caches[CAT].warmed;
    assert!(
        n % 3 == 0,
        "each warm-up stops at the first key that does not fit: {n}"
    );
    assert_eq!(stats.counters.evictions, 0, "warm-up evicted");
    a.shutdown().await;
    b.shutdown().await;
}

/// An integer reply of `args` (panics on anything else).
fn int(redis: &RedisServer, args: &[&str]) -> i64 {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match redis.command(&args) {
        Ok(Resp::Int(n)) => n,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ranking_decays_is_bounded_and_expires() {
    let redis = RedisServer::start();
    let ns = namespace("decay");
    let a = node("a", &ns, &redis, 2).await;
    let (set, marker) = (format!("{ns}:hot:{CAT}"), format!("{ns}:hot:{CAT}:decay"));
    // One key per sample: the ranking keeps 4 × warm_up_keys = 8 of these 12.
    for i in 0..12 {
        let k = format!("k{i:02}");
        hit(&a, &k, i + 2).await;
        recorded(&redis, &ns, &[(&k, i + 2)]).await;
    }
    assert_eq!(int(&redis, &["ZCARD", &set]), 8);
    assert_eq!(score(&redis, &ns, "k03"), 0.0, "a low one was kept");
    assert_eq!(score(&redis, &ns, "k04"), 6.0);
    let pttl = int(&redis, &["PTTL", &set]);
    assert!(
        pttl > 23 * 3600 * 1000,
        "the ranking expires after a day: {pttl} ms"
    );
    let pttl = int(&redis, &["PTTL", &marker]);
    assert!(pttl > 0 && pttl <= 600_000, "decay marker {pttl} ms");
    // The period is over: the next sample halves every score first.
    assert_eq!(int(&redis, &["DEL", &marker]), 1);
    hit(&a, "k11", 3).await;
    let halved = eventually(|| async { score(&redis, &ns, "k11") == 13.0 / 2.0 + 3.0 }).await;
    assert!(halved, "k11: {}", score(&redis, &ns, "k11"));
    assert_eq!(score(&redis, &ns, "k04"), 3.0);
    assert_eq!(score(&redis, &ns, "k05"), 3.5);
    a.shutdown().await;
}
