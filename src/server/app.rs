//! The node's whole HTTP application: the API routes of [`crate::server::http`] plus the
//! OpenAPI document and the cluster page.
//!
//! Why its own file: `/openapi.json` is generated from the HTTP handlers, so
//! [`crate::server::openapi`] depends on [`crate::server::http`]; mounting it here, above
//! both, keeps `http` from depending on `openapi` (no import cycle).

use axum::routing::get;
use axum::Router;

use crate::server::http::{self, AppState, HitFirst};
use crate::server::{openapi, ui};

/// The router of a node: the API routes (with their request limits and token check),
/// `/health`, `/metrics`, `/openapi.json` and `/ui`; any other path or method gets a JSON
/// error.
pub fn router(state: AppState) -> Router {
    let routes = http::routes(&state)
        .route("/openapi.json", get(openapi::serve))
        .route("/ui", get(ui::page));
    http::finish(routes, state)
}

/// What a node serves: [`router`] with the L1-hit `GET` answered in front of it
/// ([`HitFirst`]).
pub fn service(state: AppState) -> HitFirst {
    HitFirst::new(router(state.clone()), state)
}
