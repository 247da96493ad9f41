//! Keys that contain glob characters are keys (CONTRACT §3): a write or delete of
//! `get_roles:[1, 2]` on one node drops exactly that key from another node's L1, and a glob in
//! the documented grammar reaches it on every node. Two library nodes share a private
//! `redis-server` (free loopback port, never 6379); every wait is a bounded poll.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hybrid_cache::{HybridCache, Source};
use support::RedisServer;

const BOUND: Duration = Duration::from_secs(5);
const CATEGORY: &str = "roles";
/// Keys a `cache_key` of list arguments produces, plus other glob and non-ASCII characters.
const KEYS: &[&str] = &["get_roles:[1, 2]", "x[1", "日本?*\\{a,b}", "get_roles:1"];

/// A library node on `redis`, once its L2 is connected and its bus subscribed (a write
/// before that would skip L2).
async fn node(redis: &RedisServer, ns: &str, id: &str) -> HybridCache {
    let n = HybridCache::builder()
        .redis_url(&redis.url())
        .namespace(ns)
        .node_id(id)
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    while !n.l2_enabled() {
        assert!(start.elapsed() < BOUND, "node {id}: L2 never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n
}

/// Polls `b` until it answers `want` for `key` from `source` (when given).
async fn until(b: &HybridCache, key: &str, want: Option<&[u8]>, source: Option<Source>) -> bool {
    let start = Instant::now();
    while start.elapsed() < BOUND {
        let got = b.get_with_source(CATEGORY, key).await.unwrap();
        let ok = match (&got, want) {
            (None, None) => true,
            (Some((v, s)), Some(w)) => v.as_ref() == w && source.map_or(true, |x| x == *s),
            _ => false,
        };
        if ok {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Writes `v1` for every key on `a` and waits until `b` serves each from its L1.
async fn seed(a: &HybridCache, b: &HybridCache) {
    for k in KEYS {
        a.set(CATEGORY, k, Bytes::from_static(b"v1"), None)
            .await
            .unwrap();
        assert!(
            until(b, k, Some(b"v1"), Some(Source::L1)).await,
            "B never served {k:?} from L1"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_deletes_and_globs_of_keys_with_glob_characters_reach_other_nodes() {
    let redis = RedisServer::start();
    let ns = format!("pk{:08x}", rand::random::<u32>());
    let (a, b) = (node(&redis, &ns, "a").await, node(&redis, &ns, "b").await);

    // Overwrite and delete on A: B drops exactly that key (not a glob reading of it).
    seed(&a, &b).await;
    a.set(
        CATEGORY,
        "get_roles:[1, 2]",
        Bytes::from_static(b"v2"),
        None,
    )
    .await
    .unwrap();
    assert!(until(&b, "get_roles:[1, 2]", Some(b"v2"), None).await);
    a.delete(CATEGORY, "x[1").await.unwrap();
    assert!(until(&b, "x[1", None, None).await, "x[1 still served");
    a.delete(CATEGORY, "日本?*\\{a,b}").await.unwrap();
    assert!(until(&b, "日本?*\\{a,b}", None, None).await);
    // `[1, 2]` read as a set would have matched `get_roles:1`: it is untouched.
    let untouched = b.get_with_source(CATEGORY, "get_roles:1").await.unwrap();
    assert_eq!(untouched, Some((Bytes::from_static(b"v1"), Source::L1)));

    // Globs in the one grammar: an escaped key is that key; sets and `?` select the same
    // keys in A's L2 and B's L1.
    seed(&a, &b).await;
    a.invalidate(r"get_roles:\[1, 2\]", CATEGORY).await.unwrap();
    assert!(until(&b, "get_roles:[1, 2]", None, None).await);
    assert!(until(&b, "get_roles:1", Some(b"v1"), Some(Source::L1)).await);
    a.invalidate("[!g]*", CATEGORY).await.unwrap();
    for k in ["x[1", "日本?*\\{a,b}"] {
        assert!(until(&b, k, None, None).await, "{k:?} survived [!g]*");
        assert_eq!(a.get(CATEGORY, k).await.unwrap(), None, "{k:?} left in L2");
    }
    assert!(until(&b, "get_roles:1", Some(b"v1"), Some(Source::L1)).await);
    a.invalidate("get_roles:?", CATEGORY).await.unwrap();
    assert!(until(&b, "get_roles:1", None, None).await);

    // Malformed globs are refused, not guessed at.
    assert!(a.invalidate("x[1", CATEGORY).await.is_err());
    a.shutdown().await;
    b.shutdown().await;
}
