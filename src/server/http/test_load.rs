//! Test hook of the fault checker's library workload (mounted only with `HC_TEST_HOOKS=1`,
//! never in the OpenAPI document): `GET /v1/test/load/{category}/{key}` answers through
//! [`crate::HybridCache::get_or_load`] with a loader that reads the key from a "database"
//! HTTP server run by the checker (`HC_TEST_LOADER_URL`, `GET {url}/{category}/{key}`).
//!
//! Why its own file: the library's loader path (single flight, fill tickets) is otherwise
//! reachable only from Rust; this puts it under the checker's concurrent clients and faults.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::errors::ApiError;
use super::rejections::{authorize, path_error};
use super::state::AppState;
use crate::error::CacheError;

/// The environment variable naming the database server's base URL.
pub(crate) const LOADER_URL_ENV: &str = "HC_TEST_LOADER_URL";
/// How long one database read may take before the load fails.
const LOAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the test loader did not produce a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TestLoadError {
    /// The database has no value for the key (its 404).
    #[error("test loader: the key is not in the database")]
    NotFound,
    /// No `HC_TEST_LOADER_URL`, a bad URL, a connection error, a timeout, another status.
    #[error("test loader: {0}")]
    Failed(String),
}

/// The loader route's state: the database URL and one HTTP client for every load.
#[derive(Clone)]
pub(crate) struct Loader {
    base: Option<Arc<str>>,
    client: reqwest::Client,
}

impl Loader {
    /// The loader of this process (`HC_TEST_LOADER_URL`; without it every load fails).
    pub(crate) fn from_env() -> Loader {
        let client = reqwest::Client::builder()
            .timeout(LOAD_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let base = std::env::var(LOADER_URL_ENV).ok().map(Arc::from);
        Loader { base, client }
    }

    /// One plain GET of `{base}/{category}/{key}` (segments percent-encoded).
    async fn fetch(&self, category: &str, key: &str) -> Result<Bytes, TestLoadError> {
        let base = self
            .base
            .as_deref()
            .ok_or_else(|| TestLoadError::Failed(format!("{LOADER_URL_ENV} is not set")))?;
        let mut url = reqwest::Url::parse(base)
            .map_err(|e| TestLoadError::Failed(format!("bad {LOADER_URL_ENV}: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| TestLoadError::Failed(format!("{LOADER_URL_ENV} cannot be a base")))?
            .pop_if_empty()
            .push(category)
            .push(key);
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| TestLoadError::Failed(e.to_string()))?;
        match resp.status() {
            StatusCode::OK => resp
                .bytes()
                .await
                .map_err(|e| TestLoadError::Failed(e.to_string())),
            StatusCode::NOT_FOUND => Err(TestLoadError::NotFound),
            s => Err(TestLoadError::Failed(format!("database answered {s}"))),
        }
    }
}

/// Whether a loader error of `get_or_load` is the test loader's "not in the database" (the
/// library wraps the loader's error, so it is recognised by its message).
fn is_not_found(e: &CacheError) -> bool {
    matches!(e, CacheError::Loader(inner)
        if inner.to_string() == TestLoadError::NotFound.to_string())
}

/// `GET /v1/test/load/{category}/{key}`: the value as `get_or_load` returns it (200, raw
/// bytes), 404 when the database has none, 502 when the load failed, as the cache's errors
/// otherwise.
pub(crate) async fn load_value(
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
        Ok(value) => {
            let mut resp = Response::new(Body::from(value));
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(resp)
        }
        Err(e) if is_not_found(&e) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no value for `{key}` in `{category}` in the database"),
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loaders_not_found_is_a_miss() {
        let nf = CacheError::Loader(Arc::new(TestLoadError::NotFound));
        assert!(is_not_found(&nf));
        let other = CacheError::Loader(Arc::new(TestLoadError::Failed("timeout".into())));
        assert!(!is_not_found(&other));
        assert!(!is_not_found(&CacheError::Unavailable("x".into())));
    }
}
