//! `GET /ui`: the cluster page. One static HTML file with inline JS (assets/ui.html),
//! embedded in the binary so a node needs no files and no JS build; the page only reads the
//! node's own JSON endpoints (`/v1/cluster/stats`, `/v1/stats`, `/metrics`) once a second
//! and posts `/v1/invalidate` with the bearer token the operator typed (kept in the tab's
//! sessionStorage, never in the page).

use axum::http::header;
use axum::response::IntoResponse;

/// The page, as shipped.
pub const PAGE: &str = include_str!("../../assets/ui.html");

/// Same origin only: the page talks to the node that served it, and runs no foreign code.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The cluster page (HTML).
#[utoipa::path(get, path = "/ui", tag = "operations",
    responses((status = 200, description = "Live cluster page (HTML + inline JS)",
               content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
