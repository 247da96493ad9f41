//! Resource limits of the HTTP server, built from hyper / tower / tower-http pieces.
//!
//! Why: without them a handful of clients can hold a node down — idle or slowloris
//! connections exhaust file descriptors, unauthenticated PUTs make the node buffer megabytes
//! before the token is looked at, and a burst of slow requests queues without bound.
//!
//! | limit | mechanism | default | config / env |
//! |---|---|---|---|
//! | open connections | accept loop (`listener.rs`) + semaphore; excess accepted and closed at once | 4096 (clamped to the fd limit − 256) | `max_connections` / `HC_MAX_CONNECTIONS` |
//! | header read | hyper `http1::Builder::header_read_timeout` (`listener.rs`) (also reaps idle keep-alive) | 5 s | `header_read_timeout_ms` / `HC_HEADER_READ_TIMEOUT_MS` |
//! | body read | tower-http `RequestBodyTimeoutLayer` → 408 `body_timeout` | 10 s | `body_read_timeout_ms` / `HC_BODY_READ_TIMEOUT_MS` |
//! | request deadline | tower `TimeoutLayer` → 503 `timeout` | 15 s | `request_timeout_ms` / `HC_REQUEST_TIMEOUT_MS` |
//! | requests in flight | tower `GlobalConcurrencyLimit` + `LoadShed` → 503 `overloaded` + `Retry-After` | 512 | `max_in_flight` / `HC_MAX_IN_FLIGHT` |
//!
//! `/health` and `/metrics` sit outside the in-flight limit and the deadline, so a balancer
//! keeps seeing the node while the API sheds load. The bearer token of mutating routes is
//! checked by [`RequireToken`], a layer that runs before any handler extracts the body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::BoxError;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use super::errors::ApiError;
use super::state::AppState;
pub use crate::config::HttpLimits;

/// Largest `ttl` (seconds) a write accepts: ten years of 365 days.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// `Retry-After` (seconds) sent with 503 `overloaded`.
pub const RETRY_AFTER_SECS: u64 = 1;
/// Wraps the API routes in the request limits: load shedding over the global in-flight
/// limit `in_flight`, the request deadline and the body read timeout.
pub fn api_layers(
    api: Router<AppState>,
    limits: &HttpLimits,
    in_flight: Arc<Semaphore>,
) -> Router<AppState> {
    let deadline = limits.request_timeout;
    // One semaphore for every route (`ConcurrencyLimitLayer` would make one per route),
    // shared with the value read in front of the router (`AppState::in_flight`).
    api.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                limit_error(e, deadline)
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
            .timeout(deadline)
            .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout)),
    )
}

fn limit_error(e: BoxError, deadline: Duration) -> Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        resp
    } else if e.is::<tower::timeout::error::Elapsed>() {
        deadline_passed(deadline)
    } else {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response()
    }
}

/// The answer to a request not answered within the request deadline: 503 `timeout`.
pub(crate) fn deadline_passed(deadline: Duration) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        format!("request not answered within {} ms", deadline.as_millis()),
    )
    .into_response()
}

/// Whether a body error came from the body read timeout.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Checks `Authorization: Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1) against
/// the configured token in constant time. No token configured = open.
pub fn check_bearer(token: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, cred)| cred.trim_start());
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
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

/// The token check of the API routes, as a tower-http `ValidateRequestHeaderLayer`: a mutating
/// request without the right token is refused before its handler reads (and buffers) the
/// body; reads pass untouched (no boxing, no allocation on the hit path).
#[derive(Clone)]
pub struct RequireToken(Option<Arc<str>>);

impl RequireToken {
    /// The check of `token` (`None`: the API is open).
    pub fn layer(token: Option<&str>) -> ValidateRequestHeaderLayer<RequireToken> {
        ValidateRequestHeaderLayer::custom(RequireToken(token.map(Arc::from)))
    }
}

impl<B> ValidateRequest<B> for RequireToken {
    type ResponseBody = Body;

    fn validate(&mut self, req: &mut Request<B>) -> Result<(), Response> {
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        check_bearer(self.0.as_deref(), req.headers()).map_err(IntoResponse::into_response)
    }
}

/// The JSON answer to a known route called with a method it does not have.
pub async fn method_not_allowed(req: Request<Body>) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Parses the `ttl` query parameter: whole seconds in `1..=MAX_TTL_SECS`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) if (1..=MAX_TTL_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "ttl must be a whole number of seconds from 1 to {MAX_TTL_SECS} (ten years), got `{text}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_exact() {
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "Bearer   s3cret",
        ] {
            assert!(check_bearer(Some("s3cret"), &headers(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "Bearer s3cre",
            "Bearer s3cretx",
            "Basic s3cret",
            "s3cret",
            "Bearer",
        ] {
            assert!(
                check_bearer(Some("s3cret"), &headers(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(check_bearer(Some("s3cret"), &HeaderMap::new()).is_err());
        assert!(check_bearer(None, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(parse_ttl("1"), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse_ttl(&MAX_TTL_SECS.to_string()),
            Ok(Duration::from_secs(MAX_TTL_SECS))
        );
        for bad in [
            "0",
            "-1",
            "",
            "1.5",
            "abc",
            "315360001",
            "99999999999999999999",
        ] {
            let e = parse_ttl(bad).unwrap_err();
            assert!(e.contains("315360000"), "{e}");
        }
    }
}
