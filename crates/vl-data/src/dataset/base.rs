//! What every data set here shares: the item types ([`LabeledImage`], [`CaptionedImage`]), the
//! validation pass that finds missing or unreadable images ([`BadImagePolicy`],
//! [`ValidationReport`]), and [`DecodeImages`], the Burn `Dataset` wrapper that decodes an item's
//! image on `get` (so decoding runs on the data loader's worker threads).
//!
//! Items carry paths, not pixels: opening a data set only lists files. A missing or unreadable image
//! is never dropped silently: a validation pass ([`validate_items`], or each data set's `validate`)
//! either fails naming the file ([`BadImagePolicy::Fail`]) or lists it with the reason in the
//! [`ValidationReport`] ([`BadImagePolicy::Skip`]).

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One image of a classification data set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabeledImage {
    /// The image file (the data set's root joined with the listed relative path).
    pub path: PathBuf,
    /// The class index, from 0.
    pub label: usize,
    /// The class name as the data set spells it.
    pub class_name: String,
}

/// One image of an image-caption data set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaptionedImage {
    /// The image file (the image root joined with the listed path).
    pub path: PathBuf,
    /// The caption text, as listed.
    pub caption: String,
}

/// An item that names one image file.
pub trait ImageItem: Clone + Send + Sync {
    /// The image file.
    fn image_path(&self) -> &Path;
}

impl ImageItem for LabeledImage {
    fn image_path(&self) -> &Path {
        &self.path
    }
}

impl ImageItem for CaptionedImage {
    fn image_path(&self) -> &Path {
        &self.path
    }
}

/// What to do with an image that is missing or cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// Fail with the first bad image's error (which names the file). The default.
    #[default]
    Fail,
    /// Skip bad images, listing each with its reason in [`ValidationReport::skipped`].
    Skip,
}

/// How thoroughly [`validate_items`] checks each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageCheck {
    /// Open the file, detect the format from its content and read the size from the header; fast,
    /// but a file truncated after its header passes. The default.
    #[default]
    Header,
    /// Decode the whole image with [`crate::load_dynamic_image`].
    Decode,
}

/// The outcome of a validation pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// How many images passed.
    pub n_ok: usize,
    /// Each skipped image with the reason (the error chain as text), in item order.
    pub skipped: Vec<(PathBuf, String)>,
}

impl ValidationReport {
    /// Whether every image passed.
    pub fn is_clean(&self) -> bool {
        self.skipped.is_empty()
    }

    /// How many images were skipped.
    pub fn n_skipped(&self) -> usize {
        self.skipped.len()
    }
}

/// Checks one image file; the error names the file.
pub fn check_image(path: &Path, check: ImageCheck) -> Result<()> {
    match check {
        ImageCheck::Decode => crate::image::load_dynamic_image(path).map(|_| ()),
        ImageCheck::Header => {
            let reader = image::ImageReader::open(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let reader = reader.with_guessed_format().map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let format = reader.format();
            let (width, height) = reader.into_dimensions().map_err(|source| match format {
                None => Error::UnknownImageFormat {
                    path: path.to_path_buf(),
                    source,
                },
                Some(_) => Error::ImageDecode {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
            if width == 0 || height == 0 {
                return Err(Error::EmptyImage {
                    path: path.to_path_buf(),
                    width,
                    height,
                });
            }
            Ok(())
        }
    }
}

/// The error and its sources as one line, `outer: inner: ...`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Checks every item's image. With [`BadImagePolicy::Fail`] the first bad image's error is
/// returned; with [`BadImagePolicy::Skip`] bad images are listed in the report.
pub fn validate_items<T: ImageItem>(
    items: &[T],
    policy: BadImagePolicy,
    check: ImageCheck,
) -> Result<ValidationReport> {
    let mut report = ValidationReport::default();
    for item in items {
        match check_image(item.image_path(), check) {
            Ok(()) => report.n_ok += 1,
            Err(error) => match policy {
                BadImagePolicy::Fail => return Err(error),
                BadImagePolicy::Skip => report
                    .skipped
                    .push((item.image_path().to_path_buf(), error_chain(&error))),
            },
        }
    }
    Ok(report)
}

/// Removes the items whose paths the report lists as skipped.
pub(crate) fn retain_valid<T: ImageItem>(items: &mut Vec<T>, report: &ValidationReport) {
    if report.skipped.is_empty() {
        return;
    }
    let skipped: std::collections::HashSet<&Path> = report
        .skipped
        .iter()
        .map(|(path, _)| path.as_path())
        .collect();
    items.retain(|item| !skipped.contains(item.image_path()));
}

/// Validation for the data sets of this module: implementors expose their item list and get
/// [`Self::validate`] and [`Self::validated`].
pub trait ValidateImages: Sized {
    /// The item type.
    type Item: ImageItem;

    /// The items, in data set order.
    fn image_items(&self) -> &[Self::Item];

    /// The items, mutably (for dropping skipped ones).
    fn image_items_mut(&mut self) -> &mut Vec<Self::Item>;

    /// Checks every image's header ([`ImageCheck::Header`]); see [`validate_items`].
    fn validate(&self, policy: BadImagePolicy) -> Result<ValidationReport> {
        validate_items(self.image_items(), policy, ImageCheck::Header)
    }

    /// Validates with `check` and drops the skipped images; the report lists what was dropped.
    fn validated(
        mut self,
        policy: BadImagePolicy,
        check: ImageCheck,
    ) -> Result<(Self, ValidationReport)> {
        let report = validate_items(self.image_items(), policy, check)?;
        retain_valid(self.image_items_mut(), &report);
        Ok((self, report))
    }
}

/// `items[index]`, or [`Error::IndexOutOfRange`] wrapped for Burn.
pub(crate) fn get_item<T: Clone>(
    items: &[T],
    index: usize,
) -> std::result::Result<T, DatasetError> {
    items.get(index).cloned().ok_or_else(|| {
        DatasetError::new(Error::IndexOutOfRange {
            index,
            len: items.len(),
        })
    })
}

/// An item together with its decoded 8-bit RGB image and its index.
#[derive(Debug, Clone)]
pub struct LoadedImage<T> {
    /// The decoded image ([`crate::load_image`]: grayscale replicated, alpha over white).
    pub image: RgbImage,
    /// The item it came from.
    pub item: T,
    /// The item's index in the data set that [`DecodeImages`] wraps (the index `get` was called
    /// with; a loader's shuffling happens outside, so this is stable across epochs). Batchers
    /// seed per-item augmentation with it.
    pub index: usize,
}

/// A Burn `Dataset` that decodes each item's image when it is fetched; a missing or unreadable
/// file becomes a `DatasetError` whose source names the file.
///
/// Burn 0.22.1's batch data-loader iterator does not advance past a chunk whose `get` failed: it
/// yields the same error on every later `next`. Stop at the first error (or run a validation pass
/// with [`BadImagePolicy::Skip`] first) rather than collecting all errors.
#[derive(Debug, Clone)]
pub struct DecodeImages<D, T> {
    inner: D,
    _item: PhantomData<fn() -> T>,
}

impl<D, T> DecodeImages<D, T>
where
    D: Dataset<T>,
    T: ImageItem,
{
    /// Wraps a data set of image items.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            _item: PhantomData,
        }
    }

    /// The wrapped data set.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D, T> Dataset<LoadedImage<T>> for DecodeImages<D, T>
where
    D: Dataset<T>,
    T: ImageItem,
{
    fn get(&self, index: usize) -> std::result::Result<LoadedImage<T>, DatasetError> {
        let item = self.inner.get(index)?;
        let image = crate::image::load_image(item.image_path()).map_err(DatasetError::new)?;
        Ok(LoadedImage { image, item, index })
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}
