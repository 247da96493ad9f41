//! `hybrid_cache._hybrid_cache`: the PyO3 extension under the `hybrid_cache` Python package.
//! The package (python/hybrid_cache/) gives the original module's API — `@cached`,
//! `invalidate_cache`, `cache_stats`, `HybridCache`, `health()` — on this core: one
//! [`hybrid_cache::HybridCache`] per process, its runtime started lazily (again after a fork).

use pyo3::prelude::*;

mod config;
mod core;
mod drive;
mod errors;
mod fork;
mod hit;
mod loader;
mod memo;

#[pymodule]
fn _hybrid_cache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    fork::install();
    m.add_class::<core::Core>()?;
    m.add_class::<hit::CachedCall>()?;
    m.add_function(wrap_pyfunction!(config::check_config, m)?)?;
    errors::register(m)?;
    Ok(())
}
