//! The library API as an embedding service uses it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hybrid_cache::{cache_key, CacheError, HybridCache};

#[derive(Debug)]
struct DbError(&'static str);
impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for DbError {}

/// Starts a `get_or_load` of `key` whose loader, once running, waits for the returned
/// sender before it returns `value`; returns when the loader is running.
async fn blocked_load(
    cache: &HybridCache,
    category: &'static str,
    key: &'static str,
    value: &'static [u8],
) -> (
    tokio::task::JoinHandle<Result<bytes::Bytes, CacheError>>,
    tokio::sync::oneshot::Sender<()>,
) {
    blocked_load_answering(cache, category, key, Ok(value)).await
}

/// [`blocked_load`] whose loader answers `answer` (`Err`: the loader fails with that message).
async fn blocked_load_answering(
    cache: &HybridCache,
    category: &'static str,
    key: &'static str,
    answer: Result<&'static [u8], &'static str>,
) -> (
    tokio::task::JoinHandle<Result<bytes::Bytes, CacheError>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader_cache = cache.clone();
    let load = tokio::spawn(async move {
        loader_cache
            .get_or_load(category, key, None, || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                answer.map(bytes::Bytes::from_static).map_err(DbError)
            })
            .await
    });
    started_rx.await.expect("the loader started");
    (load, release_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_misses_run_the_loader_once() {
    let cache = HybridCache::builder().build().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            cache
                .get_or_load("permissions", "get_user_permissions:7", None, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, DbError>(bytes::Bytes::from_static(b"perms"))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_ref(), b"perms");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = cache.stats().await;
    assert_eq!(s.counters.loads, 1);
    cache.shutdown().await;
}

#[tokio::test]
async fn loader_errors_are_returned_and_not_cached() {
    let cache = HybridCache::builder().build().await.unwrap();
    let r = cache
        .get_or_load("roles", "k", None, || async {
            Err::<bytes::Bytes, _>(DbError("db down"))
        })
        .await;
    assert!(matches!(r, Err(CacheError::Loader(_))), "{r:?}");
    let v = cache
        .get_or_load("roles", "k", None, || async {
            Ok::<_, DbError>(bytes::Bytes::from_static(b"ok"))
        })
        .await
        .unwrap();
    assert_eq!(v.as_ref(), b"ok");
    cache.shutdown().await;
}

#[tokio::test]
async fn typed_helpers_and_function_keys() {
    let cache = HybridCache::builder()
        .category("tenants", Duration::from_secs(60), 10)
        .build()
        .await
        .unwrap();
    let key = cache_key!("get_tenant", 42);
    assert_eq!(key, "get_tenant:42");
    let loaded: Vec<u32> = cache
        .get_or_load_json("tenants", &key, None, || async {
            Ok::<_, DbError>(vec![1, 2, 3])
        })
        .await
        .unwrap();
    assert_eq!(loaded, [1, 2, 3]);
    let again: Option<Vec<u32>> = cache.get_json("tenants", &key).await.unwrap();
    assert_eq!(again, Some(vec![1, 2, 3]));
    cache
        .set_json("tenants", "x", &"hello", None)
        .await
        .unwrap();
    assert_eq!(
        cache
            .get_json::<String>("tenants", "x")
            .await
            .unwrap()
            .as_deref(),
        Some("hello")
    );
    assert!(matches!(
        cache.get("nope", "x").await,
        Err(CacheError::UnknownCategory(_))
    ));
    assert!(matches!(
        cache.invalidate("*", "nope").await,
        Err(CacheError::UnknownCategory(_))
    ));
    let h = cache.health().await;
    assert_eq!(h.status, hybrid_cache::Status::Ok);
    cache.shutdown().await;
}

#[tokio::test]
async fn invalidation_during_a_load_keeps_the_old_value_out_of_l1() {
    let cache = HybridCache::builder().build().await.unwrap();
    let (load, release_tx) = blocked_load(&cache, "menus", "m", b"old").await;
    cache.delete("menus", "m").await.unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(
        load.await.unwrap().unwrap().as_ref(),
        b"old",
        "the caller still gets its value"
    );
    assert_eq!(
        cache.get("menus", "m").await.unwrap(),
        None,
        "but L1 does not keep it"
    );
    cache.shutdown().await;
}

/// Never used by tests: the system Redis port.
const SYSTEM_REDIS_PORT: u16 = 6379; // never touched

/// A port nothing listens on (never 6379): a Redis that is configured but unreachable.
fn dead_redis_url() -> String {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if port != SYSTEM_REDIS_PORT {
            return format!("redis://127.0.0.1:{port}/0");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lease_or_l2_the_loader_answers_and_nothing_stale_is_served() {
    let cache = HybridCache::builder()
        .redis_url(&dead_redis_url())
        .staleness_bound(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    for expected in 1..=2 {
        let l = loads.clone();
        let v = cache
            .get_or_load("roles", "r", None, || async move {
                l.fetch_add(1, Ordering::SeqCst);
                Ok::<_, DbError>(bytes::Bytes::from_static(b"from-db"))
            })
            .await
            .unwrap();
        assert_eq!(&v[..], b"from-db");
        // Nothing was cached: the source of truth answers every time.
        assert_eq!(loads.load(Ordering::SeqCst), expected);
    }
    assert!(matches!(
        cache.get("roles", "r").await,
        Err(CacheError::Unavailable(_))
    ));
    assert!(matches!(
        cache.set("roles", "r", "v", None).await,
        Err(CacheError::Unavailable(_))
    ));
    assert!(matches!(
        cache.delete("roles", "r").await,
        Err(CacheError::Unavailable(_))
    ));
    assert!(!cache.serving());
    cache.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_opt_in_keeps_the_original_behaviour() {
    let cache = HybridCache::builder()
        .redis_url(&dead_redis_url())
        .serve_stale_on_outage(true)
        .build()
        .await
        .unwrap();
    cache.set("roles", "r", "local", None).await.unwrap();
    assert_eq!(
        cache.get("roles", "r").await.unwrap().as_deref(),
        Some(&b"local"[..])
    );
    assert!(cache.serving());
    cache.shutdown().await;
}

/// Issue #23 item 1: a caller that starts after an invalidation must not get the value that
/// invalidation rejected by joining a load that started before it.
#[tokio::test(flavor = "current_thread")]
async fn a_caller_joining_a_load_overtaken_by_an_invalidation_loads_again() {
    let cache = HybridCache::builder().build().await.unwrap();
    let (a, release_tx) = blocked_load(&cache, "menus", "m", b"old").await;
    cache.delete("menus", "m").await.unwrap();
    let b_loads = Arc::new(AtomicUsize::new(0));
    let (b_cache, b_count) = (cache.clone(), b_loads.clone());
    let b = tokio::spawn(async move {
        b_cache
            .get_or_load("menus", "m", None, || async move {
                b_count.fetch_add(1, Ordering::SeqCst);
                Ok::<_, DbError>(bytes::Bytes::from_static(b"new"))
            })
            .await
    });
    // One thread: B runs until it waits on A's pending load (it joins, it does not load).
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        cache.stats().await.counters.misses,
        2,
        "B has not missed yet"
    );
    assert_eq!(b_loads.load(Ordering::SeqCst), 0, "B did not join A's load");
    release_tx.send(()).unwrap();
    assert_eq!(
        a.await.unwrap().unwrap().as_ref(),
        b"old",
        "A gets its own load"
    );
    assert_eq!(
        b.await.unwrap().unwrap().as_ref(),
        b"new",
        "B started after the delete: it must not get the value the delete rejected"
    );
    assert_eq!(b_loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.get("menus", "m").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    cache.shutdown().await;
}

/// Callers that join a load before any invalidation still share it (the loader runs once),
/// even when an invalidation lands after they joined.
#[tokio::test(flavor = "current_thread")]
async fn callers_joining_before_an_invalidation_share_the_load() {
    let cache = HybridCache::builder().build().await.unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    let mut started_tx = Some(started_tx);
    let mut release_rx = Some(release_rx);
    for _ in 0..3 {
        let (c, n) = (cache.clone(), loads.clone());
        let (s, r) = (started_tx.take(), release_rx.take());
        callers.push(tokio::spawn(async move {
            c.get_or_load("menus", "m", None, || async move {
                n.fetch_add(1, Ordering::SeqCst);
                if let Some(s) = s {
                    let _ = s.send(());
                }
                if let Some(r) = r {
                    let _ = r.await;
                }
                Ok::<_, DbError>(bytes::Bytes::from_static(b"v"))
            })
            .await
        }));
    }
    started_rx.await.unwrap();
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    cache.delete("menus", "m").await.unwrap();
    release_tx.send(()).unwrap();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap().as_ref(), b"v");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the joiners shared the load"
    );
    assert_eq!(
        cache.get("menus", "m").await.unwrap(),
        None,
        "L1 does not keep it"
    );
    cache.shutdown().await;
}

/// A load that fails after an acknowledged delete is not the answer of a caller that
/// started after the delete: that caller loads again (the failure, like a value, describes
/// the state before the delete).
#[tokio::test(flavor = "current_thread")]
async fn a_caller_joining_a_failing_load_overtaken_by_an_invalidation_loads_again() {
    let cache = HybridCache::builder().build().await.unwrap();
    let (a, release_tx) =
        blocked_load_answering(&cache, "menus", "m", Err("no such menu yet")).await;
    cache.delete("menus", "m").await.unwrap();
    let b_loads = Arc::new(AtomicUsize::new(0));
    let (b_cache, b_count) = (cache.clone(), b_loads.clone());
    let b = tokio::spawn(async move {
        b_cache
            .get_or_load("menus", "m", None, || async move {
                b_count.fetch_add(1, Ordering::SeqCst);
                Ok::<_, DbError>(bytes::Bytes::from_static(b"new"))
            })
            .await
    });
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b_loads.load(Ordering::SeqCst), 0, "B joined A's load");
    release_tx.send(()).unwrap();
    let a = a.await.unwrap();
    assert!(
        matches!(a, Err(CacheError::Loader(_))),
        "A gets its own failure: {a:?}"
    );
    assert_eq!(
        b.await.unwrap().unwrap().as_ref(),
        b"new",
        "B started after the delete: A's failure is not its answer"
    );
    assert_eq!(b_loads.load(Ordering::SeqCst), 1);
    cache.shutdown().await;
}
