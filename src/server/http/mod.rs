//! The node's HTTP API (axum), CONTRACT §5.
//!
//! Every failure is JSON `{"error": code, "message": ...}` with a fitting status, and every
//! rejection axum produces (bad path, oversized body, malformed JSON) is mapped to that shape
//! too: a client can never get a node to panic or to answer in another format.
//!
//! This module assembles the routes ([`routes`], [`finish`]); the handlers' shared state
//! ([`AppState`]) is in `state.rs`, the request helpers that map rejections to [`ApiError`]
//! and count them in `rejections.rs`, the handlers in `routes.rs`, the error shape in
//! `errors.rs`, the OpenAPI shapes in [`schema`], the limits in [`limits`], the accept
//! loop in [`listener`], the metrics
//! layer in `track.rs`, the value `GET` and `PUT` answered before routing in [`HitFirst`]
//! (`hit_first.rs`, `put_first.rs`). The whole application (with `/openapi.json` and `/ui`) is
//! `server::router`, one level up; `server::service` puts [`HitFirst`] in front of it.

use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderValue;
use axum::routing::{get, post};
use axum::Router;

mod errors;
mod hit_first;
pub mod limits;
pub mod listener;
pub(crate) mod origin;
mod put_first;
mod rejections;
pub(crate) mod routes;
pub mod schema;
mod state;
mod track;

pub use errors::ApiError;
pub use hit_first::HitFirst;
use hit_first::VALUE_ROUTE;
use routes::{
    cluster, crash_actor, delete_value, get_value, health, invalidate, metrics, put_value, stats,
};
pub use state::AppState;

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
    // Read-through: `get_or_load_with` with a loader reading the node's origin.
    let origin = origin::Loader::new(
        cfg.origin_url.clone(),
        "HC_ORIGIN_URL",
        cfg.origin_timeout,
        cfg.max_value_bytes,
    );
    let origin_load =
        move |state: State<AppState>,
              headers: axum::http::HeaderMap,
              path: Result<Path<(String, String)>, PathRejection>| {
            origin::load_value(state, headers, path, origin.clone())
        };
    let mut api = Router::new()
        .route(
            VALUE_ROUTE,
            get(get_hit).put(put_value).delete(delete_value),
        )
        .route("/v1/load/{category}/{key}", get(origin_load))
        .route("/v1/invalidate", post(invalidate))
        .route("/v1/stats", get(stats))
        .route("/v1/cluster/stats", get(cluster));
    if cfg.test_hooks {
        // Test hook of the fault checker (`HC_TEST_HOOKS=1`); absent otherwise, and never
        // in /openapi.json (no `#[utoipa::path]`).
        api = api.route("/v1/test/crash/{category}", post(crash_actor));
        // The library workload's loads: `get_or_load` with a loader reading the checker's
        // database server (`HC_TEST_LOADER_URL`).
        let loader = origin::Loader::from_env(cfg.max_value_bytes);
        let load = move |state: State<AppState>,
                         headers: axum::http::HeaderMap,
                         path: Result<Path<(String, String)>, PathRejection>| {
            origin::test_load_value(state, headers, path, loader.clone())
        };
        api = api.route("/v1/test/load/{category}/{key}", get(load));
    }
    let api = api.route_layer(limits::RequireToken::layer(cfg.api_token.as_deref()));
    let api = limits::api_layers(api, &cfg.http_limits, state.in_flight.clone());
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
        // One layer call, one wrap of every route (each `layer` call boxes every route
        // again, and each box is cloned per request): the metrics outside, then the limit.
        .layer(
            tower::ServiceBuilder::new()
                .layer(track::TrackHttpLayer::new(node_metrics))
                .layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(state)
}
