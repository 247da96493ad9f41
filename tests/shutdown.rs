//! Graceful shutdown of a node's front ends: `Node::shutdown` lets the request in flight
//! finish and answer, and closes idle connections (HTTP keep-alive and RESP) at once
//! instead of holding the shutdown until the drain timeout (10 s).
#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default Config at a time

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use hybrid_cache::config::Config;
use hybrid_cache::server::node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Well under the node's 10 s drain timeout: a connection closed within it was closed by
/// the shutdown, not by the drain giving up.
const PROMPT: Duration = Duration::from_secs(5);

/// An origin whose answers wait for a permit: `calls` counts the requests that arrived.
#[derive(Clone)]
struct SlowOrigin {
    permits: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
}

async fn slow_value(State(o): State<SlowOrigin>) -> &'static str {
    o.calls.fetch_add(1, Ordering::SeqCst);
    let _permit = o.permits.acquire().await;
    "from-origin"
}

async fn start_origin(o: SlowOrigin) -> String {
    support::serve_origin(
        Router::new()
            .route("/{cat}/{key}", get(slow_value))
            .with_state(o),
    )
    .await
}

/// Sends one HTTP/1.1 request on `s` (kept alive).
async fn send_get(s: &mut TcpStream, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nhost: node\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
}

/// Reads until the peer closes `s` (bounded by [`PROMPT`]); returns what arrived.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PROMPT, s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the node did not close the connection within {PROMPT:?}; got so far: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
    let origin = SlowOrigin {
        permits: Arc::new(Semaphore::new(0)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let mut config = Config::default();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.resp_addr = Some("127.0.0.1:0".parse().unwrap());
    config.origin_url = Some(start_origin(origin.clone()).await);
    let node = Node::start(config).await.expect("node starts");
    let http = node.http_addr();
    let resp = node.resp_addr().expect("RESP is on");

    // An idle keep-alive HTTP connection (one request answered, then nothing).
    let mut idle = TcpStream::connect(http).await.unwrap();
    send_get(&mut idle, "/health").await;
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // An idle RESP connection.
    let mut idle_resp = TcpStream::connect(resp).await.unwrap();
    idle_resp.write_all(b"PING\r\n").await.unwrap();
    let mut pong = [0u8; 7];
    idle_resp.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
    // A read-through request held up in the origin (bounded wait until it got there).
    let mut busy = TcpStream::connect(http).await.unwrap();
    send_get(&mut busy, "/v1/load/permissions/slow").await;
    for _ in 0..500 {
        if origin.calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        origin.calls.load(Ordering::SeqCst),
        1,
        "the load reached the origin"
    );

    let stopping = tokio::spawn(node.shutdown());
    // Idle connections close at once, with nothing more sent on them.
    let rest = read_to_close(&mut idle).await;
    assert!(
        !rest.contains("HTTP/1.1"),
        "no second answer on the idle connection: {rest}"
    );
    assert_eq!(read_to_close(&mut idle_resp).await, "");
    // The request in flight still gets its answer once the origin answers.
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the request in flight"
    );
    origin.permits.add_permits(1);
    let answer = read_to_close(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "answered: {answer}");
    assert!(answer.ends_with("from-origin"), "answered: {answer}");
    tokio::time::timeout(PROMPT, stopping)
        .await
        .expect("shutdown completes once the request in flight is answered")
        .unwrap();
}
