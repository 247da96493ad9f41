//! Read-through over HTTP: `GET /v1/load/{category}/{key}` with the node's origin
//! (`origin_url`), against a real `redis-server` and an origin server started here.
#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default Config at a time

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use hybrid_cache::config::{CategoryConfig, Config, RedisTarget};
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/{cat}/{key}", get(origin_get))
        .with_state(o);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

async fn start(redis: &RedisServer, origin: Option<String>, cat: CategoryConfig) -> (Node, String) {
    let mut config = Config::default();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    // Each node its own namespace: a stopped node's lease outlives it in Redis.
    config.namespace = format!("origin-test-{}", origin.is_some());
    config.redis = Some(RedisTarget::Url {
        url: redis.url(),
        password: None,
    });
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
