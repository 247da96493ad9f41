//! Read-through over HTTP: `GET /v1/load/{category}/{key}` with the node's origin
//! (`origin_url`), against a real `redis-server` and an origin server started here.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use hybrid_cache::config::CategoryConfig;
use hybrid_cache::server::node::Node;
use support::RedisServer;

/// The origin: values by key, whether it fails (500), and how often it was asked.
#[derive(Clone, Default)]
struct Origin {
    values: Arc<Mutex<HashMap<String, String>>>,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Origin {
    fn set(&self, key: &str, value: &str) {
        self.values
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_string());
    }
}

async fn origin_get(
    State(o): State<Origin>,
    Path((_cat, key)): Path<(String, String)>,
) -> Result<String, StatusCode> {
    o.calls.fetch_add(1, Ordering::SeqCst);
    if o.failing.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let value = o.values.lock().unwrap().get(&key).cloned();
    value.ok_or(StatusCode::NOT_FOUND)
}

async fn start_origin(o: Origin) -> String {
    support::serve_origin(
        Router::new()
            .route("/{cat}/{key}", get(origin_get))
            .with_state(o),
    )
    .await
}

/// A node `id` in namespace `ns` with `origin` and the categories `menus` (`cat`) and
/// `short` (`cat` expiring after 1 s), once it holds its freshness lease.
async fn start_node(
    redis: &RedisServer,
    id: &str,
    ns: &str,
    origin: Option<String>,
    cat: CategoryConfig,
) -> (Node, String) {
    let mut config = support::node_config(id, ns, redis);
    config.origin_url = origin;
    config.categories.insert("menus".to_string(), cat);
    // Expires after 1 s, with a fail-safe copy kept for an hour.
    let short = CategoryConfig { ttl_secs: 1, ..cat };
    config.categories.insert("short".to_string(), short);
    let node = Node::start(config).await.expect("node starts");
    let base = format!("http://{}", node.http_addr());
    // Bounded wait until the node holds its freshness lease (L1 answers only then).
    for _ in 0..500 {
        let s: serde_json::Value = reqwest::get(format!("{base}/v1/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s.to_string().contains("\"lease_held\":true") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (node, base)
}

async fn start(redis: &RedisServer, origin: Option<String>, cat: CategoryConfig) -> (Node, String) {
    // Each node its own namespace: a stopped node's lease outlives it in Redis.
    let ns = format!("origin-test-{}", origin.is_some());
    start_node(redis, "n1", &ns, origin, cat).await
}

async fn load(c: &reqwest::Client, url: &str) -> (u16, Option<String>, String) {
    let r = c.get(url).send().await.unwrap();
    let x = r
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), x, r.text().await.unwrap())
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_through_miss_hit_not_found_fail_safe_and_invalidation() {
    let redis = RedisServer::start();
    let origin = Origin::default();
    origin.set("a", "v1");
    origin.set("b", "b1");
    let url = start_origin(origin.clone()).await;
    let cat = CategoryConfig {
        ttl_secs: 60,
        max_entries: 1000,
        fail_safe_max_age_secs: Some(3600),
        ..CategoryConfig::default()
    };
    let c = reqwest::Client::new();

    // No origin configured: 404 no_origin.
    let (node, base) = start(&redis, None, cat).await;
    let r = c
        .get(format!("{base}/v1/load/menus/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no_origin");
    node.shutdown().await;

    let (node, base) = start(&redis, Some(url), cat).await;
    let a = format!("{base}/v1/load/menus/a");
    assert_eq!(load(&c, &a).await, (200, some("MISS"), "v1".into()));
    let second = load(&c, &a).await;
    assert_eq!(origin.calls.load(Ordering::SeqCst), 1, "one origin call");
    assert_eq!(second, (200, some("HIT"), "v1".into()));
    // The origin's 404 is the route's 404.
    let (s, _, body) = load(&c, &format!("{base}/v1/load/menus/absent")).await;
    assert_eq!(s, 404);
    assert!(body.contains("not_found"), "{body}");

    // The origin fails and nothing is cached: 502 loader_failed.
    let b = format!("{base}/v1/load/short/b");
    let a2 = format!("{base}/v1/load/short/a");
    assert_eq!(load(&c, &b).await, (200, some("MISS"), "b1".into()));
    assert_eq!(load(&c, &a2).await.2, "v1");
    origin.failing.store(true, Ordering::SeqCst);
    let (s, _, body) = load(&c, &format!("{base}/v1/load/menus/never")).await;
    assert_eq!(s, 502);
    assert!(body.contains("loader_failed"), "{body}");
    // Fail-safe: past the 1 s TTL the origin's failure is answered with the last value.
    let del = c
        .delete(format!("{base}/v1/cache/short/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(load(&c, &b).await, (200, some("STALE"), "b1".into()));
    // An invalidated value is never the fail-safe answer.
    let (s, _, body) = load(&c, &a2).await;
    assert_eq!(s, 502, "an invalidated value is not served stale: {body}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_origins_not_found_is_cached_with_negative_ttl() {
    let redis = RedisServer::start();
    let origin = Origin::default();
    let url = start_origin(origin.clone()).await;
    let cat = CategoryConfig {
        ttl_secs: 60,
        max_entries: 1000,
        negative_ttl_secs: Some(60),
        ..CategoryConfig::default()
    };
    let (node, base) = start_node(&redis, "n1", "origin-negative", Some(url), cat).await;
    let c = reqwest::Client::new();
    let ghost = format!("{base}/v1/load/menus/ghost");
    let (s, x, body) = load(&c, &ghost).await;
    assert_eq!((s, x), (404, some("MISS")), "{body}");
    assert!(body.contains("not_found"), "{body}");
    // The "not found" is cached: answered without asking the origin again.
    let (s, x, _) = load(&c, &ghost).await;
    assert_eq!((s, x), (404, some("HIT")));
    assert_eq!(origin.calls.load(Ordering::SeqCst), 1, "one origin call");
    // The source gains the key and the application invalidates it: the next read loads it.
    origin.set("ghost", "g1");
    let del = c
        .delete(ghost.replace("/v1/load/", "/v1/cache/"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(load(&c, &ghost).await, (200, some("MISS"), "g1".into()));
    assert_eq!(origin.calls.load(Ordering::SeqCst), 2);

    // Without negative_ttl_secs, every read of an absent key asks the origin.
    node.shutdown().await;
    let plain = CategoryConfig {
        negative_ttl_secs: None,
        ..cat
    };
    let url = start_origin(origin.clone()).await;
    let (node, base) = start_node(&redis, "n1", "origin-no-negative", Some(url), plain).await;
    let absent = format!("{base}/v1/load/menus/absent");
    assert_eq!(load(&c, &absent).await.0, 404);
    assert_eq!(load(&c, &absent).await.0, 404);
    assert_eq!(
        origin.calls.load(Ordering::SeqCst),
        4,
        "not cached: two more calls"
    );
    node.shutdown().await;
}

/// Refresh-ahead over HTTP with two nodes on one Redis: past `refresh_after_secs` both answer
/// the cached value at once, one reload runs in the cluster, and its value reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_ahead_over_http_reloads_once_for_the_cluster() {
    let redis = RedisServer::start();
    let origin = Origin::default();
    origin.set("m", "v1");
    let url = start_origin(origin.clone()).await;
    let cat = CategoryConfig {
        ttl_secs: 60,
        max_entries: 1000,
        refresh_after_secs: Some(1),
        ..CategoryConfig::default()
    };
    let ns = "origin-refresh";
    let (n1, b1) = start_node(&redis, "n1", ns, Some(url.clone()), cat).await;
    let (n2, b2) = start_node(&redis, "n2", ns, Some(url), cat).await;
    support::start_up_flushes_done(&[n1.cache(), n2.cache()]).await;
    let c = reqwest::Client::new();
    let (u1, u2) = (
        format!("{b1}/v1/load/menus/m"),
        format!("{b2}/v1/load/menus/m"),
    );
    assert_eq!(load(&c, &u1).await, (200, some("MISS"), "v1".into()));
    // n2 fills from L2: no origin call.
    assert_eq!(load(&c, &u2).await, (200, some("HIT"), "v1".into()));
    assert_eq!(origin.calls.load(Ordering::SeqCst), 1);

    origin.set("m", "v2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Old enough: answered at once from L1, a reload started behind it.
    assert_eq!(load(&c, &u1).await, (200, some("HIT"), "v1".into()));
    let second = load(&c, &u2).await;
    assert_eq!((second.0, second.1), (200, some("HIT")));
    // The reloaded value replaces the key on both nodes (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (load(&c, &u1).await.2, load(&c, &u2).await.2);
        if a == "v2" && b == "v2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not refreshed: {a} {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        origin.calls.load(Ordering::SeqCst),
        2,
        "one reload in the cluster, not one per node"
    );
    n1.shutdown().await;
    n2.shutdown().await;
}
