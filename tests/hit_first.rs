//! The value read and write a node answers in front of its router (`server::service`,
//! `HitFirst`) answer every request exactly as the router alone does: same status, headers
//! and body, the same counters and latency series, whether it answers from L1, from L2 (a
//! private `redis-server` on a free port), fails closed or hands the request on.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use bytes::Bytes;
use futures::StreamExt;
use hybrid_cache::config::{CategoryConfig, Config};
use hybrid_cache::server::http::{AppState, HitFirst};
use hybrid_cache::server::{router, service};
use hybrid_cache::HybridCache;
use tower::ServiceExt;

/// An L1-only cache with category `near` (negative caching on), holding the value `k1`
/// and a cached "not found" for `n1`.
async fn cache() -> HybridCache {
    let mut config = Config {
        node_id: "hit-first-node".into(),
        ..Config::default()
    };
    let near = CategoryConfig {
        ttl_secs: 60,
        max_entries: 100,
        negative_ttl_secs: Some(60),
        ..CategoryConfig::default()
    };
    config.categories.insert("near".into(), near);
    let cache = HybridCache::start(config).await.expect("cache starts");
    cache
        .set("near", "k1", Bytes::from_static(b"value-1"), None)
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let found = cache.get_or_load_opt("near", "n1", None, move || async move {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(None)
    });
    assert_eq!(found.await.unwrap(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cache
}

fn request(method: Method, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

/// Status, headers (sorted, as text) and body of an answer, as a client sees it: the
/// router sets `content-length` itself, hyper writes it on the wire for any body of known
/// size, so it is checked against the body and left out.
async fn parts(resp: axum::response::Response) -> (u16, Vec<(String, String)>, Bytes) {
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    if let Some(i) = headers.iter().position(|(k, _)| k == "content-length") {
        let (_, len) = headers.remove(i);
        // (A `HEAD` answer keeps the length of the body it leaves out.)
        if !body.is_empty() {
            assert_eq!(len, body.len().to_string(), "content-length of {body:?}");
        }
    }
    (status, headers, body)
}

#[tokio::test]
async fn every_answer_is_the_routers_answer() {
    let cache = cache().await;
    let state = AppState::new(cache.clone(), None);
    let front = service(state.clone());
    let plain = router(state);
    let cases = [
        (Method::GET, "/v1/cache/near/k1", 200),
        (Method::GET, "/v1/cache/near/k1?x=1", 200),
        (Method::GET, "/v1/cache/near/k%31", 200),
        (Method::HEAD, "/v1/cache/near/k1", 200),
        (Method::GET, "/v1/cache/near/n1", 404),
        (Method::GET, "/v1/cache/near/absent", 404),
        (Method::GET, "/v1/cache/nope/k1", 404),
        (Method::GET, "/v1/cache/near/k1/", 404),
        (Method::GET, "/v1/cache/near/", 404),
        (Method::POST, "/v1/cache/near/k1", 405),
    ];
    for (method, uri, status) in cases {
        let before = cache.stats().await.counters;
        let via_front = parts(front.clone().answer(request(method.clone(), uri)).await).await;
        let mid = cache.stats().await.counters;
        let via_router = parts(
            plain
                .clone()
                .oneshot(request(method.clone(), uri))
                .await
                .unwrap(),
        )
        .await;
        let after = cache.stats().await.counters;
        assert_eq!(via_front.0, status, "{method} {uri}: {via_front:?}");
        assert_eq!(via_front, via_router, "{method} {uri}");
        // Each counts what the other counts: one hit, one cached "not found", one miss.
        for (name, f) in [
            (
                "hits_l1",
                (|c: &hybrid_cache::Counters| c.hits_l1) as fn(&_) -> u64,
            ),
            ("negative_hits", |c| c.negative_hits),
            ("misses", |c| c.misses),
        ] {
            assert_eq!(
                f(&mid) - f(&before),
                f(&after) - f(&mid),
                "{name} of {method} {uri}"
            );
        }
    }
    // The hit answers with the value, the level and the node.
    let (_, headers, body) = parts(
        front
            .answer(request(Method::GET, "/v1/cache/near/k1"))
            .await,
    )
    .await;
    assert_eq!(body, Bytes::from_static(b"value-1"));
    assert!(
        headers.contains(&("x-cache".into(), "L1".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-node".into(), "hit-first-node".into())),
        "{headers:?}"
    );
}

/// The count of the value route's latency series of `method` and `status`, from `/metrics`.
async fn series_count(app: &axum::Router, method: Method, status: u16) -> u64 {
    let resp = app
        .clone()
        .oneshot(request(Method::GET, "/metrics"))
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    let series = format!(
        "hc_http_request_duration_seconds_count{{route=\"/v1/cache/{{category}}/{{key}}\",method=\"{method}\",status=\"{status}\"}}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Status, headers and body of an answer (see [`parts`]).
type Parts = (u16, Vec<(String, String)>, Bytes);

/// `front_req` through the front path, then `router_req` (the same `method` to the value
/// route) through the router alone: checks that both answer alike with `status` and that
/// each adds one to the route's latency series of `method` and `status`. Returns the answer
/// and `cache`'s counters before, between and after the two requests.
async fn answer_both(
    (front, plain): (&HitFirst, &axum::Router),
    cache: &HybridCache,
    (front_req, router_req): (Request<Body>, Request<Body>),
    status: u16,
) -> (Parts, [hybrid_cache::Counters; 3]) {
    let what = format!(
        "{} {} vs {}",
        front_req.method(),
        front_req.uri(),
        router_req.uri()
    );
    let method = front_req.method().clone();
    let counters = || async { cache.stats().await.counters };
    let count = || series_count(plain, method.clone(), status);
    let (c0, s0) = (counters().await, count().await);
    let a = parts(front.answer(front_req).await).await;
    let (c1, s1) = (counters().await, count().await);
    let b = parts(plain.clone().oneshot(router_req).await.unwrap()).await;
    let (c2, s2) = (counters().await, count().await);
    assert_eq!(a.0, status, "{what}: {a:?}");
    assert_eq!(a, b, "{what}");
    assert_eq!((s1 - s0, s2 - s1), (1, 1), "the {status} series of {what}");
    (a, [c0, c1, c2])
}

/// A `GET` of `front_uri` and of `router_uri` through [`answer_both`].
async fn get_both(
    app: (&HitFirst, &axum::Router),
    cache: &HybridCache,
    front_uri: &str,
    router_uri: &str,
    status: u16,
) -> (Parts, [hybrid_cache::Counters; 3]) {
    let reqs = (
        request(Method::GET, front_uri),
        request(Method::GET, router_uri),
    );
    answer_both(app, cache, reqs, status).await
}

/// Reads that L1 cannot answer (an L2 hit, a miss, Redis gone) are answered in front of the
/// router too: the same answer, the same counters, the same latency series as the route's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_redis_are_the_routers_answers() {
    let mut redis = support::RedisServer::start();
    let ns = format!("hitfirst{:08x}", rand::random::<u32>());
    let reader = HybridCache::start(support::node_config("reader", &ns, &redis))
        .await
        .expect("reader starts");
    let writer = HybridCache::start(support::node_config("writer", &ns, &redis))
        .await
        .expect("writer starts");
    support::settle(&[&reader, &writer], std::time::Duration::from_secs(10)).await;
    let cat = reader.config().categories.keys().next().unwrap().clone();
    // Two keys with one value, written by the other node: in L2, not in the reader's L1.
    for key in ["front", "routed"] {
        writer.set(&cat, key, "in-redis", None).await.unwrap();
    }
    let state = AppState::new(reader.clone(), None);
    let front = service(state.clone());
    let plain = router(state);
    let compare = |front_uri: String, router_uri: String, status: u16| {
        let (front, plain, reader) = (front.clone(), plain.clone(), reader.clone());
        async move {
            let both = (&front, &plain);
            let (a, [c0, c1, c2]) = get_both(both, &reader, &front_uri, &router_uri, status).await;
            for (name, f) in [
                (
                    "hits_l2",
                    (|c: &hybrid_cache::Counters| c.hits_l2) as fn(&_) -> u64,
                ),
                ("hits_l1", |c| c.hits_l1),
                ("misses", |c| c.misses),
                ("l2_errors", |c| c.l2_errors),
            ] {
                assert_eq!(f(&c1) - f(&c0), f(&c2) - f(&c1), "{name} of {front_uri}");
            }
            a
        }
    };
    // An L2 hit (one key each: the first read fills L1).
    let (_, headers, body) = compare(
        format!("/v1/cache/{cat}/front"),
        format!("/v1/cache/{cat}/routed"),
        200,
    )
    .await;
    assert_eq!(body, Bytes::from_static(b"in-redis"));
    assert!(
        headers.contains(&("x-cache".into(), "L2".into())),
        "{headers:?}"
    );
    // Then an L1 hit of what the L2 hit filled.
    let (_, headers, _) = compare(
        format!("/v1/cache/{cat}/front"),
        format!("/v1/cache/{cat}/routed"),
        200,
    )
    .await;
    assert!(
        headers.contains(&("x-cache".into(), "L1".into())),
        "{headers:?}"
    );
    // A miss in both levels, and a key too long for the node (413 before any read).
    let absent = format!("/v1/cache/{cat}/absent");
    compare(absent.clone(), absent.clone(), 404).await;
    let long = format!(
        "/v1/cache/{cat}/{}",
        "k".repeat(reader.config().max_key_bytes + 1)
    );
    compare(long.clone(), long, 413).await;
    // Redis gone: once the lease lapses, a read fails closed (503), on both paths.
    redis.kill();
    let lapsed = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reader.lease_held() {
        assert!(std::time::Instant::now() < lapsed, "the lease never lapsed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_, _, body) = compare(absent.clone(), absent, 503).await;
    assert!(
        String::from_utf8_lossy(&body).contains("unavailable"),
        "{body:?}"
    );
}

/// A node on `redis` (a fresh namespace, returned) whose request deadline (200 ms) comes
/// before its Redis timeout (3 s), so a hung Redis meets the deadline first; settled, with
/// its first category, its front path and its router alone.
async fn hurried_node(
    id: &str,
    redis: &support::RedisServer,
) -> (HybridCache, String, String, HitFirst, axum::Router) {
    let ns = format!("hitfirst{:08x}", rand::random::<u32>());
    let mut config = support::node_config(id, &ns, redis);
    config.http_limits.request_timeout = std::time::Duration::from_millis(200);
    config.redis_timeout = std::time::Duration::from_secs(3);
    let cache = HybridCache::start(config).await.expect("node starts");
    support::settle(&[&cache], std::time::Duration::from_secs(10)).await;
    let cat = cache.config().categories.keys().next().unwrap().clone();
    let state = AppState::new(cache.clone(), None);
    let (front, plain) = (service(state.clone()), router(state));
    (cache, ns, cat, front, plain)
}

/// A read that Redis leaves hanging past the request deadline gets the router's 503
/// `timeout`, recorded in the route's series, on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_the_deadline_is_the_routers_503_timeout() {
    let redis = support::RedisServer::start();
    let (cache, _, cat, front, plain) = hurried_node("slow", &redis).await;
    // A hung Redis (not a dead one): the L2 read waits.
    redis.pause();
    let uri = format!("/v1/cache/{cat}/not-in-l1");
    let (a, _) = get_both((&front, &plain), &cache, &uri, &uri, 503).await;
    redis.resume();
    let body = String::from_utf8_lossy(&a.2);
    assert!(body.contains("\"timeout\""), "{a:?}");
}

/// A `PUT` of `body` to `uri` with `headers`; `stall` leaves the body unfinished after its
/// first bytes (a client that stops sending).
fn put(uri: &str, headers: &[(&str, &str)], body: &'static [u8], stall: bool) -> Request<Body> {
    let mut b = Request::builder().method(Method::PUT).uri(uri);
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    let body = if stall {
        let first = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
        Body::from_stream(first.chain(futures::stream::pending()))
    } else {
        Body::from(body)
    };
    b.body(body).unwrap()
}

/// Sends one write through the front path and the same write through the router alone:
/// both answer alike with `status`, count alike (`http_bad_requests`, `invalidations_sent`)
/// and add one to the route's `PUT` series of `status`.
async fn put_both(
    app: (&HitFirst, &axum::Router),
    cache: &HybridCache,
    make: impl Fn() -> Request<Body>,
    status: u16,
) -> Parts {
    let what = format!("PUT {}", make().uri());
    let (a, [c0, c1, c2]) = answer_both(app, cache, (make(), make()), status).await;
    for (name, f) in [
        (
            "http_bad_requests",
            (|c: &hybrid_cache::Counters| c.http_bad_requests) as fn(&_) -> u64,
        ),
        ("invalidations_sent", |c| c.invalidations_sent),
    ] {
        assert_eq!(f(&c1) - f(&c0), f(&c2) - f(&c1), "{name} of {what}");
    }
    a
}

/// Every write, taken in front of the router or refused to it, is answered as the router
/// answers it: a write, its query and deadline header, a wrong or missing token, a body too
/// large or too slow, a key too long, an unknown category.
#[tokio::test]
async fn every_write_is_the_routers_answer() {
    let mut config = Config {
        node_id: "put-first-node".into(),
        api_token: Some("s3cret".into()),
        max_value_bytes: 16,
        ..Config::default()
    };
    config.http_limits.body_read_timeout = std::time::Duration::from_millis(200);
    let near = CategoryConfig {
        ttl_secs: 60,
        max_entries: 100,
        ..CategoryConfig::default()
    };
    config.categories.insert("near".into(), near);
    let cache = HybridCache::start(config).await.expect("cache starts");
    let state = AppState::new(cache.clone(), None);
    let (front, plain) = (service(state.clone()), router(state));
    let both = (&front, &plain);
    let auth = ("authorization", "Bearer s3cret");
    let long_key = format!(
        "/v1/cache/near/{}",
        "k".repeat(cache.config().max_key_bytes + 1)
    );
    let past = ("x-hc-deadline-ms", "1000");
    // (uri, headers, body, stalled body, status)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'static [u8], bool, u16);
    let cases: Vec<Case> = vec![
        ("/v1/cache/near/w1".into(), vec![auth], b"one", false, 204),
        (
            "/v1/cache/near/w1?ttl=30".into(),
            vec![auth],
            b"two",
            false,
            204,
        ),
        (
            "/v1/cache/near/w1?tags=t1,t2".into(),
            vec![auth],
            b"three",
            false,
            204,
        ),
        (
            "/v1/cache/near/w%31".into(),
            vec![auth],
            b"four",
            false,
            204,
        ),
        (
            "/v1/cache/near/w1?ttl=0".into(),
            vec![auth],
            b"x",
            false,
            400,
        ),
        (
            "/v1/cache/near/w1?tags=no!".into(),
            vec![auth],
            b"x",
            false,
            400,
        ),
        (
            "/v1/cache/near/w1?other=1".into(),
            vec![auth],
            b"x",
            false,
            400,
        ),
        (
            "/v1/cache/near/w1".into(),
            vec![auth, ("x-hc-deadline-ms", "soon")],
            b"x",
            false,
            400,
        ),
        (
            "/v1/cache/near/w1".into(),
            vec![auth, past],
            b"x",
            false,
            408,
        ),
        ("/v1/cache/near/w1".into(), vec![], b"x", false, 401),
        (
            "/v1/cache/near/w1".into(),
            vec![("authorization", "Bearer nope")],
            b"x",
            false,
            401,
        ),
        (
            "/v1/cache/near/w1".into(),
            vec![auth],
            b"seventeen bytes!!",
            false,
            413,
        ),
        ("/v1/cache/near/w1".into(), vec![auth], b"slow", true, 408),
        (long_key, vec![auth], b"x", false, 413),
        ("/v1/cache/nope/w1".into(), vec![auth], b"x", false, 404),
    ];
    for (uri, headers, body, stall, status) in cases {
        put_both(both, &cache, || put(&uri, &headers, body, stall), status).await;
    }
    // What the front path wrote is what a read gets (the router wrote the same after it).
    let w = front.answer(put("/v1/cache/near/w2", &[auth], b"front", false));
    assert_eq!(w.await.status().as_u16(), 204);
    let (status, _, body) = parts(
        front
            .answer(request(Method::GET, "/v1/cache/near/w2"))
            .await,
    )
    .await;
    assert_eq!((status, body), (200, Bytes::from_static(b"front")));
}

/// A write through Redis, and one Redis leaves hanging past the request deadline (503
/// `timeout`), answered alike on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_redis_are_the_routers_answers() {
    let redis = support::RedisServer::start();
    let (cache, ns, cat, front, plain) = hurried_node("put-slow", &redis).await;
    let uri = format!("/v1/cache/{cat}/k");
    let before = cache.stats().await.counters.invalidations_sent;
    put_both(
        (&front, &plain),
        &cache,
        || put(&uri, &[], b"v", false),
        204,
    )
    .await;
    // Each write announced its change (`put_both` checked that both announced alike).
    assert!(cache.stats().await.counters.invalidations_sent >= before + 2);
    // What the front path wrote is in L2: another node reads it there.
    let w = front.answer(put(&uri, &[], b"from-front", false));
    assert_eq!(w.await.status().as_u16(), 204);
    let other = HybridCache::start(support::node_config("put-reader", &ns, &redis))
        .await
        .expect("reader starts");
    support::settle(&[&cache, &other], std::time::Duration::from_secs(10)).await;
    let read = other.get_with_source(&cat, "k").await.unwrap();
    assert_eq!(
        read,
        Some((Bytes::from_static(b"from-front"), hybrid_cache::Source::L2))
    );
    redis.pause();
    let a = put_both(
        (&front, &plain),
        &cache,
        || put(&uri, &[], b"w", false),
        503,
    )
    .await;
    redis.resume();
    let body = String::from_utf8_lossy(&a.2);
    assert!(body.contains("\"timeout\""), "{a:?}");
}
