//! Data for pretraining on the synthetic world: image-caption pairs drawn fresh every epoch,
//! held-out classification images for zero-shot evaluation, the batchers that turn them into
//! tensors, and [`EpochLoader`], the data loader that makes an epoch's data a pure function of
//! `(seed, epoch)`.
//!
//! Why a loader of our own: Burn's `DataLoaderBuilder` reshuffles from an RNG that advances once
//! per epoch and restarts from its seed when burn-train moves the loader to the training device,
//! so a run resumed at epoch `e` would not see the data an uninterrupted run sees at epoch `e`.
//! [`EpochLoader`] wraps a Burn multi-thread loader (one worker: batches arrive in order, and the
//! worker renders images while the model trains) over [`PretrainStream`], whose item `i` in epoch
//! `e` is pretraining sample `(e - 1) * items_per_epoch + i` of the world. The current epoch lives
//! in a shared counter that [`EpochLoader::iter`] advances before each pass; a resumed run starts
//! it at the resumed epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder, DataLoaderIterator};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use vl_data::synthetic::{Split, SyntheticWorld, Task};
use vl_data::{ClipTokenizer, ImagePreprocessor};

/// One pretraining pair: the rendered, preprocessed image and its caption.
#[derive(Debug, Clone)]
pub struct PairItem {
    /// `[3, size, size]` normalised pixels.
    pub pixels: Vec<f32>,
    /// The caption.
    pub caption: String,
}

/// The pretraining stream: `items_per_epoch` fresh pairs per epoch, read from the epoch counter.
///
/// With colour groups (`g > 0`), batch `b` of epoch `e` picks `g` distinct colours from
/// `hash(seed, e, b)` and its item at position `p` is the first of 64 candidate samples reserved
/// for that item whose (first) object has colour number `p mod g` of the batch: a batch then holds
/// about `batch_size / g` images per colour, so most in-batch negatives share the positive
/// caption's colour and only shape, size or background tell them apart. (With i.i.d. batches
/// colour alone separates 7 in 8 negatives and the model is slow to learn shape.)
///
/// With shape variants (`v > 1`), items `g * v .. (g + 1) * v` of an epoch are counterfactual
/// twins ([`SyntheticWorld::shape_variant_in`]) of one pretraining sample: item `g * v` is the
/// sample itself and the others replace the shape of one of its objects (picked by a hash) with
/// distinct other shapes allowed for its colour, in a hashed order. Should a scene allow fewer
/// than `v` shapes, the missing twins are unrelated samples from a separate index range.
#[derive(Clone)]
pub struct PretrainStream {
    world: Arc<SyntheticWorld>,
    preprocessor: Arc<ImagePreprocessor>,
    items_per_epoch: usize,
    epoch: Arc<AtomicUsize>,
    batch_size: usize,
    colour_groups: usize,
    shape_variants: usize,
}

/// What item `i` of an epoch is: a plain sample, or a shape variant of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// `world.sample_in(Split::Pretrain, index)`.
    Sample(u64),
    /// `world.shape_variant_in(Split::Pretrain, index, slot, shape)`.
    Variant {
        /// World index of the scene.
        index: u64,
        /// The object whose shape changes.
        slot: usize,
        /// The new shape's index.
        shape: usize,
    },
}

/// Where the fill-in samples of groups short of shape variants start (far beyond any epoch).
const FILL_IN_OFFSET: u64 = 1 << 48;

/// Candidate samples scanned per item for a colour (a miss has probability (7/8)^64 ≈ 2e-4 with
/// 8 colours; the first candidate is used then).
const COLOUR_CANDIDATES: u64 = 64;

/// SplitMix64 finaliser.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl PretrainStream {
    /// A stream over `world`'s pretraining split; `epoch` is shared with the [`EpochLoader`].
    pub fn new(
        world: Arc<SyntheticWorld>,
        preprocessor: Arc<ImagePreprocessor>,
        items_per_epoch: usize,
        epoch: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            world,
            preprocessor,
            items_per_epoch,
            epoch,
            batch_size: 1,
            colour_groups: 0,
            shape_variants: 0,
        }
    }

    /// Builds batches from groups of `variants` counterfactual shape twins (0 or 1: off).
    #[must_use]
    pub fn with_shape_variants(mut self, variants: usize) -> Self {
        self.shape_variants = variants;
        self
    }

    /// What item `index` of (1-based) `epoch` is.
    pub fn draw(&self, epoch: usize, index: usize) -> Draw {
        let v = self.shape_variants;
        if v <= 1 {
            return Draw::Sample(self.sample_index(epoch, index));
        }
        let groups_per_epoch = self.items_per_epoch.div_ceil(v) as u64;
        let group = (index / v) as u64;
        let member = index % v;
        let scene = epoch.saturating_sub(1) as u64 * groups_per_epoch + group;
        if member == 0 {
            return Draw::Sample(scene);
        }
        let objects = self.world.objects_in(Split::Pretrain, scene);
        let mut state = mix64(self.world.config().seed ^ mix64(scene ^ 0x5EED_5A4E));
        let slot = (state % objects.len().max(1) as u64) as usize;
        let Some(object) = objects.get(slot) else {
            return Draw::Sample(FILL_IN_OFFSET + scene * v as u64 + member as u64);
        };
        let mut shapes: Vec<usize> = (0..self.world.config().shapes.len())
            .filter(|&s| {
                s != object.shape_index
                    && !self
                        .world
                        .is_held_out(self.world.config().shapes[s], &object.colour)
                    && !objects.iter().enumerate().any(|(i, o)| {
                        i != slot && o.shape_index == s && o.colour_index == object.colour_index
                    })
            })
            .collect();
        for i in 0..shapes.len() {
            state = mix64(state);
            let j = i + (state % (shapes.len() - i) as u64) as usize;
            shapes.swap(i, j);
        }
        match shapes.get(member - 1) {
            Some(&shape) => Draw::Variant {
                index: scene,
                slot,
                shape,
            },
            None => Draw::Sample(FILL_IN_OFFSET + scene * v as u64 + member as u64),
        }
    }

    /// Draws each batch of `batch_size` from `groups` colours (0: i.i.d. batches).
    #[must_use]
    pub fn with_colour_groups(mut self, batch_size: usize, groups: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self.colour_groups = groups;
        self
    }

    /// The world index of item `index` of (1-based) `epoch`.
    pub fn sample_index(&self, epoch: usize, index: usize) -> u64 {
        let base = (epoch.saturating_sub(1) * self.items_per_epoch + index) as u64;
        let n_colours = self.world.config().colours.len();
        if self.colour_groups == 0 || n_colours == 0 {
            return base;
        }
        let batch = (index / self.batch_size) as u64;
        let mut state = mix64(self.world.config().seed ^ mix64((epoch as u64) << 32 ^ batch));
        let mut colours: Vec<usize> = (0..n_colours).collect();
        let groups = self.colour_groups.min(n_colours);
        for i in 0..groups {
            state = mix64(state);
            let j = i + (state % (n_colours - i) as u64) as usize;
            colours.swap(i, j);
        }
        let want = colours[(index % self.batch_size) % groups];
        let first = base * COLOUR_CANDIDATES;
        (first..first + COLOUR_CANDIDATES)
            .find(|&j| {
                self.world
                    .objects_in(Split::Pretrain, j)
                    .first()
                    .is_some_and(|o| o.colour_index == want)
            })
            .unwrap_or(first)
    }
}

impl Dataset<PairItem> for PretrainStream {
    fn get(&self, index: usize) -> Result<PairItem, burn::data::dataset::DatasetError> {
        if index >= self.items_per_epoch {
            return Err(burn::data::dataset::DatasetError::new(
                std::io::Error::other(format!(
                    "pretraining item {index} requested, an epoch has {}",
                    self.items_per_epoch
                )),
            ));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let sample = match self.draw(epoch, index) {
            Draw::Sample(i) => self.world.sample_in(Split::Pretrain, i),
            Draw::Variant { index, slot, shape } => self
                .world
                .shape_variant_in(Split::Pretrain, index, slot, shape)
                .ok_or_else(|| {
                    burn::data::dataset::DatasetError::new(std::io::Error::other(format!(
                        "shape variant {shape} of object {slot} of sample {index} is not allowed"
                    )))
                })?,
        };
        Ok(PairItem {
            pixels: self.preprocessor.preprocess(&sample.image),
            caption: sample.caption,
        })
    }

    fn len(&self) -> usize {
        self.items_per_epoch
    }
}

/// A data loader whose pass `k` (counting from the start epoch) serves epoch `start + k`.
pub struct EpochLoader<O> {
    inner: Arc<dyn DataLoader<O>>,
    epoch: Arc<AtomicUsize>,
}

impl<O> EpochLoader<O> {
    /// Wraps `inner`, a loader over a data set that reads `epoch`.
    pub fn new(inner: Arc<dyn DataLoader<O>>, epoch: Arc<AtomicUsize>) -> Self {
        Self { inner, epoch }
    }
}

impl<O: Send + Sync + 'static> DataLoader<O> for EpochLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        // The worker reads the counter only after `inner.iter()` hands it the new pass, and the
        // previous pass was consumed to the end, so no item of one epoch sees another's number.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.iter()
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            inner: self.inner.to_device(device),
            epoch: Arc::clone(&self.epoch),
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            inner: self.inner.slice(start, end),
            epoch: Arc::clone(&self.epoch),
        })
    }
}

/// The training loader: pass 1 serves epoch `start_epoch`.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_loader(
    world: Arc<SyntheticWorld>,
    preprocessor: Arc<ImagePreprocessor>,
    tokenizer: Arc<ClipTokenizer>,
    batch_size: usize,
    steps_per_epoch: usize,
    start_epoch: usize,
    num_workers: usize,
    colour_groups: usize,
    shape_variants: usize,
    device: &Device,
) -> Arc<dyn DataLoader<PairBatch>> {
    let epoch = Arc::new(AtomicUsize::new(start_epoch.saturating_sub(1)));
    let stream = PretrainStream::new(
        world,
        preprocessor,
        batch_size * steps_per_epoch,
        Arc::clone(&epoch),
    )
    .with_colour_groups(batch_size, colour_groups)
    .with_shape_variants(shape_variants);
    let inner = DataLoaderBuilder::new(PairBatcher::new(tokenizer))
        .batch_size(batch_size)
        .num_workers(num_workers)
        .set_device(device.clone())
        .build(stream);
    Arc::new(EpochLoader::new(inner, epoch))
}

/// A batch of pairs.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// `[n, 3, size, size]`.
    pub pixel_values: Tensor<4>,
    /// `[n, seq]` token ids, trimmed to the longest caption of the batch (end-of-text included).
    pub input_ids: Tensor<2, Int>,
}

/// Stacks [`PairItem`]s, tokenising the captions.
#[derive(Clone)]
pub struct PairBatcher {
    tokenizer: Arc<ClipTokenizer>,
}

impl PairBatcher {
    /// A batcher tokenising with `tokenizer`.
    pub fn new(tokenizer: Arc<ClipTokenizer>) -> Self {
        Self { tokenizer }
    }
}

impl Batcher<PairItem, PairBatch> for PairBatcher {
    fn batch(&self, items: Vec<PairItem>, device: &Device) -> PairBatch {
        let n = items.len();
        let per_image = items.first().map_or(0, |i| i.pixels.len());
        let side = ((per_image / 3) as f64).sqrt() as usize;
        let mut pixels = Vec::with_capacity(n * per_image);
        for item in &items {
            pixels.extend_from_slice(&item.pixels);
        }
        let captions: Vec<&str> = items.iter().map(|i| i.caption.as_str()).collect();
        let (ids, seq) = tokenize_trimmed(&self.tokenizer, &captions);
        PairBatch {
            pixel_values: Tensor::from_data(TensorData::new(pixels, [n, 3, side, side]), device),
            input_ids: Tensor::from_data(TensorData::new(ids, [n, seq]), device),
        }
    }
}

/// Tokenises `texts` and trims every row to the longest `sot … eot` of the batch. The world's
/// captions come from a fixed grammar, so encoding cannot fail; a failure would be a bug in the
/// tokenizer file this run itself trained, and yields an end-of-text-only row.
pub fn tokenize_trimmed(tokenizer: &ClipTokenizer, texts: &[&str]) -> (Vec<i64>, usize) {
    let context = tokenizer.context_length();
    let eot = i64::from(tokenizer.eot_id());
    let rows: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| {
            tokenizer.encode(t).unwrap_or_else(|_| {
                let mut row = vec![eot; context];
                row[0] = i64::from(tokenizer.sot_id());
                row
            })
        })
        .collect();
    let seq = rows
        .iter()
        .map(|r| {
            r.iter()
                .skip(1)
                .position(|&id| id == eot)
                .map_or(context, |p| p + 2)
        })
        .max()
        .unwrap_or(2);
    let ids = rows.iter().flat_map(|r| r[..seq].iter().copied()).collect();
    (ids, seq)
}

/// One labelled evaluation image (a one-object image).
#[derive(Debug, Clone)]
pub struct LabelledItem {
    /// `[3, size, size]` normalised pixels.
    pub pixels: Vec<f32>,
    /// Shape label.
    pub shape: usize,
    /// Colour label.
    pub colour: usize,
}

/// The first `n` one-object images of `split`, rendered and preprocessed once.
pub fn labelled_images(
    world: &SyntheticWorld,
    preprocessor: &ImagePreprocessor,
    split: Split,
    n: usize,
) -> vl_data::Result<Vec<LabelledItem>> {
    let shapes = world.classification_set(Task::Shape, split, n)?;
    Ok(shapes
        .into_iter()
        .map(|(index, shape)| {
            let sample = world.sample_in(split, index);
            LabelledItem {
                pixels: preprocessor.preprocess(&sample.image),
                shape,
                colour: sample.objects[0].colour_index,
            }
        })
        .collect())
}

/// A batch of labelled images.
#[derive(Debug, Clone)]
pub struct LabelledBatch {
    /// `[n, 3, size, size]`.
    pub pixel_values: Tensor<4>,
    /// `[n]` shape labels.
    pub shapes: Tensor<1, Int>,
    /// `[n]` colour labels.
    pub colours: Tensor<1, Int>,
}

/// Stacks [`LabelledItem`]s.
#[derive(Clone, Default)]
pub struct LabelledBatcher;

impl Batcher<LabelledItem, LabelledBatch> for LabelledBatcher {
    fn batch(&self, items: Vec<LabelledItem>, device: &Device) -> LabelledBatch {
        let n = items.len();
        let per_image = items.first().map_or(0, |i| i.pixels.len());
        let side = ((per_image / 3) as f64).sqrt() as usize;
        let mut pixels = Vec::with_capacity(n * per_image);
        for item in &items {
            pixels.extend_from_slice(&item.pixels);
        }
        let labels = |f: fn(&LabelledItem) -> usize| {
            let v: Vec<i64> = items.iter().map(|i| f(i) as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        LabelledBatch {
            pixel_values: Tensor::from_data(TensorData::new(pixels, [n, 3, side, side]), device),
            shapes: labels(|i| i.shape),
            colours: labels(|i| i.colour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PretrainConfig;

    fn stream(variants: usize) -> PretrainStream {
        let config = PretrainConfig::default();
        let world = Arc::new(SyntheticWorld::new(config.world_config()).expect("valid world"));
        let preprocessor = Arc::new(
            ImagePreprocessor::new(vl_data::PreprocessConfig::clip(config.world.image_size))
                .expect("valid preprocessing"),
        );
        PretrainStream::new(world, preprocessor, 64, Arc::new(AtomicUsize::new(1)))
            .with_shape_variants(variants)
    }

    #[test]
    fn shape_variant_groups_differ_only_in_one_shape_and_are_reproducible() {
        let s = stream(4);
        let world = Arc::clone(&s.world);
        let mut seen_variants = 0;
        for group in 0..16 {
            let draws: Vec<Draw> = (0..4).map(|m| s.draw(2, group * 4 + m)).collect();
            assert_eq!(
                draws,
                (0..4).map(|m| s.draw(2, group * 4 + m)).collect::<Vec<_>>()
            );
            let Draw::Sample(scene) = draws[0] else {
                panic!("the first member of a group is the scene itself");
            };
            let base = world.objects_in(Split::Pretrain, scene);
            let mut shapes = vec![];
            for draw in &draws[1..] {
                match *draw {
                    Draw::Variant { index, slot, shape } => {
                        seen_variants += 1;
                        assert_eq!(index, scene);
                        let v = world
                            .shape_variant_in(Split::Pretrain, index, slot, shape)
                            .expect("drawn variants are allowed");
                        assert_ne!(shape, base[slot].shape_index);
                        assert!(!shapes.contains(&shape), "distinct shapes in a group");
                        shapes.push(shape);
                        assert_eq!(v.objects[slot].colour, base[slot].colour);
                    }
                    Draw::Sample(i) => assert!(i >= FILL_IN_OFFSET),
                }
            }
        }
        assert!(
            seen_variants >= 40,
            "{seen_variants} variants in 16 groups of 4"
        );
        // Another epoch draws other scenes.
        assert_ne!(s.draw(2, 0), s.draw(3, 0));
        // Off: plain consecutive samples.
        assert_eq!(stream(0).draw(2, 5), Draw::Sample(64 + 5));
    }
}
