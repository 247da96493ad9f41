//! A real node on a free port, driven over HTTP: every route and error code of CONTRACT §5.
#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default Config at a time

use std::collections::BTreeMap;
use std::time::Duration;

use hybrid_cache::config::{CategoryConfig, Config};
use hybrid_cache::server::node::Node;
use serde_json::Value;

async fn start(mut config: Config) -> (Node, String) {
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    let node = Node::start(config).await.expect("node starts");
    let base = format!("http://{}", node.http_addr());
    (node, base)
}

async fn start_default() -> (Node, String) {
    start(Config::default()).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `url` and its JSON body.
async fn get_json(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    c.get(url)
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("a JSON body")
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error bodies are JSON");
    assert!(body["message"].is_string(), "error has a message: {body}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn put_get_delete_round_trip_with_x_cache() {
    let (node, base) = start_default().await;
    let c = client();
    let url = format!("{base}/v1/cache/permissions/get_user_permissions:123");
    let r = c.put(&url).body("[\"read\"]").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "L1");
    assert_eq!(r.headers()["x-node"], "n1");
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-length"], "8");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"[\"read\"]");
    let r = c.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (status, code) = error_code(c.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    // Deleting an absent key is fine.
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 204);
    node.shutdown().await;
}

#[tokio::test]
async fn error_codes() {
    let mut cfg = Config::default();
    cfg.max_key_bytes = 64;
    cfg.max_value_bytes = 1024;
    let (node, base) = start(cfg).await;
    let c = client();
    let (s, e) = error_code(
        c.get(format!("{base}/v1/cache/nope/k"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.as_str()), (404, "unknown_category"));
    let (s, e) = error_code(
        c.put(format!("{base}/v1/cache/nope/k"))
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.as_str()), (404, "unknown_category"));
    let long = "k".repeat(65);
    let (s, e) = error_code(
        c.put(format!("{base}/v1/cache/general/{long}"))
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.as_str()), (413, "key_too_large"));
    let (s, e) = error_code(
        c.put(format!("{base}/v1/cache/general/k"))
            .body(vec![b'x'; 2048])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.as_str()), (413, "value_too_large"));
    for ttl in ["abc", "0", "-5"] {
        let (s, e) = error_code(
            c.put(format!("{base}/v1/cache/general/k?ttl={ttl}"))
                .body("v")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, e.as_str()), (400, "invalid_ttl"), "ttl={ttl}");
    }
    let inv = format!("{base}/v1/invalidate");
    let (s, e) = error_code(c.post(&inv).body("{not json").send().await.unwrap()).await;
    assert_eq!((s, e.as_str()), (400, "bad_body"));
    let (s, e) = error_code(
        c.post(&inv)
            .json(&serde_json::json!({"category": "general", "pattern": "a[" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.as_str()), (400, "invalid_pattern"));
    let (s, e) = error_code(
        c.post(&inv)
            .json(&serde_json::json!({"category": "nope", "pattern": "*" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.as_str()), (404, "unknown_category"));
    let (s, e) = error_code(c.get(format!("{base}/no/such/route")).send().await.unwrap()).await;
    assert_eq!((s, e.as_str()), (404, "not_found"));
    // Bad input is counted.
    let stats: Value = get_json(&c, format!("{base}/v1/stats")).await;
    assert!(stats["counters"]["http_bad_requests"].as_u64().unwrap() >= 3);
    // After all that, the node still serves.
    assert_eq!(
        c.put(format!("{base}/v1/cache/general/ok"))
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    node.shutdown().await;
}

#[tokio::test]
async fn huge_body_is_rejected_and_node_keeps_serving() {
    let (node, base) = start_default().await;
    let c = client();
    c.put(format!("{base}/v1/cache/general/keep"))
        .body("kept")
        .send()
        .await
        .unwrap();
    let body = vec![b'x'; 64 * 1024 * 1024];
    match c
        .put(format!("{base}/v1/cache/general/huge"))
        .body(body)
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may answer 413 and close before the client finished sending.
        Err(e) => assert!(!e.is_timeout(), "unexpected error: {e}"),
    }
    let r = c
        .get(format!("{base}/v1/cache/general/keep"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"kept");
    let r = c
        .get(format!("{base}/v1/cache/general/huge"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing of the rejected body was stored");
    node.shutdown().await;
}

#[tokio::test]
async fn bearer_token_guards_mutations_only() {
    let mut cfg = Config::default();
    cfg.api_token = Some("s3cret".into());
    let (node, base) = start(cfg).await;
    let c = client();
    let url = format!("{base}/v1/cache/general/k");
    let (s, e) = error_code(c.put(&url).body("v").send().await.unwrap()).await;
    assert_eq!((s, e.as_str()), (401, "unauthorized"));
    let (s, _) = error_code(
        c.put(&url)
            .bearer_auth("wrong")
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = error_code(c.delete(&url).send().await.unwrap()).await;
    assert_eq!(s, 401);
    let (s, _) = error_code(
        c.post(format!("{base}/v1/invalidate"))
            .json(&serde_json::json!({"category":"general","pattern":"*"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        c.put(&url)
            .bearer_auth("s3cret")
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    // Reads need no token.
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    node.shutdown().await;
}

#[tokio::test]
async fn stats_health_metrics_and_cluster_formats() {
    let (node, base) = start_default().await;
    let c = client();
    c.put(format!("{base}/v1/cache/permissions/a"))
        .body("1")
        .send()
        .await
        .unwrap();
    c.get(format!("{base}/v1/cache/permissions/a"))
        .send()
        .await
        .unwrap();
    c.get(format!("{base}/v1/cache/permissions/missing"))
        .send()
        .await
        .unwrap();

    let s: Value = get_json(&c, format!("{base}/v1/stats")).await;
    assert_eq!(s["node_id"], "n1");
    assert_eq!(s["l2_enabled"], false);
    let p = &s["l1_caches"]["permissions"];
    assert_eq!(
        (p["size"].as_u64(), p["maxsize"].as_u64(), p["ttl"].as_u64()),
        (Some(1), Some(500), Some(600))
    );
    assert_eq!(
        (p["hits"].as_u64(), p["misses"].as_u64()),
        (Some(1), Some(1))
    );
    for cat in ["permissions", "menus", "roles", "prompts", "general"] {
        assert!(s["l1_caches"][cat].is_object(), "{cat} listed");
    }
    for k in [
        "hits_l1",
        "hits_l2",
        "misses",
        "loads",
        "evictions",
        "invalidations_sent",
        "invalidations_received",
        "coherence_flushes",
    ] {
        assert!(s["counters"][k].is_u64(), "counter {k}");
    }
    assert_eq!(s["counters"]["hits_l1"], 1);

    let r = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["env"], "development");
    assert_eq!(h["node_id"], "n1");
    assert_eq!(h["cache"]["l1_enabled"], true);
    assert_eq!(h["cache"]["l2_redis_enabled"], false);
    assert_eq!(h["cache"]["l1_stats"]["permissions"]["size"], 1);
    assert_eq!(h["cache"]["l1_stats"]["roles"]["maxsize"], 200);

    let m = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("hc_l1_hits_total{category=\"permissions\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("hc_misses_total{category=\"permissions\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("hc_l1_entries{category=\"permissions\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("hc_l1_evictions_total{category=\"roles\"} 0"),
        "{m}"
    );
    assert!(m.contains("hc_cluster_nodes{state=\"alive\"} 1"), "{m}");
    for refresh in ["started", "won", "lost", "failed", "discarded"] {
        let line = format!("hc_refreshes_{refresh}_total 0");
        assert!(m.contains(&line), "{line} in {m}");
    }

    let cs: Value = get_json(&c, format!("{base}/v1/cluster/stats")).await;
    assert_eq!(cs["self"], "n1");
    assert_eq!(cs["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(cs["nodes"][0]["state"], "alive");
    assert_eq!(cs["totals"]["nodes_alive"], 1);
    assert_eq!(cs["totals"]["l1_entries"], 1);
    assert_eq!(cs["totals"]["hits_l1"], 1);
    node.shutdown().await;
}

#[tokio::test]
async fn ttl_expiry_per_category_and_per_call() {
    let mut cfg = Config::default();
    cfg.categories = BTreeMap::from([
        (
            "short".to_string(),
            CategoryConfig {
                ttl_secs: 1,
                max_entries: 100,
                ..CategoryConfig::default()
            },
        ),
        (
            "long".to_string(),
            CategoryConfig {
                ttl_secs: 600,
                max_entries: 100,
                ..CategoryConfig::default()
            },
        ),
    ]);
    let (node, base) = start(cfg).await;
    let c = client();
    c.put(format!("{base}/v1/cache/short/a"))
        .body("1")
        .send()
        .await
        .unwrap();
    c.put(format!("{base}/v1/cache/long/b?ttl=1"))
        .body("2")
        .send()
        .await
        .unwrap();
    c.put(format!("{base}/v1/cache/long/c"))
        .body("3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get(format!("{base}/v1/cache/short/a"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        c.get(format!("{base}/v1/cache/short/a"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "category ttl"
    );
    assert_eq!(
        c.get(format!("{base}/v1/cache/long/b"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "per-call ttl"
    );
    assert_eq!(
        c.get(format!("{base}/v1/cache/long/c"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    node.shutdown().await;
}

#[tokio::test]
async fn capacity_bound_holds_for_roles() {
    let (node, base) = start_default().await;
    let c = client();
    for i in 0..500 {
        let r = c
            .put(format!("{base}/v1/cache/roles/r{i}"))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let s: Value = get_json(&c, format!("{base}/v1/stats")).await;
    let size = s["l1_caches"]["roles"]["size"].as_u64().unwrap();
    assert!(size <= 200 && size > 0, "roles size {size}");
    let ev = s["counters"]["evictions"].as_u64().unwrap();
    assert!(
        ev + size >= 500,
        "every write is either held or counted as evicted: size {size}, evictions {ev}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn glob_star_and_all_category_invalidation() {
    let (node, base) = start_default().await;
    let c = client();
    for k in ["get_user_menu:1", "get_user_menu:2", "get_user_roles:1"] {
        c.put(format!("{base}/v1/cache/menus/{k}"))
            .body("v")
            .send()
            .await
            .unwrap();
    }
    c.put(format!("{base}/v1/cache/roles/r"))
        .body("v")
        .send()
        .await
        .unwrap();
    let inv = |cat: &str, pat: &str| {
        c.post(format!("{base}/v1/invalidate"))
            .json(&serde_json::json!({"category": cat, "pattern": pat}))
            .send()
    };
    let r: Value = inv("menus", "get_user_menu:*")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["invalidated"], 2);
    assert_eq!(
        c.get(format!("{base}/v1/cache/menus/get_user_menu:1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("{base}/v1/cache/menus/get_user_roles:1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r: Value = inv("menus", "*").await.unwrap().json().await.unwrap();
    assert_eq!(r["invalidated"], 1);
    let r: Value = inv("menus", "get_user_roles:1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["invalidated"], 0);
    c.put(format!("{base}/v1/cache/menus/m"))
        .body("v")
        .send()
        .await
        .unwrap();
    let r: Value = inv("*", "*").await.unwrap().json().await.unwrap();
    assert_eq!(r["invalidated"], 2, "category * covers every category");
    assert_eq!(
        c.get(format!("{base}/v1/cache/roles/r"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    node.shutdown().await;
}

#[tokio::test]
async fn concurrent_clients_keep_their_own_values() {
    let (node, base) = start_default().await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..50 {
                let url = format!("{base}/v1/cache/general/t{t}:k{}", i % 5);
                let v = format!("{t}-{i}");
                assert_eq!(
                    c.put(&url).body(v.clone()).send().await.unwrap().status(),
                    204
                );
                let got = c.get(&url).send().await.unwrap().text().await.unwrap();
                assert_eq!(got, v, "read-your-writes for a key only this client writes");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    node.shutdown().await;
}

#[tokio::test]
async fn crashed_category_actor_is_restarted_and_node_keeps_serving() {
    let (node, base) = start_default().await;
    let c = client();
    c.put(format!("{base}/v1/cache/menus/m"))
        .body("v")
        .send()
        .await
        .unwrap();
    c.put(format!("{base}/v1/cache/roles/r"))
        .body("v")
        .send()
        .await
        .unwrap();
    node.cache().crash_category_actor("menus").unwrap();
    // The node keeps serving the other categories meanwhile.
    assert_eq!(
        c.get(format!("{base}/v1/cache/roles/r"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // After the restart the crashed category's L1 was flushed (its state is not trusted)…
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s: Value = get_json(&c, format!("{base}/v1/stats")).await;
        if s["counters"]["actor_restarts"] == 1 && s["l1_caches"]["menus"]["size"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no restart seen: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …and writes to it work again.
    assert_eq!(
        c.put(format!("{base}/v1/cache/menus/m2"))
            .body("w")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = c
        .get(format!("{base}/v1/cache/menus/m2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "w");
    node.shutdown().await;
}

#[tokio::test]
async fn crash_test_hook_exists_only_with_hc_test_hooks_and_needs_the_token() {
    // Without HC_TEST_HOOKS the route is unknown, like any other path.
    let (node, base) = start_default().await;
    let c = client();
    let resp = c
        .post(format!("{base}/v1/test/crash/menus"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let doc: Value = get_json(&c, format!("{base}/openapi.json")).await;
    assert!(
        !doc["paths"].to_string().contains("/v1/test/"),
        "the test hook is never documented"
    );
    node.shutdown().await;

    // With it and a token: 401 without the token, 404 for an unknown category.
    let mut config = Config::default();
    config.test_hooks = true;
    config.api_token = Some("secret".to_string());
    let (node, base) = start(config).await;
    let url = format!("{base}/v1/test/crash/menus");
    assert_eq!(c.post(&url).send().await.unwrap().status(), 401);
    let resp = c
        .post(format!("{base}/v1/test/crash/nope"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(resp).await,
        (404, "unknown_category".to_string())
    );
    let resp = c.post(&url).bearer_auth("secret").send().await.unwrap();
    assert_eq!(resp.status(), 204);
    node.shutdown().await;
}

#[tokio::test]
async fn crash_over_http_is_survived_and_an_invalidation_right_after_is_not_lost() {
    let mut config = Config::default();
    config.test_hooks = true;
    let (node, base) = start(config).await;
    let c = client();
    for round in 0..20 {
        let url = format!("{base}/v1/cache/menus/k{round}");
        assert_eq!(c.put(&url).body("old").send().await.unwrap().status(), 204);
        assert_eq!(
            c.get(&url).send().await.unwrap().text().await.unwrap(),
            "old"
        );
        let crash = c
            .post(format!("{base}/v1/test/crash/menus"))
            .send()
            .await
            .unwrap();
        assert_eq!(crash.status(), 204);
        // Right after the crash, while the actor may be dead or restarting.
        let inv = c
            .post(format!("{base}/v1/invalidate"))
            .json(&serde_json::json!({"category": "menus", "key": format!("k{round}")}))
            .send()
            .await
            .unwrap();
        let status = inv.status().as_u16();
        assert!(status == 200 || status == 503, "invalidate: {status}");
        let got = c.get(&url).send().await.unwrap();
        let status = got.status().as_u16();
        let body = got.text().await.unwrap();
        assert!(
            status != 200 || body != "old",
            "round {round}: the invalidated value was served after the crash"
        );
    }
    // The node survived every crash and serves the category again.
    let url = format!("{base}/v1/cache/menus/after");
    assert_eq!(c.put(&url).body("new").send().await.unwrap().status(), 204);
    assert_eq!(
        c.get(&url).send().await.unwrap().text().await.unwrap(),
        "new"
    );
    node.shutdown().await;
}
