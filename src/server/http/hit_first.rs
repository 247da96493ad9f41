//! The value read, answered before routing (and the value write, in `put_first.rs`).
//!
//! Why: a read of one value is a node's hottest request and an L1 hit its cheapest work (a
//! moka lookup), yet routing it through axum (matching, the path's two owned strings, the
//! `Extensions` of the matched route and its parameters, the boxed route services, the
//! limit layers) cost about as much as the lookup and the response together
//! (docs/benchmarks.md). [`HitFirst`] takes `GET /v1/cache/{category}/{key}` first and
//! answers it exactly as the route's handler would (status, headers, body, the route's
//! metrics, one permit of the same in-flight limit, the same request deadline): an L1 hit,
//! an L2 hit (which reads L1 once, not once here and once more in the handler), a miss,
//! and the errors of a read. A `PUT` of the same path is taken next (`put_first.rs`).
//! Everything else goes to the router untouched: other routes and methods, a
//! percent-encoded path, and a request that finds every in-flight permit taken (the router
//! sheds it, 503).

use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::body::HttpBody;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, Uri};
use axum::response::Response;
use axum::{BoxError, Router};
use bytes::Bytes;
use prometheus_client::metrics::histogram::Histogram;
use tower::ServiceExt;

use super::limits::deadline_passed;
use super::routes::read_answer;
use super::state::AppState;
use crate::node_metrics::NodeMetrics;

/// The route template of a value, as the router matches it and the metrics label it.
pub(crate) const VALUE_ROUTE: &str = "/v1/cache/{category}/{key}";

/// A node's HTTP application: the value read and the value write in front of the router.
/// Cheap to clone (one reference count): the accept loop clones it for every request.
#[derive(Clone)]
pub struct HitFirst(Arc<Inner>);

pub(super) struct Inner {
    router: Router,
    pub(super) state: AppState,
    /// This node's id as an `x-node` value (`None` if it is not a valid header value).
    node: Option<HeaderValue>,
    /// The API's request deadline (the router's `TimeoutLayer` has the same).
    pub(super) deadline: Duration,
    /// The API's body read timeout (the router's `RequestBodyTimeoutLayer` has the same).
    pub(super) body_timeout: Duration,
    /// The body size limit (the router's `DefaultBodyLimit` is the same).
    pub(super) body_limit: DefaultBodyLimit,
    /// The route's latency series of a `GET` answered 200 (a hit) and 404 (a miss, an
    /// unknown category) and of a `PUT` answered 204, looked up once instead of in the
    /// metric family on every request (and created by the first such answer, as the
    /// router's metrics layer creates a series).
    hit: OnceLock<Histogram>,
    not_found: OnceLock<Histogram>,
    written: OnceLock<Histogram>,
    /// For the series of the other answers (the other errors).
    metrics: Arc<NodeMetrics>,
}

impl Inner {
    /// Records an answer of the value route to `method` with `status`, `elapsed` after the
    /// request came in, in the route's latency series (as the router's metrics layer would).
    pub(super) fn record(&self, method: &Method, status: u16, elapsed: Duration) {
        let cell = match (method.as_str(), status) {
            ("GET", 200) => &self.hit,
            ("GET", 404) => &self.not_found,
            ("PUT", 204) => &self.written,
            _ => {
                let method = method.as_str();
                return self
                    .metrics
                    .observe_http(VALUE_ROUTE, method, status, elapsed);
            }
        };
        let series = || {
            self.metrics
                .http_series(VALUE_ROUTE, method.as_str(), status)
        };
        cell.get_or_init(series).observe(elapsed.as_secs_f64());
    }
}

impl HitFirst {
    /// The value read and write of `state` in front of `router` (the node's whole
    /// application).
    pub fn new(router: Router, state: AppState) -> HitFirst {
        let config = state.cache.config();
        let node = HeaderValue::from_str(&config.node_id).ok();
        let deadline = config.http_limits.request_timeout;
        let body_timeout = config.http_limits.body_read_timeout;
        let body_limit = DefaultBodyLimit::max(config.max_value_bytes);
        let metrics = state.cache.node_metrics().clone();
        HitFirst(Arc::new(Inner {
            router,
            state,
            node,
            deadline,
            body_timeout,
            body_limit,
            hit: OnceLock::new(),
            not_found: OnceLock::new(),
            written: OnceLock::new(),
            metrics,
        }))
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.0
    }

    /// Answers `req`: a value read or write here, anything else by the router.
    pub async fn answer<B>(&self, req: Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(resp) = self.read(req.method(), req.uri()).await {
            return resp;
        }
        let req = match self.write(req).await {
            Ok(resp) => return resp,
            Err(req) => req,
        };
        match self.0.router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// The answer to `method uri` if it is a value read this path takes (see the module
    /// docs), as the route's handler and layers would give it.
    async fn read(&self, method: &Method, uri: &Uri) -> Option<Response> {
        if method != Method::GET {
            return None;
        }
        let (category, key) = value_path(uri.path())?;
        let start = Instant::now();
        let inner = &*self.0;
        // Held until answered, as the router's concurrency limit would hold it.
        let _permit = inner.state.in_flight.try_acquire().ok()?;
        let read = inner.state.cache.get_with_source(category, key);
        tokio::pin!(read);
        // An L1 hit is ready at once: no timer for it. Anything slower (L2) runs under the
        // request deadline, as the router's `TimeoutLayer` would run it.
        let found = match futures::poll!(&mut read) {
            Poll::Ready(found) => Some(found),
            Poll::Pending => tokio::time::timeout(inner.deadline, read).await.ok(),
        };
        let resp = match found {
            Some(found) => read_answer(found, category, key, inner.node.clone()),
            None => deadline_passed(inner.deadline),
        };
        inner.record(&Method::GET, resp.status().as_u16(), start.elapsed());
        Some(resp)
    }
}

/// `(category, key)` of a value path the router would match with both segments taken as
/// they are: non-empty, no `/`, nothing percent-encoded (decoding is left to the router).
pub(super) fn value_path(path: &str) -> Option<(&str, &str)> {
    let (category, key) = path.strip_prefix("/v1/cache/")?.split_once('/')?;
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '%']);
    (plain(category) && plain(key)).then_some((category, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HybridCache;

    /// Which requests this path answers itself (the rest reach the router).
    #[tokio::test]
    async fn answers_value_reads_and_leaves_the_rest_to_the_router() {
        let cache = HybridCache::builder().build().await.unwrap();
        cache.set("roles", "k", "v", None).await.unwrap();
        let state = AppState::new(cache, None);
        let front = HitFirst::new(Router::new(), state.clone());
        let ask = |m: Method, u: &'static str| {
            let front = front.clone();
            async move {
                front
                    .read(&m, &Uri::from_static(u))
                    .await
                    .map(|r| r.status().as_u16())
            }
        };
        assert_eq!(ask(Method::GET, "/v1/cache/roles/k").await, Some(200));
        // A miss and an unknown category are read here too (404, as the route answers).
        assert_eq!(ask(Method::GET, "/v1/cache/roles/other").await, Some(404));
        assert_eq!(ask(Method::GET, "/v1/cache/nope/k").await, Some(404));
        assert_eq!(ask(Method::HEAD, "/v1/cache/roles/k").await, None);
        assert_eq!(ask(Method::PUT, "/v1/cache/roles/k").await, None);
        assert_eq!(ask(Method::GET, "/v1/cache/roles/%6B").await, None);
        // Every in-flight permit taken: the router (and its load shedding) answers.
        let all = state.in_flight.available_permits() as u32;
        let held = state.in_flight.clone().try_acquire_many_owned(all).unwrap();
        assert_eq!(ask(Method::GET, "/v1/cache/roles/k").await, None);
        drop(held);
        assert_eq!(ask(Method::GET, "/v1/cache/roles/k").await, Some(200));
    }

    #[test]
    fn only_plain_value_paths_are_taken() {
        assert_eq!(value_path("/v1/cache/roles/u1"), Some(("roles", "u1")));
        assert_eq!(
            value_path("/v1/cache/roles/a.b-c_d~"),
            Some(("roles", "a.b-c_d~"))
        );
        for other in [
            "/v1/cache/roles",
            "/v1/cache/roles/",
            "/v1/cache//u1",
            "/v1/cache/roles/u1/",
            "/v1/cache/roles/u1/x",
            "/v1/cache/roles/u%201",
            "/v1/cache/r%6Fles/u1",
            "/v1/load/roles/u1",
            "/v1/cachex/roles/u1",
            "/",
        ] {
            assert_eq!(value_path(other), None, "{other}");
        }
    }
}
