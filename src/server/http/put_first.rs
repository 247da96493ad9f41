//! The value write, answered before routing.
//!
//! Why: a `PUT` of one value crossed axum's router and its layers (the matcher, the boxed
//! route services, load shedding, the concurrency limit, the deadline, the body timeout,
//! the metrics layer), and every time the write's future woke (the key's lock, the bus,
//! the category actor), the whole stack of futures was polled again. Taking the write in
//! front of the router cut the CPU per `PUT` (node and Redis) by about a sixth
//! (docs/benchmarks.md).
//!
//! What stays the same: the answer is the route's own handler's ([`put_value`]: the query,
//! the deadline header, the tags, the checks and the error mapping), its body is read as
//! the route reads it (the body read timeout, the size limit, the same rejections), under
//! the same request deadline, holding one permit of the same in-flight limit, recorded in
//! the route's latency series. Only what is refused before a handler runs goes to the
//! router: a missing or wrong token (401, before the body is read), every in-flight permit
//! taken (503 `overloaded`), other methods and paths, and a percent-encoded path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::BoxError;
use bytes::Bytes;
use tower::{Layer, ServiceExt};
use tower_http::timeout::TimeoutBody;

use super::hit_first::{value_path, HitFirst};
use super::limits::{check_bearer, deadline_passed};
use super::routes::put_value;

impl HitFirst {
    /// The answer to `req` if it is a value write this path takes (see the module docs),
    /// as the route's handler and layers would give it; otherwise `req`, untouched.
    pub(super) async fn write<B>(&self, req: Request<B>) -> Result<Response, Request<B>>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if req.method() != Method::PUT {
            return Err(req);
        }
        let Some((category, key)) = value_path(req.uri().path()) else {
            return Err(req);
        };
        let inner = self.inner();
        let config = inner.state.cache.config();
        // Refused before the body is read: the router's token layer answers it.
        if check_bearer(config.api_token.as_deref(), req.headers()).is_err() {
            return Err(req);
        }
        // Held until answered, as the router's concurrency limit would hold it.
        let Ok(_permit) = inner.state.in_flight.try_acquire() else {
            return Err(req);
        };
        let start = Instant::now();
        let path = Path((category.to_string(), key.to_string()));
        let query = Query::<HashMap<String, String>>::try_from_uri(req.uri());
        let (mut parts, body) = req.into_parts();
        // The handler's header map (reading the body does not look at it).
        let headers = std::mem::take(&mut parts.headers);
        // The body as the route reads it: under the body read timeout, then buffered within
        // the size limit (the limit is the router's `DefaultBodyLimit`, set the same way).
        let body = Body::new(TimeoutBody::new(inner.body_timeout, body));
        let req = Request::from_parts(parts, body);
        let read = tower::service_fn(|req: Request| async move {
            Ok::<_, Infallible>(Bytes::from_request(req, &()).await)
        });
        let state = inner.state.clone();
        let handled = async move {
            let body = match inner.body_limit.layer(read).oneshot(req).await {
                Ok(body) => body,
                Err(never) => match never {},
            };
            put_value(State(state), headers, Ok(path), query, body).await
        };
        let resp = match tokio::time::timeout(inner.deadline, handled).await {
            Ok(answer) => answer.into_response(),
            Err(_) => deadline_passed(inner.deadline),
        };
        inner.record(&Method::PUT, resp.status().as_u16(), start.elapsed());
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use axum::Router;

    use super::*;
    use crate::config::Config;
    use crate::server::http::AppState;
    use crate::HybridCache;

    /// Which writes this path answers itself (the rest reach the router untouched).
    #[tokio::test]
    async fn answers_value_writes_and_leaves_the_rest_to_the_router() {
        let config = Config {
            api_token: Some("t0ken".into()),
            ..Config::default()
        };
        let cache = HybridCache::start(config).await.unwrap();
        let state = AppState::new(cache.clone(), None);
        let front = HitFirst::new(Router::new(), state.clone());
        let ask = |m: Method, uri: &'static str, token: Option<&'static str>| {
            let front = front.clone();
            async move {
                let mut b = Request::builder().method(m).uri(uri);
                if let Some(t) = token {
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                match front.write(b.body(Body::from("v")).unwrap()).await {
                    Ok(resp) => Some(resp.status().as_u16()),
                    Err(req) => {
                        // Handed on whole: the body is still there.
                        let body = axum::body::to_bytes(Body::new(req.into_body()), 16).await;
                        assert_eq!(body.unwrap(), Bytes::from_static(b"v"));
                        None
                    }
                }
            }
        };
        let ok = Some("t0ken");
        assert_eq!(ask(Method::PUT, "/v1/cache/roles/k", ok).await, Some(204));
        assert_eq!(
            cache.get("roles", "k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        // The handler's own answers: a bad query, an unknown category.
        assert_eq!(
            ask(Method::PUT, "/v1/cache/roles/k?ttl=x", ok).await,
            Some(400)
        );
        assert_eq!(ask(Method::PUT, "/v1/cache/nope/k", ok).await, Some(404));
        // Refused before a handler runs, or not this route: the router's.
        assert_eq!(ask(Method::PUT, "/v1/cache/roles/k", None).await, None);
        assert_eq!(
            ask(Method::PUT, "/v1/cache/roles/k", Some("bad")).await,
            None
        );
        assert_eq!(ask(Method::POST, "/v1/cache/roles/k", ok).await, None);
        assert_eq!(ask(Method::DELETE, "/v1/cache/roles/k", ok).await, None);
        assert_eq!(ask(Method::PUT, "/v1/cache/roles/%6B", ok).await, None);
        assert_eq!(ask(Method::PUT, "/v1/invalidate", ok).await, None);
        // Every in-flight permit taken: the router (and its load shedding) answers.
        let all = state.in_flight.available_permits() as u32;
        let held = state.in_flight.clone().try_acquire_many_owned(all).unwrap();
        assert_eq!(ask(Method::PUT, "/v1/cache/roles/k", ok).await, None);
        drop(held);
        assert_eq!(ask(Method::PUT, "/v1/cache/roles/k", ok).await, Some(204));
    }
}
