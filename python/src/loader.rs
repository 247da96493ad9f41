//! A Python loader inside the library's `get_or_load`: the library coalesces concurrent
//! misses of a key (one load per process), and a load's error reaches every caller that
//! waited for it. The Python exception travels inside the error, found again by
//! [`python_error`].

use std::fmt;
use std::thread::ThreadId;

use bytes::Bytes;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

/// The exception a Python loader (or its serializer) raised.
#[derive(Debug)]
pub struct PyRaised(pub PyErr);

impl fmt::Display for PyRaised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the Python loader raised {}", self.0)
    }
}

impl std::error::Error for PyRaised {}

/// The loader's error as the library carries it. The library wraps it transparently (its
/// `source()` is this error's `source()`), so the Python exception is its source.
#[derive(Debug)]
pub struct LoadFailed(pub PyRaised);

impl fmt::Display for LoadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LoadFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The Python exception inside a loader error, wherever in the chain it sits.
pub fn python_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a PyErr> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(raised) = err.downcast_ref::<PyRaised>() {
            return Some(&raised.0);
        }
        if let Some(failed) = err.downcast_ref::<LoadFailed>() {
            return Some(&(failed.0).0);
        }
        cur = err.source();
    }
    None
}

/// `dumps(func(*args, **kwargs))`, called with the GIL from inside the library's load.
pub struct PyLoader {
    pub func: Py<PyAny>,
    pub args: Py<PyTuple>,
    pub kwargs: Option<Py<PyDict>>,
    pub dumps: Py<PyAny>,
    /// The caller's `contextvars` (`copy_context()`): a loader called on another thread (a
    /// background refresh, a worker thread) runs in it, as it would have on the caller's.
    pub context: Py<PyAny>,
    /// The thread of the call that built the loader: there it runs as a plain call.
    pub caller: ThreadId,
    /// The category caches "not found": a `None` from the function is `Ok(None)`.
    pub none_is_absent: bool,
    /// Run on a blocking thread of the runtime, so the library's load timeouts (and the
    /// fail-safe soft timeout) can answer while the function still runs.
    pub off_thread: bool,
}

impl PyLoader {
    /// The function's serialized result; `None` when it answered `None` and the category
    /// caches "not found". Nothing is cached when this fails (a non-bytes serializer result
    /// is a TypeError).
    pub async fn load(self) -> Result<Option<Bytes>, LoadFailed> {
        if !self.off_thread {
            // Outside the runtime's context (`block_in_place`): the loader may itself call
            // cached functions, whose `block_on` would otherwise nest in this one's.
            return tokio::task::block_in_place(|| self.call_python());
        }
        // Dropped when a timeout answers first: the function then finishes unobserved.
        match tokio::task::spawn_blocking(move || self.call_python()).await {
            Ok(r) => r,
            Err(e) => Err(LoadFailed(PyRaised(PyRuntimeError::new_err(format!(
                "the loader's thread failed: {e}"
            ))))),
        }
    }

    /// [`Self::load`] of a category that does not cache "not found" (`None` is a value).
    pub async fn load_found(self) -> Result<Bytes, LoadFailed> {
        debug_assert!(!self.none_is_absent);
        self.load().await?.ok_or_else(|| {
            LoadFailed(PyRaised(PyRuntimeError::new_err(
                "the loader answered \"not found\" in a category without negative_ttl_secs",
            )))
        })
    }

    fn call_python(self) -> Result<Option<Bytes>, LoadFailed> {
        Python::with_gil(|py| {
            let func = self.func.bind(py);
            let kwargs = self.kwargs.as_ref().map(|k| k.bind(py));
            let value = if std::thread::current().id() == self.caller {
                func.call(self.args.bind(py), kwargs)?
            } else {
                // context.run(func, *args, **kwargs)
                let mut all = vec![func.clone()];
                all.extend(self.args.bind(py).iter());
                let all = PyTuple::new(py, all)?;
                self.context.bind(py).call_method("run", all, kwargs)?
            };
            if self.none_is_absent && value.is_none() {
                return Ok(None);
            }
            let raw = self.dumps.bind(py).call1((value,))?;
            let bytes = raw
                .downcast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("the serializer must return bytes"))?;
            Ok(Some(Bytes::copy_from_slice(bytes.as_bytes())))
        })
        .map_err(|e: PyErr| LoadFailed(PyRaised(e)))
    }
}
