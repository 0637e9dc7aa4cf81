//! The one error type of `vl-eval` and its `Result` alias. Every variant names what it is about
//! (the input, the file) and says what was expected and what was found.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in a protocol or a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs of a protocol disagree (lengths, dimensions, label ranges) or are empty.
    #[error("{what}: expected {expected}, found {found}")]
    Input {
        /// The input, e.g. `"labels"` or `"linear probe: validation features"`.
        what: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// A file could not be written or read.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A PNG could not be encoded.
    #[error("cannot encode {}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
}

impl Error {
    /// An [`Error::Input`].
    pub(crate) fn input(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::Input {
            what: what.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
