//! The fault checker's loader hook, `GET /v1/test/load/{category}/{key}` (HC_TEST_HOOKS=1):
//! `get_or_load` with a loader reading `HC_TEST_LOADER_URL`, against a fake database.
//! One test in this binary: it sets HC_TEST_LOADER_URL before its nodes start.
#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default Config at a time

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use hybrid_cache::config::Config;
use hybrid_cache::server::node::Node;

/// The fake database: values by (category, key), and every key it was asked for.
#[derive(Clone, Default)]
struct Db {
    values: Arc<Mutex<HashMap<(String, String), String>>>,
    asked: Arc<Mutex<Vec<(String, String)>>>,
}

async fn db_get(
    State(db): State<Db>,
    Path((cat, key)): Path<(String, String)>,
) -> Result<String, StatusCode> {
    db.asked.lock().unwrap().push((cat.clone(), key.clone()));
    // Slow enough that concurrent callers of one key overlap the load.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if key == "fail" {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let value = db.values.lock().unwrap().get(&(cat, key)).cloned();
    value.ok_or(StatusCode::NOT_FOUND)
}

async fn start_db(db: Db) -> String {
    support::serve_origin(
        Router::new()
            .route("/{cat}/{key}", get(db_get))
            .with_state(db),
    )
    .await
}

async fn start(test_hooks: bool) -> (Node, String) {
    let mut config = Config::default();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.test_hooks = test_hooks;
    let node = Node::start(config).await.expect("node starts");
    let base = format!("http://{}", node.http_addr());
    (node, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loader_hook_loads_once_per_key_maps_misses_and_exists_only_with_test_hooks() {
    let db = Db::default();
    let key = "a b/ü[1]*";
    db.values
        .lock()
        .unwrap()
        .insert(("menus".into(), key.into()), "v1".into());
    std::env::set_var("HC_TEST_LOADER_URL", start_db(db.clone()).await);
    let c = reqwest::Client::new();
    let enc = "a%20b%2F%C3%BC%5B1%5D%2A";

    // Without HC_TEST_HOOKS the route is unknown, like any other path.
    let (node, base) = start(false).await;
    let r = c
        .get(format!("{base}/v1/test/load/menus/{enc}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    node.shutdown().await;
    assert!(db.asked.lock().unwrap().is_empty());

    let (node, base) = start(true).await;
    let url = format!("{base}/v1/test/load/menus/{enc}");
    // Five concurrent callers of one key share one load (single flight), all get its value.
    let calls = (0..5).map(|_| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    for got in futures::future::join_all(calls).await {
        assert_eq!(got, (200, "v1".to_string()));
    }
    assert_eq!(
        *db.asked.lock().unwrap(),
        vec![("menus".to_string(), key.to_string())],
        "one load, the key decoded as bytes"
    );
    // Cached: a plain read sees the loaded value.
    let plain = c
        .get(format!("{base}/v1/cache/menus/{enc}"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.text().await.unwrap(), "v1");
    // Cache-aside write: the database changes, the key is invalidated, the next load reads it.
    db.values
        .lock()
        .unwrap()
        .insert(("menus".into(), key.into()), "v2".into());
    let del = c
        .delete(format!("{base}/v1/cache/menus/{enc}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v2");
    // The database has no value: 404; it fails: 502; an unknown category: 404 unknown_category.
    let r = c
        .get(format!("{base}/v1/test/load/menus/absent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let r = c
        .get(format!("{base}/v1/test/load/menus/fail"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "loader_failed");
    let r = c
        .get(format!("{base}/v1/test/load/nope/x"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_category");
    node.shutdown().await;
}
