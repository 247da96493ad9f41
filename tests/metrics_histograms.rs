//! `/metrics` latency histograms as Prometheus scrapes them from a real node: HTTP latency by
//! route template (never the raw path), Redis call latency, and the flush counter by reason.

mod support;

use std::time::Duration;

use hybrid_cache::config::{Config, RedisTarget};
use hybrid_cache::server::node::Node;
use support::RedisServer;

async fn start(redis: Option<RedisTarget>) -> (Node, String) {
    let config = Config {
        node_id: "m1".into(),
        namespace: format!("tm{:08x}", rand::random::<u32>()),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis,
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node starts");
    let base = format!("http://{}", node.http_addr());
    (node, base)
}

async fn scrape(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no series `{series}` in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn http_latency_is_labelled_by_route_template_and_status() {
    let (node, base) = start(None).await;
    let c = reqwest::Client::new();
    for key in ["a", "b", "c"] {
        let url = format!("{base}/v1/cache/permissions/{key}");
        assert_eq!(c.put(&url).body("v").send().await.unwrap().status(), 204);
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
    let missing = format!("{base}/v1/cache/permissions/none");
    assert_eq!(c.get(&missing).send().await.unwrap().status(), 404);
    let nowhere = format!("{base}/no/such/route");
    assert_eq!(c.get(&nowhere).send().await.unwrap().status(), 404);
    let m = scrape(&c, &base).await;
    let route = "route=\"/v1/cache/{category}/{key}\"";
    assert_eq!(
        value(
            &m,
            &format!(
                "hc_http_request_duration_seconds_count{{{route},method=\"GET\",status=\"200\"}}"
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            &format!(
                "hc_http_request_duration_seconds_count{{{route},method=\"PUT\",status=\"204\"}}"
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            &format!(
                "hc_http_request_duration_seconds_count{{{route},method=\"GET\",status=\"404\"}}"
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "hc_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"404\"}"
        ),
        1.0
    );
    assert!(
        !m.contains("permissions/a"),
        "raw paths leak into labels:\n{m}"
    );
    // Every family the alert rules use is exposed even before anything happened.
    for name in [
        "hc_l2_request_duration_seconds_count",
        "hc_invalidation_propagation_seconds_count",
        "hc_lease_lapses_total",
        "hc_coherence_flushes_total{reason=\"other\"}",
    ] {
        assert_eq!(value(&m, name), 0.0, "{name}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn redis_calls_are_timed() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let target = RedisTarget::Url {
        url: redis.url(),
        password: None,
    };
    let (node, base) = start(Some(target)).await;
    let c = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !node.cache().l2_available() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = value(
        &scrape(&c, &base).await,
        "hc_l2_request_duration_seconds_count",
    );
    let url = format!("{base}/v1/cache/permissions/k");
    assert_eq!(c.put(&url).body("v").send().await.unwrap().status(), 204);
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 204);
    // Absent from L1 and L2: this read asks Redis.
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
    let m = scrape(&c, &base).await;
    let after = value(&m, "hc_l2_request_duration_seconds_count");
    assert!(after >= before + 3.0, "before {before}, after {after}\n{m}");
    assert!(value(&m, "hc_l2_request_duration_seconds_bucket{le=\"+Inf\"}") >= after);
    node.shutdown().await;
}
