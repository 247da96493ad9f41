//! The Python exception hierarchy: one class per [`CacheError`] code, all under
//! `HybridCacheError`, each carrying its code as the class attribute `code`.

use hybrid_cache::{BuildError, CacheError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::loader::python_error;

create_exception!(
    _hybrid_cache,
    HybridCacheError,
    PyException,
    "Base class of every error of the cache; `code` is the library's stable error code."
);
create_exception!(_hybrid_cache, ConfigError, HybridCacheError, "The configuration (environment, HC_* settings, configure()) is invalid, or the cache could not start.");
create_exception!(
    _hybrid_cache,
    UnknownCategoryError,
    HybridCacheError,
    "The category is not configured (unknown categories never create a new cache)."
);
create_exception!(
    _hybrid_cache,
    InvalidKeyError,
    HybridCacheError,
    "The key is empty."
);
create_exception!(
    _hybrid_cache,
    KeyTooLargeError,
    HybridCacheError,
    "The key is longer than max_key_bytes."
);
create_exception!(
    _hybrid_cache,
    ValueTooLargeError,
    HybridCacheError,
    "The serialized value is larger than max_value_bytes."
);
create_exception!(
    _hybrid_cache,
    InvalidPatternError,
    HybridCacheError,
    "The invalidation pattern is not a valid glob."
);
create_exception!(
    _hybrid_cache,
    InvalidTagError,
    InvalidPatternError,
    "The tag is empty, longer than 128 bytes or not `[A-Za-z0-9_.:-]`, or a write carries more than 16."
);
create_exception!(
    _hybrid_cache,
    InvalidTtlError,
    HybridCacheError,
    "The ttl is zero, negative or too large."
);
create_exception!(
    _hybrid_cache,
    LoaderError,
    HybridCacheError,
    "A loader failed without a Python exception to re-raise."
);
create_exception!(
    _hybrid_cache,
    SerializationError,
    HybridCacheError,
    "A value could not be (de)serialized."
);
create_exception!(_hybrid_cache, UnavailableError, HybridCacheError, "The cache cannot answer within its staleness bound (Redis unreachable and the L1 lease lapsed); retry.");
create_exception!(
    _hybrid_cache,
    DeadlineExceededError,
    HybridCacheError,
    "The write's deadline passed before it was applied: it was not applied."
);
create_exception!(
    _hybrid_cache,
    ForkedError,
    HybridCacheError,
    "The cache was created in another process (before a fork); the package builds a fresh one."
);

/// Every class with its code, for the module and for the `code` attributes.
fn classes(py: Python<'_>) -> Vec<(&'static str, Bound<'_, pyo3::types::PyType>, &'static str)> {
    vec![
        (
            "HybridCacheError",
            py.get_type::<HybridCacheError>(),
            "error",
        ),
        ("ConfigError", py.get_type::<ConfigError>(), "config"),
        (
            "UnknownCategoryError",
            py.get_type::<UnknownCategoryError>(),
            "unknown_category",
        ),
        (
            "InvalidKeyError",
            py.get_type::<InvalidKeyError>(),
            "invalid_key",
        ),
        (
            "KeyTooLargeError",
            py.get_type::<KeyTooLargeError>(),
            "key_too_large",
        ),
        (
            "ValueTooLargeError",
            py.get_type::<ValueTooLargeError>(),
            "value_too_large",
        ),
        (
            "InvalidPatternError",
            py.get_type::<InvalidPatternError>(),
            "invalid_pattern",
        ),
        (
            "InvalidTagError",
            py.get_type::<InvalidTagError>(),
            "invalid_tag",
        ),
        (
            "InvalidTtlError",
            py.get_type::<InvalidTtlError>(),
            "invalid_ttl",
        ),
        ("LoaderError", py.get_type::<LoaderError>(), "loader_failed"),
        (
            "SerializationError",
            py.get_type::<SerializationError>(),
            "serialization",
        ),
        (
            "UnavailableError",
            py.get_type::<UnavailableError>(),
            "unavailable",
        ),
        (
            "DeadlineExceededError",
            py.get_type::<DeadlineExceededError>(),
            "deadline_exceeded",
        ),
        ("ForkedError", py.get_type::<ForkedError>(), "forked"),
    ]
}

/// Adds the classes to the module and sets their `code`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for (name, class, code) in classes(m.py()) {
        class.setattr("code", code)?;
        m.add(name, class)?;
    }
    Ok(())
}

/// A library error as a Python exception. A loader's own Python exception is re-raised as
/// it was (the same object for every caller that waited for that load).
pub fn cache_error(py: Python<'_>, e: &CacheError) -> PyErr {
    let msg = e.to_string();
    match e {
        CacheError::UnknownCategory(_) => UnknownCategoryError::new_err(msg),
        CacheError::InvalidKey(_) => InvalidKeyError::new_err(msg),
        CacheError::KeyTooLarge { .. } => KeyTooLargeError::new_err(msg),
        CacheError::ValueTooLarge { .. } => ValueTooLargeError::new_err(msg),
        CacheError::InvalidPattern { .. } => InvalidPatternError::new_err(msg),
        // A bad tag is a bad selector: a subclass of InvalidPatternError.
        CacheError::InvalidTag(_) => InvalidTagError::new_err(msg),
        CacheError::InvalidTtl(_) => InvalidTtlError::new_err(msg),
        CacheError::Loader(inner) => match python_error(inner.as_ref()) {
            Some(err) => err.clone_ref(py),
            None => LoaderError::new_err(msg),
        },
        CacheError::Serde(_) => SerializationError::new_err(msg),
        CacheError::Unavailable(_) => UnavailableError::new_err(msg),
        CacheError::DeadlineExceeded => DeadlineExceededError::new_err(msg),
    }
}

/// A start-up error as a Python exception.
pub fn build_error(e: &BuildError) -> PyErr {
    ConfigError::new_err(e.to_string())
}
