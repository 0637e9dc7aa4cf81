//! Errors of `vl-encoders`: one enum for everything that can go wrong while reading or writing a
//! configuration or a checkpoint, each variant naming the file and the tensor or field involved,
//! what was expected and what was found. Library code never panics on user files.

use std::path::PathBuf;

/// Everything that can fail in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (missing, permissions, ...).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file could not be parsed (truncated, corrupt, not safetensors).
    #[error("{path} is not a readable safetensors file (truncated or corrupt?): {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser reported.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A JSON configuration file could not be parsed.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration field has a value of the wrong type or out of range.
    #[error("{path}: field `{field}`: expected {expected}, found {found}")]
    InvalidConfig {
        /// The configuration file (or a description of where the config came from).
        path: PathBuf,
        /// The field, as a dotted path (`vision_config.hidden_size`).
        field: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("{path}: missing tensor `{key}` (expected shape {expected:?})")]
    MissingTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor name as the checkpoint would spell it.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor has a different shape from what the configuration implies.
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor name as the checkpoint spells it.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a dtype that cannot be loaded into a float parameter.
    #[error(
        "{path}: tensor `{key}` has dtype {found}, expected a float tensor (F32, F16, BF16 or F64)"
    )]
    UnsupportedDtype {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// The dtype in the file.
        found: String,
    },
    /// The architecture could not be inferred from the checkpoint.
    #[error("{path}: cannot infer the model architecture: {reason}")]
    Architecture {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file or directory could not be written (permissions, disk full, a file where a
    /// directory should be, ...).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model cannot be saved as the requested checkpoint (it disagrees with its configuration,
    /// or its tensors cannot be read back or serialized). Nothing is written in that case.
    #[error("cannot save a checkpoint to {path}: {reason}")]
    Save {
        /// The checkpoint directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model directory holds no checkpoint this crate can read.
    #[error("{dir}: no CLIP checkpoint found (looked for {looked_for})")]
    NoCheckpoint {
        /// The directory.
        dir: PathBuf,
        /// The file names tried.
        looked_for: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InvalidConfig`] from displayable parts.
    pub(crate) fn invalid_config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        expected: impl Into<String>,
        found: impl std::fmt::Display,
    ) -> Self {
        Self::InvalidConfig {
            path: path.into(),
            field: field.into(),
            expected: expected.into(),
            found: found.to_string(),
        }
    }
}
