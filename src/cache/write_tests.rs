//! The L1 half of a local write (`put_local`): an untagged value goes into moka without the
//! category actor, so what the actor's order gave it is checked here, deterministically:
//! a peer's change that raced the write leaves no copy, a fill that started before the
//! write never lands after it, and the write does not wait behind the category's removals.

use std::time::Duration;

use bytes::Bytes;

use super::HybridCache;
use crate::bus::NodePort;
use crate::pattern::Pattern;

const TTL: Duration = Duration::from_secs(60);

async fn l1(cache: &HybridCache, key: &str) -> Option<Bytes> {
    cache.get_l1("menus", key).await.unwrap()
}

/// A value put into L2 by this node (`in_l2`), its remote mark read before that L2 write.
async fn put(cache: &HybridCache, key: &str, value: &'static str, tags: &[&str], mark: (u64, u64)) {
    let tags = tags.iter().map(|t| t.to_string()).collect();
    cache
        .put_local(
            "menus",
            key,
            Bytes::from_static(value.as_bytes()),
            TTL,
            tags,
            mark,
            true,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_a_peers_change_of_its_key_raced_keeps_no_copy() {
    let cache = HybridCache::builder().build().await.unwrap();
    for tags in [&[][..], &["t"][..]] {
        // Nothing raced: the value stays.
        let mark = cache.shared.remote.snapshot("menus", "k");
        put(&cache, "k", "ours", tags, mark).await;
        assert_eq!(l1(&cache, "k").await.as_deref(), Some(&b"ours"[..]));

        // A peer changed the key between our mark and our put, and its invalidation reached
        // L1 before the put: L2 may hold the peer's value, so our copy goes.
        let mark = cache.shared.remote.snapshot("menus", "k");
        cache.shared.mark_remote_key("menus", "k");
        cache
            .shared
            .invalidate_l1("menus", Pattern::Exact("k".into()));
        assert!(cache.shared.barrier().await);
        put(&cache, "k", "raced", tags, mark).await;
        assert_eq!(
            l1(&cache, "k").await,
            None,
            "tags {tags:?}: a raced copy stayed"
        );

        // A category-wide change (or a flush) marks every key.
        let mark = cache.shared.remote.snapshot("menus", "k");
        cache.shared.mark_remote_all();
        put(&cache, "k", "raced", tags, mark).await;
        assert_eq!(
            l1(&cache, "k").await,
            None,
            "tags {tags:?}: a copy outlived a flush"
        );
    }
    cache.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_started_before_a_write_never_lands_after_it() {
    let cache = HybridCache::builder().build().await.unwrap();
    let menus = cache.category("menus").unwrap().clone();
    let ticket = menus.ticket("k");
    let mark = cache.shared.remote.snapshot("menus", "k");
    put(&cache, "k", "new", &[], mark).await;
    let filled = menus
        .fill("k", Bytes::from_static(b"old"), TTL, &ticket)
        .await;
    assert!(!filled, "the older fill was inserted after the write");
    assert_eq!(l1(&cache, "k").await.as_deref(), Some(&b"new"[..]));
    cache.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_write_does_not_wait_behind_the_categorys_removals() {
    let cache = HybridCache::builder().build().await.unwrap();
    // The category's actor is busy (a long backlog of invalidations, say).
    cache
        .stall_category_actor("menus", Duration::from_secs(4))
        .unwrap();
    let write = cache.set("menus", "k", "v", None);
    let done = tokio::time::timeout(Duration::from_secs(2), write).await;
    assert!(
        matches!(done, Ok(Ok(()))),
        "the write waited for the stalled actor"
    );
    assert_eq!(l1(&cache, "k").await.as_deref(), Some(&b"v"[..]));
    cache.shutdown().await;
}
