//! The node's HTTP API (axum), CONTRACT §5.
//!
//! Every failure is JSON `{"error": code, "message": ...}` with a fitting status, and every
//! rejection axum produces (bad path, oversized body, malformed JSON) is mapped to that shape
//! too: a client can never get a node to panic or to answer in another format.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::cluster::{cluster_stats, Membership};
use crate::error::CacheError;
use crate::stats::{NodeCounters, Status};
use crate::HybridCache;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub cache: HybridCache,
    pub membership: Option<Arc<dyn Membership>>,
}

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> ApiError {
        let status = match &e {
            CacheError::UnknownCategory(_) => StatusCode::NOT_FOUND,
            CacheError::KeyTooLarge { .. } | CacheError::ValueTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            CacheError::InvalidKey(_)
            | CacheError::InvalidPattern { .. }
            | CacheError::InvalidTtl(_)
            | CacheError::Serde(_) => StatusCode::BAD_REQUEST,
            CacheError::Loader(_) => StatusCode::BAD_GATEWAY,
            CacheError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

fn bad_request(state: &AppState, code: &'static str, msg: impl Into<String>) -> ApiError {
    NodeCounters::incr(&state.cache.shared().counters.http_bad_requests);
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn body_error(state: &AppState, rej: BytesRejection) -> ApiError {
    if crate::http_limits::is_body_timeout(&rej) {
        NodeCounters::incr(&state.cache.shared().counters.http_bad_requests);
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request body not received within the body read timeout",
        );
    }
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        NodeCounters::incr(&state.cache.shared().counters.http_bad_requests);
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

fn path_error(state: &AppState, rej: PathRejection) -> ApiError {
    bad_request(state, "bad_path", rej.body_text())
}

/// Also enforced earlier by [`crate::http_limits::require_token`] (before the body is read);
/// kept here so a handler stays guarded wherever it is mounted.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    crate::http_limits::check_bearer(state.cache.config().api_token.as_deref(), headers)
}

async fn get_value(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    match state.cache.get_with_source(&category, &key).await? {
        Some((value, source)) => {
            let mut resp = (StatusCode::OK, value).into_response();
            resp.headers_mut()
                .insert("x-cache", HeaderValue::from_static(source.as_str()));
            if let Ok(node) = HeaderValue::from_str(&state.cache.config().node_id) {
                resp.headers_mut().insert("x-node", node);
            }
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(resp)
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no value for `{key}` in `{category}`"),
        )),
    }
}

async fn put_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    let Query(query) = query.map_err(|r| bad_request(&state, "bad_query", r.body_text()))?;
    let ttl = match query.get("ttl") {
        None => None,
        Some(t) => Some(
            crate::http_limits::parse_ttl(t).map_err(|m| bad_request(&state, "invalid_ttl", m))?,
        ),
    };
    // Own exactly the value's bytes: a slice would keep hyper's whole read buffer alive
    // and make L1's byte accounting (and its bound) a lie.
    let body = Bytes::copy_from_slice(&body.map_err(|r| body_error(&state, r))?);
    state.cache.set(&category, &key, body, ttl).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    state.cache.delete(&category, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    category: String,
    pattern: String,
}

async fn invalidate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let body = body.map_err(|r| body_error(&state, r))?;
    let req: InvalidateBody = serde_json::from_slice(&body).map_err(|e| {
        bad_request(
            &state,
            "bad_body",
            format!("expected {{\"category\":..., \"pattern\":...}}: {e}"),
        )
    })?;
    let n = state.cache.invalidate(&req.pattern, &req.category).await?;
    Ok(Json(json!({ "invalidated": n })))
}

async fn stats(State(state): State<AppState>) -> Json<crate::Stats> {
    Json(state.cache.stats().await)
}

async fn cluster(State(state): State<AppState>) -> Json<crate::cluster::ClusterStats> {
    let own = state.cache.stats().await;
    let cfg = state.cache.config();
    let gossip = cfg
        .gossip_advertise
        .clone()
        .or_else(|| cfg.gossip_addr.map(|a| a.to_string()))
        .unwrap_or_default();
    let others = state
        .membership
        .as_ref()
        .map(|m| m.members())
        .unwrap_or_default();
    Json(cluster_stats(&own, gossip, cfg.http_advertised(), others))
}

async fn health(State(state): State<AppState>) -> Response {
    let h = state.cache.health().await;
    let code = if h.status == Status::Isolated {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(h)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let extra = state
        .membership
        .as_ref()
        .map(|m| m.counters())
        .unwrap_or_default();
    let members = state
        .membership
        .as_ref()
        .map(|m| m.members())
        .unwrap_or_default();
    let text = crate::metrics::render(&state.cache, extra, &members)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e.to_string()))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The router of a node. The API routes get the request limits of
/// [`crate::http_limits::api_layers`] and the token check before the body is read;
/// `/health` and `/metrics` stay outside both.
pub fn router(state: AppState) -> Router {
    let cfg = state.cache.config();
    let limit = cfg.max_value_bytes;
    let api = Router::new()
        .route(
            "/v1/cache/{category}/{key}",
            get(get_value).put(put_value).delete(delete_value),
        )
        .route("/v1/invalidate", post(invalidate))
        .route("/v1/stats", get(stats))
        .route("/v1/cluster/stats", get(cluster))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http_limits::require_token,
        ));
    let api = crate::http_limits::api_layers(api, &cfg.http_limits);
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // Applies to the routes above: keep it after the last `.route`.
        .method_not_allowed_fallback(crate::http_limits::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
