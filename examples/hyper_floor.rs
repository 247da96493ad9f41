//! The floor of the L1-hit HTTP figure of `cargo xtask bench node` (issue #25): a bare hyper
//! HTTP/1.1 server, set up like the node's (tokio multi-thread runtime, one worker per CPU,
//! the node's own `http1::Builder`, `listener::http1_builder`), answering every request with
//! the same 100-byte body, without a router, middleware, metrics or a cache. What it costs
//! per request is what any node built on hyper pays before doing anything of its own; the
//! benchmark prints it as a ratio to a redis `GET`, next to the node's.
//!
//! `cargo run --release --example hyper_floor -- 127.0.0.1:PORT [BODY_BYTES]`

use std::convert::Infallible;

use anyhow::Context;
use axum::body::Body;
use bytes::Bytes;
use hybrid_cache::server::http::limits::HttpLimits;
use hybrid_cache::server::http::listener::http1_builder;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .context("usage: hyper_floor ADDR [BODY_BYTES]")?;
    let size: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("BODY_BYTES must be a number")?
        .unwrap_or(100);
    let body = Bytes::from(vec![b'v'; size]);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let builder = http1_builder(&HttpLimits::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Body::from(body))) }
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
