//! Errors of `vl-peft`: bad adapter configs, target patterns that match nothing, PEFT adapter
//! files with unsupported options, missing or mis-shaped tensors. Each names the file, field or
//! tensor, what was expected and what was found.

use std::path::PathBuf;

/// Everything that can fail in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's report.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file could not be parsed or written.
    #[error("{path}: safetensors: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The library's report.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A config field has an unusable or unsupported value.
    #[error("{field}: expected {expected}, found {found}")]
    Invalid {
        /// The field, e.g. `adapter_config.json: fan_in_fan_out`.
        field: String,
        /// What is allowed.
        expected: String,
        /// What was given.
        found: String,
    },
    /// Target patterns matched no module.
    #[error("target modules {patterns} match no adaptable module; available: {available}")]
    NoTarget {
        /// The patterns.
        patterns: String,
        /// The module paths that could be targeted.
        available: String,
    },
    /// A tensor is missing or has the wrong shape.
    #[error("{path}: tensor `{tensor}`: expected {expected}, found {found}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        tensor: String,
        /// Expected shape or presence.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// Writing a file atomically failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<vl_data::Error>,
    },
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        expected: impl Into<String>,
        found: impl std::fmt::Display,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            expected: expected.into(),
            found: found.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
