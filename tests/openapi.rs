//! `GET /openapi.json` from a real node: OpenAPI 3.1, every route the node serves is in it
//! (and every documented path is served), errors share one schema, and the bearer token is
//! required in the document exactly when the node requires it.

use std::collections::BTreeSet;

use hybrid_cache::config::Config;
use hybrid_cache::server::node::Node;
use serde_json::Value;

/// A node on a free loopback port (L1 only), with or without an API token.
async fn start_node(token: Option<&str>) -> Node {
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        api_token: token.map(str::to_string),
        ..Config::default()
    };
    Node::start(config).await.unwrap()
}

/// The node's `/openapi.json`.
async fn fetch_doc(c: &reqwest::Client, base: &str) -> Value {
    c.get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn doc(token: Option<&str>) -> Value {
    let node = start_node(token).await;
    let base = format!("http://{}", node.http_addr());
    let c = reqwest::Client::new();
    let d = fetch_doc(&c, &base).await;
    // Every documented (method, path) is routed: never the fallback's "no such route".
    for (path, item) in d["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{category}", "permissions")
            .replace("{key}", "k");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = c
                .request(m, format!("{base}{concrete}"))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("no such route") && status != 405,
                "{method} {path} documented but not served: {status} {body}"
            );
        }
    }
    node.shutdown().await;
    d
}

fn operations(d: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in d["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

#[tokio::test]
async fn document_covers_every_route_and_error() {
    let d = doc(None).await;
    assert!(
        d["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        d["openapi"]
    );
    let ops: BTreeSet<String> = operations(&d)
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    for want in [
        "get /v1/cache/{category}/{key}",
        "put /v1/cache/{category}/{key}",
        "delete /v1/cache/{category}/{key}",
        "get /v1/load/{category}/{key}",
        "post /v1/invalidate",
        "get /v1/stats",
        "get /v1/cluster/stats",
        "get /health",
        "get /metrics",
        "get /openapi.json",
        "get /ui",
    ] {
        assert!(ops.contains(want), "{want} missing from {ops:?}");
    }
    // Every 4xx/5xx with a body uses the one error shape.
    for (m, p, op) in operations(&d) {
        for (code, resp) in op["responses"].as_object().unwrap() {
            if code.starts_with('4') || (code.starts_with('5') && p != "/health") {
                assert_eq!(
                    resp["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{m} {p} {code}"
                );
            }
        }
    }
    let err = &d["components"]["schemas"]["ErrorBody"];
    assert_eq!(err["required"], serde_json::json!(["error", "message"]));
    // Category parameters list this node's categories.
    let get = &d["paths"]["/v1/cache/{category}/{key}"]["get"];
    let cats = &get["parameters"][0]["schema"]["enum"];
    assert!(
        cats.as_array().unwrap().contains(&"permissions".into()),
        "{cats}"
    );
    // Without a token, nothing asks for one.
    assert!(d["components"]["securitySchemes"].is_null());
    assert!(operations(&d)
        .iter()
        .all(|(_, _, op)| op["security"].is_null()));
}

#[tokio::test]
async fn token_is_required_in_the_document_only_for_mutations() {
    let d = doc(Some("s3cret")).await;
    assert_eq!(
        d["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (m, p, op) in operations(&d) {
        let mutating = matches!(m.as_str(), "put" | "delete" | "post");
        assert_eq!(!op["security"].is_null(), mutating, "{m} {p}");
    }
}

/// Found by schemathesis: `PUT` accepted (and ignored) query parameters the document does
/// not declare; a typo such as `?tll=60` silently stored without a TTL.
#[tokio::test]
async fn put_rejects_undeclared_query_parameters() {
    let node = start_node(None).await;
    let url = format!("http://{}/v1/cache/roles/k", node.http_addr());
    let c = reqwest::Client::new();
    let r = c
        .put(format!("{url}?tll=60"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_query");
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        404,
        "nothing stored"
    );
    let r = c
        .put(format!("{url}?ttl=60"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    node.shutdown().await;
}

/// Found by schemathesis (ST202/ST201): the document must admit exactly what the node
/// accepts. `?tags=` with 17 tags matched the old pattern but is refused (400 `invalid_tag`);
/// `{"tag":…,"category":null}` is accepted (`null` means absent) but `null` was outside the
/// category enum.
#[tokio::test]
async fn document_and_node_agree_on_tag_lists_and_null_fields() {
    let node = start_node(None).await;
    let base = format!("http://{}", node.http_addr());
    let c = reqwest::Client::new();
    let d = fetch_doc(&c, &base).await;
    let put = &d["paths"]["/v1/cache/{category}/{key}"]["put"];
    let tags = put["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tags")
        .expect("tags parameter");
    let pattern = regex::Regex::new(tags["schema"]["pattern"].as_str().unwrap()).unwrap();
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    for (n, status) in [(16, 204), (17, 400)] {
        let t = list(n);
        assert_eq!(
            pattern.is_match(&t),
            status == 204,
            "{n} tags vs the pattern"
        );
        let r = c
            .put(format!("{base}/v1/cache/roles/k?tags={t}"))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{n} tags");
    }
    let long = "a".repeat(129);
    assert!(!pattern.is_match(&long), "a tag is at most 128 bytes");

    let cats = &d["components"]["schemas"]["InvalidateBody"]["properties"]["category"]["enum"];
    assert!(cats.as_array().unwrap().contains(&Value::Null), "{cats}");
    let r = c
        .post(format!("{base}/v1/invalidate"))
        .json(&serde_json::json!({"tag": "t0", "category": null, "key": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let gone = c
        .get(format!("{base}/v1/cache/roles/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "the tagged entry was invalidated");
    node.shutdown().await;
}
