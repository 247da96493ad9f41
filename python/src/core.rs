//! `Core`: one started [`HybridCache`] and the tokio runtime it runs on, for one process.
//! The Python package creates it lazily and again in a forked child (a runtime's threads do
//! not survive `fork`): every method first checks that it runs in the process that built it
//! (no fork since it was built: [`crate::fork`]).

use std::mem::ManuallyDrop;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hybrid_cache::config::Config;
use hybrid_cache::{HybridCache, Status};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use tokio::runtime::{Handle, Runtime};

use crate::config::{config, ttl, Settings};
use crate::drive::{drive, try_now};
use crate::errors::{build_error, cache_error, ConfigError, ForkedError};
use crate::memo::Memo;

mod load;

use load::{refreshing, LoadCall};

/// The process's cache. Built by the Python package; not meant to be used directly.
///
/// The package [stops](Core::stop) it before every fork: no thread of its runtime may run
/// when the process is copied. A core built before a fork is never dropped in the child
/// ([`Drop`]): dropping a runtime waits for its threads, which exist only in the parent.
#[pyclass(frozen, module = "hybrid_cache._hybrid_cache")]
pub struct Core {
    /// The runtime's handle: what calls use (no lock on the call path).
    handle: Handle,
    /// The runtime itself, taken out by [`Core::stop`] or [`Drop`].
    rt: Mutex<Option<Runtime>>,
    cache: ManuallyDrop<HybridCache>,
    /// [`crate::fork::generation`] when built: another value means this is a forked child.
    forks: u64,
    /// Set by [`Core::stop`]: calls raise `ForkedError` (the package starts a new core).
    stopped: AtomicBool,
    memo: Memo,
    /// Categories with refresh-ahead: their `@cached` hits go through `get_or_load`
    /// (which may start a reload) instead of the L1-only hit path.
    refreshing: Vec<String>,
}

/// How long a new cache waits for its Redis before the first call is served: without the
/// wait, calls right after start-up would fail closed (`UnavailableError`) or, before the
/// freshness lease, bypass L1 (and single flight).
const READY_WAIT: Duration = Duration::from_secs(5);

/// How long dropping a core waits for its runtime's threads to end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Starts the cache and waits (at most [`READY_WAIT`]) until Redis, when configured,
/// answers and this process holds its L1 lease. A Redis still down after that is the
/// documented fail-closed state.
async fn start(cfg: Config) -> Result<HybridCache, hybrid_cache::BuildError> {
    let cache = HybridCache::start(cfg).await?;
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    while !ready(&cache).await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(cache)
}

/// Redis answers and the lease is held (without Redis: at once).
async fn ready(cache: &HybridCache) -> bool {
    if cache.status() != Status::Ok {
        return false;
    }
    match cache.stats().await.coherence {
        Some(c) => c.lease_held,
        None => true,
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let rt = self.rt.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if crate::fork::generation() != self.forks {
            // A parent's cache in a forked child: its threads, and any lock they held at
            // the fork, are gone. Dropping would wait for them; the memory is left as it is.
            std::mem::forget(rt);
            return;
        }
        if let Some(rt) = rt {
            rt.shutdown_timeout(SHUTDOWN_WAIT);
        }
        // SAFETY: taken exactly once, here, and never used after.
        drop(unsafe { ManuallyDrop::take(&mut self.cache) });
    }
}

impl Core {
    /// The value of `key` from L1 alone, decoded with `loads`; None when L1 cannot answer.
    pub(crate) fn hit(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.check_fork()?;
        if self.refreshes(category) {
            return Ok(None);
        }
        match try_now(&self.handle, pin!(self.cache.get_l1(category, key))) {
            Some(Ok(Some(b))) => self.memo.decode(py, category, key, b, loads).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether `category` refreshes ahead: an L1 hit alone may not answer a `@cached` call.
    fn refreshes(&self, category: &str) -> bool {
        !self.refreshing.is_empty() && self.refreshing.iter().any(|c| c == category)
    }

    fn check_fork(&self) -> PyResult<()> {
        if crate::fork::generation() != self.forks {
            Err(ForkedError::new_err(
                "this cache was created in the parent process before a fork",
            ))
        } else if self.stopped.load(Ordering::Acquire) {
            Err(ForkedError::new_err(
                "this cache was stopped (for a fork, or replaced by configure())",
            ))
        } else {
            Ok(())
        }
    }
}

#[pymethods]
impl Core {
    /// Starts a cache configured from the environment, with overrides.
    #[new]
    #[pyo3(signature = (node_id, redis_url=None, l1_only=false, namespace=None, staleness_bound_ms=None, worker_threads=2, categories_json=None, config_file=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        node_id: String,
        redis_url: Option<String>,
        l1_only: bool,
        namespace: Option<String>,
        staleness_bound_ms: Option<u64>,
        worker_threads: usize,
        categories_json: Option<String>,
        config_file: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let cfg = config(&Settings {
            node_id,
            redis_url,
            l1_only,
            namespace,
            staleness_bound_ms,
            categories_json,
            config_file,
        })?;
        let refreshing = refreshing(&cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("hybrid-cache")
            .enable_all()
            .build()
            .map_err(|e| ConfigError::new_err(format!("cannot start the runtime: {e}")))?;
        let cache = py
            .allow_threads(|| rt.block_on(start(cfg)))
            .map_err(|e| build_error(&e))?;
        Ok(Core {
            handle: rt.handle().clone(),
            rt: Mutex::new(Some(rt)),
            cache: ManuallyDrop::new(cache),
            stopped: AtomicBool::new(false),
            forks: crate::fork::generation(),
            memo: Memo::default(),
            refreshing,
        })
    }

    /// The value of `key` decoded with `loads`, or None on a miss.
    fn get(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.check_fork()?;
        let found = drive(py, &self.handle, pin!(self.cache.get(category, key)));
        match found.map_err(|e| cache_error(py, &e))? {
            Some(b) => self.memo.decode(py, category, key, b, loads).map(Some),
            None => Ok(None),
        }
    }

    /// `@cached`'s hit path: the value of `key` from L1 alone (no L2 request, no load
    /// built), decoded with `loads`; the caller's `miss` sentinel when L1 cannot answer (the
    /// caller then calls `get_or_load`, which answers as it would have).
    fn get_hit(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        loads: &Bound<'_, PyAny>,
        miss: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Ok(self
            .hit(py, category, key, loads)?
            .unwrap_or_else(|| miss.clone().unbind()))
    }

    /// Like `get` but never waits, and never asks Redis: `(True, value)` on an L1 hit,
    /// `(False, None)` otherwise (the caller then uses `get_or_load` off the event loop).
    fn get_nowait(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, Option<Py<PyAny>>)> {
        self.check_fork()?;
        if self.refreshes(category) {
            return Ok((false, None));
        }
        // L1 only: one poll of `get` would also send the L2 read of a miss, then drop it.
        match try_now(&self.handle, pin!(self.cache.get_l1(category, key))) {
            Some(Ok(Some(b))) => Ok((true, Some(self.memo.decode(py, category, key, b, loads)?))),
            // A miss, a wait, or an error: `get_or_load` (off the loop) decides.
            _ => Ok((false, None)),
        }
    }

    /// The cached value of `key`, or `dumps(func(*args, **kwargs))` run once in this process
    /// for any number of concurrent misses; decoded with `loads`. With the category's
    /// settings: the fail-safe value when the function fails or is too slow, `None` for a
    /// cached "not found", a background reload of an old entry (see [`Core::load`]).
    #[pyo3(signature = (category, key, ttl_secs, func, args, kwargs, dumps, loads))]
    #[allow(clippy::too_many_arguments)]
    fn get_or_load(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        ttl_secs: Option<f64>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        dumps: Py<PyAny>,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let call = LoadCall {
            category,
            key,
            ttl_secs,
            func,
            args,
            kwargs,
            dumps,
        };
        Ok(self.load(py, call, loads)?.0)
    }

    /// [`Core::get_or_load`] that also says whether the answer is the fail-safe value:
    /// `(value, stale)`.
    #[pyo3(signature = (category, key, ttl_secs, func, args, kwargs, dumps, loads))]
    #[allow(clippy::too_many_arguments)]
    fn get_or_load_marked(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        ttl_secs: Option<f64>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        dumps: Py<PyAny>,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyAny>, bool)> {
        let call = LoadCall {
            category,
            key,
            ttl_secs,
            func,
            args,
            kwargs,
            dumps,
        };
        self.load(py, call, loads)
    }

    /// Writes already-serialized bytes; `ttl_secs` is the Redis TTL (L1: min with the
    /// category's).
    /// With `tags`, the value carries them: `invalidate_tag` of any removes it.
    #[pyo3(signature = (category, key, value, ttl_secs=None, tags=None))]
    fn set(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        value: &Bound<'_, PyBytes>,
        ttl_secs: Option<f64>,
        tags: Option<Vec<String>>,
    ) -> PyResult<()> {
        self.check_fork()?;
        let ttl = ttl(ttl_secs)?;
        let value = Bytes::copy_from_slice(value.as_bytes());
        self.memo.forget(category, Some(key));
        let done = match tags {
            None => drive(
                py,
                &self.handle,
                pin!(self.cache.set(category, key, value, ttl)),
            ),
            Some(tags) => drive(
                py,
                &self.handle,
                pin!(self.cache.set_with_tags(category, key, value, ttl, &tags)),
            ),
        };
        done.map_err(|e| cache_error(py, &e))
    }

    /// Invalidates every entry carrying `tag`, in every category, in L2 and in every
    /// process's L1; returns the number of local L1 entries removed.
    fn invalidate_tag(&self, py: Python<'_>, tag: &str) -> PyResult<u64> {
        self.check_fork()?;
        let n = drive(py, &self.handle, pin!(self.cache.invalidate_tag(tag)))
            .map_err(|e| cache_error(py, &e))?;
        self.memo.clear();
        Ok(n)
    }

    fn delete(&self, py: Python<'_>, category: &str, key: &str) -> PyResult<()> {
        self.check_fork()?;
        self.memo.forget(category, Some(key));
        drive(py, &self.handle, pin!(self.cache.delete(category, key)))
            .map_err(|e| cache_error(py, &e))
    }

    /// Invalidates an exact key, a glob, `*` (the category) or, with category `*`,
    /// everything; returns the number of local L1 entries removed.
    fn invalidate(&self, py: Python<'_>, pattern: &str, category: &str) -> PyResult<u64> {
        self.check_fork()?;
        let n = drive(
            py,
            &self.handle,
            pin!(self.cache.invalidate(pattern, category)),
        )
        .map_err(|e| cache_error(py, &e))?;
        self.memo.clear();
        Ok(n)
    }

    /// Invalidates exactly `key` (never read as a pattern).
    fn invalidate_key(&self, py: Python<'_>, category: &str, key: &str) -> PyResult<u64> {
        self.check_fork()?;
        self.memo.forget(category, Some(key));
        drive(
            py,
            &self.handle,
            pin!(self.cache.invalidate_key(category, key)),
        )
        .map_err(|e| cache_error(py, &e))
    }

    /// The node's stats document (`GET /v1/stats`) as JSON.
    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        self.check_fork()?;
        let stats = drive(py, &self.handle, pin!(self.cache.stats()));
        serde_json::to_string(&stats).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The `/health` document as JSON.
    fn health_json(&self, py: Python<'_>) -> PyResult<String> {
        self.check_fork()?;
        let health = drive(py, &self.handle, pin!(self.cache.health()));
        serde_json::to_string(&health).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Whether Redis is configured and serving as L2.
    fn l2_enabled(&self) -> PyResult<bool> {
        self.check_fork()?;
        Ok(self.cache.l2_enabled())
    }

    /// This process's node id.
    #[getter]
    fn node_id(&self) -> String {
        self.cache.config().node_id.clone()
    }

    /// Before a fork: stops the cache's actors and joins its runtime's threads (at most
    /// [`SHUTDOWN_WAIT`]), whoever still holds this object. Later calls raise `ForkedError`.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        if crate::fork::generation() != self.forks {
            return Ok(()); // a parent's core: nothing of it runs here
        }
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.memo.clear();
        drive(py, &self.handle, pin!(self.cache.shutdown()));
        let rt = self.rt.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rt) = rt {
            py.allow_threads(|| rt.shutdown_timeout(SHUTDOWN_WAIT));
        }
        Ok(())
    }

    /// Stops the cache's actors (unsubscribes from Redis) and joins its runtime's threads
    /// with the GIL released, so a background reload or an abandoned load still running
    /// Python can finish (at most [`SHUTDOWN_WAIT`]). Later calls raise `ForkedError`
    /// (the package answers them with a new cache).
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        self.check_fork()?;
        self.stop(py)
    }
}
