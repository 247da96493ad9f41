//! `POST /v1/invalidate` and tagged writes, end to end against the node's router (L1 only):
//! the fuzz input is the JSON body of an invalidation (a key, a glob, a tag or a mix) and,
//! after a `#`, the `tags=` of a `PUT`. Whatever it holds, the answer is a well-formed
//! status, never a panic or a 500; an entry written before keeps its value unless the
//! request could have named it. Also: `tag::parse_header` accepts exactly what
//! `tag::header` makes of checked tags.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[path = "common/node_router.rs"]
mod node_router;
use node_router::{app, cache, runtime};

fn send(method: Method, uri: &str, body: String) -> u16 {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body));
    let Ok(req) = req else {
        return 400;
    };
    let resp = runtime()
        .block_on(app().clone().oneshot(req))
        .expect("infallible");
    resp.status().as_u16()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (body, tags) = text.split_once('#').unwrap_or((text, ""));

    // A tagged write: any tags text is a 2xx or a 4xx.
    let query: String = tags
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b',' | b':' | b'.' | b'_' | b'-' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let put = send(
        Method::PUT,
        &format!("/v1/cache/general/fuzz-tagged?tags={query}"),
        "v".into(),
    );
    assert!(put < 500, "PUT ?tags={tags:?}: {put}");

    // A sentinel entry in another category that only a category-wide, glob or tag
    // invalidation touching "menus" could remove: no body may corrupt it.
    runtime()
        .block_on(cache().set("menus", "sentinel", "kept", None))
        .expect("L1 write");
    let status = send(Method::POST, "/v1/invalidate", body.to_string());
    assert!(status < 500, "POST /v1/invalidate {body:?}: {status}");
    let left = runtime()
        .block_on(cache().get("menus", "sentinel"))
        .expect("L1 read");
    if status >= 300 {
        assert_eq!(
            left.as_deref(),
            Some(&b"kept"[..]),
            "a refused request removed an entry"
        );
    }

    // Header round trip of checked tags.
    let parts: Vec<&str> = tags.split(',').collect();
    if let Ok(checked) = hybrid_cache::tag::check_all(&parts) {
        let h = hybrid_cache::tag::header(&checked);
        assert_eq!(hybrid_cache::tag::parse_header(&h), Some(checked));
    }
});
