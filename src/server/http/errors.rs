//! [`ApiError`], the one error shape of the HTTP API, and the mapping of every
//! [`CacheError`] to its status.
//!
//! Why its own file: HTTP statuses are a contract (CONTRACT §5); one `From<CacheError>`
//! decides them for every route, so two handlers can never answer the same error
//! differently.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::CacheError;

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error answered with `status` and `{"error": code, "message": message}`.
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
            | CacheError::InvalidTag(_)
            | CacheError::Serde(_) => StatusCode::BAD_REQUEST,
            CacheError::Loader(_) => StatusCode::BAD_GATEWAY,
            CacheError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CacheError::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// The JSON answer to a path no route matches.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
