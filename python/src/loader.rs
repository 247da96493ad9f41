//! A Python loader inside the library's `get_or_load`: the library coalesces concurrent
//! misses of a key (one load per process), and a load's error reaches every caller that
//! waited for it. The Python exception travels inside the error, found again by
//! [`python_error`].

use std::fmt;

use bytes::Bytes;
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
}

impl PyLoader {
    /// Runs the loader and serializes its result; a non-bytes serializer result is a
    /// TypeError. Nothing is cached when this fails.
    ///
    /// Outside the runtime's context (`block_in_place`): the loader may itself call cached
    /// functions, whose `block_on` would otherwise find itself nested in this one's.
    pub fn call(self) -> Result<Bytes, LoadFailed> {
        tokio::task::block_in_place(|| self.call_python())
    }

    fn call_python(self) -> Result<Bytes, LoadFailed> {
        Python::with_gil(|py| {
            let value = self
                .func
                .bind(py)
                .call(self.args.bind(py), self.kwargs.as_ref().map(|k| k.bind(py)))?;
            let raw = self.dumps.bind(py).call1((value,))?;
            let bytes = raw.downcast::<PyBytes>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err("the serializer must return bytes")
            })?;
            Ok(Bytes::copy_from_slice(bytes.as_bytes()))
        })
        .map_err(|e: PyErr| LoadFailed(PyRaised(e)))
    }
}
