//! [`Manifest`]: the JSON record of exactly which files a run used (data set, root, split, seed,
//! shots, and every file with its label, class name and optionally its SHA-256).
//!
//! [`Manifest::write`] writes atomically (a temporary file in the same folder, then a link or
//! rename into place) and refuses to replace an existing file unless [`Overwrite::Allow`] is given.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::atomic::Overwrite;
use crate::dataset::base::{CaptionedImage, LabeledImage};
use crate::error::{Error, Result};

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The path, relative to [`Manifest::root`] when it lies under it, else as used.
    pub path: PathBuf,
    /// The class label, for classification data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<usize>,
    /// The class name, for classification data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// The file's SHA-256 as lowercase hex, once [`Manifest::with_sha256`] has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The files a run used; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The data set's name, e.g. `OxfordPets`.
    pub dataset: String,
    /// The image root the file paths are relative to.
    pub root: PathBuf,
    /// The split, e.g. `train` or `base/train` (default: none).
    #[serde(default)]
    pub split: Option<String>,
    /// The sampling seed (default: none).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Shots per class (default: none, i.e. all images).
    #[serde(default)]
    pub shots: Option<usize>,
    /// The files, in the order the run used them.
    pub files: Vec<ManifestFile>,
}

fn relative_to(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

impl Manifest {
    /// A manifest with no split, seed or shots.
    pub fn new(
        dataset: impl Into<String>,
        root: impl Into<PathBuf>,
        files: Vec<ManifestFile>,
    ) -> Self {
        Self {
            dataset: dataset.into(),
            root: root.into(),
            split: None,
            seed: None,
            shots: None,
            files,
        }
    }

    /// A manifest of labelled images, with paths made relative to `root`.
    pub fn from_labeled(
        dataset: impl Into<String>,
        root: impl Into<PathBuf>,
        items: &[LabeledImage],
    ) -> Self {
        let root = root.into();
        let files = items
            .iter()
            .map(|item| ManifestFile {
                path: relative_to(&root, &item.path),
                label: Some(item.label),
                class_name: Some(item.class_name.clone()),
                sha256: None,
            })
            .collect();
        Self::new(dataset, root, files)
    }

    /// A manifest of captioned images, with paths made relative to `root`.
    pub fn from_captioned(
        dataset: impl Into<String>,
        root: impl Into<PathBuf>,
        items: &[CaptionedImage],
    ) -> Self {
        let root = root.into();
        let files = items
            .iter()
            .map(|item| ManifestFile {
                path: relative_to(&root, &item.path),
                label: None,
                class_name: None,
                sha256: None,
            })
            .collect();
        Self::new(dataset, root, files)
    }

    /// Sets the split.
    pub fn with_split(mut self, split: impl Into<String>) -> Self {
        self.split = Some(split.into());
        self
    }

    /// Sets the sampling seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the shots per class.
    pub fn with_shots(mut self, shots: usize) -> Self {
        self.shots = Some(shots);
        self
    }

    /// Hashes every file (`root` joined with its path); an unreadable file is an error naming it.
    pub fn with_sha256(mut self) -> Result<Self> {
        for file in &mut self.files {
            let path = self.root.join(&file.path);
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let digest = Sha256::digest(&bytes);
            file.sha256 = Some(digest.iter().map(|byte| format!("{byte:02x}")).collect());
        }
        Ok(self)
    }

    /// Reads a manifest written by [`Manifest::write`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the manifest as pretty JSON, atomically; with [`Overwrite::Refuse`] an existing
    /// file is left alone and reported as [`Error::AlreadyExists`].
    pub fn write(&self, path: impl AsRef<Path>, overwrite: Overwrite) -> Result<()> {
        let path = path.as_ref();
        let mut json = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        json.push('\n');
        crate::atomic::write_atomic(path, json.as_bytes(), overwrite)
    }
}
