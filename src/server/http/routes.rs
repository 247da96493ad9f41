//! The handlers of the HTTP API, one per route (CONTRACT §5), with the `#[utoipa::path]`
//! annotations the OpenAPI document is generated from.
//!
//! Why its own file: handlers only parse, authorize and call the facade; what they share
//! (state, error mapping, request helpers) lives in the parent module.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::errors::ApiError;
use super::rejections::{authorize, bad_request, body_error, path_error};
use super::state::AppState;
use crate::cluster::gather_cluster_stats;
use crate::error::CacheError;
use crate::Source;

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_NODE: HeaderName = HeaderName::from_static("x-node");

/// Read a value: raw bytes as stored, `X-Cache` says which level answered.
///
/// The hit path: headers are built from values computed once (`node`: this node's id as a
/// header value, made by [`router`]) into a map sized for them, so a hit allocates only the
/// path's two strings and the header map.
#[utoipa::path(get, path = "/v1/cache/{category}/{key}", tag = "cache",
    params(crate::server::http::schema::ValuePath),
    responses(
        (status = 200, description = "The value, as stored", content_type = "application/octet-stream",
         body = crate::server::http::schema::Binary,
         headers(("x-cache" = String, description = "`L1` or `L2`: the level that answered"),
                 ("x-node" = String, description = "Id of the node that answered"))),
        (status = 400, description = "Malformed path or key", body = crate::server::http::schema::ErrorBody),
        (status = 404, description = "`not_found` (no value, or a cached \"not found\" of negative caching) or `unknown_category`", body = crate::server::http::schema::ErrorBody),
        (status = 413, description = "`key_too_large`", body = crate::server::http::schema::ErrorBody),
        (status = 503, description = "`unavailable`: cannot be served within the staleness bound", body = crate::server::http::schema::ErrorBody),
    ))]
pub(crate) async fn get_value(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    node: Option<HeaderValue>,
) -> Result<Response, ApiError> {
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    let found = state.cache.get_with_source(&category, &key).await;
    Ok(read_answer(found, &category, &key, node))
}

/// The answer to a read of `key` in `category`: the value found (see [`value_response`]),
/// 404 for nothing, or the read's error. Also the answer of the value read in front of the
/// router (`hit_first.rs`), so both answer every read alike.
pub(crate) fn read_answer(
    found: Result<Option<(Bytes, Source)>, CacheError>,
    category: &str,
    key: &str,
    node: Option<HeaderValue>,
) -> Response {
    match found {
        Ok(Some((value, source))) => value_response(value, source, node),
        Ok(None) => value_not_found(category, key).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The answer of a read that found `value` at `source`: the bytes as stored, `x-cache`,
/// and `x-node` when the node's id is a valid header value.
fn value_response(value: Bytes, source: Source, node: Option<HeaderValue>) -> Response {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(X_CACHE, HeaderValue::from_static(source.as_str()));
    if let Some(node) = node {
        headers.insert(X_NODE, node);
    }
    let mut resp = Response::new(Body::from(value));
    *resp.headers_mut() = headers;
    resp
}

/// The 404 of a read that found nothing (or a cached "not found").
fn value_not_found(category: &str, key: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no value for `{key}` in `{category}`"),
    )
}

/// Write a value (body = raw bytes) in L2 and this node's L1, and invalidate it everywhere else.
#[utoipa::path(put, path = "/v1/cache/{category}/{key}", tag = "cache",
    params(crate::server::http::schema::ValuePath, crate::server::http::schema::TtlQuery, crate::server::http::schema::DeadlineHeader),
    request_body(content = crate::server::http::schema::Binary, content_type = "application/octet-stream",
                 description = "The value (at most `max_value_bytes`)"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "`bad_path`, `bad_query`, `invalid_ttl`, `invalid_tag`, `invalid_key`, `bad_body`, `bad_deadline`", body = crate::server::http::schema::ErrorBody),
        (status = 408, description = "`deadline_exceeded`: `x-hc-deadline-ms` passed before the write was applied; it was not applied", body = crate::server::http::schema::ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong bearer token (only when a token is configured)", body = crate::server::http::schema::ErrorBody),
        (status = 404, description = "`unknown_category`", body = crate::server::http::schema::ErrorBody),
        (status = 413, description = "`key_too_large` or `value_too_large`", body = crate::server::http::schema::ErrorBody),
        (status = 503, description = "`unavailable`", body = crate::server::http::schema::ErrorBody),
    ))]
pub(crate) async fn put_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    let Query(query) = query.map_err(|r| bad_request(&state, "bad_query", r.body_text()))?;
    if let Some(unknown) = query.keys().find(|k| !matches!(k.as_str(), "ttl" | "tags")) {
        return Err(bad_request(
            &state,
            "bad_query",
            format!("unknown query parameter `{unknown}` (only `ttl` and `tags`)"),
        ));
    }
    // `tags=a,b`: checked here, so a bad tag is a 400 before anything is written.
    let tags = match query.get("tags") {
        None => Vec::new(),
        Some(t) => crate::tag::check_all(&t.split(',').collect::<Vec<_>>())?,
    };
    let ttl = match query.get("ttl") {
        None => None,
        Some(t) => Some(
            crate::server::http::limits::parse_ttl(t)
                .map_err(|m| bad_request(&state, "invalid_ttl", m))?,
        ),
    };
    // Own exactly the value's bytes: a slice would keep hyper's whole read buffer alive
    // and make L1's byte accounting (and its bound) a lie.
    let deadline = deadline_of(&headers).map_err(|m| bad_request(&state, "bad_deadline", m))?;
    let body = Bytes::copy_from_slice(&body.map_err(|r| body_error(&state, r))?);
    match (deadline, tags.is_empty()) {
        (Some(d), _) => {
            state
                .cache
                .set_with_tags_before(&category, &key, body, ttl, &tags, d)
                .await?
        }
        (None, true) => state.cache.set(&category, &key, body, ttl).await?,
        (None, false) => {
            state
                .cache
                .set_with_tags(&category, &key, body, ttl, &tags)
                .await?
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The `x-hc-deadline-ms` header of a write: Unix time in milliseconds after which the
/// write must not take effect (see [`crate::HybridCache::set_before`]).
pub(crate) const DEADLINE_HEADER: &str = "x-hc-deadline-ms";
/// The latest deadline accepted: 9999-12-31T23:59:59.999Z (as in the OpenAPI description).
const MAX_DEADLINE_MS: u64 = 253_402_300_799_999;

fn deadline_of(headers: &HeaderMap) -> Result<Option<std::time::SystemTime>, String> {
    let Some(v) = headers.get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    let ms = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| *ms <= MAX_DEADLINE_MS)
        .ok_or_else(|| {
            format!(
                "`{DEADLINE_HEADER}` must be Unix time in milliseconds, at most {MAX_DEADLINE_MS}"
            )
        })?;
    std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_millis(ms))
        .map(Some)
        .ok_or_else(|| format!("`{DEADLINE_HEADER}` is out of range"))
}

/// Delete a key everywhere (deleting an absent key succeeds).
#[utoipa::path(delete, path = "/v1/cache/{category}/{key}", tag = "cache",
    params(crate::server::http::schema::ValuePath),
    responses(
        (status = 204, description = "Deleted (or was absent)"),
        (status = 400, description = "`bad_path`, `invalid_key`", body = crate::server::http::schema::ErrorBody),
        (status = 401, description = "`unauthorized` (only when a token is configured)", body = crate::server::http::schema::ErrorBody),
        (status = 404, description = "`unknown_category`", body = crate::server::http::schema::ErrorBody),
        (status = 413, description = "`key_too_large`", body = crate::server::http::schema::ErrorBody),
        (status = 503, description = "`unavailable`", body = crate::server::http::schema::ErrorBody),
    ))]
pub(crate) async fn delete_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    state.cache.delete(&category, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/invalidate`: `{"category":…,"key":…}` (one exact key, compared as
/// bytes), `{"category":…,"pattern":…}` (a glob; `"*"` = the whole category) or
/// `{"tag":…}` (every entry carrying the tag, in every category).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvalidateBody {
    /// A category name, or `*` for every category; required with `pattern` or `key`,
    /// refused with `tag`.
    category: Option<String>,
    /// A tag (`user:123`): every entry written with it, in every category; alone.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.:-]+$")]
    tag: Option<String>,
    /// A glob (`get_user_permissions:*`, `*` = the whole category); exactly one of
    /// `pattern` and `key`.
    #[schema(min_length = 1)]
    pattern: Option<String>,
    /// One exact key (glob characters taken literally); exactly one of `pattern` and `key`.
    #[schema(min_length = 1)]
    key: Option<String>,
}

/// Invalidate one key, or every key matching a glob, of `category` (or all categories), or
/// every entry carrying a tag, on every node and in L2.
#[utoipa::path(post, path = "/v1/invalidate", tag = "cache",
    request_body(content = InvalidateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Invalidated; the count is this node's L1 entries removed", body = crate::server::http::schema::Invalidated),
        (status = 400, description = "`bad_body` (also: both or neither of `pattern` and `key`, `category` missing with them, `tag` with any other field), `invalid_pattern`, `invalid_key`, `invalid_tag`", body = crate::server::http::schema::ErrorBody),
        (status = 401, description = "`unauthorized` (only when a token is configured)", body = crate::server::http::schema::ErrorBody),
        (status = 404, description = "`unknown_category`", body = crate::server::http::schema::ErrorBody),
        (status = 413, description = "Body or key too large", body = crate::server::http::schema::ErrorBody),
        (status = 503, description = "`unavailable`", body = crate::server::http::schema::ErrorBody),
    ))]
pub(crate) async fn invalidate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let body = body.map_err(|r| body_error(&state, r))?;
    let expected = "expected {\"category\":..., \"pattern\":...}, {\"category\":..., \"key\":...} \
                    or {\"tag\":...}";
    let req: InvalidateBody = serde_json::from_slice(&body)
        .map_err(|e| bad_request(&state, "bad_body", format!("{expected}: {e}")))?;
    let n = match (&req.category, &req.pattern, &req.key, &req.tag) {
        (Some(c), Some(p), None, None) => state.cache.invalidate(p, c).await?,
        (Some(c), None, Some(k), None) => state.cache.invalidate_key(c, k).await?,
        (None, None, None, Some(t)) => state.cache.invalidate_tag(t).await?,
        _ => {
            return Err(bad_request(
                &state,
                "bad_body",
                format!(
                    "{expected}: `category` with exactly one of `pattern` and `key`, \
                     or `tag` alone"
                ),
            ))
        }
    };
    Ok(Json(json!({ "invalidated": n })))
}

/// Test hook (mounted only with `HC_TEST_HOOKS=1`, not in the OpenAPI document): makes the
/// category's actor panic; its supervisor restarts it and flushes the category's L1.
pub(crate) async fn crash_actor(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let Path(category) = path.map_err(|r| path_error(&state, r))?;
    state.cache.crash_category_actor(&category)?;
    Ok(StatusCode::NO_CONTENT)
}

/// This node's stats.
#[utoipa::path(get, path = "/v1/stats", tag = "cluster",
    responses((status = 200, description = "Counters and L1 sizes of this node", body = crate::Stats)))]
pub(crate) async fn stats(State(state): State<AppState>) -> Json<crate::Stats> {
    Json(state.cache.stats().await)
}

/// Every node this node knows (itself first), with their last gossiped stats.
#[utoipa::path(get, path = "/v1/cluster/stats", tag = "cluster",
    responses((status = 200, description = "The cluster as this node sees it", body = crate::cluster::ClusterStats)))]
pub(crate) async fn cluster(State(state): State<AppState>) -> Json<crate::cluster::ClusterStats> {
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

/// Health for load balancers: 200 `ok`/`degraded`, 503 `isolated`.
#[utoipa::path(get, path = "/health", tag = "cluster",
    responses(
        (status = 200, description = "`ok` or `degraded` (Redis down, serving from L1)", body = crate::Health),
        (status = 503, description = "`isolated`: neither Redis nor any peer reachable", body = crate::Health),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let h = state.cache.health().await;
    // 503 tells a balancer to drain a node that cannot answer within its guarantee.
    let code = if state.cache.serving() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

/// Prometheus / OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 500, description = "Encoding failed", body = crate::server::http::schema::ErrorBody),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
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
    let text = crate::server::prometheus::render(&state.cache, extra, &members)
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
