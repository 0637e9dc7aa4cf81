//! Evaluation protocols and reports for vlkit, in plain Rust on `f32`/`f64` slices (no Burn):
//! the encoders produce features, this crate turns them into numbers and the numbers into
//! tables and plots.
//!
//! - [`metrics`]: accuracy, top-k, per-class accuracy, harmonic mean, mean ± std, the CoOp
//!   papers' base-to-novel dataset average; pure functions.
//! - [`linear_probe`]: multinomial logistic regression with L2 on frozen features, the same
//!   objective as scikit-learn's `LogisticRegression`, solved deterministically, with its
//!   strength chosen on a validation split as in the CLIP paper.
//! - [`knn`]: k-nearest-neighbour classification on image features.
//! - [`retrieval`]: image-to-text and text-to-image recall@K and ranks with several captions
//!   per image.
//! - [`table`] and [`plot`]: Markdown and CSV tables, SVG and PNG plots (few-shot curves,
//!   base-vs-novel bars), written atomically.

pub mod error;
pub mod knn;
pub mod linear_probe;
pub mod metrics;
pub mod plot;
pub mod retrieval;
pub mod table;

pub use error::{Error, Result};

use std::path::Path;

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then a rename),
/// creating the parent directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
