//! Redis L2 + cross-node L1 coherence, end to end: a private `redis-server` (free port, never
//! 6379) and several nodes in this process, driven over HTTP (and, for the races, through the
//! library API of one node). Every wait is a bounded poll.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hybrid_cache::config::{Config, RedisTarget};
use hybrid_cache::server::node::Node;
use hybrid_cache::wire::{self, BusMessage, ChangeKind, Invalidation};
use hybrid_cache::{HybridCache, Source};
use serde_json::{json, Value};
use support::RedisServer;

/// Upper bound of every "eventually" in this file (propagation is typically a few ms).
const BOUND: Duration = Duration::from_secs(5);

fn namespace(test: &str) -> String {
    format!("t{}{:08x}", test, rand::random::<u32>())
}

fn target(redis: &RedisServer) -> RedisTarget {
    RedisTarget::Url {
        url: redis.url(),
        password: None,
    }
}

struct TestNode {
    node: Node,
    base: String,
}

/// A node of namespace `ns` on a free loopback port, defaults otherwise.
fn node_config(id: &str, ns: &str, redis: Option<RedisTarget>) -> Config {
    Config {
        node_id: id.to_string(),
        namespace: ns.to_string(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis,
        ..Config::default()
    }
}

impl TestNode {
    async fn start(id: &str, ns: &str, redis: Option<RedisTarget>) -> TestNode {
        Self::start_opt(id, ns, redis, false).await
    }

    /// A node with the `serve_stale_on_outage` opt-in (the original module's behaviour).
    async fn start_serving_stale(id: &str, ns: &str, redis: Option<RedisTarget>) -> TestNode {
        Self::start_opt(id, ns, redis, true).await
    }

    async fn start_opt(
        id: &str,
        ns: &str,
        redis: Option<RedisTarget>,
        serve_stale_on_outage: bool,
    ) -> TestNode {
        Self::from_config(Config {
            serve_stale_on_outage,
            ..node_config(id, ns, redis)
        })
        .await
    }

    /// A node whose `permissions` category is `strict`.
    async fn start_strict(id: &str, ns: &str, redis: RedisTarget) -> TestNode {
        let mut config = node_config(id, ns, Some(redis));
        if let Some(c) = config.categories.get_mut("permissions") {
            c.consistency = hybrid_cache::config::Consistency::Strict;
        }
        Self::from_config(config).await
    }

    async fn from_config(config: Config) -> TestNode {
        let node = Node::start(config).await.expect("node starts");
        let base = format!("http://{}", node.http_addr());
        TestNode { node, base }
    }

    fn url(&self, category: &str, key: &str) -> String {
        format!("{}/v1/cache/{category}/{key}", self.base)
    }

    async fn flushes(&self) -> u64 {
        self.node.cache().stats().await.counters.coherence_flushes
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(4)
        .build()
        .unwrap()
}

/// `(status, X-Cache, body)` of a GET.
async fn get(c: &reqwest::Client, n: &TestNode, cat: &str, key: &str) -> (u16, String, Vec<u8>) {
    let r = c.get(n.url(cat, key)).send().await.expect("GET");
    let status = r.status().as_u16();
    let source = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, source, r.bytes().await.unwrap().to_vec())
}

async fn put(c: &reqwest::Client, n: &TestNode, cat: &str, key: &str, value: &str) {
    assert_eq!(
        put_status(c, n, cat, key, value).await,
        204,
        "PUT {cat}/{key} on {}",
        n.base
    );
}

async fn put_status(c: &reqwest::Client, n: &TestNode, cat: &str, key: &str, value: &str) -> u16 {
    let r = c
        .put(n.url(cat, key))
        .body(value.to_string())
        .send()
        .await
        .expect("PUT");
    r.status().as_u16()
}

/// Bus messages applied so far: invalidations, or flushes (a gap-revealing one).
async fn received(n: &TestNode) -> u64 {
    let c = n.node.cache().stats().await.counters;
    c.invalidations_received + c.coherence_flushes
}

/// PUT on `writer`, then waits until each of `others` has applied the write's invalidation
/// (from then on, their L2 fills of the key are not voided by a late message).
async fn put_seen(
    c: &reqwest::Client,
    writer: &TestNode,
    others: &[&TestNode],
    cat: &str,
    key: &str,
    value: &str,
) {
    let mut before = Vec::new();
    for n in others {
        before.push(received(n).await);
    }
    put(c, writer, cat, key, value).await;
    for (n, b) in others.iter().zip(before) {
        let ok = poll(BOUND, || async { received(n).await > b }).await;
        assert!(ok, "{}: invalidation of {cat}/{key} never arrived", n.base);
    }
}

async fn delete(c: &reqwest::Client, n: &TestNode, cat: &str, key: &str) {
    let r = c.delete(n.url(cat, key)).send().await.expect("DELETE");
    assert_eq!(r.status(), 204);
}

async fn invalidate(c: &reqwest::Client, n: &TestNode, cat: &str, pattern: &str) -> u64 {
    let r = c
        .post(format!("{}/v1/invalidate", n.base))
        .json(&json!({"category": cat, "pattern": pattern}))
        .send()
        .await
        .expect("POST /v1/invalidate");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["invalidated"].as_u64().expect("invalidated: N")
}

async fn json_of(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.expect("GET json");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

/// `/health`: 200 while the node can answer within its guarantee, 503 otherwise (a
/// balancer drains it); the body says why either way.
async fn health(c: &reqwest::Client, n: &TestNode) -> Value {
    let (status, body) = json_of(c, format!("{}/health", n.base)).await;
    let opt_in = n.node.cache().config().serve_stale_on_outage;
    match body["status"].as_str() {
        Some("ok") => assert_eq!(status, 200, "health: {body}"),
        Some("isolated") => assert_eq!(status, 503, "health: {body}"),
        Some("degraded") if opt_in => assert_eq!(status, 200, "health: {body}"),
        // Without the opt-in: 503 unless L2 still answers (only the subscription is down).
        Some("degraded") => assert!(status == 200 || status == 503, "health: {body}"),
        _ => panic!("unexpected health {status}: {body}"),
    }
    body
}

/// Polls `f` (every 2 ms) until it yields true or `timeout` passes.
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
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`support::settle`] for the test nodes.
async fn settle(nodes: &[&TestNode]) {
    let caches: Vec<&HybridCache> = nodes.iter().map(|n| n.node.cache()).collect();
    support::settle(&caches, BOUND).await;
}

/// The Redis key of a value: `{ns}:{category}:{generation}:{key}`.
fn redis_key(ns: &str, cat: &str, generation: u64, key: &str) -> String {
    format!("{ns}:{cat}:{generation}:{key}")
}

/// Writes a value straight into Redis, behind every node's back.
fn redis_set_value(redis: &RedisServer, key: &str, value: &[u8]) {
    let mut payload = vec![hybrid_cache::internals::TAG_VALUE];
    payload.extend_from_slice(value);
    let r = redis
        .command(&[b"SET", key.as_bytes(), &payload])
        .expect("SET");
    assert_eq!(r, support::Resp::Simple("OK".into()));
}

fn redis_get(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    match redis.command(&[b"GET", key.as_bytes()]).expect("GET") {
        support::Resp::Bulk(b) => b,
        other => panic!("GET answered {other:?}"),
    }
}

fn tagged(value: &[u8]) -> Vec<u8> {
    let mut v = vec![hybrid_cache::internals::TAG_VALUE];
    v.extend_from_slice(value);
    v
}

fn fake_invalidation(origin: &str, epoch: u64, seq: u64, cat: &str, pattern: &str) -> Vec<u8> {
    wire::encode(&BusMessage::Invalidation(Invalidation {
        origin: origin.into(),
        origin_epoch: epoch,
        seq,
        category: Some(cat.into()),
        target: hybrid_cache::wire::Target::Key(pattern.into()),
        kind: ChangeKind::Set,
        sent_at_ms: 0,
        ack_to: None,
    }))
    .unwrap()
}

/// Runs blocking harness code (redis-server start/kill/restart, raw RESP) off the workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_l2_and_keep_l1_coherent() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("three");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    let c = TestNode::start("c", &ns, Some(target(&redis))).await;
    settle(&[&a, &b, &c]).await;
    let http = client();

    // Set on A: B reads it from L2, then from its own L1.
    put_seen(
        &http,
        &a,
        &[&b, &c],
        "permissions",
        "get_user_permissions:1",
        "v1",
    )
    .await;
    assert_eq!(
        get(&http, &b, "permissions", "get_user_permissions:1").await,
        (200, "L2".into(), b"v1".to_vec())
    );
    assert_eq!(
        get(&http, &b, "permissions", "get_user_permissions:1").await,
        (200, "L1".into(), b"v1".to_vec())
    );
    assert_eq!(
        get(&http, &c, "permissions", "get_user_permissions:1").await,
        (200, "L2".into(), b"v1".to_vec())
    );
    assert_eq!(
        get(&http, &c, "permissions", "get_user_permissions:1").await,
        (200, "L1".into(), b"v1".to_vec())
    );

    // Update on A: B and C (which hold v1 in L1) return v2 within a bounded poll.
    let t0 = Instant::now();
    put(&http, &a, "permissions", "get_user_permissions:1", "v2").await;
    for n in [&b, &c] {
        let ok = poll(BOUND, || async {
            let (s, _, body) = get(&http, n, "permissions", "get_user_permissions:1").await;
            assert_eq!(s, 200);
            assert!(body == b"v1" || body == b"v2", "unexpected {body:?}");
            body == b"v2"
        })
        .await;
        assert!(ok, "update did not reach {}", n.base);
    }
    let took = t0.elapsed();
    eprintln!("update visible on B and C after {took:?}");
    eprintln!("update propagation {took:?}"); // timing is for benches, not assertions

    // Delete on B reaches A and C (and L2: a fresh read misses everywhere).
    assert_eq!(
        get(&http, &a, "permissions", "get_user_permissions:1")
            .await
            .1,
        "L1"
    );
    delete(&http, &b, "permissions", "get_user_permissions:1").await;
    for n in [&a, &b, &c] {
        let ok = poll(BOUND, || async {
            get(&http, n, "permissions", "get_user_permissions:1")
                .await
                .0
                == 404
        })
        .await;
        assert!(ok, "delete did not reach {}", n.base);
    }

    // Glob invalidation from C: matching keys leave every L1 and L2; the rest stays.
    for k in ["get_user_menu:1", "get_user_menu:2", "other:1"] {
        put_seen(&http, &a, &[&b, &c], "menus", k, &format!("m-{k}")).await;
        for n in [&a, &b, &c] {
            // L2 fill, then L1 hit.
            get(&http, n, "menus", k).await;
            assert_eq!(get(&http, n, "menus", k).await.1, "L1", "{k} on {}", n.base);
        }
    }
    assert_eq!(invalidate(&http, &c, "menus", "get_user_menu:*").await, 2);
    for n in [&a, &b, &c] {
        for k in ["get_user_menu:1", "get_user_menu:2"] {
            let ok = poll(BOUND, || async { get(&http, n, "menus", k).await.0 == 404 }).await;
            assert!(ok, "glob invalidation of {k} did not reach {}", n.base);
        }
        assert_eq!(
            get(&http, n, "menus", "other:1").await,
            (200, "L1".into(), b"m-other:1".to_vec())
        );
    }

    // `*` in one category from C: one INCR of the generation, no scan. The old-generation
    // key is still physically in Redis but no node can read it any more.
    let old = redis_key(&ns, "menus", 0, "other:1");
    assert_eq!(
        blocking(|| redis_get(&redis, &old)),
        Some(tagged(b"m-other:1"))
    );
    assert_eq!(invalidate(&http, &c, "menus", "*").await, 1);
    for n in [&a, &b, &c] {
        let ok = poll(BOUND, || async {
            get(&http, n, "menus", "other:1").await.0 == 404
        })
        .await;
        assert!(ok, "`*` invalidation did not reach {}", n.base);
    }
    let generation = blocking(|| redis_get(&redis, &format!("{ns}:gen:menus")));
    assert_eq!(generation.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        blocking(|| redis_get(&redis, &old)),
        Some(tagged(b"m-other:1")),
        "`*` must not scan/unlink: old keys expire by TTL"
    );
    // A brand-new node (empty L1) cannot read the old generation either.
    let d = TestNode::start("d", &ns, Some(target(&redis))).await;
    assert!(poll(BOUND, || async { d.node.cache().l2_enabled() }).await);
    assert_eq!(get(&http, &d, "menus", "other:1").await.0, 404);
    // The new generation works as usual.
    put(&http, &a, "menus", "other:1", "fresh").await;
    assert_eq!(
        get(&http, &d, "menus", "other:1").await,
        (200, "L2".into(), b"fresh".to_vec())
    );
    assert!(blocking(|| redis_get(&redis, &redis_key(&ns, "menus", 1, "other:1"))).is_some());

    // Category `*` from C: every category, every node.
    let keys = [
        ("permissions", "p:1"),
        ("roles", "r:1"),
        ("prompts", "x:1"),
        ("general", "g:1"),
        ("menus", "m:1"),
    ];
    for (cat, k) in keys {
        put_seen(&http, &a, &[&b, &c], cat, k, "val").await;
        for n in [&a, &b, &c] {
            // Polled: node d just joined, and first contact with it flushes every L1 once.
            let cached = poll(BOUND, || async { get(&http, n, cat, k).await.1 == "L1" }).await;
            assert!(cached, "{cat}/{k} never cached in L1 on {}", n.base);
        }
    }
    invalidate(&http, &c, "*", "*").await;
    for n in [&a, &b, &c, &d] {
        for (cat, k) in keys {
            let ok = poll(BOUND, || async { get(&http, n, cat, k).await.0 == 404 }).await;
            assert!(ok, "category `*` did not clear {cat}/{k} on {}", n.base);
        }
    }
    // Category `*` with a glob.
    for (cat, k) in [
        ("roles", "user:1"),
        ("general", "user:2"),
        ("general", "keep"),
    ] {
        put_seen(&http, &a, &[&b, &c], cat, k, "val").await;
        let cached = poll(BOUND, || async { get(&http, &b, cat, k).await.1 == "L1" }).await;
        assert!(cached, "{cat}/{k} never cached in L1 on b");
    }
    invalidate(&http, &c, "*", "user:*").await;
    for n in [&a, &b, &c] {
        for (cat, k) in [("roles", "user:1"), ("general", "user:2")] {
            let ok = poll(BOUND, || async { get(&http, n, cat, k).await.0 == 404 }).await;
            assert!(ok, "`*`/glob did not clear {cat}/{k} on {}", n.base);
        }
        assert_eq!(get(&http, n, "general", "keep").await.0, 200);
    }

    // Nothing above was a gap: only the settle-time flushes (link up + first contact with
    // each peer, d included), and no malformed traffic.
    for n in [&a, &b, &c] {
        let s = n.node.cache().stats().await.counters;
        assert!(s.coherence_flushes <= 4, "spurious flushes: {s:?}");
        assert_eq!(s.invalid_messages, 0);
        assert!(s.invalidations_received > 0);
    }
    for n in [a, b, c, d] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_messages_flush_and_never_serve_stale() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("lost");
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&b]).await;
    let http = client();
    let channel = hybrid_cache::internals::channel(&ns);
    let publish = |payload: Vec<u8>| blocking(|| redis.publish_raw(&channel, &payload));

    // First contact with a (fake) origin: baseline + flush.
    let base = b.flushes().await;
    assert_eq!(
        publish(fake_invalidation("ghost", 77, 1, "general", "x")),
        1
    );
    assert!(poll(BOUND, || async { b.flushes().await == base + 1 }).await);

    // B holds k in L1; Redis changes behind its back (the message about it is lost).
    put(&http, &b, "general", "k", "old").await;
    assert_eq!(
        get(&http, &b, "general", "k").await,
        (200, "L1".into(), b"old".to_vec())
    );
    blocking(|| redis_set_value(&redis, &redis_key(&ns, "general", 0, "k"), b"new"));
    assert_eq!(get(&http, &b, "general", "k").await.2, b"old");

    // In order: applied, no flush.
    let received = b.node.cache().stats().await.counters.invalidations_received;
    publish(fake_invalidation("ghost", 77, 2, "general", "unrelated"));
    assert!(
        poll(BOUND, || async {
            b.node.cache().stats().await.counters.invalidations_received > received
        })
        .await
    );
    assert_eq!(b.flushes().await, base + 1);
    assert_eq!(get(&http, &b, "general", "k").await.2, b"old");

    // Seq 4 after 2: seq 3 was lost (it could have named k) → flush → B reads L2.
    publish(fake_invalidation("ghost", 77, 4, "general", "unrelated"));
    assert!(poll(BOUND, || async { b.flushes().await == base + 2 }).await);
    assert_eq!(
        get(&http, &b, "general", "k").await,
        (200, "L2".into(), b"new".to_vec())
    );
    // A duplicate changes nothing.
    publish(fake_invalidation("ghost", 77, 4, "general", "unrelated"));
    assert!(
        poll(BOUND, || async {
            b.node.cache().stats().await.counters.duplicate_messages >= 1
        })
        .await
    );
    assert_eq!(b.flushes().await, base + 2);

    // Lost tail: a heartbeat announcing seq 6 when we saw 4 → flush.
    assert_eq!(get(&http, &b, "general", "k").await.1, "L1");
    blocking(|| redis_set_value(&redis, &redis_key(&ns, "general", 0, "k"), b"newer"));
    publish(
        wire::encode(&BusMessage::Heartbeat {
            origin: "ghost".into(),
            origin_epoch: 77,
            last_seq: 6,
        })
        .unwrap(),
    );
    assert!(poll(BOUND, || async { b.flushes().await == base + 3 }).await);
    assert_eq!(get(&http, &b, "general", "k").await.2, b"newer");

    // A restart of the origin (new epoch) → flush as well.
    assert_eq!(get(&http, &b, "general", "k").await.1, "L1");
    blocking(|| redis_set_value(&redis, &redis_key(&ns, "general", 0, "k"), b"newest"));
    publish(fake_invalidation("ghost", 78, 1, "general", "unrelated"));
    assert!(poll(BOUND, || async { b.flushes().await == base + 4 }).await);
    assert_eq!(get(&http, &b, "general", "k").await.2, b"newest");
    assert_eq!(b.node.cache().stats().await.counters.invalid_messages, 0);
    b.node.shutdown().await;
}

type LoadFuture = std::pin::Pin<Box<dyn Future<Output = Result<Bytes, std::io::Error>> + Send>>;

/// A loader gated by oneshots: tells when it started, returns `value` when released.
fn gated_loader(
    value: &'static str,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
    impl FnOnce() -> LoadFuture,
) {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let loader = move || {
        Box::pin(async move {
            let _ = entered_tx.send(());
            tokio::time::timeout(BOUND, release_rx)
                .await
                .expect("loader released in time")
                .expect("release sender kept");
            Ok(Bytes::from_static(value.as_bytes()))
        }) as LoadFuture
    };
    (entered_rx, release_tx, loader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loader_racing_an_update_never_fills_stale() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("race");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();

    // 1. The update's invalidation reaches B while B's loader is still running.
    let (entered, release, loader) = gated_loader("loaded-old");
    let cache = b.node.cache().clone();
    let load = tokio::spawn(async move {
        cache
            .get_or_load("general", "k1", Some(Duration::from_secs(60)), loader)
            .await
    });
    tokio::time::timeout(BOUND, entered).await.unwrap().unwrap();
    let received = b.node.cache().stats().await.counters.invalidations_received;
    put(&http, &a, "general", "k1", "from-a").await;
    assert!(
        poll(BOUND, || async {
            b.node.cache().stats().await.counters.invalidations_received > received
        })
        .await,
        "A's invalidation did not reach B"
    );
    release.send(()).unwrap();
    let returned = tokio::time::timeout(BOUND, load).await.unwrap().unwrap();
    // The caller may get what its loader read; the caches must not keep it.
    assert!(returned.is_ok());
    assert_eq!(
        b.node
            .cache()
            .get_with_source("general", "k1")
            .await
            .unwrap(),
        Some((Bytes::from_static(b"from-a"), Source::L2))
    );
    assert_eq!(
        blocking(|| redis_get(&redis, &redis_key(&ns, "general", 0, "k1"))),
        Some(tagged(b"from-a"))
    );

    // 2. A's write reached L2 but its message is still in flight when the loader returns:
    //    L2 refuses the fill (a newer value exists), so B must not keep the loaded value.
    let (entered, release, loader) = gated_loader("loaded-old");
    let cache = b.node.cache().clone();
    let load = tokio::spawn(async move {
        cache
            .get_or_load("general", "k2", Some(Duration::from_secs(60)), loader)
            .await
    });
    tokio::time::timeout(BOUND, entered).await.unwrap().unwrap();
    blocking(|| redis_set_value(&redis, &redis_key(&ns, "general", 0, "k2"), b"newer"));
    release.send(()).unwrap();
    tokio::time::timeout(BOUND, load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let seen = b
        .node
        .cache()
        .get_with_source("general", "k2")
        .await
        .unwrap();
    assert_ne!(
        seen,
        Some((Bytes::from_static(b"loaded-old"), Source::L1)),
        "B cached a load that L2 refused"
    );
    assert_eq!(seen.map(|(v, _)| v), Some(Bytes::from_static(b"newer")));

    // 3. A delete on A while B loads: B's load must not resurrect the key (L2 tombstone).
    let (entered, release, loader) = gated_loader("loaded-old");
    let cache = b.node.cache().clone();
    let load = tokio::spawn(async move {
        cache
            .get_or_load("general", "k3", Some(Duration::from_secs(60)), loader)
            .await
    });
    tokio::time::timeout(BOUND, entered).await.unwrap().unwrap();
    delete(&http, &a, "general", "k3").await;
    release.send(()).unwrap();
    tokio::time::timeout(BOUND, load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(get(&http, &a, "general", "k3").await.0, 404);
    let ok = poll(BOUND, || async {
        b.node.cache().get("general", "k3").await.unwrap().is_none()
    })
    .await;
    assert!(ok, "B kept a load that raced a delete");

    // 4. Without any race the loader's value is cached in both levels, and B's loader ran once.
    let (entered, release, loader) = gated_loader("loaded");
    let cache = b.node.cache().clone();
    let load = tokio::spawn(async move {
        cache
            .get_or_load("general", "k4", Some(Duration::from_secs(60)), loader)
            .await
    });
    tokio::time::timeout(BOUND, entered).await.unwrap().unwrap();
    release.send(()).unwrap();
    tokio::time::timeout(BOUND, load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        get(&http, &b, "general", "k4").await,
        (200, "L1".into(), b"loaded".to_vec())
    );
    assert_eq!(
        get(&http, &a, "general", "k4").await,
        (200, "L2".into(), b"loaded".to_vec())
    );
    a.node.shutdown().await;
    b.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_redis_killed_mid_traffic_degrades_then_recovers_without_stale_reads() {
    let mut redis = blocking(RedisServer::start);
    let ns = namespace("kill");
    let a = TestNode::start_serving_stale("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start_serving_stale("b", &ns, Some(target(&redis))).await;
    let c = TestNode::start_serving_stale("c", &ns, Some(target(&redis))).await;
    settle(&[&a, &b, &c]).await;
    let http = client();

    put_seen(&http, &a, &[&b, &c], "general", "hot", "hot-v").await;
    put_seen(&http, &a, &[&b, &c], "general", "changing", "pre-outage").await;
    for k in ["hot", "changing"] {
        get(&http, &b, "general", k).await;
        assert_eq!(get(&http, &b, "general", k).await.1, "L1");
    }

    // Background traffic on every node for the whole outage: never a 5xx.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bases: Vec<String> = [&a, &b, &c].iter().map(|n| n.base.clone()).collect();
    let traffic = {
        let stop = stop.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let (mut requests, mut server_errors) = (0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let base = &bases[(i % 3) as usize];
                let url = format!("{base}/v1/cache/general/traffic{}", i % 50);
                let r = if i % 4 == 0 {
                    http.put(&url).body("t").send().await
                } else {
                    http.get(&url).send().await
                };
                requests += 1;
                if r.map(|r| r.status().is_server_error()).unwrap_or(true) {
                    server_errors += 1;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (requests, server_errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    blocking(|| redis.kill());
    let killed = Instant::now();
    // Misses right after the kill (before/while the nodes notice) answer fast.
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let n = [&a, &b, &c][i % 3];
        let t = Instant::now();
        let (s, _, _) = get(&http, n, "general", &format!("absent-early-{i}")).await;
        let took = t.elapsed();
        assert_eq!(s, 404);
        slowest = slowest.max(took);
    }
    eprintln!("slowest miss right after the kill: {slowest:?}");

    for n in [&a, &b, &c] {
        let ok = poll(BOUND, || async {
            health(&http, n).await["status"] == "degraded"
        })
        .await;
        assert!(ok, "{} not degraded", n.base);
        let h = health(&http, n).await;
        assert_eq!(h["cache"]["l2_redis_enabled"], false, "{h}");
        assert_eq!(h["cache"]["l1_enabled"], true);
    }
    eprintln!("all nodes degraded {:?} after the kill", killed.elapsed());
    // L1 hits still served.
    assert_eq!(
        get(&http, &b, "general", "hot").await,
        (200, "L1".into(), b"hot-v".to_vec())
    );
    // Misses answer (how fast is a figure for the benches, not an assertion).
    for i in 0..30 {
        let n = [&a, &b, &c][i % 3];
        let t = Instant::now();
        assert_eq!(
            get(&http, n, "general", &format!("absent-{i}")).await.0,
            404
        );
        let took = t.elapsed();
        slowest = slowest.max(took);
    }
    eprintln!("slowest miss during the outage: {slowest:?}");
    // Writes apply locally.
    put(&http, &a, "general", "changing", "during-outage").await;
    assert_eq!(
        get(&http, &a, "general", "changing").await,
        (200, "L1".into(), b"during-outage".to_vec())
    );

    // Redis comes back on the same port: every node is ok again, quickly.
    blocking(|| redis.restart());
    let restarted = Instant::now();
    for n in [&a, &b, &c] {
        let ok = poll(BOUND, || async { health(&http, n).await["status"] == "ok" }).await;
        assert!(ok, "{} did not recover", n.base);
        assert_eq!(health(&http, n).await["cache"]["l2_redis_enabled"], true);
    }
    let recovery = restarted.elapsed();
    eprintln!("all nodes ok {recovery:?} after the restart");

    // B flushed on reconnect: the value replaced during the outage is never served.
    let (s, _, body) = get(&http, &b, "general", "changing").await;
    assert!(
        !(s == 200 && body == b"pre-outage"),
        "B served a value replaced during the outage"
    );
    // And coherence works again.
    // Under load a write right after the recovery can still miss its L2 write (its reply
    // past the deadline): the opt-in accepts it locally, and the replay then drops it
    // everywhere (see `opt_in_a_write_kept_only_locally_converges_once_replayed`). So write
    // until one reaches L2 (bounded); it must, and then it reads as usual.
    let deadline = Instant::now() + BOUND;
    loop {
        put_seen(&http, &a, &[&b, &c], "general", "after", "1").await;
        let read = get(&http, &b, "general", "after").await;
        if read.1 == "L2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write after the recovery reached L2: b answers {read:?}"
        );
    }
    assert_eq!(get(&http, &b, "general", "after").await.1, "L1");
    put(&http, &a, "general", "after", "2").await;
    let ok = poll(BOUND, || async {
        get(&http, &b, "general", "after").await.2 == b"2"
    })
    .await;
    assert!(ok, "coherence not restored after the outage");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (requests, server_errors) = traffic.await.unwrap();
    eprintln!("background traffic: {requests} requests, {server_errors} server errors");
    assert!(requests > 0);
    assert_eq!(server_errors, 0);
    for n in [a, b, c] {
        n.node.shutdown().await;
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_is_counted_and_harmless() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("garbage");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();
    let channel = hybrid_cache::internals::channel(&ns);

    let valid = fake_invalidation("ghost", 5, 1, "general", "k");
    let mut payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"hello, garbage".to_vec(),
        vec![0xff; 32],
        valid[..valid.len() - 3].to_vec(),
        valid[..1].to_vec(),
        {
            let mut v = valid.clone();
            v[0] = wire::WIRE_VERSION + 1;
            v
        },
        {
            let mut v = valid.clone();
            v.push(0);
            v
        },
        {
            let mut v = vec![wire::WIRE_VERSION];
            v.resize(wire::MAX_FRAME_BYTES + 1024, 7);
            v
        },
    ];
    for _ in 0..40 {
        let len = rand::random::<usize>() % 200;
        payloads.push((0..len).map(|_| rand::random::<u8>()).collect());
    }
    // Random bytes might (very rarely) form a valid frame: count what truly is garbage.
    let invalid = payloads
        .iter()
        .filter(|p| wire::decode::<BusMessage>(p).is_err())
        .count() as u64;
    let payloads: Vec<Vec<u8>> = payloads
        .into_iter()
        .filter(|p| wire::decode::<BusMessage>(p).is_err())
        .collect();
    assert!(invalid >= 45);
    for p in &payloads {
        assert_eq!(blocking(|| redis.publish_raw(&channel, p)), 2);
    }
    for n in [&a, &b] {
        let ok = poll(BOUND, || async {
            n.node.cache().stats().await.counters.invalid_messages >= invalid
        })
        .await;
        assert!(ok, "{} did not count every bad payload", n.base);
        let (_, stats) = json_of(&http, format!("{}/v1/stats", n.base)).await;
        assert_eq!(stats["counters"]["invalid_messages"], invalid, "{stats}");
        let text = http
            .get(format!("{}/metrics", n.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric(&text, "hc_invalid_messages_total"),
            invalid,
            "{text}"
        );
        assert_eq!(health(&http, n).await["status"], "ok");
    }

    // Still serving, still coherent.
    put_seen(&http, &a, &[&b], "general", "k", "1").await;
    assert_eq!(
        get(&http, &b, "general", "k").await,
        (200, "L2".into(), b"1".to_vec())
    );
    assert_eq!(get(&http, &b, "general", "k").await.1, "L1");
    put(&http, &a, "general", "k", "2").await;
    let ok = poll(BOUND, || async {
        get(&http, &b, "general", "k").await.2 == b"2"
    })
    .await;
    assert!(ok, "not coherent after garbage");
    a.node.shutdown().await;
    b.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_from_config_and_wrong_password_degrades() {
    let redis = blocking(|| RedisServer::start_with_password("s3cret-pw"));
    let ns = namespace("auth");
    // What REDIS_URL without credentials + REDIS_PASSWORD produce.
    let url = format!("redis://127.0.0.1:{}/0", redis.port());
    let with = |pw: &str| RedisTarget::Url {
        url: url.clone(),
        password: Some(pw.to_string()),
    };
    let a = TestNode::start("a", &ns, Some(with("s3cret-pw"))).await;
    let b = TestNode::start("b", &ns, Some(with("s3cret-pw"))).await;
    let w = TestNode::start("w", &ns, Some(with("wrong"))).await;
    settle(&[&a, &b]).await;
    let http = client();

    put_seen(&http, &a, &[&b], "roles", "r", "admin").await;
    assert_eq!(
        get(&http, &b, "roles", "r").await,
        (200, "L2".into(), b"admin".to_vec())
    );
    assert_eq!(get(&http, &b, "roles", "r").await.1, "L1");

    // The wrong password: degraded, never connected; it can vouch for nothing, so it
    // answers 503 (and its /health drains it) instead of serving or accepting changes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, h) = json_of(&http, format!("{}/health", w.base)).await;
    assert_eq!((code, h["status"].as_str()), (503, Some("degraded")), "{h}");
    assert_eq!(h["cache"]["l2_redis_enabled"], false);
    assert_eq!(get(&http, &w, "roles", "r").await.0, 503);
    assert_eq!(put_status(&http, &w, "roles", "local", "x").await, 503);
    assert_eq!(health(&http, &a).await["status"], "ok");
    for n in [a, b, w] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_immediate_shutdown_still_invalidates_peers() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("stop");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();
    put_seen(&http, &a, &[&b], "general", "k", "old").await;
    get(&http, &b, "general", "k").await;
    assert_eq!(get(&http, &b, "general", "k").await.1, "L1");
    // The write returns, and its node goes away at once (no later heartbeat would reveal a
    // lost invalidation): B must still drop its copy.
    a.node
        .cache()
        .set("general", "k", "new", None)
        .await
        .unwrap();
    a.node.shutdown().await;
    let ok = poll(BOUND, || async {
        get(&http, &b, "general", "k").await.2 == b"new"
    })
    .await;
    assert!(ok, "B kept the old value after the writer stopped");
    b.node.shutdown().await;
}

/// Two nodes write the same keys at the same time, over and over: once quiet, every node's
/// answer is what L2 holds (the last write in Redis order), never its own losing write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_converge_to_l2() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("conc");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    const ROUNDS: usize = 300;
    for round in 0..ROUNDS {
        let key = format!("k{}", round % 20);
        let (ca, cb) = (a.node.cache().clone(), b.node.cache().clone());
        let (ka, kb) = (key.clone(), key.clone());
        let wa =
            tokio::spawn(async move { ca.set("general", &ka, format!("a{round}"), None).await });
        let wb =
            tokio::spawn(async move { cb.set("general", &kb, format!("b{round}"), None).await });
        wa.await.unwrap().unwrap();
        wb.await.unwrap().unwrap();
    }
    // Quiet: wait until each node has heard every write of the other.
    for (n, other) in [(&a, &b), (&b, &a)] {
        let sent = other.node.cache().stats().await.counters.invalidations_sent;
        let ok = poll(BOUND, || async { received(n).await >= sent }).await;
        assert!(ok, "{} did not hear all {sent} writes", n.base);
    }
    let mut stale = Vec::new();
    for i in 0..20 {
        let key = format!("k{i}");
        let in_l2 =
            blocking(|| redis_get(&redis, &redis_key(&ns, "general", 0, &key))).expect("key in L2");
        for n in [&a, &b] {
            let (v, src) = n
                .node
                .cache()
                .get_with_source("general", &key)
                .await
                .unwrap()
                .expect("value");
            if tagged(&v) != in_l2 {
                stale.push(format!(
                    "{} {key}: {:?} from {src:?}, L2 has {:?}",
                    n.base,
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(&in_l2[1..])
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "nodes disagree with L2:\n{}",
        stale.join("\n")
    );
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// Redis hangs (SIGSTOP: it keeps its data) while A writes: when it comes back, L2 must not
/// serve the value A replaced during the outage — A replays its changes into L2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_writes_during_an_outage_are_replayed_into_l2() {
    let redis = RedisServer::start();
    let ns = namespace("replay");
    let a = TestNode::start_serving_stale("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start_serving_stale("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let c = client();
    put(&c, &a, "roles", "r1", "old").await;
    put(&c, &a, "roles", "r2", "old").await;
    assert_eq!(get(&c, &b, "roles", "r1").await.1, "L2");

    redis.pause();
    let degraded = poll(Duration::from_secs(5), || async {
        health(&c, &a).await["status"] == "degraded" && health(&c, &b).await["status"] == "degraded"
    })
    .await;
    assert!(degraded, "nodes notice the hung Redis");
    // Writes apply locally while Redis is unreachable.
    put(&c, &a, "roles", "r1", "new").await;
    delete(&c, &a, "roles", "r2").await;
    let pending = a.node.cache().l2_backlog_len();
    assert_eq!(pending, 2, "both changes are remembered for L2");
    let m = c
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&m, "hc_l2_backlog"),
        2,
        "backlog visible in /metrics"
    );

    redis.resume();
    let ok = poll(Duration::from_secs(5), || async {
        health(&c, &a).await["status"] == "ok" && health(&c, &b).await["status"] == "ok"
    })
    .await;
    assert!(ok, "nodes recover");
    assert!(
        poll(Duration::from_secs(2), || async {
            a.node.cache().l2_backlog_len() == 0
        })
        .await,
        "backlog replayed"
    );
    // Redis kept "old" for both keys; nobody may serve it now.
    for n in [&a, &b] {
        for key in ["r1", "r2"] {
            let (status, _, body) = get(&c, n, "roles", key).await;
            assert!(
                status == 404 || body != b"old",
                "stale pre-outage value served for {key}"
            );
        }
    }
}

fn free_udp_addr() -> std::net::SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// Only A has lost Redis (B still reaches it). A cannot acknowledge a write only it would
/// know about (B reads the truth from L2), nor serve reads it cannot vouch for: both answer
/// 503, and its /health tells a balancer to drain it. B keeps serving the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cut_off_from_redis_refuses_what_it_cannot_vouch_for() {
    let redis = RedisServer::start();
    let dead = support::free_port();
    let ns = namespace("partial");
    let (ga, gb) = (free_udp_addr(), free_udp_addr());
    let start = |id: &str, redis: RedisTarget, gossip, peer: std::net::SocketAddr| {
        TestNode::from_config(Config {
            gossip_addr: Some(gossip),
            cluster_secret: Some("coherence-test-cluster-secret".into()),
            peers: vec![peer.to_string()],
            ..node_config(id, &ns, Some(redis))
        })
    };
    let unreachable = RedisTarget::Url {
        url: format!("redis://127.0.0.1:{dead}/0"),
        password: None,
    };
    let a = start("a", unreachable, ga, gb).await;
    let b = start("b", target(&redis), gb, ga).await;
    let c = client();
    let met = poll(Duration::from_secs(10), || async {
        let cs = json_of(&c, format!("{}/v1/cluster/stats", a.base)).await.1;
        cs["totals"]["nodes_alive"] == 2 && b.node.cache().l2_enabled()
    })
    .await;
    assert!(met, "a and b gossip, b has Redis");
    let (code, h) = json_of(&c, format!("{}/health", a.base)).await;
    assert_eq!((code, h["status"].as_str()), (503, Some("degraded")), "{h}");

    put(&c, &b, "roles", "k", "old").await;
    // B reads L2 once its replay hold ends (every live peer, A too, sent its backlog; at
    // least the join grace after its start): until then its misses answer 503.
    let served = poll(Duration::from_secs(5), || async {
        get(&c, &b, "roles", "k").await.2 == b"old"
    })
    .await;
    assert!(
        served,
        "b serves the value it wrote once its replay hold ends"
    );
    assert_eq!(put_status(&c, &a, "roles", "k", "new").await, 503);
    let (status, _, body) = get(&c, &a, "roles", "k").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("unavailable"));
    // B: the refused write never happened.
    assert_eq!(get(&c, &b, "roles", "k").await.2, b"old");
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// A value write whose caller timed out (Redis hung) but whose bytes reach Redis later must
/// not overwrite what was there: writes carry a deadline checked against Redis's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_delivered_write_is_refused_by_redis() {
    use hybrid_cache::internals::{L2, LATE_WRITE_ALLOWANCE};
    let redis = RedisServer::start();
    let ns = namespace("late");
    let timeout = Duration::from_millis(150);
    let l2 = L2::new(&ns, timeout);
    let conn = L2::connect(&target(&redis), timeout)
        .await
        .expect("connect");
    l2.install(Some(conn));
    l2.set("roles", "k", b"old", Duration::from_secs(60), None)
        .await
        .expect("set");

    redis.pause();
    let r = l2
        .set("roles", "k", b"late", Duration::from_secs(60), None)
        .await;
    assert!(r.is_err(), "the write times out while Redis hangs");
    tokio::time::sleep(timeout + LATE_WRITE_ALLOWANCE + Duration::from_millis(300)).await;
    redis.resume(); // Redis now executes the queued write: too late.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let key = redis_key(&ns, "roles", 0, "k");
    assert_eq!(
        blocking(|| redis_get(&redis, &key)),
        Some(tagged(b"old")),
        "the late write must not apply"
    );
    // A timely write still applies.
    tokio::time::sleep(Duration::from_millis(600)).await; // breaker half-open again
    l2.set("roles", "k", b"new", Duration::from_secs(60), None)
        .await
        .expect("set after recovery");
    assert_eq!(blocking(|| redis_get(&redis, &key)), Some(tagged(b"new")));
}

/// A write held up inside the node must not apply after its caller's `x-hc-deadline-ms`.
/// Here it queues behind a delete of the same key whose L1 step is held up (the category
/// actor stalled: a stand-in for a node paused mid-write, as the fault checker's SIGSTOP
/// does); when it gets the key's lock its deadline has passed: refused with 408, and the
/// value never appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_past_its_deadline_is_refused_not_applied_late() {
    let redis = RedisServer::start();
    let ns = namespace("deadline");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    settle(&[&a]).await;
    let c = client();
    let unix_ms = |d: Duration| {
        (std::time::SystemTime::now() + d)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string()
    };
    // With a deadline in the future, the write applies.
    let r = c
        .put(a.url("general", "k"))
        .header("x-hc-deadline-ms", unix_ms(Duration::from_secs(5)))
        .body("v1")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 204);

    // A delete takes the key's lock, lands in L2, then waits for the stalled actor…
    a.node
        .cache()
        .stall_category_actor("general", Duration::from_millis(600))
        .expect("stall");
    let first = tokio::spawn({
        let (c, url) = (c.clone(), a.url("general", "k"));
        async move { c.delete(url).send().await.map(|r| r.status().as_u16()) }
    });
    let key = redis_key(&ns, "general", 0, "k");
    let in_l2 = poll(Duration::from_secs(5), || {
        let (redis, key) = (&redis, key.clone());
        async move { blocking(|| redis_get(redis, &key)) != Some(tagged(b"v1")) }
    })
    .await;
    assert!(in_l2, "the delete reached L2 and holds the key's lock");
    let deleted = blocking(|| redis_get(&redis, &key));
    // …so this one, whose caller gives up 50 ms from now, gets the lock too late.
    let r = c
        .put(a.url("general", "k"))
        .header("x-hc-deadline-ms", unix_ms(Duration::from_millis(50)))
        .body("second")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 408, "refused once its deadline passed");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "deadline_exceeded");
    let _ = first.await;
    assert_eq!(
        blocking(|| redis_get(&redis, &key)),
        deleted,
        "the refused write never reached L2"
    );
    let (_, _, value) = get(&c, &a, "general", "k").await;
    assert_ne!(value, b"second", "the refused write is not served");
    // Garbage in the header is a clear 400.
    let r = c
        .put(a.url("general", "k"))
        .header("x-hc-deadline-ms", "soon")
        .body("v3")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 400);
    a.node.shutdown().await;
}

/// Without the opt-in, a Redis outage fails closed: a value held in L1 is not served once
/// the lease lapses (503 instead), writes are refused, /health drains the node; when Redis
/// returns, everything is served again and coherence holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_then_recovers() {
    let mut redis = blocking(RedisServer::start);
    let ns = namespace("closed");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();
    put_seen(&http, &a, &[&b], "general", "k", "v1").await;
    get(&http, &b, "general", "k").await;
    assert_eq!(
        get(&http, &b, "general", "k").await,
        (200, "L1".into(), b"v1".to_vec())
    );

    blocking(|| redis.kill());
    // The lease ends with the subscription: no L1 answer, no miss it cannot vouch for.
    let closed = poll(BOUND, || async {
        get(&http, &b, "general", "k").await.0 == 503
    })
    .await;
    assert!(closed, "b kept answering from L1 without Redis");
    for n in [&a, &b] {
        assert_eq!(get(&http, n, "general", "k").await.0, 503);
        assert_eq!(get(&http, n, "general", "absent").await.0, 503);
        assert_eq!(put_status(&http, n, "general", "k", "v2").await, 503);
        let (code, h) = json_of(&http, format!("{}/health", n.base)).await;
        assert_eq!((code, h["status"].as_str()), (503, Some("degraded")), "{h}");
    }

    blocking(|| redis.restart());
    settle(&[&a, &b]).await;
    // The restarted Redis is empty: a miss, then coherent writes again.
    assert_eq!(get(&http, &b, "general", "k").await.0, 404);
    put_seen(&http, &a, &[&b], "general", "k", "v3").await;
    assert_eq!(get(&http, &b, "general", "k").await.2, b"v3");
    assert_eq!(get(&http, &b, "general", "k").await.1, "L1");
    put(&http, &a, "general", "k", "v4").await;
    let ok = poll(BOUND, || async {
        get(&http, &b, "general", "k").await.2 == b"v4"
    })
    .await;
    assert!(ok, "coherence not restored");
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// Keys with glob characters are exact keys everywhere: a PUT of `get_roles:[1, 2]` on A
/// drops exactly that key from B's L1 (and not `get_roles:1`), and `{"key":…}` invalidates
/// a key that is not even a valid glob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_glob_characters_cross_nodes_as_exact_keys() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("exact");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();
    let list_key = "get_roles:%5B1,%202%5D"; // get_roles:[1, 2]
    for (k, v) in [(list_key, "old"), ("get_roles:1", "one"), ("x%5B1", "x")] {
        put_seen(&http, &a, &[&b], "roles", k, v).await;
        get(&http, &b, "roles", k).await;
        assert_eq!(get(&http, &b, "roles", k).await.1, "L1", "{k}");
    }
    put(&http, &a, "roles", list_key, "new").await;
    let ok = poll(BOUND, || async {
        get(&http, &b, "roles", list_key).await.2 == b"new"
    })
    .await;
    assert!(ok, "B kept the old value of a key with glob characters");
    assert_eq!(
        get(&http, &b, "roles", "get_roles:1").await,
        (200, "L1".into(), b"one".to_vec()),
        "an exact key must not act as a glob"
    );
    // `x[1` is no glob at all: invalidated by name.
    let r = http
        .post(format!("{}/v1/invalidate", a.base))
        .json(&serde_json::json!({"category": "roles", "key": "x[1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ok = poll(BOUND, || async {
        get(&http, &b, "roles", "x%5B1").await.1 != "L1"
    })
    .await;
    assert!(ok, "exact-key invalidation did not reach B");
    // Exactly one of pattern / key.
    let r = http
        .post(format!("{}/v1/invalidate", a.base))
        .json(&serde_json::json!({"category": "roles", "key": "a", "pattern": "*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// A strict category: once a PUT is acknowledged, no node answers the older value; no
/// polling here, every read comes right after the ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_category_reads_after_the_ack_never_see_the_old_value() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("strict");
    let start = |id: &'static str| TestNode::start_strict(id, &ns, target(&redis));
    let (a, b, c) = (start("a").await, start("b").await, start("c").await);
    settle(&[&a, &b, &c]).await;
    let http = client();
    let (_, stats) = json_of(&http, format!("{}/v1/stats", b.base)).await;
    assert_eq!(
        stats["l1_caches"]["permissions"]["consistency"], "strict",
        "{stats}"
    );
    assert_eq!(stats["l1_caches"]["roles"]["consistency"], "bounded");
    let health = health(&http, &b).await;
    assert_eq!(
        health["cache"]["l1_stats"]["permissions"]["consistency"],
        "strict"
    );
    for round in 0..60u32 {
        let writer = [&a, &b, &c][(round % 3) as usize];
        let value = format!("v{round}");
        put(&http, writer, "permissions", "p", &value).await;
        for n in [&a, &b, &c] {
            // Fill every L1 (the next write must evict it everywhere before its ack).
            let (status, _, body) = get(&http, n, "permissions", "p").await;
            assert_eq!(status, 200);
            assert_eq!(
                String::from_utf8_lossy(&body),
                value,
                "round {round}: {} answered an older value after the ack",
                n.base
            );
        }
    }
    for n in [a, b, c] {
        n.node.shutdown().await;
    }
}

/// A burst of concurrent strict writes (their invalidations leave in pipelined batches):
/// each write's ack still waits for the other node to apply that write's own invalidation,
/// so the other node, read right after each ack, never answers the older value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_strict_writes_are_each_applied_before_their_ack() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("burst");
    let start = |id: &'static str| TestNode::start_strict(id, &ns, target(&redis));
    let (a, b) = (start("a").await, start("b").await);
    settle(&[&a, &b]).await;
    const KEYS: usize = 100;
    let (ca, cb) = (a.node.cache().clone(), b.node.cache().clone());
    for round in 0..3 {
        // Every key in B's L1 with the previous round's value.
        for i in 0..KEYS {
            let key = format!("k{i}");
            ca.set("permissions", &key, format!("r{round}"), None)
                .await
                .unwrap();
            let got = cb.get("permissions", &key).await.unwrap();
            assert_eq!(got.as_deref(), Some(format!("r{round}").as_bytes()));
        }
        let next = format!("r{}", round + 1);
        let writes: Vec<_> = (0..KEYS)
            .map(|i| {
                let (ca, cb, next) = (ca.clone(), cb.clone(), next.clone());
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    ca.set("permissions", &key, next.clone(), None).await?;
                    let got = cb.get("permissions", &key).await?;
                    Ok::<_, hybrid_cache::CacheError>((key, got))
                })
            })
            .collect();
        for w in writes {
            let (key, got) = w.await.unwrap().unwrap();
            assert_eq!(
                got.as_deref(),
                Some(next.as_bytes()),
                "round {round}: b answered {key} = {got:?} after the ack of {next}"
            );
        }
    }
    let sent = a.node.cache().stats().await.counters.invalidations_sent;
    assert!(sent >= 6 * KEYS as u64, "a announced {sent} changes");
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// With a cluster secret, bus messages carry an HMAC: a forged invalidation (unsealed, or
/// sealed with another secret) is dropped and counted, flushes L1 (fail closed) and never
/// advances the sequence state; sealed traffic between the nodes works as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bus_messages_are_refused_with_a_cluster_secret() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("hmac");
    let secret = "a-cluster-secret-of-the-test";
    let start = |id: &'static str| {
        TestNode::from_config(Config {
            cluster_secret: Some(secret.into()),
            ..node_config(id, &ns, Some(target(&redis)))
        })
    };
    let (a, b) = (start("a").await, start("b").await);
    settle(&[&a, &b]).await;
    let http = client();
    put_seen(&http, &a, &[&b], "general", "k", "1").await;
    get(&http, &b, "general", "k").await;
    assert_eq!(get(&http, &b, "general", "k").await.1, "L1");

    let channel = hybrid_cache::internals::channel(&ns);
    let invalid = b.node.cache().stats().await.counters.invalid_messages;
    let flushes = b.flushes().await;
    // A forged "a" invalidation with a huge sequence number, unsealed and wrongly sealed.
    let forged = fake_invalidation("a", 1, u64::MAX - 1, "general", "k");
    let wrong = hybrid_cache::wire_auth::ClusterKey::new(b"another-secret-entirely").unwrap();
    for p in [
        forged.clone(),
        hybrid_cache::wire_auth::seal(&wrong, &forged),
    ] {
        assert_eq!(blocking(|| redis.publish_raw(&channel, &p)), 2);
    }
    let counted = poll(BOUND, || async {
        b.node.cache().stats().await.counters.invalid_messages >= invalid + 2
    })
    .await;
    assert!(counted, "forged payloads not counted");
    assert!(b.flushes().await > flushes, "a refused payload flushes");
    // The sequence state was not poisoned: a's real changes still apply in order.
    put_seen(&http, &a, &[&b], "general", "k", "2").await;
    assert_eq!(get(&http, &b, "general", "k").await.2, b"2");
    put(&http, &a, "general", "k", "3").await;
    let ok = poll(BOUND, || async {
        get(&http, &b, "general", "k").await.2 == b"3"
    })
    .await;
    assert!(ok, "sealed invalidations no longer applied");
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// A stalled L1 writer with a tiny mailbox: the invalidations that do not fit are not
/// queued without bound, and not dropped either: the category is flushed behind what is
/// queued, so the old value of a key whose invalidation was refused never comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_flushes_instead_of_dropping_an_invalidation() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("mailbox");
    let a = TestNode::start("a", &ns, Some(target(&redis))).await;
    let b = TestNode::from_config(Config {
        mailbox_capacity: 2,
        ..node_config("b", &ns, Some(target(&redis)))
    })
    .await;
    settle(&[&a, &b]).await;
    let http = client();
    put(&http, &a, "roles", "k", "v1").await;
    assert_eq!(get(&http, &b, "roles", "k").await.2, b"v1");
    let cached = poll(BOUND, || async {
        let (_, source, body) = get(&http, &b, "roles", "k").await;
        source == "L1" && body == b"v1"
    })
    .await;
    assert!(cached, "b never served v1 from L1");

    b.node
        .cache()
        .stall_category_actor("roles", Duration::from_millis(800))
        .expect("stall hook");
    // Six invalidations reach b's stalled writer: two fit, the rest (k's among them) do not.
    for i in 0..5 {
        put_seen(&http, &a, &[&b], "roles", &format!("x{i}"), "x").await;
    }
    put_seen(&http, &a, &[&b], "roles", "k", "v2").await;
    // No read of k until the stall is over (a read through L2 would refresh b's L1 and
    // hide a lost invalidation); then b holds its lease again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let renewed = poll(BOUND, || async { b.node.cache().lease_held() }).await;
    assert!(renewed, "b never renewed its lease after the stall");
    let text = http
        .get(format!("{}/metrics", b.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metric(
            &text,
            "hc_mailbox_overflows_total{mailbox=\"category:roles\"}"
        ) > 0,
        "no overflow counted:\n{text}"
    );
    assert!(metric(&text, "hc_mailbox_depth{mailbox=\"category:roles\"}") <= 2);

    // Never v1: the overflow flush removed it. And b serves from L1 again.
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut from_l1 = false;
    while Instant::now() < deadline {
        let (status, source, body) = get(&http, &b, "roles", "k").await;
        if status == 200 {
            assert_eq!(body, b"v2", "b served the old value (source {source})");
            from_l1 |= source == "L1";
        } else {
            assert_eq!(status, 503, "unexpected status");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(from_l1, "b never served from L1 again after the stall");
}

/// Issue #23 item 9: redis-rs reads the subscription by itself into an unbounded channel, so
/// a stalled bus must not let it queue without limit: the bounded queue between redis-rs and
/// the bus overflows, the subscription is dropped (counted), the lease lapses and the node
/// flushes L1 before it serves from it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_bus_drops_its_subscription_instead_of_queueing_without_bound() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("backpressure");
    let b = TestNode::from_config(Config {
        mailbox_capacity: 4,
        ..node_config("b", &ns, Some(target(&redis)))
    })
    .await;
    settle(&[&b]).await;
    let cache = b.node.cache().clone();
    cache.set("roles", "k", "v1", None).await.unwrap();
    let old = Some((Bytes::from_static(b"v1"), Source::L1));
    assert_eq!(cache.get_with_source("roles", "k").await.unwrap(), old);

    let reconnects = cache.stats().await.counters.redis_reconnects;
    let release = cache.hold_bus().expect("the bus runs");
    let channel = format!("{ns}:invalidations");
    for i in 0..200 {
        let payload = format!("flood {i}");
        blocking(|| redis.publish_raw(&channel, payload.as_bytes()));
    }
    let dropped = poll(BOUND, || async { cache.subscription_overflows() > 0 }).await;
    assert!(
        dropped,
        "the stalled bus's subscription kept queueing (no overflow counted)"
    );
    let _ = release.send(());
    // Fail closed: the subscription was dropped and made again (the reconnection flushes L1
    // before a lease is granted), and the node serves again, not from the L1 it had.
    let back = poll(BOUND, || async {
        cache.stats().await.counters.redis_reconnects > reconnects && cache.lease_held()
    })
    .await;
    assert!(back, "the node never resubscribed and got its lease back");
    assert_ne!(cache.get_with_source("roles", "k").await.unwrap(), old);
    b.node.shutdown().await;
}

/// The opt-in accepts a write on the writer's L1 alone when its L2 write fails (Redis paused
/// past the call timeout). Once Redis answers, the change is replayed into L2 (a tombstone:
/// the value itself never reached L2) and announced; the writer must then hold what every
/// other node holds, not keep the value nobody else can read until its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_a_write_kept_only_locally_converges_once_replayed() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("optdrop");
    let a = TestNode::start_serving_stale("a", &ns, Some(target(&redis))).await;
    let b = TestNode::start_serving_stale("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();
    put_seen(&http, &a, &[&b], "general", "k", "v1").await;

    blocking(|| redis.pause());
    let status = put_status(&http, &a, "general", "k", "v2").await;
    let during = get(&http, &a, "general", "k").await;
    blocking(|| redis.resume());
    assert_eq!(status, 204, "the opt-in accepts the write locally");
    assert_eq!(during, (200, "L1".into(), b"v2".to_vec()));

    let agree = poll(BOUND, || async {
        let (x, y) = (
            get(&http, &a, "general", "k").await,
            get(&http, &b, "general", "k").await,
        );
        x.0 == y.0 && x.2 == y.2 && health(&http, &a).await["status"] == "ok"
    })
    .await;
    let (x, y) = (
        get(&http, &a, "general", "k").await,
        get(&http, &b, "general", "k").await,
    );
    assert!(agree, "after the replay a answers {x:?}, b {y:?}");
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// Plain changes are numbered by their writers' own tasks, strict ones by the bus actor,
/// heartbeats by its timer: one sequence, queued in order. A burst of concurrent writes of
/// both kinds from one node reaches the other with no gap (no flush), every change applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_plain_and_strict_writes_arrive_in_sequence() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("numbering");
    let start = |id: &'static str| TestNode::start_strict(id, &ns, target(&redis));
    let (a, b) = (start("a").await, start("b").await);
    settle(&[&a, &b]).await;
    // Past the first-contact flushes: b has heard a's numbering already.
    put_seen(&client(), &a, &[&b], "general", "first", "x").await;
    let flushes = b.flushes().await;
    let heard = b.node.cache().stats().await.counters.invalidations_received;
    let sent_before = a.node.cache().stats().await.counters.invalidations_sent;
    const TASKS: usize = 8;
    const EACH: usize = 40;
    let ca = a.node.cache().clone();
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let ca = ca.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let category = if i % 4 == t % 4 {
                        "permissions"
                    } else {
                        "general"
                    };
                    ca.set(category, &format!("k{t}-{i}"), "v", None).await?;
                }
                Ok::<_, hybrid_cache::CacheError>(())
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    let sent = a.node.cache().stats().await.counters.invalidations_sent - sent_before;
    assert_eq!(sent, (TASKS * EACH) as u64);
    let all = poll(BOUND, || async {
        b.node.cache().stats().await.counters.invalidations_received >= heard + sent
    })
    .await;
    let now = b.node.cache().stats().await.counters.invalidations_received;
    assert!(all, "b applied {} of {sent} changes", now - heard);
    assert_eq!(
        b.flushes().await,
        flushes,
        "b flushed: a gap in a's numbering"
    );
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// The text of `n`'s `/metrics`.
async fn metrics_of(c: &reqwest::Client, n: &TestNode) -> String {
    c.get(format!("{}/metrics", n.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// A writer queues its plain change on the bus publisher's queue itself, so that queue's
/// bound is what bounds such writes. With the publisher stalled and a bound of 2 (filled by
/// the node's own pings and heartbeats), a write is refused rather than queued: the writer
/// gets an error while the publisher is still stalled, the refusal is counted, the value
/// reaches neither L2 nor an L1, and the sequence number the change took is a gap at which
/// the other node flushes once the publisher goes on (Redis is up throughout: nothing else
/// makes it flush).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_publisher_queue_refuses_a_plain_write_and_peers_flush() {
    let redis = blocking(RedisServer::start);
    let ns = namespace("pubqueue");
    let a = TestNode::from_config(Config {
        mailbox_capacity: 2,
        ..node_config("a", &ns, Some(target(&redis)))
    })
    .await;
    let b = TestNode::start("b", &ns, Some(target(&redis))).await;
    settle(&[&a, &b]).await;
    let http = client();
    put_seen(&http, &a, &[&b], "general", "first", "x").await;
    let flushes = b.flushes().await;

    let release = a.node.cache().hold_bus_publisher().expect("the bus runs");
    let depth = "hc_mailbox_depth{mailbox=\"publisher\"}";
    let full = poll(BOUND, || async {
        metric(&metrics_of(&http, &a).await, depth) == 2
    })
    .await;
    assert!(full, "the stalled publisher's queue never filled");
    let refused = a.node.cache().set("general", "k", "v", None).await;
    assert!(refused.is_err(), "a write was accepted with the queue full");
    let text = metrics_of(&http, &a).await;
    assert!(metric(&text, "hc_mailbox_overflows_total{mailbox=\"publisher\"}") > 0);
    assert_eq!(metric(&text, depth), 2, "the queue grew past its bound");
    assert_eq!(
        b.flushes().await,
        flushes,
        "b flushed before the publisher went on"
    );
    let _ = release.send(());

    let flushed = poll(BOUND, || async { b.flushes().await > flushes }).await;
    assert!(flushed, "b never saw the refused change's number missing");
    let l2 = blocking(|| redis_get(&redis, &redis_key(&ns, "general", 0, "k")));
    // Its L2 outcome counts as unknown, so the key is replayed as a removal (a tombstone).
    assert_ne!(l2, Some(tagged(b"v")), "the refused write reached L2");
    for n in [&a, &b] {
        let (status, _, body) = get(&http, n, "general", "k").await;
        assert!(
            status != 200 || body != b"v",
            "{} serves the refused write",
            n.base
        );
    }
    a.node.shutdown().await;
    b.node.shutdown().await;
}
