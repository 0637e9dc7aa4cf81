//! Burn [`Batcher`]s that turn decoded data-set items into tensors: [`ImageBatcher`]
//! ([`LoadedImage`]`<`[`LabeledImage`]`>` → [`ImageBatch`]: pixels and labels) and
//! [`CaptionBatcher`] ([`LoadedImage`]`<`[`TokenizedCaption`]`>` → [`CaptionBatch`]: pixels and
//! token ids), for Burn's `DataLoaderBuilder` with worker threads, so that decoding,
//! augmentation and preprocessing overlap the training step.
//!
//! ```no_run
//! use burn::data::dataloader::DataLoaderBuilder;
//! use vl_data::augment::AugmentConfig;
//! use vl_data::dataset::{DecodeImages, ImageFolder, ImageFolderOptions};
//! use vl_data::{ImageBatcher, ImagePreprocessor, PreprocessConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let folder = ImageFolder::open("train", &ImageFolderOptions::default())?;
//! let preprocessor = ImagePreprocessor::new(PreprocessConfig::clip(224))?;
//! let batcher = ImageBatcher::new(preprocessor, Some(AugmentConfig::weak(224, 224)), 42)?;
//! let epoch = batcher.epoch().clone(); // keep a handle: the builder takes the batcher
//! let loader = DataLoaderBuilder::new(batcher)
//!     .batch_size(64)
//!     .shuffle(42)
//!     .num_workers(4)
//!     .build(DecodeImages::new(folder));
//! for e in 0..10 {
//!     epoch.set(e); // before `iter()`, which starts the workers
//!     for batch in loader.iter() {
//!         let batch = batch?; // a file that cannot be decoded, named
//!         let (_pixels, _labels) = (batch.pixel_values, batch.labels); // [64, 3, 224, 224], [64]
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! **Errors.** Burn's `Batcher::batch` cannot return an error, so everything that can fail
//! happens before it, in the data set's `get`: [`DecodeImages`] decodes the image (a missing or
//! unreadable file is a `DatasetError` naming it) and [`TokenizeCaptions`] tokenizes the caption.
//! The data loader hands those errors to the consumer (Burn 0.22.1: a single-threaded loader
//! then repeats the same error on every `next`, and a worker of a multi-threaded one stops its
//! share of the epoch, so stop at the first error, or validate the data set first with
//! [`BadImagePolicy::Skip`](crate::dataset::BadImagePolicy::Skip)). The batch step itself cannot
//! fail: the constructors validate the augmentation and check that every image comes out at one
//! size, so stacking never meets a mismatch.
//!
//! [`DecodeImages`]: crate::dataset::DecodeImages
//! [`TokenizeCaptions`]: crate::dataset::TokenizeCaptions
//!
//! **Seeding.** With augmentation, item `index` (its position in the data set that
//! [`DecodeImages`] wraps, [`LoadedImage::index`], unchanged by the loader's shuffling) in epoch
//! `e` of a run seeded with `seed` is augmented with
//! [`sample_seed`]`(seed, e, index)`, so a run is reproducible whatever the number of workers,
//! the batch size or the order. Burn's batcher is not told the epoch: it is read from the
//! batcher's [`SharedEpoch`] when each batch is made. Set it before calling the loader's `iter()`
//! (the workers start batching ahead at that call) and leave it alone until that iterator is
//! exhausted or dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::{Device, Int, Tensor, TensorData};
use image::RgbImage;

use crate::augment::{AugmentConfig, sample_seed};
use crate::dataset::{LabeledImage, LoadedImage, TokenizedCaption};
use crate::error::{Error, Result};
use crate::preprocess::{ImagePreprocessor, ResizeMode};
use crate::tokenizer::ClipTokenizer;

/// The current epoch, shared between the training loop and the batchers on the loader's workers
/// (clones share one value). Default: epoch 0.
#[derive(Debug, Clone, Default)]
pub struct SharedEpoch(Arc<AtomicU64>);

impl SharedEpoch {
    /// A new counter at `epoch`.
    pub fn new(epoch: u64) -> Self {
        Self(Arc::new(AtomicU64::new(epoch)))
    }

    /// The current epoch.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the epoch for the batches made from now on.
    pub fn set(&self, epoch: u64) {
        self.0.store(epoch, Ordering::SeqCst);
    }
}

/// A batch of labelled images.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// Preprocessed pixels, `[n, 3, height, width]`.
    pub pixel_values: Tensor<4>,
    /// Class labels, `[n]`.
    pub labels: Tensor<1, Int>,
    /// Each item's index in the data set ([`LoadedImage::index`]), in batch order.
    pub indices: Vec<usize>,
}

/// A batch of captioned images.
#[derive(Debug, Clone)]
pub struct CaptionBatch {
    /// Preprocessed pixels, `[n, 3, height, width]`.
    pub pixel_values: Tensor<4>,
    /// Caption token ids, `[n, context_length]`.
    pub input_ids: Tensor<2, Int>,
    /// Each item's index in the data set ([`LoadedImage::index`]), in batch order.
    pub indices: Vec<usize>,
}

/// Optional seeded augmentation, then [`ImagePreprocessor`], for every image of a batch; see
/// the module docs for error handling and seeding.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    preprocessor: ImagePreprocessor,
    augment: Option<AugmentConfig>,
    seed: u64,
    epoch: SharedEpoch,
    /// `(height, width)` of every output image.
    size: (u32, u32),
}

impl ImageBatcher {
    /// A batcher that runs `augment` (if any; seeded from `seed`, see the module docs) on each
    /// decoded image and then `preprocessor`. Its epoch counter starts at 0 ([`Self::epoch`]).
    ///
    /// Errors: an invalid `augment` ([`AugmentConfig::validate`]), or a combination whose output
    /// size depends on the input (no augmentation crop, and a preprocessor with neither center
    /// cropping nor an exact resize), which could not be stacked into one tensor.
    pub fn new(
        preprocessor: ImagePreprocessor,
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        if let Some(augment) = &augment {
            augment.validate()?;
        }
        let config = preprocessor.config();
        let fixed = config.do_center_crop
            || (config.do_resize && matches!(config.resize_mode, ResizeMode::Exact { .. }));
        let size = match augment.as_ref().and_then(|a| a.crop.as_ref()) {
            Some(crop) => preprocessor.output_size(crop.size.0.max(1), crop.size.1.max(1)),
            None if fixed => preprocessor.output_size(1, 1),
            None => {
                return Err(Error::InvalidSetting {
                    setting: "do_center_crop",
                    expected: "center cropping, an exact resize or an augmentation crop, so that \
                               all images of a batch have one size"
                        .to_owned(),
                    found: format!(
                        "no center crop, resize mode {:?}{}",
                        config.resize_mode,
                        if config.do_resize {
                            ""
                        } else {
                            " (resize off)"
                        }
                    ),
                });
            }
        };
        Ok(Self {
            preprocessor,
            augment,
            seed,
            epoch: SharedEpoch::default(),
            size,
        })
    }

    /// Uses `epoch` as the epoch counter (e.g. one shared by several batchers).
    #[must_use]
    pub fn with_epoch(mut self, epoch: SharedEpoch) -> Self {
        self.epoch = epoch;
        self
    }

    /// The epoch counter; clone it before handing the batcher to a `DataLoaderBuilder`.
    pub fn epoch(&self) -> &SharedEpoch {
        &self.epoch
    }

    /// The preprocessor.
    pub fn preprocessor(&self) -> &ImagePreprocessor {
        &self.preprocessor
    }

    /// The augmentation, if any.
    pub fn augment(&self) -> Option<&AugmentConfig> {
        self.augment.as_ref()
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// `(height, width)` of every output image.
    pub fn output_size(&self) -> (u32, u32) {
        self.size
    }

    /// The `[3, height, width]` pixels of item `index` in `epoch`: the augmentation seeded with
    /// [`sample_seed`]`(seed, epoch, index)` (without augmentation, `index` and `epoch` do not
    /// matter), then the preprocessor.
    pub fn pixels(&self, image: &RgbImage, index: usize, epoch: u64) -> Vec<f32> {
        let mut pixels = match &self.augment {
            Some(augment) => {
                let seed = sample_seed(self.seed, epoch, index as u64);
                self.preprocessor.preprocess(&augment.apply(image, seed))
            }
            None => self.preprocessor.preprocess(image),
        };
        // `new` made sure every output has `size`; keep the batch rectangular regardless.
        let len = 3 * self.size.0 as usize * self.size.1 as usize;
        debug_assert_eq!(
            pixels.len(),
            len,
            "preprocessed image of an unexpected size"
        );
        pixels.resize(len, 0.0);
        pixels
    }

    /// `[n, 3, height, width]` pixels of `images` (image, data-set index), at the current epoch.
    fn pixel_tensor<'a>(
        &self,
        images: impl ExactSizeIterator<Item = (&'a RgbImage, usize)>,
        device: &Device,
    ) -> Tensor<4> {
        let epoch = self.epoch.get();
        let n = images.len();
        let (h, w) = (self.size.0 as usize, self.size.1 as usize);
        let mut data = Vec::with_capacity(n * 3 * h * w);
        for (image, index) in images {
            data.extend(self.pixels(image, index, epoch));
        }
        Tensor::from_data(TensorData::new(data, [n, 3, h, w]), device)
    }
}

/// Labels are class indices, far below `i64::MAX`; saturate rather than wrap regardless.
fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Batcher<LoadedImage<LabeledImage>, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<LoadedImage<LabeledImage>>, device: &Device) -> ImageBatch {
        let pixel_values = self.pixel_tensor(
            items.iter().map(|loaded| (&loaded.image, loaded.index)),
            device,
        );
        let labels: Vec<i64> = items
            .iter()
            .map(|loaded| to_i64(loaded.item.label))
            .collect();
        let n = labels.len();
        ImageBatch {
            pixel_values,
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
            indices: items.iter().map(|loaded| loaded.index).collect(),
        }
    }
}

/// Pixels as [`ImageBatcher`] makes them, plus the caption ids that
/// [`TokenizeCaptions`](crate::dataset::TokenizeCaptions) put into each item.
#[derive(Debug, Clone)]
pub struct CaptionBatcher {
    images: ImageBatcher,
    context_length: usize,
    pad_id: i64,
}

impl CaptionBatcher {
    /// A batcher making pixels with `images` and id rows of `tokenizer`'s context length.
    ///
    /// Use the tokenizer that the [`TokenizeCaptions`](crate::dataset::TokenizeCaptions) data
    /// set uses: rows of another length
    /// are cut, or padded with `tokenizer`'s padding id, to its context length (the batch step
    /// cannot fail, see the module docs).
    pub fn new(images: ImageBatcher, tokenizer: &ClipTokenizer) -> Self {
        Self {
            images,
            context_length: tokenizer.context_length(),
            pad_id: i64::from(tokenizer.pad_id()),
        }
    }

    /// The image part (with the epoch counter, [`ImageBatcher::epoch`]).
    pub fn images(&self) -> &ImageBatcher {
        &self.images
    }

    /// Ids per caption row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }
}

impl Batcher<LoadedImage<TokenizedCaption>, CaptionBatch> for CaptionBatcher {
    fn batch(&self, items: Vec<LoadedImage<TokenizedCaption>>, device: &Device) -> CaptionBatch {
        let pixel_values = self.images.pixel_tensor(
            items.iter().map(|loaded| (&loaded.image, loaded.index)),
            device,
        );
        let n = items.len();
        let mut ids = Vec::with_capacity(n * self.context_length);
        for loaded in &items {
            let row = &loaded.item.input_ids;
            let kept = row.len().min(self.context_length);
            ids.extend_from_slice(&row[..kept]);
            ids.resize(ids.len() + self.context_length - kept, self.pad_id);
        }
        CaptionBatch {
            pixel_values,
            input_ids: Tensor::from_data(TensorData::new(ids, [n, self.context_length]), device),
            indices: items.iter().map(|loaded| loaded.index).collect(),
        }
    }
}
