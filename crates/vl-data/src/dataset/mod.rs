//! Data sets as Burn [`Dataset`](burn::data::dataset::Dataset)s: an image folder with one
//! subfolder per class ([`ImageFolder`]), one split of a CoOp `split_zhou_<Name>.json` file
//! ([`CoopSplit`]), and image-caption lists in JSON Lines or CSV ([`Captions`]); the validation
//! pass that reports missing or unreadable images ([`BadImagePolicy`], [`ValidationReport`]);
//! [`DecodeImages`], which decodes images on `get`; [`TokenizeCaptions`], which tokenizes captions
//! on `get`; and the [`Manifest`] of the files a run used. The batchers that turn the decoded
//! items into tensors are in [`crate::batcher`].
//! Few-shot sampling and the base/novel class split are in [`crate::sampling`].

mod base;
mod captions;
mod coop_split;
mod image_folder;
mod manifest;
mod tokenized;

pub use base::{
    BadImagePolicy, CaptionedImage, DecodeImages, ImageCheck, ImageItem, LabeledImage, LoadedImage,
    ValidateImages, ValidationReport, check_image, validate_items,
};
pub use captions::{CaptionFormat, Captions};
pub use coop_split::{CoopSplit, Split};
pub use image_folder::{ImageFolder, ImageFolderOptions};
pub use manifest::{Manifest, ManifestFile, Overwrite};
pub use tokenized::{TokenizeCaptions, TokenizedCaption};
