//! `Core::load`: a Python function behind the library's `get_or_load_with` (or
//! `get_or_load_opt_with` when the category caches "not found"), so the category's
//! near-cache settings apply to `@cached` functions as to Rust loaders:
//!
//! - **fail-safe** (`fail_safe_max_age_secs`): a failing or too slow function answers the
//!   last value this process held for the key, marked stale (never a value a write or an
//!   invalidation removed);
//! - **negative caching** (`negative_ttl_secs`): a function answering `None` is a "not
//!   found", cached for that TTL (in categories without the setting, `None` is a value);
//! - **refresh-ahead** (`refresh_after_secs`): a hit on an entry at least that old answers
//!   at once and reloads the key in the background with the same function and arguments.
//!
//! Where the function runs: on the calling thread (as before these settings) unless the
//! category has a load timeout to enforce (`fail_safe_max_age_secs`, or a `load_timeout_ms`
//! other than the default): then on a blocking thread of the runtime, with the caller's
//! `contextvars`, so the timeout can answer while it runs. A background reload always runs
//! on the runtime's threads, with the caller's `contextvars`.

use std::pin::pin;

use hybrid_cache::config::{CategoryConfig, Config};
use hybrid_cache::{LoadOptions, Loaded};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::Core;
use crate::config::ttl;
use crate::drive::drive;
use crate::errors::cache_error;
use crate::loader::PyLoader;

/// One `get_or_load` call's arguments.
pub(crate) struct LoadCall<'a> {
    pub category: &'a str,
    pub key: &'a str,
    pub ttl_secs: Option<f64>,
    pub func: Py<PyAny>,
    pub args: Py<PyTuple>,
    pub kwargs: Option<Py<PyDict>>,
    pub dumps: Py<PyAny>,
}

/// The categories that refresh ahead.
pub(crate) fn refreshing(cfg: &Config) -> Vec<String> {
    cfg.categories
        .iter()
        .filter(|(_, c)| c.refresh_after_secs.is_some())
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether the category has a load timeout the calling thread could not enforce.
fn off_thread(cat: &CategoryConfig) -> bool {
    cat.fail_safe_max_age_secs.is_some()
        || cat.load_timeout_ms != CategoryConfig::default().load_timeout_ms
}

impl Core {
    /// The decoded answer (`None` for a "not found") and whether it is the fail-safe value.
    pub(crate) fn load(
        &self,
        py: Python<'_>,
        call: LoadCall<'_>,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyAny>, bool)> {
        self.check_fork()?;
        let mut opts = LoadOptions::default();
        if let Some(t) = ttl(call.ttl_secs)? {
            opts = opts.ttl(t);
        }
        let (category, key) = (call.category, call.key);
        // An unknown category: the library raises UnknownCategoryError.
        let cat = self.cache.config().categories.get(category);
        let negative = cat.is_some_and(|c| c.negative_ttl_secs.is_some());
        let loader = PyLoader {
            func: call.func,
            args: call.args,
            kwargs: call.kwargs,
            dumps: call.dumps,
            context: py
                .import("contextvars")?
                .call_method0("copy_context")?
                .unbind(),
            caller: std::thread::current().id(),
            none_is_absent: negative,
            off_thread: cat.is_some_and(off_thread),
        };
        let found: Option<Loaded> = if negative {
            let fut = self
                .cache
                .get_or_load_opt_with(category, key, opts, move || loader.load());
            drive(py, &self.handle, pin!(fut))
        } else {
            let fut = self
                .cache
                .get_or_load_with(category, key, opts, move || loader.load_found());
            drive(py, &self.handle, pin!(fut)).map(Some)
        }
        .map_err(|e| cache_error(py, &e))?;
        match found {
            Some(l) => Ok((
                self.memo.decode(py, category, key, l.value, loads)?,
                l.stale,
            )),
            None => Ok((py.None(), false)),
        }
    }
}
