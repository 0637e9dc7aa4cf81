//! [`ImageFolder`]: a classification data set laid out as one subfolder per class
//! (`root/<class name>/<image>`), like torchvision's `ImageFolder`.
//!
//! Classes are the subfolder names sorted byte-wise (label = index in that order); within a class,
//! files with an image extension ([`ImageFolderOptions::extensions`]) are taken in sorted order, so
//! the same tree always gives the same items. Hidden entries (names starting with `.`) are ignored.
//! Only paths are listed; call [`ImageFolder::validate`] to find missing or unreadable images.

use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};

use crate::dataset::base::{LabeledImage, ValidateImages, get_item};
use crate::error::{Error, Result};

/// How [`ImageFolder::open`] lists files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFolderOptions {
    /// File extensions (lowercase, without the dot) counted as images, compared
    /// case-insensitively. Default: `png`, `jpg`, `jpeg`, `webp`.
    pub extensions: Vec<String>,
    /// Whether a class folder without any image is an error. Default: `false` (the class keeps
    /// its label and has no items, as in torchvision with `allow_empty=True`).
    pub forbid_empty_classes: bool,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        Self {
            extensions: ["png", "jpg", "jpeg", "webp"].map(String::from).to_vec(),
            forbid_empty_classes: false,
        }
    }
}

/// A data set of one subfolder per class; see the module docs.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    items: Vec<LabeledImage>,
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let io_error = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follow symbolic links, as torchvision does.
        let is_dir = std::fs::metadata(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?
            .is_dir();
        entries.push((name, path, is_dir));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

impl ImageFolder {
    /// Lists `root/<class>/<image>`; errors if `root` cannot be read or holds no class folder.
    pub fn open(root: impl AsRef<Path>, options: &ImageFolderOptions) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let extensions: Vec<String> = options
            .extensions
            .iter()
            .map(|ext| ext.trim_start_matches('.').to_ascii_lowercase())
            .collect();
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for (class_name, class_dir, is_dir) in read_dir_sorted(&root)? {
            if !is_dir {
                continue;
            }
            let label = classes.len();
            let before = items.len();
            for (_, path, is_dir) in read_dir_sorted(&class_dir)? {
                let is_image = path
                    .extension()
                    .map(|ext| ext.to_string_lossy().to_ascii_lowercase())
                    .is_some_and(|ext| extensions.contains(&ext));
                if !is_dir && is_image {
                    items.push(LabeledImage {
                        path,
                        label,
                        class_name: class_name.clone(),
                    });
                }
            }
            if options.forbid_empty_classes && items.len() == before {
                return Err(Error::EmptyDataset {
                    path: class_dir,
                    what: "images",
                });
            }
            classes.push(class_name);
        }
        if classes.is_empty() {
            return Err(Error::EmptyDataset {
                path: root,
                what: "class folders",
            });
        }
        Ok(Self {
            root,
            classes,
            items,
        })
    }

    /// The folder given to [`ImageFolder::open`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// All items, by label then file name.
    pub fn items(&self) -> &[LabeledImage] {
        &self.items
    }
}

impl ValidateImages for ImageFolder {
    type Item = LabeledImage;

    fn image_items(&self) -> &[LabeledImage] {
        &self.items
    }

    fn image_items_mut(&mut self) -> &mut Vec<LabeledImage> {
        &mut self.items
    }
}

impl Dataset<LabeledImage> for ImageFolder {
    fn get(&self, index: usize) -> std::result::Result<LabeledImage, DatasetError> {
        get_item(&self.items, index)
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}
