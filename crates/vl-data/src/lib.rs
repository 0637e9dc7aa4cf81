//! Data handling for vlkit: what turns files into the tensors the encoders eat.
//!
//! What `vl-data` owns today:
//! - **Text**: [`ClipTokenizer`], CLIP's BPE tokenizer read from a Hugging Face
//!   `tokenizer.json`, producing the same fixed-length id rows as transformers'
//!   `CLIPTokenizerFast` (or open_clip's `tokenize`, with [`Padding::Zero`]), batched as
//!   [`TokenBatch`] → `Tensor<2, Int>`.
//! - **Images**: decoding ([`load_image`], [`load_dynamic_image`]) and CLIP preprocessing
//!   ([`PreprocessConfig`], [`ImagePreprocessor`]) that reproduces transformers'
//!   `CLIPImageProcessor` (both backends) and open_clip's eval transform — resize arithmetic
//!   (a port of Pillow's resampler, and PyTorch's int16 variant), crop offsets and alpha
//!   handling included — batched as [`PixelBatch`] → `Tensor<4>`.
//!
//! - **Data sets** ([`dataset`]): image folders, CoOp `split_zhou_*.json` splits and
//!   image-caption lists as Burn `Dataset`s, a validation pass that reports (and optionally
//!   skips) missing or unreadable images, decoding on the loader's workers, and the JSON
//!   [`Manifest`] of the files a run used.
//! - **Sampling** ([`sampling`]): seeded few-shot subsets (shortfalls reported) and CoOp's
//!   base/novel class split.
//! - **The synthetic world** ([`synthetic`]): a deterministic procedural generator of small
//!   images with captions, classification tasks over its attributes and a held-out split of
//!   shape-colour combinations.
//!
//! - **Augmentation** ([`augment`]): seeded random resized crop, flip, colour jitter and
//!   greyscale, with weak/strong view pairs for pseudo-labelling methods.
//! - **Batchers** ([`batcher`]): Burn `Batcher`s ([`ImageBatcher`], [`CaptionBatcher`]) that
//!   augment (seeded per run seed, epoch and item), preprocess and stack decoded items into
//!   tensors on the data loader's workers.
//! - **Tokenizer training** ([`tokenizer_train`]): a CLIP-shaped byte-level BPE tokenizer
//!   trained on a corpus ([`train_clip_tokenizer`]) and saved as a `tokenizer.json`
//!   ([`save_tokenizer`]) that [`ClipTokenizer`] and transformers' `CLIPTokenizerFast` load.
//!
//! ```no_run
//! use burn::prelude::Device;
//! use vl_data::{ClipTokenizer, ImagePreprocessor, PreprocessConfig};
//!
//! # fn main() -> vl_data::Result<()> {
//! let device = Device::flex();
//! let tokenizer = ClipTokenizer::from_dir("clip-vit-base-patch32")?;
//! let text = tokenizer.encode_batch(&["a photo of a cat", "a photo of a dog"])?;
//! let ids = text.to_tensor(&device); // [2, 77]
//!
//! let config = PreprocessConfig::from_hf_file("clip-vit-base-patch32/preprocessor_config.json")?;
//! let preprocessor = ImagePreprocessor::new(config)?;
//! let pixels = preprocessor.preprocess_files(&["cat.jpg", "dog.png"])?.to_tensor(&device);
//! # let _ = (ids, pixels);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod atomic;
pub mod augment;
pub mod batcher;
pub mod dataset;
mod error;
pub mod image;
mod json;
pub mod preprocess;
mod resize;
pub mod rng;
pub mod sampling;
pub mod synthetic;
pub mod tokenizer;
pub mod tokenizer_train;

pub use crate::atomic::{Overwrite, write_atomic};
pub use crate::batcher::{CaptionBatch, CaptionBatcher, ImageBatch, ImageBatcher, SharedEpoch};
pub use crate::dataset::{
    BadImagePolicy, CaptionedImage, Captions, CoopSplit, ImageFolder, LabeledImage, Manifest,
    Split, ValidateImages, ValidationReport,
};
pub use crate::error::{Error, Result};
pub use crate::image::{AlphaHandling, decode_image, load_dynamic_image, load_image, to_rgb};
pub use crate::preprocess::{
    CropRule, ImagePreprocessor, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PixelBatch, PreprocessConfig,
    Reference, ResizeMode,
};
pub use crate::resize::{Resample, ResizeEngine};
pub use crate::sampling::{BaseNovel, FewShot, base_novel_split, few_shot};
pub use crate::tokenizer::{ClipTokenizer, Padding, TokenBatch};
pub use crate::tokenizer_train::{TokenizerTrainConfig, save_tokenizer, train_clip_tokenizer};
