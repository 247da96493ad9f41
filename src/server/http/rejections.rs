//! The request helpers of the handlers: rejections (bad path, unreadable body) and a
//! missing token mapped to [`ApiError`], counted in `http_bad_requests`.
//!
//! Why its own file: the handlers (`routes`) use them and they use the limits, while the
//! limits middleware must not depend on the handlers' helpers.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderMap, StatusCode};

use super::errors::ApiError;
use super::limits::{check_bearer, is_body_timeout};
use super::state::AppState;
use crate::stats::NodeCounters;

/// A 400 answer, counted in `http_bad_requests`.
pub(super) fn bad_request(
    state: &AppState,
    code: &'static str,
    msg: impl Into<String>,
) -> ApiError {
    NodeCounters::incr(&state.cache.counters().http_bad_requests);
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

/// The answer to a body that could not be read: 408 on the body read timeout, 413 over the
/// size limit, else 400 `bad_body`.
pub(super) fn body_error(state: &AppState, rej: BytesRejection) -> ApiError {
    if is_body_timeout(&rej) {
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
pub(super) fn path_error(state: &AppState, rej: PathRejection) -> ApiError {
    bad_request(state, "bad_path", rej.body_text())
}

/// Also enforced earlier by [`crate::server::http::limits::RequireToken`] (before the body is read);
/// kept here so a handler stays guarded wherever it is mounted.
pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    check_bearer(state.cache.config().api_token.as_deref(), headers)
}
