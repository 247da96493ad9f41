//! The node's HTTP API (axum), CONTRACT §5.
//!
//! Every failure is JSON `{"error": code, "message": ...}` with a fitting status, and every
//! rejection axum produces (bad path, oversized body, malformed JSON) is mapped to that shape
//! too: a client can never get a node to panic or to answer in another format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::cluster::{gather_cluster_stats, Membership};
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

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.cache.config().api_token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong bearer token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>`",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        Some(t) => match t.parse::<u64>() {
            Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
            _ => {
                return Err(bad_request(
                    &state,
                    "invalid_ttl",
                    format!("ttl must be a positive number of seconds, got `{t}`"),
                ))
            }
        },
    };
    let body = body.map_err(|r| body_error(&state, r))?;
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
    let membership = state.membership.as_deref();
    Json(gather_cluster_stats(&own, gossip, cfg.http_advertised(), membership).await)
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

/// The router of a node.
pub fn router(state: AppState) -> Router {
    let limit = state.cache.config().max_value_bytes;
    Router::new()
        .route(
            "/v1/cache/{category}/{key}",
            get(get_value).put(put_value).delete(delete_value),
        )
        .route("/v1/invalidate", post(invalidate))
        .route("/v1/stats", get(stats))
        .route("/v1/cluster/stats", get(cluster))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
