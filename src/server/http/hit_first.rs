//! The value read, answered before routing.
//!
//! Why: a read of one value is a node's hottest request and an L1 hit its cheapest work (a
//! moka lookup), yet routing it through axum (matching, the path's two owned strings, the
//! `Extensions` of the matched route and its parameters, the boxed route services, the
//! limit layers) cost about as much as the lookup and the response together
//! (docs/benchmarks.md). [`HitFirst`] takes `GET /v1/cache/{category}/{key}` first and
//! answers it exactly as the route's handler would (status, headers, body, the route's
//! metrics, one permit of the same in-flight limit, the same request deadline): an L1 hit,
//! an L2 hit (which reads L1 once, not once here and once more in the handler), a miss,
//! and the errors of a read. Everything else goes to the router untouched: other routes
//! and methods, a percent-encoded path, and a request that finds every in-flight permit
//! taken (the router sheds it, 503).

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::body::HttpBody;
use axum::extract::Request;
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

/// A node's HTTP application: the value read in front of the router. Cheap to clone (one
/// reference count): the accept loop clones it for every request.
#[derive(Clone)]
pub struct HitFirst(Arc<Inner>);

struct Inner {
    router: Router,
    state: AppState,
    /// This node's id as an `x-node` value (`None` if it is not a valid header value).
    node: Option<HeaderValue>,
    /// The API's request deadline (the router's `TimeoutLayer` has the same).
    deadline: Duration,
    /// The route's latency series of a 200 (a hit) and a 404 (a miss, an unknown category),
    /// looked up once instead of in the metric family on every request.
    hit: Histogram,
    not_found: Histogram,
    /// For the series of the other answers (the other errors).
    metrics: Arc<NodeMetrics>,
}

impl HitFirst {
    /// The value read of `state` in front of `router` (the node's whole application).
    pub fn new(router: Router, state: AppState) -> HitFirst {
        let config = state.cache.config();
        let node = HeaderValue::from_str(&config.node_id).ok();
        let deadline = config.http_limits.request_timeout;
        let metrics = state.cache.node_metrics().clone();
        let series = |status| metrics.http_series(VALUE_ROUTE, Method::GET.as_str(), status);
        let (hit, not_found) = (series(200), series(404));
        HitFirst(Arc::new(Inner {
            router,
            state,
            node,
            deadline,
            hit,
            not_found,
            metrics,
        }))
    }

    /// Answers `req`: a value read here, anything else by the router.
    pub async fn answer<B>(&self, req: Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(resp) = self.read(req.method(), req.uri()).await {
            return resp;
        }
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
        let elapsed = start.elapsed();
        match resp.status().as_u16() {
            200 => inner.hit.observe(elapsed.as_secs_f64()),
            404 => inner.not_found.observe(elapsed.as_secs_f64()),
            status => {
                let get = Method::GET.as_str();
                inner
                    .metrics
                    .observe_http(VALUE_ROUTE, get, status, elapsed);
            }
        }
        Some(resp)
    }
}

/// `(category, key)` of a value path the router would match with both segments taken as
/// they are: non-empty, no `/`, nothing percent-encoded (decoding is left to the router).
fn value_path(path: &str) -> Option<(&str, &str)> {
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
