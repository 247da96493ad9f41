//! `get_l1`: L1 alone, never L2, never a miss counted.

use bytes::Bytes;

use super::HybridCache;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_l1_answers_live_l1_values_only_and_counts_no_miss() {
    let cache = HybridCache::builder().build().await.unwrap();
    let misses = |c: &HybridCache| {
        c.category("menus")
            .unwrap()
            .counters
            .misses
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(cache.get_l1("menus", "m").await.unwrap(), None);
    assert_eq!(misses(&cache), 0, "get_l1 counted a miss");
    cache
        .set("menus", "m", Bytes::from_static(b"v1"), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get_l1("menus", "m").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    cache.delete("menus", "m").await.unwrap();
    assert_eq!(cache.get_l1("menus", "m").await.unwrap(), None);
    assert!(cache.get_l1("no-such-category", "m").await.is_err());
    // `get` on the same miss counts it: get_l1 is the part before that.
    assert_eq!(cache.get("menus", "m").await.unwrap(), None);
    assert_eq!(misses(&cache), 1);
}
