//! HTTP key, ttl and deadline parsing, end to end: the fuzz input becomes the key (path
//! segment, percent-decoded by axum), the query string and, after a `#`, the
//! `x-hc-deadline-ms` header of a real request to the node's router (L1 only). Whatever it holds, the answer is a well-formed status, never a panic or a 500;
//! `parse_ttl` accepts exactly 1..=MAX_TTL_SECS.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request};
use hybrid_cache::server::http::limits::{parse_ttl, MAX_TTL_SECS};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[path = "common/node_router.rs"]
mod node_router;
use node_router::{app, runtime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_ttl(text) {
        assert!((1..=MAX_TTL_SECS).contains(&d.as_secs()));
    }
    let (text, deadline) = text.split_once('#').unwrap_or((text, ""));
    let (key, query) = text.split_once('?').unwrap_or((text, ""));
    let method = match data.first().map(|b| b % 3) {
        Some(0) => Method::GET,
        Some(1) => Method::PUT,
        _ => Method::DELETE,
    };
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/v1/cache/general/{key}?{query}"));
    if !deadline.is_empty() {
        req = req.header("x-hc-deadline-ms", deadline);
    }
    let Ok(req) = req.body(Body::from("v")) else {
        return;
    };
    let resp = runtime()
        .block_on(app().clone().oneshot(req))
        .expect("infallible");
    assert!(
        resp.status().as_u16() < 500,
        "{} for {text:?}",
        resp.status()
    );
});
