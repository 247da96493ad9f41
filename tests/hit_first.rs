//! The L1-hit path a node serves in front of its router (`server::service`, `HitFirst`)
//! answers every request exactly as the router alone does: same status, headers and body,
//! the same counters, whether it answers from L1 or hands the request on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use bytes::Bytes;
use hybrid_cache::config::{CategoryConfig, Config};
use hybrid_cache::server::http::AppState;
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
