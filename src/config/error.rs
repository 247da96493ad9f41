//! The one error type of configuration, and the helper every layer uses to build it.
//!
//! Why its own file: the file, environment, flag and validation layers all report through
//! it, so it sits below all of them and imports none.

use std::path::PathBuf;

/// Configuration errors; each names the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The file key or environment variable at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// An [`ConfigError::Invalid`] about `field`.
pub(super) fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}
