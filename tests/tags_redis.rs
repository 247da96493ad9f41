//! Tags (issue #26 item 3) end to end: a private `redis-server` (free port, never 6379) and
//! three nodes in this process, driven over HTTP. A write carries tags (`PUT …?tags=a,b`);
//! `POST /v1/invalidate {"tag":…}` on any node removes every entry carrying the tag, in
//! every category, from every node's L1 and from L2. Every wait is a bounded poll.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use hybrid_cache::config::{Config, RedisTarget};
use hybrid_cache::server::node::Node;
use serde_json::{json, Value};
use support::{RedisServer, Resp};

/// Upper bound of every "eventually" in this file.
const BOUND: Duration = Duration::from_secs(5);

struct TestNode {
    node: Node,
    base: String,
}

impl TestNode {
    async fn start(id: &str, ns: &str, redis: Option<&RedisServer>) -> TestNode {
        Self::start_opt(id, ns, redis, false).await
    }

    /// `serve_stale_on_outage`: changes are accepted locally while Redis is unreachable
    /// and replayed into L2 when it is back.
    async fn start_opt(
        id: &str,
        ns: &str,
        redis: Option<&RedisServer>,
        serve_stale_on_outage: bool,
    ) -> TestNode {
        let config = Config {
            serve_stale_on_outage,
            node_id: id.to_string(),
            namespace: ns.to_string(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            redis: redis.map(|r| RedisTarget::Url {
                url: r.url(),
                password: None,
            }),
            ..Config::default()
        };
        let node = Node::start(config).await.expect("node starts");
        let base = format!("http://{}", node.http_addr());
        TestNode { node, base }
    }

    fn url(&self, category: &str, key: &str) -> String {
        format!("{}/v1/cache/{category}/{key}", self.base)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `(status, X-Cache)` of a GET.
async fn get(c: &reqwest::Client, n: &TestNode, cat: &str, key: &str) -> (u16, String) {
    let r = c.get(n.url(cat, key)).send().await.expect("GET");
    let source = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (r.status().as_u16(), source)
}

/// Status and JSON body of a `PUT …?tags=…`.
async fn put_tagged(
    c: &reqwest::Client,
    n: &TestNode,
    cat: &str,
    key: &str,
    tags: &str,
) -> (u16, Value) {
    let r = c
        .put(n.url(cat, key))
        .query(&[("tags", tags)])
        .body("v")
        .send()
        .await
        .expect("PUT");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn post_invalidate(c: &reqwest::Client, n: &TestNode, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{}/v1/invalidate", n.base))
        .json(&body)
        .send()
        .await
        .expect("POST /v1/invalidate");
    (r.status().as_u16(), r.json().await.expect("JSON body"))
}

/// Polls `f` (every 5 ms) until it yields true or `timeout` passes.
async fn poll<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every node has its Redis link up, holds its freshness lease and has heard
/// from every other node (see [`support::start_up_flushes_done`]).
async fn settle(nodes: &[&TestNode]) {
    let ok = poll(BOUND, || async {
        nodes
            .iter()
            .all(|n| n.node.cache().l2_enabled() && n.node.cache().lease_held())
    })
    .await;
    assert!(ok, "nodes did not settle within {BOUND:?}");
    let caches: Vec<_> = nodes.iter().map(|n| n.node.cache()).collect();
    support::start_up_flushes_done(&caches).await;
}

/// Reads `cat/key` on `n` until L1 answers it (the first read fills L1 from L2; a write's
/// invalidation arriving late may empty it once more).
async fn cached_in_l1(c: &reqwest::Client, n: &TestNode, cat: &str, key: &str) {
    let ok = poll(BOUND, || async {
        get(c, n, cat, key).await == (200, "L1".into())
    })
    .await;
    assert!(ok, "{}: {cat}/{key} never served from L1", n.base);
}

fn redis_get(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    match redis.command(&[b"GET", key.as_bytes()]).expect("GET") {
        Resp::Bulk(b) => b,
        other => panic!("GET answered {other:?}"),
    }
}

fn redis_exists(redis: &RedisServer, key: &str) -> bool {
    redis.command(&[b"EXISTS", key.as_bytes()]).expect("EXISTS") == Resp::Int(1)
}

/// Runs blocking harness code (redis-server start, raw RESP) off the workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidated_on_one_node_leaves_every_node_and_l2() {
    let redis = blocking(RedisServer::start);
    let ns = format!("tag{:08x}", rand::random::<u32>());
    let a = TestNode::start("a", &ns, Some(&redis)).await;
    let b = TestNode::start("b", &ns, Some(&redis)).await;
    let c3 = TestNode::start("c", &ns, Some(&redis)).await;
    settle(&[&a, &b, &c3]).await;
    let c = client();
    // One user's permissions and menus carry `user:123`; other entries must survive.
    let writes = [
        ("permissions", "u123", "user:123,tenant:7"),
        ("menus", "u123", "user:123"),
        ("roles", "u123", "user:999"),
    ];
    for (cat, key, tags) in writes {
        assert_eq!(put_tagged(&c, &a, cat, key, tags).await.0, 204, "{cat}");
    }
    let r = c
        .put(a.url("general", "u123"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Every node holds every entry in L1 (filled from L2 on b and c: tags and all).
    for n in [&a, &b, &c3] {
        for cat in ["permissions", "menus", "roles", "general"] {
            cached_in_l1(&c, n, cat, "u123").await;
        }
    }
    let l2_key = |cat: &str| format!("{ns}:{cat}:0:u123");
    let tag_set = |cat: &str| format!("{ns}:{cat}:tag:user:123");
    assert!(blocking(|| redis_exists(&redis, &tag_set("permissions"))));

    // Invalidated on c, a node that did not write any of it.
    let (status, body) = post_invalidate(&c, &c3, json!({"tag": "user:123"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["invalidated"], 2,
        "c's own L1 entries carrying the tag: {body}"
    );

    for n in [&a, &b, &c3] {
        for cat in ["permissions", "menus"] {
            let gone = poll(BOUND, || async { get(&c, n, cat, "u123").await.0 == 404 }).await;
            assert!(
                gone,
                "{}: {cat}/u123 still served after the tag invalidation",
                n.base
            );
        }
        // Untouched: not reloaded from L2, still in L1 (no category was flushed).
        for cat in ["roles", "general"] {
            assert_eq!(get(&c, n, cat, "u123").await, (200, "L1".into()), "{cat}");
        }
    }
    // L2: tombstones (type byte 0) where the tagged values were, the tag's sets gone, the
    // other values intact.
    for cat in ["permissions", "menus"] {
        let stored = blocking(|| redis_get(&redis, &l2_key(cat)));
        assert_eq!(stored.as_deref().and_then(|v| v.first()), Some(&0), "{cat}");
        assert!(!blocking(|| redis_exists(&redis, &tag_set(cat))), "{cat}");
    }
    for cat in ["roles", "general"] {
        let stored = blocking(|| redis_get(&redis, &l2_key(cat))).expect("value kept");
        assert_ne!(stored.first(), Some(&0), "{cat}");
    }
    for n in [a, b, c3] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rewritten_without_the_tag_survives_it() {
    let redis = blocking(RedisServer::start);
    let ns = format!("tag{:08x}", rand::random::<u32>());
    let a = TestNode::start("a", &ns, Some(&redis)).await;
    let b = TestNode::start("b", &ns, Some(&redis)).await;
    settle(&[&a, &b]).await;
    let (ca, cb) = (a.node.cache(), b.node.cache());
    ca.set_with_tags("roles", "k", "old", None, &["t:1"])
        .await
        .unwrap();
    ca.set_with_tags("menus", "k", "tagged", None, &["t:1"])
        .await
        .unwrap();
    ca.set_with_tags("general", "k", "old", None, &["t:1"])
        .await
        .unwrap();
    // Rewritten on b without the tag, or with another one: L2's set of `t:1` still lists
    // the keys.
    cb.set("roles", "k", "new", None).await.unwrap();
    cb.set_with_tags("general", "k", "new", None, &["t:2"])
        .await
        .unwrap();
    let seen = poll(BOUND, || async {
        ca.get("roles", "k").await.ok().flatten().as_deref() == Some(&b"new"[..])
            && ca.get("general", "k").await.ok().flatten().as_deref() == Some(&b"new"[..])
    })
    .await;
    assert!(seen, "a never saw b's write");
    assert_eq!(cb.invalidate_tag("t:1").await.unwrap(), 0);
    for cache in [ca, cb] {
        let gone = poll(BOUND, || async {
            cache.get("menus", "k").await.ok().flatten().is_none()
        })
        .await;
        assert!(gone, "the tagged value survived");
        for cat in ["roles", "general"] {
            let v = cache.get(cat, "k").await.unwrap();
            assert_eq!(v.as_deref(), Some(&b"new"[..]), "{cat}");
        }
    }
    for cat in ["roles", "general"] {
        let stored = blocking(|| redis_get(&redis, &format!("{ns}:{cat}:0:k"))).expect("kept");
        assert!(stored.ends_with(b"new"), "{cat}");
    }
    a.node.shutdown().await;
    b.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tags_and_bodies_are_refused_with_400() {
    let n = TestNode::start("solo", "tagbad", None).await;
    let c = client();
    let long = "t".repeat(129);
    let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    let many = many.join(",");
    for tags in [
        "",
        "a b",
        "a,,b",
        "ü",
        "a;b",
        "x*",
        long.as_str(),
        many.as_str(),
    ] {
        let (status, body) = put_tagged(&c, &n, "roles", "k", tags).await;
        assert_eq!(status, 400, "tags={tags:?}: {body}");
        assert_eq!(body["error"], "invalid_tag", "tags={tags:?}: {body}");
        assert!(body["message"].is_string(), "{body}");
        assert_eq!(get(&c, &n, "roles", "k").await.0, 404, "nothing written");
    }
    let refused = [
        (json!({"tag": "a b"}), "invalid_tag"),
        (json!({"tag": ""}), "invalid_tag"),
        (json!({"tag": long}), "invalid_tag"),
        (json!({"tag": "t", "category": "roles"}), "bad_body"),
        (json!({"tag": "t", "pattern": "*"}), "bad_body"),
        (json!({"category": "roles"}), "bad_body"),
        (json!({"pattern": "*"}), "bad_body"),
    ];
    for (req, code) in refused {
        let (status, body) = post_invalidate(&c, &n, req.clone()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{req}: {body}"
        );
    }
    // The well-formed forms work without Redis too (L1 only).
    assert_eq!(
        put_tagged(&c, &n, "roles", "k", "user:1,tenant.7").await.0,
        204
    );
    let (status, body) = post_invalidate(&c, &n, json!({"tag": "tenant.7"})).await;
    assert_eq!(
        (status, body["invalidated"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(get(&c, &n, "roles", "k").await.0, 404);
    let (status, _) = post_invalidate(&c, &n, json!({"category": "roles", "pattern": "*"})).await;
    assert_eq!(status, 200);
    n.node.shutdown().await;
}

async fn health_status(c: &reqwest::Client, n: &TestNode) -> String {
    let r = c
        .get(format!("{}/health", n.base))
        .send()
        .await
        .expect("health");
    let body: Value = r.json().await.expect("JSON health");
    body["status"].as_str().unwrap_or("").to_string()
}

/// Redis hangs (SIGSTOP: it keeps its data) while A invalidates a tag: the change waits in
/// A's L2 backlog as one tag entry per category and is replayed as the tag's deletion when
/// Redis answers again, so no node reads the tagged values back from L2, while the other
/// values of the same categories stay (no category-wide invalidation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidated_during_an_outage_is_replayed_into_l2() {
    let redis = blocking(RedisServer::start);
    let ns = format!("tag{:08x}", rand::random::<u32>());
    let a = TestNode::start_opt("a", &ns, Some(&redis), true).await;
    let b = TestNode::start_opt("b", &ns, Some(&redis), true).await;
    settle(&[&a, &b]).await;
    let c = client();
    let ca = a.node.cache();
    ca.set_with_tags("roles", "k1", "old", None, &["t"])
        .await
        .unwrap();
    ca.set_with_tags("menus", "k2", "old", None, &["t", "u"])
        .await
        .unwrap();
    ca.set_with_tags("roles", "k3", "kept", None, &["u"])
        .await
        .unwrap();

    blocking(|| redis.pause());
    let degraded = poll(BOUND, || async {
        health_status(&c, &a).await == "degraded" && health_status(&c, &b).await == "degraded"
    })
    .await;
    assert!(degraded, "nodes notice the hung Redis");
    ca.invalidate_tag("t")
        .await
        .expect("accepted locally (opt-in)");
    let categories = ca.stats().await.l1_caches.len();
    assert_eq!(
        ca.l2_backlog_len(),
        categories,
        "one tag entry per category"
    );

    blocking(|| redis.resume());
    let ok = poll(BOUND, || async {
        health_status(&c, &a).await == "ok"
            && health_status(&c, &b).await == "ok"
            && ca.l2_backlog_len() == 0
    })
    .await;
    assert!(ok, "nodes recover and A's backlog is replayed");
    for n in [&a, &b] {
        assert_eq!(get(&c, n, "roles", "k1").await.0, 404, "{}", n.base);
        assert_eq!(get(&c, n, "menus", "k2").await.0, 404, "{}", n.base);
        assert_eq!(get(&c, n, "roles", "k3").await.0, 200, "{}", n.base);
    }
    a.node.shutdown().await;
    b.node.shutdown().await;
}
