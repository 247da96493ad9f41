//! `CachedCall`: the synchronous `@cached` wrapper's hit path as a Rust callable. A hit
//! (positional arguments, L1 answers) builds the key `"{function}:{arg1}:{arg2}..."` and
//! reads L1 without a Python frame; anything else (keyword arguments, a miss, an error, no
//! cache started yet, a fork) is answered by the package's Python wrapper (`slow`), which
//! builds the same key and answers exactly as before.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::core::Core;

/// A function decorated with `@cached` (not `async def`, no `key=`). `functools.wraps`
/// fills its `__dict__`; it binds as a method like a function does.
#[pyclass(frozen, dict, module = "hybrid_cache._hybrid_cache")]
pub struct CachedCall {
    /// The function's `__name__`: the key of a call without arguments.
    name: String,
    category: String,
    loads: Py<PyAny>,
    /// The package's globals: `_core` is the process's current cache (or None).
    globals: Py<PyDict>,
    /// The Python wrapper: every call the hit path does not answer.
    slow: Py<PyAny>,
}

impl CachedCall {
    /// The value from L1, or None when the Python wrapper must answer.
    fn try_hit(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> Option<Py<PyAny>> {
        let core = self
            .globals
            .bind(py)
            .get_item(intern!(py, "_core"))
            .ok()??;
        let core = core.downcast::<Core>().ok()?;
        let mut key = String::with_capacity(self.name.len() + 16);
        key.push_str(&self.name);
        for a in args.iter() {
            key.push(':');
            if let Ok(s) = a.downcast_exact::<PyString>() {
                key.push_str(&s.to_cow().ok()?);
            } else {
                key.push_str(&a.str().ok()?.to_cow().ok()?);
            }
        }
        core.get()
            .hit(py, &self.category, &key, self.loads.bind(py))
            .ok()?
    }
}

#[pymethods]
impl CachedCall {
    #[new]
    fn new(
        name: String,
        category: String,
        loads: Py<PyAny>,
        globals: Py<PyDict>,
        slow: Py<PyAny>,
    ) -> Self {
        CachedCall {
            name,
            category,
            loads,
            globals,
            slow,
        }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        if kwargs.is_none_or(|k| k.is_empty()) {
            if let Some(v) = self.try_hit(py, args) {
                return Ok(v);
            }
        }
        self.slow.bind(py).call(args, kwargs).map(Bound::unbind)
    }

    /// Binds to an instance like a function (`@cached` on a method).
    fn __get__(
        slf: Bound<'_, Self>,
        obj: Option<Bound<'_, PyAny>>,
        _owner: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match obj {
            Some(o) if !o.is_none() => {
                let py = slf.py();
                let method = py.import("types")?.getattr("MethodType")?;
                method.call1((slf, o)).map(Bound::unbind)
            }
            _ => Ok(slf.into_any().unbind()),
        }
    }

    /// Pickled by reference, as a function is (`module.qualname`).
    fn __reduce__(slf: Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.getattr("__qualname__").map(Bound::unbind)
    }
}
