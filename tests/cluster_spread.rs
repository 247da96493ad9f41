//! Issue #25, item 5: on a Redis Cluster one category's keys spread over every primary (a
//! bucket per hash tag, buckets evenly spaced over the slots), so memory and load grow with
//! the cluster; and every category-wide change (`*`, glob, tag) reaches every bucket. Three
//! primaries started here on free loopback ports; every wait is a bounded poll.

mod support;

use std::time::Duration;

use futures::StreamExt;
use hc_testkit::cluster::command;
use hc_testkit::RedisCluster;
use hybrid_cache::config::{Config, RedisTarget};
use hybrid_cache::HybridCache;
use support::Resp;

const CAT: &str = "roles";
/// Keys written: enough that a fair share per primary is ±20 % with a wide margin.
const KEYS: usize = 3000;
/// Keys of each kind checked through a node (glob, tag, sample of the rest).
const SAMPLE: usize = 200;

async fn cache(id: &str, ns: &str, cluster: &RedisCluster) -> HybridCache {
    let config = Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        redis: Some(RedisTarget::Cluster {
            nodes: cluster.addrs(),
            password: None,
        }),
        ..Config::default()
    };
    let cache = HybridCache::builder()
        .config(config)
        .build()
        .await
        .expect("cache starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cache.lease_held() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.lease_held(), "{id} holds no lease");
    cache
}

/// Keys of one server matching `pattern` (test data only, so `KEYS` is fine).
fn keys(port: u16, pattern: &str) -> Vec<String> {
    match command(port, &["KEYS", pattern]) {
        Some(Resp::Array(Some(items))) => items.iter().filter_map(Resp::as_text).collect(),
        other => panic!("KEYS on {port} answered {other:?}"),
    }
}

/// Reads every key through `cache`; returns how many were found.
async fn found(cache: &HybridCache, keys: &[String]) -> usize {
    let mut n = 0;
    for k in keys {
        if cache.get(CAT, k).await.expect("read").is_some() {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_category_spreads_over_every_primary_and_every_invalidation_reaches_all_of_it() {
    let cluster = RedisCluster::start(3);
    let ns = format!("spread{:08x}", rand::random::<u32>());
    let a = cache("a", &ns, &cluster).await;

    let plain: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    let globbed: Vec<String> = (0..SAMPLE).map(|i| format!("g:{i}")).collect();
    let tagged: Vec<String> = (0..SAMPLE).map(|i| format!("t:{i}")).collect();
    futures::stream::iter(plain.iter().chain(&globbed))
        .for_each_concurrent(32, |k| {
            let a = &a;
            async move { a.set(CAT, k, "v", None).await.expect("write") }
        })
        .await;
    futures::stream::iter(&tagged)
        .for_each_concurrent(32, |k| {
            let a = &a;
            async move {
                a.set_with_tags(CAT, k, "v", None, &["grp"])
                    .await
                    .expect("tagged write")
            }
        })
        .await;

    // Every primary holds about a third of the category's data keys.
    let per_primary: Vec<usize> = cluster
        .ports()
        .iter()
        .map(|&p| keys(p, &format!("{{{ns}:{CAT}:*}}:0:k*")).len())
        .collect();
    assert_eq!(per_primary.iter().sum::<usize>(), KEYS, "{per_primary:?}");
    let fair = KEYS / 3;
    for (i, n) in per_primary.iter().enumerate() {
        assert!(
            n * 5 >= fair * 4 && n * 5 <= fair * 6,
            "primary {i} holds {n} of {KEYS} keys (fair share {fair} ± 20 %): {per_primary:?}"
        );
    }
    println!("keys per primary: {per_primary:?} of {KEYS}");

    // Another node reads them from L2, most at the bucket generation it learned (no script).
    let b = cache("b", &ns, &cluster).await;
    let sample = &plain[..SAMPLE];
    assert_eq!(found(&b, sample).await, SAMPLE);
    assert!(b.l2_fast_reads() > 0, "no L2 read used a known generation");

    // A glob reaches the keys of every bucket, and only those it matches.
    b.invalidate("g:*", CAT).await.expect("glob invalidation");
    let c = cache("c", &ns, &cluster).await;
    assert_eq!(found(&c, &globbed).await, 0, "a glob-matched key survived");
    assert_eq!(found(&c, sample).await, SAMPLE, "the glob took other keys");

    // A tag reaches its keys in every bucket.
    b.invalidate_tag("grp").await.expect("tag invalidation");
    let d = cache("d", &ns, &cluster).await;
    assert_eq!(found(&d, &tagged).await, 0, "a tagged key survived its tag");
    assert_eq!(found(&d, sample).await, SAMPLE, "the tag took other keys");

    // `*` bumps every bucket's generation.
    b.invalidate("*", CAT).await.expect("category invalidation");
    let gens: Vec<String> = cluster
        .ports()
        .iter()
        .flat_map(|&p| keys(p, &format!("{{{ns}:{CAT}:*}}:gen")))
        .collect();
    assert_eq!(gens.len(), hybrid_cache::internals::CLUSTER_BUCKETS);
    let e = cache("e", &ns, &cluster).await;
    assert_eq!(found(&e, sample).await, 0, "a key survived `*`");
    for x in [a, b, c, d, e] {
        x.shutdown().await;
    }
}
