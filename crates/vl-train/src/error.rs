//! The crate's error type: every failure names the file, field or run directory involved, keeps
//! its source error, and says what was expected and what was found.

use std::path::PathBuf;

/// Errors of vlkit training runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A TOML run config could not be parsed (unknown keys are errors too).
    #[error("{path}: {source}")]
    Toml {
        /// The config file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: toml::de::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A config value is out of range.
    #[error("config field `{field}`: expected {expected}, found {found}")]
    InvalidConfig {
        /// The dotted field name, e.g. `train.batch_size`.
        field: String,
        /// What is allowed.
        expected: String,
        /// What was given.
        found: String,
    },
    /// The run directory holds something that forbids starting or resuming.
    #[error("run directory {path}: {message}")]
    RunDir {
        /// The run directory.
        path: PathBuf,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// Tokenizer training or loading failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An error from the encoders crate (model config, checkpoint I/O).
    #[error(transparent)]
    Encoders(#[from] vl_encoders::Error),
    /// An error from the data crate (synthetic world, tokenizer, preprocessing).
    #[error(transparent)]
    Data(#[from] vl_data::Error),
    /// burn-train stopped with an error.
    #[error("training failed: {0}")]
    Training(String),
    /// Prompt learning failed (config, class list, prompt file).
    #[error(transparent)]
    Prompting(Box<vl_prompting::Error>),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::InvalidConfig`].
    pub(crate) fn invalid(
        field: impl Into<String>,
        expected: impl Into<String>,
        found: impl ToString,
    ) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            expected: expected.into(),
            found: found.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<vl_prompting::Error> for Error {
    fn from(e: vl_prompting::Error) -> Self {
        Self::Prompting(Box::new(e))
    }
}
