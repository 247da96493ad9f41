//! The node's HTTP router over one L1-only cache, built once per fuzz process, and the
//! current-thread runtime that drives it: shared by the HTTP fuzz targets.

use std::sync::OnceLock;

use hybrid_cache::server::http::AppState;
use hybrid_cache::server::router;
use hybrid_cache::HybridCache;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// The cache behind [`app`], for targets that read or write it directly.
pub fn cache() -> &'static HybridCache {
    static CACHE: OnceLock<HybridCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        runtime()
            .block_on(HybridCache::builder().build())
            .expect("L1-only cache")
    })
}

pub fn app() -> &'static axum::Router {
    static APP: OnceLock<axum::Router> = OnceLock::new();
    APP.get_or_init(|| {
        router(AppState::new(cache().clone(), None))
    })
}
