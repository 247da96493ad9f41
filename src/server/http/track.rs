//! The HTTP metrics layer: times every request and records it under its route template
//! (`hc_http_request_duration_seconds`, see [`NodeMetrics::observe_http`]).
//!
//! A plain tower [`Layer`] rather than `axum::middleware::from_fn`: `from_fn` boxes the rest
//! of the stack into a fresh `Next` and clones it on every request, on every route,
//! including the L1-hit `GET`; this wraps the inner future in place.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use tower::{Layer, Service};

use crate::node_metrics::NodeMetrics;

/// Records every request's latency, method, status and route template in `metrics`.
#[derive(Clone)]
pub struct TrackHttpLayer {
    metrics: Arc<NodeMetrics>,
}

impl TrackHttpLayer {
    pub fn new(metrics: Arc<NodeMetrics>) -> Self {
        TrackHttpLayer { metrics }
    }
}

impl<S> Layer<S> for TrackHttpLayer {
    type Service = TrackHttp<S>;

    fn layer(&self, inner: S) -> TrackHttp<S> {
        TrackHttp {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`TrackHttpLayer`].
#[derive(Clone)]
pub struct TrackHttp<S> {
    inner: S,
    metrics: Arc<NodeMetrics>,
}

impl<S, E> Service<Request> for TrackHttp<S>
where
    S: Service<Request, Response = Response, Error = E>,
{
    type Response = Response;
    type Error = E;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // `MatchedPath` is a shared string: cloning it allocates nothing.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        Tracked {
            inner: self.inner.call(req),
            metrics: Some(self.metrics.clone()),
            route,
            method,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, recording the request once the response is ready.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        metrics: Option<Arc<NodeMetrics>>,
        route: Option<MatchedPath>,
        method: Method,
        start: Instant,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(metrics)) = (&out, this.metrics.take()) {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            metrics.observe_http(
                route,
                this.method.as_str(),
                resp.status().as_u16(),
                this.start.elapsed(),
            );
        }
        Poll::Ready(out)
    }
}
