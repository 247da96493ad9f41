//! The shapes of the HTTP API's bodies, paths, queries and headers, as OpenAPI schemas.
//!
//! Why its own file: the handlers' `#[utoipa::path]` annotations name these types and the
//! OpenAPI document (the `server::openapi` module) lists them, so they belong to the HTTP
//! layer; keeping them here lets `openapi` depend on `http` and not the other way round.

use utoipa::{IntoParams, ToSchema};

/// Every error: `{"error": code, "message": text}`.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(example = json!({"error": "not_found", "message": "no value for `k` in `roles`"}))]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `unknown_category`, `unauthorized`,
    /// `bad_body`, `value_too_large`, `unavailable`, ...).
    pub error: String,
    /// Human-readable detail.
    pub message: String,
}

/// Answer of `POST /v1/invalidate`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Invalidated {
    /// L1 entries removed on this node (other nodes apply the invalidation asynchronously).
    #[schema(minimum = 0)]
    pub invalidated: u64,
}

/// Raw bytes (any content; stored and returned unchanged).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(#[allow(dead_code)] Vec<u8>);

/// Path of the value routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ValuePath {
    /// A configured category.
    #[allow(dead_code)]
    category: String,
    /// The key (any non-empty UTF-8 string, percent-encoded in the path).
    #[param(min_length = 1)]
    #[allow(dead_code)]
    key: String,
}

/// Query of `PUT`: `ttl` and `tags`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TtlQuery {
    /// L2 TTL in seconds, at most ten years (L1 keeps the value at most the category TTL).
    #[param(minimum = 1, maximum = 315_360_000)]
    #[allow(dead_code)]
    ttl: Option<u64>,
    /// Comma-separated tags the value carries (`user:123,tenant:7`): at most 16, each 1 to
    /// 128 bytes of `[A-Za-z0-9_.:-]`. `POST /v1/invalidate {"tag":…}` removes every entry
    /// carrying one, everywhere.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}(,[A-Za-z0-9_.:-]{1,128}){0,15}$")]
    #[allow(dead_code)]
    tags: Option<String>,
}

/// Headers of `PUT`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct DeadlineHeader {
    /// Unix time in milliseconds after which the write must not take effect: it is applied
    /// before then or not at all (408 `deadline_exceeded`, or 503 when Redis refused it as
    /// late). Clients that time out should send their own deadline.
    #[param(
        rename = "x-hc-deadline-ms",
        nullable = false,
        minimum = 0,
        maximum = 253_402_300_799_999_i64
    )]
    #[allow(dead_code)]
    deadline: Option<u64>,
}
