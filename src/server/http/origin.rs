//! Read-through over HTTP: `GET /v1/load/{category}/{key}` answers through
//! [`crate::HybridCache::get_or_load_with`] with a loader that reads the key from the node's
//! origin (`HC_ORIGIN_URL`, `GET {origin}/{category}/{key}`), so refresh-ahead and fail-safe
//! of the category apply. The fault checker's test hook `GET /v1/test/load/{category}/{key}`
//! (only with `HC_TEST_HOOKS=1`, origin `HC_TEST_LOADER_URL`) shares the loader.
//!
//! Why its own file: the only place the node itself calls out over HTTP to load a value.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;
use super::rejections::{authorize, path_error};
use super::state::AppState;
use crate::cache::LoadOptions;
use crate::error::CacheError;

/// The environment variable naming the test hook's database server base URL.
pub(crate) const LOADER_URL_ENV: &str = "HC_TEST_LOADER_URL";
/// How long one database read of the test hook may take before the load fails.
const TEST_LOAD_TIMEOUT: Duration = Duration::from_secs(2);
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Why the origin did not produce a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OriginError {
    /// The origin has no value for the key (its 404).
    #[error("origin: the key is not in the origin")]
    NotFound,
    /// A bad URL, a connection error, a timeout, another status, an oversized answer.
    #[error("origin: {0}")]
    Failed(String),
}

/// An origin: its base URL, one HTTP client (with the hard timeout), the value size limit.
#[derive(Clone)]
pub(crate) struct Loader {
    base: Option<Arc<str>>,
    /// What names the origin in error messages (`HC_ORIGIN_URL`, `HC_TEST_LOADER_URL`).
    source: &'static str,
    client: reqwest::Client,
    max_bytes: usize,
}

impl Loader {
    /// An origin at `base` (`None`: none configured, every load fails).
    pub(crate) fn new(
        base: Option<String>,
        source: &'static str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Loader {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Loader {
            base: base.map(Arc::from),
            source,
            client,
            max_bytes,
        }
    }

    /// The test hook's loader of this process (`HC_TEST_LOADER_URL`).
    pub(crate) fn from_env(max_bytes: usize) -> Loader {
        let base = std::env::var(LOADER_URL_ENV).ok();
        Loader::new(base, LOADER_URL_ENV, TEST_LOAD_TIMEOUT, max_bytes)
    }

    /// Whether an origin is configured.
    fn configured(&self) -> bool {
        self.base.is_some()
    }

    /// One plain GET of `{base}/{category}/{key}` (segments percent-encoded); an answer
    /// over the value size limit is a failure.
    pub(crate) async fn fetch(&self, category: &str, key: &str) -> Result<Bytes, OriginError> {
        let src = self.source;
        let base = self
            .base
            .as_deref()
            .ok_or_else(|| OriginError::Failed(format!("{src} is not set")))?;
        let mut url = reqwest::Url::parse(base)
            .map_err(|e| OriginError::Failed(format!("bad {src}: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| OriginError::Failed(format!("{src} cannot be a base")))?
            .pop_if_empty()
            .push(category)
            .push(key);
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| OriginError::Failed(e.to_string()))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(OriginError::NotFound),
            s => return Err(OriginError::Failed(format!("origin answered {s}"))),
        }
        let too_large = || OriginError::Failed(format!("answer over {} bytes", self.max_bytes));
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| OriginError::Failed(e.to_string()))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }
}

/// Whether a loader error of the library is the origin's "not found" (the library wraps
/// the loader's error, so it is recognised by its message).
fn is_not_found(e: &CacheError) -> bool {
    matches!(e, CacheError::Loader(inner)
        if inner.to_string() == OriginError::NotFound.to_string())
}

fn octet_stream(value: Bytes, x_cache: Option<&'static str>) -> Response {
    let mut resp = Response::new(Body::from(value));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(x) = x_cache {
        resp.headers_mut()
            .insert(X_CACHE, HeaderValue::from_static(x));
    }
    resp
}

fn not_found(category: &str, key: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no value for `{key}` in `{category}` in the origin"),
    )
}

/// `GET /v1/test/load/{category}/{key}` (test hook): the value as `get_or_load` returns it
/// (200, raw bytes), 404 when the database has none, 502 when the load failed, as the
/// cache's errors otherwise.
pub(crate) async fn test_load_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    loader: Loader,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    let loaded = state
        .cache
        .get_or_load(&category, &key, None, || loader.fetch(&category, &key))
        .await;
    match loaded {
        Ok(value) => Ok(octet_stream(value, None)),
        Err(e) if is_not_found(&e) => Err(not_found(&category, &key)),
        Err(e) => Err(e.into()),
    }
}

/// Read through the node's origin: the cached value, or the origin's, loaded once per key
/// in the cluster; refresh-ahead and fail-safe as the category configures them.
#[utoipa::path(get, path = "/v1/load/{category}/{key}", tag = "cache",
    params(crate::server::http::schema::ValuePath),
    responses(
        (status = 200, description = "The value (cached, or loaded from `GET {origin_url}/{category}/{key}`)",
         content_type = "application/octet-stream", body = crate::server::http::schema::Binary,
         headers(("x-cache" = String, description = "`HIT` (cached), `MISS` (loaded from the origin now) or `STALE` (fail-safe: the origin failed, this is the last value, at most `fail_safe_max_age_secs` old, removed by no write or invalidation)"))),
        (status = 400, description = "Malformed path or key", body = crate::server::http::schema::ErrorBody),
        (status = 404, description = "`not_found`: the origin answered 404 (`x-cache: MISS`), or the category cached that answer (`negative_ttl_secs`, `x-cache: HIT`); or `unknown_category`", body = crate::server::http::schema::ErrorBody,
         headers(("x-cache" = String, description = "`HIT` or `MISS` on `not_found`"))),
        (status = 404, description = "`no_origin`: the node has no `origin_url`", body = crate::server::http::schema::ErrorBody),
        (status = 502, description = "`loader_failed`: the origin failed (error, other status, timeout, answer over `max_value_bytes`) and no fail-safe value", body = crate::server::http::schema::ErrorBody),
        (status = 503, description = "`unavailable`", body = crate::server::http::schema::ErrorBody),
    ))]
pub(crate) async fn load_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    loader: Loader,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Path((category, key)) = path.map_err(|r| path_error(&state, r))?;
    if !loader.configured() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_origin",
            "this node has no origin (`HC_ORIGIN_URL`)".to_string(),
        ));
    }
    // Whether this request's own loader ran (MISS); closed once the answer is known, so a
    // refresh-ahead reload that runs later does not count.
    let called = Arc::new(Mutex::new(Some(false)));
    let flag = called.clone();
    let (cat, k) = (category.clone(), key.clone());
    let load = move || async move {
        if let Ok(mut f) = flag.lock() {
            if let Some(c) = f.as_mut() {
                *c = true;
            }
        }
        match loader.fetch(&cat, &k).await {
            Ok(v) => Ok(Some(v)),
            Err(OriginError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let loaded = state
        .cache
        .get_or_load_opt_with(&category, &key, LoadOptions::default(), load)
        .await;
    let missed = called
        .lock()
        .ok()
        .and_then(|mut f| f.take())
        .unwrap_or(false);
    let label = if missed { "MISS" } else { "HIT" };
    match loaded? {
        Some(l) if l.stale => Ok(octet_stream(l.value, Some("STALE"))),
        Some(l) => Ok(octet_stream(l.value, Some(label))),
        // The origin's 404, or its cached "not found" (`negative_ttl_secs`).
        None => {
            let mut resp = not_found(&category, &key).into_response();
            resp.headers_mut()
                .insert(X_CACHE, HeaderValue::from_static(label));
            Ok(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origins_not_found_is_a_miss() {
        let nf = CacheError::Loader(Arc::new(OriginError::NotFound));
        assert!(is_not_found(&nf));
        let other = CacheError::Loader(Arc::new(OriginError::Failed("timeout".into())));
        assert!(!is_not_found(&other));
        assert!(!is_not_found(&CacheError::Unavailable("x".into())));
    }
}
