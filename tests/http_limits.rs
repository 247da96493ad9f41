//! The HTTP limits of issue #13 against a real node: idle and slowloris connections, the
//! connection cap, body and request timeouts, load shedding, the token checked before the
//! body, and the small ones (JSON 405, lowercase `bearer`, largest ttl).
//!
//! No latency is asserted (shared CI machines): tests assert that requests *answer*; the
//! `/health` latency under attack is printed (`--nocapture`) and quoted in the README.
#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default Config

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hybrid_cache::config::Config;
use hybrid_cache::server::node::Node;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(mut config: Config) -> (Node, String) {
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    let node = Node::start(config).await.expect("node starts");
    let base = format!("http://{}", node.http_addr());
    (node, base)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Waits (bounded) for `f` to hold.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Reads until the peer closes or `limit` passes; returns what arrived and whether it closed.
async fn read_response(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn json_of(resp: &str) -> Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn health_ok(c: &reqwest::Client, base: &str) -> bool {
    matches!(c.get(format!("{base}/health")).send().await, Ok(r) if r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_do_not_starve_health_or_gets() {
    // 2,000 idle + 50 slow clients, both ends in this process: ~4,200 descriptors.
    let fds = rlimit::increase_nofile_limit(8192).unwrap();
    assert!(
        fds >= 4400,
        "need 4,400 open files for this test, have {fds}"
    );
    let mut cfg = Config::default();
    cfg.http_limits.header_read_timeout = Duration::from_secs(3);
    let (node, base) = start(cfg).await;
    let addr = node.http_addr();
    let c = client();
    c.put(format!("{base}/v1/cache/general/k"))
        .body("v")
        .send()
        .await
        .unwrap();

    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // 25 clients trickle their headers, 25 trickle a PUT body, one byte at a time.
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(
                b"PUT /v1/cache/general/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
            )
            .await
            .unwrap();
        }
        slow.push(s);
    }
    let drip = tokio::spawn(async move {
        for _ in 0..20 {
            for (i, s) in slow.iter_mut().enumerate() {
                let byte: &[u8] = if i % 2 == 0 { b"X" } else { b"a" };
                let _ = s.write_all(byte).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    assert!(
        eventually(Duration::from_secs(20), || node
            .conn_stats()
            .open
            .load(Ordering::Relaxed)
            >= 2050)
        .await,
        "the node accepted the idle and slow connections (open = {})",
        node.conn_stats().open.load(Ordering::Relaxed)
    );

    // Under attack, /health and GETs still answer.
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert!(health_ok(&c, &base).await, "/health answers under attack");
        lat.push(t.elapsed());
        let r = c
            .get(format!("{base}/v1/cache/general/k"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), "v");
    }
    lat.sort();
    eprintln!(
        "/health under 2,000 idle + 50 slowloris: min {:?} median {:?} max {:?}",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    let slow = drip.await.unwrap();

    // The header read timeout reaps idle and header-trickling connections.
    for s in idle.iter_mut().take(50) {
        let (got, closed) = read_response(s, Duration::from_secs(30)).await;
        assert!(
            closed,
            "an idle connection is closed by the header read timeout"
        );
        assert!(!got.contains("200 OK"), "{got}");
    }
    drop(slow);
    drop(idle);
    assert!(
        eventually(Duration::from_secs(30), || node
            .conn_stats()
            .open
            .load(Ordering::Relaxed)
            < 10)
        .await,
        "every attacking connection is gone"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_once_and_slots_come_back() {
    let mut cfg = Config::default();
    cfg.http_limits.max_connections = 20;
    cfg.http_limits.header_read_timeout = Duration::from_secs(1);
    let (node, base) = start(cfg).await;
    let addr = node.http_addr();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(10), || node
            .conn_stats()
            .open
            .load(Ordering::Relaxed)
            == 20)
        .await
    );
    // One more: closed without an answer instead of waiting in the backlog.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (got, closed) = read_response(&mut extra, Duration::from_secs(20)).await;
    assert!(
        closed && got.is_empty(),
        "excess connection refused: {got:?}"
    );
    assert!(node.conn_stats().refused.load(Ordering::Relaxed) >= 1);
    // The held connections send nothing: the header read timeout frees their slots.
    assert!(
        eventually(Duration::from_secs(20), || node
            .conn_stats()
            .open
            .load(Ordering::Relaxed)
            == 0)
        .await
    );
    assert!(health_ok(&client(), &base).await);
    drop(held);
    node.shutdown().await;
}

/// Sends a PUT whose body never completes; returns the open stream.
async fn stalled_put(addr: SocketAddr, auth: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/cache/general/stalled HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 8388608\r\nConnection: close\r\n\r\npartial"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn a_stalled_body_is_cut_by_the_body_read_timeout() {
    let mut cfg = Config::default();
    cfg.http_limits.body_read_timeout = Duration::from_millis(300);
    let (node, _) = start(cfg).await;
    let mut s = stalled_put(node.http_addr(), "").await;
    let (resp, _) = read_response(&mut s, Duration::from_secs(20)).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert_eq!(json_of(&resp)["error"], "body_timeout");
    node.shutdown().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_answers_503_timeout() {
    let mut cfg = Config::default();
    cfg.http_limits.request_timeout = Duration::from_millis(300);
    let (node, _) = start(cfg).await;
    let mut s = stalled_put(node.http_addr(), "").await;
    let (resp, _) = read_response(&mut s, Duration::from_secs(20)).await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert_eq!(json_of(&resp)["error"], "timeout");
    node.shutdown().await;
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_with_retry_after() {
    let mut cfg = Config::default();
    cfg.http_limits.max_in_flight = 2;
    let (node, base) = start(cfg).await;
    // Two stalled PUTs hold both in-flight slots.
    let _a = stalled_put(node.http_addr(), "").await;
    let _b = stalled_put(node.http_addr(), "").await;
    let c = client();
    let mut shed = None;
    for _ in 0..100 {
        let r = c.get(format!("{base}/v1/stats")).send().await.unwrap();
        if r.status() == 503 {
            shed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = shed.expect("a request over the in-flight limit is shed");
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    // The balancer's view is not shed.
    assert!(health_ok(&c, &base).await);
    node.shutdown().await;
}

#[tokio::test]
async fn an_l1_hit_counts_against_the_in_flight_limit_too() {
    let mut cfg = Config::default();
    cfg.http_limits.max_in_flight = 2;
    let (node, base) = start(cfg).await;
    let c = client();
    let url = format!("{base}/v1/cache/permissions/held");
    assert_eq!(c.put(&url).body("v").send().await.unwrap().status(), 204);
    let hit = c.get(&url).send().await.unwrap();
    assert_eq!(hit.headers()["x-cache"], "L1");
    // Two stalled PUTs hold both slots: the hit, answered before routing, is shed too.
    let a = stalled_put(node.http_addr(), "").await;
    let b = stalled_put(node.http_addr(), "").await;
    let mut shed = None;
    for _ in 0..100 {
        let r = c.get(&url).send().await.unwrap();
        if r.status() == 503 {
            shed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = shed.expect("an L1 hit over the in-flight limit is shed");
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    // The stalled writers gone, their slots come back and the hit is served again.
    drop((a, b));
    let mut served = false;
    for _ in 0..250 {
        let r = c.get(&url).send().await.unwrap();
        if r.status() == 200 {
            assert_eq!(r.headers()["x-cache"], "L1");
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the hit is served once the slots are free");
    node.shutdown().await;
}

#[tokio::test]
async fn token_is_checked_before_the_body_is_read() {
    let mut cfg = Config::default();
    cfg.api_token = Some("s3cret".into());
    // Long body timeout: had the body been read first, no answer would come for 60 s.
    cfg.http_limits.body_read_timeout = Duration::from_secs(60);
    let (node, _) = start(cfg).await;
    let mut s = stalled_put(node.http_addr(), "").await;
    let (resp, _) = read_response(&mut s, Duration::from_secs(20)).await;
    assert_eq!(status_of(&resp), 401, "{resp}");
    assert_eq!(json_of(&resp)["error"], "unauthorized");
    let mut s = stalled_put(node.http_addr(), "Authorization: Bearer wrong\r\n").await;
    let (resp, _) = read_response(&mut s, Duration::from_secs(20)).await;
    assert_eq!(status_of(&resp), 401, "{resp}");
    node.shutdown().await;
}

#[tokio::test]
async fn lowercase_bearer_json_405_and_largest_ttl() {
    let mut cfg = Config::default();
    cfg.api_token = Some("s3cret".into());
    let (node, base) = start(cfg).await;
    let c = client();
    let r = c
        .put(format!("{base}/v1/cache/general/k"))
        .header("authorization", "bearer s3cret")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "lowercase scheme accepted");

    let r = c
        .post(format!("{base}/v1/cache/general/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.expect("405 has a JSON body");
    assert_eq!(body["error"], "method_not_allowed");
    assert!(body["message"].as_str().unwrap().contains("POST"));
    let r = c.delete(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "method_not_allowed"
    );

    let put_ttl = |ttl: u64| {
        c.put(format!("{base}/v1/cache/general/t?ttl={ttl}"))
            .header("authorization", "Bearer s3cret")
            .body("v")
            .send()
    };
    let max = hybrid_cache::server::http::limits::MAX_TTL_SECS;
    assert_eq!(max, 315_360_000);
    assert_eq!(put_ttl(max).await.unwrap().status(), 204);
    let r = put_ttl(max + 1).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_ttl");
    assert!(body["message"].as_str().unwrap().contains("315360000"));
    node.shutdown().await;
}
