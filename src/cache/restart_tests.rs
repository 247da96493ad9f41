//! Issue #23 item 7: a change that finds its category's L1 writer dead, or restarted but
//! not yet registered, must not be lost.

use std::time::Duration;

use super::HybridCache;
use crate::bus::NodePort;
use crate::pattern::Pattern;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// Waits (bounded) until every category actor answers a barrier.
async fn settled(cache: &HybridCache) {
    for _ in 0..500 {
        if cache.shared.barrier().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the category actors never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_between_the_startup_flush_and_the_registration_is_not_lost() {
    let cache = HybridCache::builder().build().await.unwrap();
    let (reached, release, done) = cache.hold_next_writer_registration();
    cache.crash_category_actor("menus").unwrap();
    // The new actor has started and flushed L1, but is not registered yet.
    reached.await.unwrap();
    // A fill lands after the startup flush (a loader read the source before a peer's write)…
    let v = cache
        .get_or_load("menus", "m", None, || async {
            Ok::<_, Never>(Bytes::from_static(b"old"))
        })
        .await
        .unwrap();
    assert_eq!(&v[..], b"old");
    // …then the peer's invalidation arrives: the registered writer is the dead one.
    cache
        .shared
        .invalidate_l1("menus", Pattern::Exact("m".into()));
    release.send(()).unwrap();
    done.await.unwrap();
    settled(&cache).await;
    assert_eq!(
        cache.get("menus", "m").await.unwrap(),
        None,
        "the invalidation that found the writer restarting was lost"
    );
    cache.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_cast_to_a_dead_writer_flushes_its_category() {
    let cache = HybridCache::builder().build().await.unwrap();
    let (reached, release, done) = cache.hold_next_writer_registration();
    cache.crash_category_actor("menus").unwrap();
    reached.await.unwrap();
    cache
        .get_or_load("menus", "m", None, || async {
            Ok::<_, Never>(Bytes::from_static(b"old"))
        })
        .await
        .unwrap();
    // A glob invalidation too (it bumps the category generation in the actor only).
    cache
        .shared
        .invalidate_l1("menus", Pattern::glob("m*").unwrap());
    release.send(()).unwrap();
    done.await.unwrap();
    settled(&cache).await;
    assert_eq!(cache.get("menus", "m").await.unwrap(), None);
    // The restarted writer works: a later invalidation is applied normally.
    cache.set("menus", "n", "v", None).await.unwrap();
    cache
        .shared
        .invalidate_l1("menus", Pattern::Exact("n".into()));
    settled(&cache).await;
    assert_eq!(cache.get("menus", "n").await.unwrap(), None);
    cache.shutdown().await;
}
