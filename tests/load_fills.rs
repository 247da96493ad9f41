//! What a load may put into L2, against a private `redis-server` (free port, never 6379) and
//! two nodes in this process. A delete writes a tombstone carrying a random token; a load
//! that read a tombstone may replace exactly that one in L2, so a key deleted more often than
//! the tombstone lives (10 s) is still cached between deletes, while a delete made during a
//! load (a tombstone of its own) still keeps the load's value out of L2. A glob invalidation
//! made during a load keeps its value out of L2 even for a key the glob's scan could not
//! find (absent from L2 at the time).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hybrid_cache::server::node::Node;
use support::{RedisServer, Resp};

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct DbError;
impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("db error")
    }
}
impl std::error::Error for DbError {}

async fn two_nodes(redis: &RedisServer, test: &str) -> (Node, Node, String) {
    let ns = format!("fill{test}{:08x}", rand::random::<u32>());
    let a = Node::start(support::node_config("a", &ns, redis))
        .await
        .expect("node a starts");
    let b = Node::start(support::node_config("b", &ns, redis))
        .await
        .expect("node b starts");
    support::start_up_flushes_done(&[a.cache(), b.cache()]).await;
    (a, b, ns)
}

/// The raw L2 bytes of `key` of category `menus` (generation 0).
fn raw(redis: &RedisServer, ns: &str, key: &str) -> Option<Vec<u8>> {
    let k = format!("{ns}:menus:0:{key}");
    match redis.command(&[b"GET", k.as_bytes()]) {
        Ok(Resp::Bulk(b)) => b,
        other => panic!("GET {k}: {other:?}"),
    }
}

/// Waits until `node` answers `key` of `menus` with nothing (a delete has reached it).
async fn until_absent(node: &Node, key: &str) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while node.cache().get("menus", key).await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "{key} still cached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn counting(
    calls: &Arc<AtomicUsize>,
    value: &'static [u8],
) -> impl FnOnce() -> std::future::Ready<Result<Bytes, DbError>> {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Bytes::from_static(value)))
    }
}

/// Within the tombstone's 10 s, a load after a delete is cached: in L2 (the other node reads
/// it from there) and in L1 (the next call does not load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_after_a_delete_is_cached_in_l1_and_l2() {
    let redis = RedisServer::start();
    let (a, b, ns) = two_nodes(&redis, "after").await;
    a.cache().set("menus", "k", "v0", None).await.unwrap();
    b.cache().delete("menus", "k").await.unwrap();
    let tomb = raw(&redis, &ns, "k").expect("a tombstone");
    assert_eq!(tomb.len(), 17, "tag byte and a 16-byte token: {tomb:?}");
    assert_eq!(tomb[0], 0);
    until_absent(&a, "k").await;

    let calls = Arc::new(AtomicUsize::new(0));
    let v = a
        .cache()
        .get_or_load("menus", "k", None, counting(&calls, b"v1"))
        .await
        .unwrap();
    assert_eq!(v.as_ref(), b"v1");
    assert_eq!(
        raw(&redis, &ns, "k").as_deref(),
        Some(&b"\x01v1"[..]),
        "the load replaced the tombstone it read"
    );
    let again = a
        .cache()
        .get_or_load("menus", "k", None, counting(&calls, b"v2"))
        .await
        .unwrap();
    assert_eq!(again.as_ref(), b"v1", "answered from L1");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one load");
    assert_eq!(
        b.cache().get("menus", "k").await.unwrap().as_deref(),
        Some(&b"v1"[..]),
        "the other node reads the loaded value from L2"
    );

    // Deleted again, loaded again: every round is cached, none waits out a tombstone.
    for round in 0..3 {
        b.cache().delete("menus", "k").await.unwrap();
        until_absent(&a, "k").await;
        let before = calls.load(Ordering::SeqCst);
        a.cache()
            .get_or_load("menus", "k", None, counting(&calls, b"v3"))
            .await
            .unwrap();
        a.cache()
            .get_or_load("menus", "k", None, counting(&calls, b"v4"))
            .await
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 1,
            "round {round}: one load"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A delete acknowledged while a load runs writes a tombstone of its own: the load (which
/// read the previous tombstone) must not replace it, and no node serves the loaded value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_load_keeps_the_loaded_value_out_of_l2() {
    let redis = RedisServer::start();
    let (a, b, ns) = two_nodes(&redis, "during").await;
    a.cache().set("menus", "k", "v0", None).await.unwrap();
    b.cache().delete("menus", "k").await.unwrap();
    until_absent(&a, "k").await;
    let first = raw(&redis, &ns, "k").expect("a tombstone");

    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader_cache = a.cache().clone();
    let load = tokio::spawn(async move {
        loader_cache
            .get_or_load("menus", "k", None, || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok::<_, DbError>(Bytes::from_static(b"old"))
            })
            .await
    });
    started_rx.await.expect("the loader started");
    b.cache().delete("menus", "k").await.unwrap();
    let second = raw(&redis, &ns, "k").expect("a tombstone");
    assert_ne!(first, second, "each delete writes its own tombstone");
    release_tx.send(()).unwrap();
    assert_eq!(load.await.unwrap().unwrap().as_ref(), b"old");
    assert_eq!(
        raw(&redis, &ns, "k"),
        Some(second),
        "the load did not replace the later delete's tombstone"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in [&a, &b] {
        assert_eq!(n.cache().get("menus", "k").await.unwrap(), None);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A glob invalidation acknowledged while a load of a key absent from L2 runs (its scan
/// finds nothing to tombstone) still keeps the loaded value out of L2: the glob counted
/// itself in the category before scanning, and the fill checks that count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_invalidation_during_a_load_of_an_absent_key_keeps_it_out_of_l2() {
    let redis = RedisServer::start();
    let (a, b, ns) = two_nodes(&redis, "glob").await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader_cache = a.cache().clone();
    let load = tokio::spawn(async move {
        loader_cache
            .get_or_load("menus", "menu:7", None, || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok::<_, DbError>(Bytes::from_static(b"old"))
            })
            .await
    });
    started_rx.await.expect("the loader started");
    assert_eq!(raw(&redis, &ns, "menu:7"), None, "absent from L2");
    let received = a.cache().stats().await.counters.invalidations_received;
    b.cache().invalidate("menu:*", "menus").await.unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(load.await.unwrap().unwrap().as_ref(), b"old");
    assert_eq!(
        raw(&redis, &ns, "menu:7"),
        None,
        "the load that started before the glob did not fill L2"
    );
    for n in [&a, &b] {
        assert_eq!(n.cache().get("menus", "menu:7").await.unwrap(), None);
    }
    // A load after the glob fills as usual. `a` counts the glob when its bus receives it,
    // before its category actor applies it to L1, and a load whose L1 ticket that
    // application voids rightly leaves L2 alone: so load until one fills (bounded).
    let deadline = std::time::Instant::now() + BOUND;
    while a.cache().stats().await.counters.invalidations_received == received {
        assert!(
            std::time::Instant::now() < deadline,
            "a never received the glob"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let calls = Arc::new(AtomicUsize::new(0));
    while raw(&redis, &ns, "menu:7").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no load after the glob filled L2 ({} loads)",
            calls.load(Ordering::SeqCst)
        );
        a.cache()
            .get_or_load("menus", "menu:7", None, counting(&calls, b"new"))
            .await
            .unwrap();
    }
    assert_eq!(raw(&redis, &ns, "menu:7").as_deref(), Some(&b"\x01new"[..]));
    a.shutdown().await;
    b.shutdown().await;
}
