//! Warm-up on a Redis Cluster (three primaries started here on free loopback ports): the
//! hot-key ranking and its decay marker share the category's slot (`{ns:category}:hot`), so
//! the ranking script runs there, and a node started afterwards warms from it. Every wait is
//! a bounded poll.

mod support;

use std::time::Duration;

use hc_testkit::cluster::command as cmd;
use hc_testkit::RedisCluster;
use hybrid_cache::config::{CategoryConfig, Config, RedisTarget};
use hybrid_cache::server::node::Node;
use hybrid_cache::Source;
use support::Resp;

/// Upper bound of every wait.
const BOUND: Duration = Duration::from_secs(20);
const CAT: &str = "warm";

async fn node(id: &str, ns: &str, nodes: &[String], warm_up_keys: u32) -> Node {
    let mut config = Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis: Some(RedisTarget::Cluster {
            nodes: nodes.to_vec(),
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
    assert!(
        until(|| async { node.cache().lease_held() }).await,
        "no lease"
    );
    node
}

async fn until<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The score of `key` in the ranking, read from whichever server has the slot.
fn score(ports: &[u16], ns: &str, key: &str) -> f64 {
    let set = format!("{{{ns}:{CAT}}}:hot");
    for &p in ports {
        if let Some(Resp::Bulk(found)) = cmd(p, &["ZSCORE", &set, key]) {
            return found.map_or(0.0, |b| String::from_utf8_lossy(&b).parse().unwrap_or(-1.0));
        }
        // A MOVED error: another server has the slot.
    }
    -1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let (ports, addrs) = (cluster.ports(), cluster.addrs());
    let ns = format!("wuc{:08x}", rand::random::<u32>());

    let a = node("a", &ns, &addrs, 2).await;
    for (k, n) in [("k0", 6), ("k1", 4), ("cold", 1)] {
        a.cache().set(CAT, k, "v1", None).await.unwrap();
        for _ in 0..n {
            let got = a.cache().get_with_source(CAT, k).await.unwrap();
            assert_eq!(got.map(|(_, s)| s), Some(Source::L1));
        }
    }
    let recorded =
        until(|| async { score(&ports, &ns, "k0") == 6.0 && score(&ports, &ns, "k1") == 4.0 })
            .await;
    assert!(recorded, "ranking: k0 {}", score(&ports, &ns, "k0"));

    let b = node("b", &ns, &addrs, 2).await;
    let l1 = b.cache().l1_categories().get(CAT).expect("category");
    let warmed =
        until(|| async { l1.peek("k0").await.is_some() && l1.peek("k1").await.is_some() }).await;
    let stats = b.cache().stats().await;
    assert!(warmed, "B did not warm: {:?}", stats.l1_caches[CAT]);
    assert!(stats.l1_caches[CAT].warmed >= 2);
    assert_eq!(l1.peek("cold").await, None);
    a.shutdown().await;
    b.shutdown().await;
}
