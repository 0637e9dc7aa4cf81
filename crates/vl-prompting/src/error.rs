//! Errors of `vl-prompting`: bad prompt configs, class lists or template files, and prompt files
//! that do not belong to the model they are loaded onto. Each variant names the file, field or
//! tensor, what was expected and what was found; library code never panics on user input.

use std::path::PathBuf;

/// Everything that can fail in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path} is not valid JSON for {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file could not be parsed or written.
    #[error("{path}: safetensors: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors library reported.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A config field (or argument) has an unusable value.
    #[error("{field}: expected {expected}, found {found}")]
    Invalid {
        /// The field, e.g. `text.n_ctx`.
        field: String,
        /// What is allowed.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A tensor in a prompt file is missing or has the wrong shape.
    #[error("{path}: tensor `{tensor}`: expected {expected}, found {found}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Expected shape or presence.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// Learned prompts loaded onto a model other than the one they were trained with.
    #[error(
        "{path} was trained on base model {expected} (fingerprint), this model is {found}; \
         prompts only make sense on the checkpoint they were learned for"
    )]
    WrongBaseModel {
        /// The prompt file.
        path: PathBuf,
        /// The fingerprint recorded in the file.
        expected: String,
        /// The fingerprint of the model given.
        found: String,
    },
    /// Tokenization failed.
    #[error(transparent)]
    Data(Box<vl_data::Error>),
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

impl From<vl_data::Error> for Error {
    fn from(e: vl_data::Error) -> Self {
        Self::Data(Box::new(e))
    }
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
