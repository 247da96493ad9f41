//! The node's HTTP API (axum), CONTRACT §5.
//!
//! Every failure is JSON `{"error": code, "message": ...}` with a fitting status, and every
//! rejection axum produces (bad path, oversized body, malformed JSON) is mapped to that shape
//! too: a client can never get a node to panic or to answer in another format.
//!
//! This module holds the handlers' shared state ([`AppState`]), the request helpers that
//! map rejections to [`ApiError`] and count them, and the assembly of the routes
//! ([`routes`], [`finish`]); the handlers are in `routes.rs`, the error shape in
//! `errors.rs`, the OpenAPI shapes in [`schema`], the limits in [`limits`]. The whole
//! application (with `/openapi.json` and `/ui`) is `server::router`, one level up.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;

use crate::cluster::Membership;
use crate::stats::NodeCounters;
use crate::HybridCache;

mod errors;
pub mod limits;
pub(crate) mod routes;
pub mod schema;

pub use errors::ApiError;
use routes::{cluster, delete_value, get_value, health, invalidate, metrics, put_value, stats};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The cache the routes serve.
    pub cache: HybridCache,
    /// Gossip membership, for `/v1/cluster/stats` and `/metrics`; `None` without gossip.
    pub membership: Option<Arc<dyn Membership>>,
}

/// A 400 answer, counted in `http_bad_requests`.
fn bad_request(state: &AppState, code: &'static str, msg: impl Into<String>) -> ApiError {
    NodeCounters::incr(&state.cache.counters().http_bad_requests);
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

/// The answer to a body that could not be read: 408 on the body read timeout, 413 over the
/// size limit, else 400 `bad_body`.
fn body_error(state: &AppState, rej: BytesRejection) -> ApiError {
    if crate::server::http::limits::is_body_timeout(&rej) {
        NodeCounters::incr(&state.cache.counters().http_bad_requests);
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request body not received within the body read timeout",
        );
    }
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        NodeCounters::incr(&state.cache.counters().http_bad_requests);
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!(
                "body exceeds the limit of {} bytes",
                state.cache.config().max_value_bytes
            ),
        )
    } else {
        bad_request(state, "bad_body", rej.body_text())
    }
}

/// A 400 `bad_path` answer.
fn path_error(state: &AppState, rej: PathRejection) -> ApiError {
    bad_request(state, "bad_path", rej.body_text())
}

/// Also enforced earlier by [`crate::server::http::limits::require_token`] (before the body is read);
/// kept here so a handler stays guarded wherever it is mounted.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    crate::server::http::limits::check_bearer(state.cache.config().api_token.as_deref(), headers)
}

/// The API and operations routes of a node: the API routes get the request limits of
/// [`limits::api_layers`] and the token check before the body is read; `/health` and
/// `/metrics` stay outside both. [`finish`] completes them.
pub fn routes(state: &AppState) -> Router<AppState> {
    let cfg = state.cache.config();
    let node = HeaderValue::from_str(&cfg.node_id).ok();
    let get_hit = move |state: State<AppState>,
                        path: Result<Path<(String, String)>, PathRejection>| {
        get_value(state, path, node.clone())
    };
    let api = Router::new()
        .route(
            "/v1/cache/{category}/{key}",
            get(get_hit).put(put_value).delete(delete_value),
        )
        .route("/v1/invalidate", post(invalidate))
        .route("/v1/stats", get(stats))
        .route("/v1/cluster/stats", get(cluster))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::require_token,
        ));
    let api = limits::api_layers(api, &cfg.http_limits);
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// Completes a node's routes (after the last route is added): the JSON answers to an
/// unknown path or method, the body size limit, the HTTP metrics, and the state.
pub fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.cache.config().max_value_bytes;
    let node_metrics = state.cache.node_metrics().clone();
    routes
        .fallback(errors::not_found)
        // Applies to the routes above: keep it after the last `.route`.
        .method_not_allowed_fallback(limits::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            node_metrics,
            crate::node_metrics::track_http,
        ))
        .with_state(state)
}
