//! Seeded training-time augmentation on [`RgbImage`]: random resized crops, horizontal flips,
//! colour jitter and random greyscale, combined into FixMatch-style weak and strong views.
//!
//! References:
//! - torchvision `RandomResizedCrop`, `RandomHorizontalFlip`, `ColorJitter` and `RandomGrayscale`
//!   ([`transforms.py`](https://github.com/pytorch/vision/blob/main/torchvision/transforms/transforms.py),
//!   colour arithmetic in
//!   [`_functional_tensor.py`](https://github.com/pytorch/vision/blob/main/torchvision/transforms/_functional_tensor.py));
//! - FixMatch's weak (flip and crop) and strong augmentation, Sohn et al. 2020,
//!   [arXiv:2001.07685](https://arxiv.org/abs/2001.07685).
//!
//! Every transform is a pure function of `(config, image, seed)`: randomness comes from the
//! crate's SplitMix64 generator, so the same seed and input give the same bytes on every machine
//! (colour arithmetic uses only IEEE basic operations; the crop sampler uses `ln`/`exp` from
//! `std`, as torchvision does, and rounds the results to whole pixels). Derive one seed per
//! sample with [`sample_seed`]`(run_seed, epoch, index)`.
//!
//! Differences from torchvision: the crop is resized with the crate's port of Pillow's
//! resampler ([`Resample::Bilinear`] by default, torchvision's default interpolation), and colour
//! operations round to the nearest byte where torchvision truncates.

use image::RgbImage;

use crate::error::{Error, Result};
use crate::resize::{Resample, ResizeEngine, resize_u8};
use crate::synthetic::rng::{SplitMix64, hash3};

/// Stream tags for [`hash3`], so the sub-streams of one seed never coincide.
const STREAM_SAMPLE: u64 = 0xA06_0001;
const STREAM_WEAK: u64 = 0xA06_0002;
const STREAM_STRONG: u64 = 0xA06_0003;

/// The seed of sample `index` in `epoch` of a run seeded with `run_seed`.
pub fn sample_seed(run_seed: u64, epoch: u64, index: u64) -> u64 {
    hash3(hash3(run_seed, STREAM_SAMPLE, epoch), STREAM_SAMPLE, index)
}

/// A uniform `f64` in `[lo, hi)` with 53 random bits; `lo` when the range is empty.
fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    if hi <= lo { lo } else { lo + (hi - lo) * unit }
}

/// `true` with probability `p` (`p <= 0` never, `p >= 1` always; one draw either way).
fn bernoulli(rng: &mut SplitMix64, p: f64) -> bool {
    uniform(rng, 0.0, 1.0) < p
}

/// A crop rectangle in pixels, inside the image it was sampled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Height in rows (at least 1 for a non-empty image).
    pub height: u32,
    /// Width in columns (at least 1 for a non-empty image).
    pub width: u32,
}

/// torchvision `RandomResizedCrop`: a random box of random area and aspect ratio, resized to
/// [`Self::size`].
#[derive(Debug, Clone, PartialEq)]
pub struct RandomResizedCropConfig {
    /// Range of the box area as a fraction of the image area. Default `(0.08, 1.0)`.
    pub scale: (f64, f64),
    /// Range of the box aspect ratio `width / height`, sampled log-uniformly. Default
    /// `(3/4, 4/3)`.
    pub ratio: (f64, f64),
    /// Output `(height, width)`. Default `(224, 224)`.
    pub size: (u32, u32),
    /// Resampling filter for the resize. Default [`Resample::Bilinear`] (torchvision's default).
    pub resample: Resample,
}

impl Default for RandomResizedCropConfig {
    fn default() -> Self {
        Self {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            size: (224, 224),
            resample: Resample::Bilinear,
        }
    }
}

impl RandomResizedCropConfig {
    /// The default config with output size `(height, width)`.
    pub fn with_size(height: u32, width: u32) -> Self {
        Self {
            size: (height, width),
            ..Self::default()
        }
    }

    /// Checks that the output size is non-zero and the ranges are finite, positive and ordered.
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &'static str, expected: &str, found: String| Error::InvalidSetting {
            setting,
            expected: expected.to_owned(),
            found,
        };
        if self.size.0 == 0 || self.size.1 == 0 {
            return Err(bad("size", "a positive size", format!("{:?}", self.size)));
        }
        let ok = |(lo, hi): (f64, f64)| lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi;
        if !ok(self.scale) {
            return Err(bad(
                "scale",
                "0 < lo <= hi, finite",
                format!("{:?}", self.scale),
            ));
        }
        if !ok(self.ratio) {
            return Err(bad(
                "ratio",
                "0 < lo <= hi, finite",
                format!("{:?}", self.ratio),
            ));
        }
        Ok(())
    }

    /// The crop box for a `width x height` image, drawn from `seed`.
    pub fn sample_box(&self, width: u32, height: u32, seed: u64) -> CropBox {
        self.sample_box_with(width, height, &mut SplitMix64::new(seed))
    }

    /// torchvision's `RandomResizedCrop.get_params`: ten tries of area / log-ratio sampling,
    /// then the central crop clamped to the ratio range.
    pub(crate) fn sample_box_with(&self, width: u32, height: u32, rng: &mut SplitMix64) -> CropBox {
        if width == 0 || height == 0 {
            return CropBox {
                top: 0,
                left: 0,
                height,
                width,
            };
        }
        let (wf, hf) = (f64::from(width), f64::from(height));
        let area = wf * hf;
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, log_lo, log_hi).exp();
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if w > 0.0 && w <= wf && h > 0.0 && h <= hf {
                let (w, h) = (w as u32, h as u32);
                let top = rng.below((height - h + 1) as usize) as u32;
                let left = rng.below((width - w + 1) as usize) as u32;
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        let in_ratio = wf / hf;
        let (lo, hi) = (
            self.ratio.0.min(self.ratio.1),
            self.ratio.0.max(self.ratio.1),
        );
        let (w, h) = if in_ratio < lo {
            (wf, (wf / lo).round_ties_even())
        } else if in_ratio > hi {
            ((hf * hi).round_ties_even(), hf)
        } else {
            (wf, hf)
        };
        // Guard against NaN ratios and rounding: keep the box non-empty and inside.
        let w = (w as u32).clamp(1, width);
        let h = (h as u32).clamp(1, height);
        CropBox {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }

    /// Crops a random box and resizes it to [`Self::size`] (a zero size counts as 1).
    pub fn apply(&self, image: &RgbImage, seed: u64) -> RgbImage {
        self.apply_with(image, &mut SplitMix64::new(seed))
    }

    pub(crate) fn apply_with(&self, image: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let b = self.sample_box_with(image.width(), image.height(), rng);
        let (out_h, out_w) = (self.size.0.max(1), self.size.1.max(1));
        if b.width == 0 || b.height == 0 {
            return RgbImage::new(out_w, out_h);
        }
        let crop = image::imageops::crop_imm(image, b.left, b.top, b.width, b.height).to_image();
        let pixels = resize_u8(
            crop.as_raw(),
            b.width as usize,
            b.height as usize,
            3,
            out_w as usize,
            out_h as usize,
            self.resample,
            ResizeEngine::Pillow,
        );
        RgbImage::from_raw(out_w, out_h, pixels).unwrap_or_else(|| RgbImage::new(out_w, out_h))
    }
}

/// torchvision `RandomHorizontalFlip(p)`: mirrors the image left-right with probability `p`.
pub fn horizontal_flip(image: &RgbImage, p: f64, seed: u64) -> RgbImage {
    flip_with(image, p, &mut SplitMix64::new(seed))
}

fn flip_with(image: &RgbImage, p: f64, rng: &mut SplitMix64) -> RgbImage {
    if bernoulli(rng, p) {
        image::imageops::flip_horizontal(image)
    } else {
        image.clone()
    }
}

/// torchvision `ColorJitter`: brightness, contrast, saturation and hue changes in a random
/// order, each with a random strength. A zero turns that change off. All defaults are 0 (the
/// identity).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColorJitterConfig {
    /// Brightness factor drawn from `[max(0, 1 - b), 1 + b]`; the image is scaled by it.
    pub brightness: f64,
    /// Contrast factor drawn from `[max(0, 1 - c), 1 + c]`; the image is blended with its mean
    /// grey level.
    pub contrast: f64,
    /// Saturation factor drawn from `[max(0, 1 - s), 1 + s]`; the image is blended with its
    /// greyscale version.
    pub saturation: f64,
    /// Hue shift drawn from `[-h, h]` (fractions of a full turn, `h <= 0.5`), applied in HSV.
    pub hue: f64,
}

/// One colour operation with its sampled strength.
#[derive(Debug, Clone, Copy)]
enum ColorOp {
    Brightness(f64),
    Contrast(f64),
    Saturation(f64),
    Hue(f64),
}

impl ColorJitterConfig {
    /// Applies the jitter with strengths and order drawn from `seed`.
    pub fn apply(&self, image: &RgbImage, seed: u64) -> RgbImage {
        self.apply_with(image, &mut SplitMix64::new(seed))
    }

    pub(crate) fn apply_with(&self, image: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        // torchvision: `fn_idx = torch.randperm(4)`, then the factors in fixed order.
        let mut order = [0usize, 1, 2, 3];
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let factor = |rng: &mut SplitMix64, x: f64| {
            (x > 0.0).then(|| uniform(rng, (1.0 - x).max(0.0), 1.0 + x))
        };
        let ops = [
            factor(rng, self.brightness).map(ColorOp::Brightness),
            factor(rng, self.contrast).map(ColorOp::Contrast),
            factor(rng, self.saturation).map(ColorOp::Saturation),
            (self.hue > 0.0).then(|| ColorOp::Hue(uniform(rng, -self.hue, self.hue))),
        ];
        let mut out = image.clone();
        for op in order.iter().filter_map(|&i| ops[i]) {
            match op {
                ColorOp::Brightness(f) => adjust_brightness(&mut out, f),
                ColorOp::Contrast(f) => adjust_contrast(&mut out, f),
                ColorOp::Saturation(f) => adjust_saturation(&mut out, f),
                ColorOp::Hue(h) => adjust_hue(&mut out, h),
            }
        }
        out
    }
}

fn to_u8(x: f64) -> u8 {
    x.round().clamp(0.0, 255.0) as u8
}

/// ITU-R 601-2 luma, as torchvision's `rgb_to_grayscale`.
fn luma(p: [u8; 3]) -> f64 {
    0.2989 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
}

/// `factor * img + (1 - factor) * other`, rounded and clamped.
fn blend(v: u8, other: f64, factor: f64) -> u8 {
    to_u8(factor * f64::from(v) + (1.0 - factor) * other)
}

/// Scales every channel by `factor` (blend with black).
pub fn adjust_brightness(image: &mut RgbImage, factor: f64) {
    for v in image.iter_mut() {
        *v = blend(*v, 0.0, factor);
    }
}

/// Blends with the image's mean grey level.
pub fn adjust_contrast(image: &mut RgbImage, factor: f64) {
    let n = f64::from(image.width()) * f64::from(image.height());
    if n == 0.0 {
        return;
    }
    let mean = image.pixels().map(|p| luma(p.0).round()).sum::<f64>() / n;
    for v in image.iter_mut() {
        *v = blend(*v, mean, factor);
    }
}

/// Blends every pixel with its grey level.
pub fn adjust_saturation(image: &mut RgbImage, factor: f64) {
    for p in image.pixels_mut() {
        let grey = luma(p.0).round();
        for v in p.0.iter_mut() {
            *v = blend(*v, grey, factor);
        }
    }
}

/// Shifts the hue by `shift` turns in HSV space.
pub fn adjust_hue(image: &mut RgbImage, shift: f64) {
    for p in image.pixels_mut() {
        let [r, g, b] = p.0.map(|v| f64::from(v) / 255.0);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta == 0.0 {
            continue; // grey: the hue is undefined and the shift is a no-op
        }
        let s = delta / max;
        let h = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        let h = (h + shift).rem_euclid(1.0);
        let v = max;
        let h6 = h * 6.0;
        let sector = (h6.floor() as i64).rem_euclid(6);
        let f = h6 - h6.floor();
        let pp = v * (1.0 - s);
        let q = v * (1.0 - s * f);
        let t = v * (1.0 - s * (1.0 - f));
        let (r, g, b) = match sector {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        p.0 = [to_u8(r * 255.0), to_u8(g * 255.0), to_u8(b * 255.0)];
    }
}

/// torchvision `RandomGrayscale(p)`: with probability `p`, replaces every pixel by its grey
/// level in all three channels.
pub fn random_grayscale(image: &RgbImage, p: f64, seed: u64) -> RgbImage {
    grayscale_with(image, p, &mut SplitMix64::new(seed))
}

fn grayscale_with(image: &RgbImage, p: f64, rng: &mut SplitMix64) -> RgbImage {
    let mut out = image.clone();
    if bernoulli(rng, p) {
        adjust_saturation(&mut out, 0.0);
    }
    out
}

/// An augmentation pipeline: optional random resized crop, horizontal flip, optional colour
/// jitter, random greyscale — in that order.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Random resized crop; `None` keeps the image size. Default: the torchvision default
    /// (scale `(0.08, 1)`, 224x224).
    pub crop: Option<RandomResizedCropConfig>,
    /// Probability of a horizontal flip. Default 0.5.
    pub flip_p: f64,
    /// Colour jitter; `None` for none. Default `None`.
    pub jitter: Option<ColorJitterConfig>,
    /// Probability of converting to greyscale. Default 0.
    pub grayscale_p: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop: Some(RandomResizedCropConfig::default()),
            flip_p: 0.5,
            jitter: None,
            grayscale_p: 0.0,
        }
    }
}

impl AugmentConfig {
    /// FixMatch-style weak augmentation at `(height, width)`: random resized crop with scale
    /// `(0.5, 1)` and a horizontal flip with `p = 0.5`.
    pub fn weak(height: u32, width: u32) -> Self {
        Self {
            crop: Some(RandomResizedCropConfig {
                scale: (0.5, 1.0),
                ..RandomResizedCropConfig::with_size(height, width)
            }),
            flip_p: 0.5,
            jitter: None,
            grayscale_p: 0.0,
        }
    }

    /// Strong augmentation at `(height, width)`: random resized crop (torchvision default scale
    /// `(0.08, 1)`), flip `p = 0.5`, colour jitter `0.4 / 0.4 / 0.4 / 0.1` and random greyscale
    /// `p = 0.2` (the SimCLR-style colour distortion, standing in for FixMatch's RandAugment).
    pub fn strong(height: u32, width: u32) -> Self {
        Self {
            crop: Some(RandomResizedCropConfig::with_size(height, width)),
            flip_p: 0.5,
            jitter: Some(ColorJitterConfig {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
                hue: 0.1,
            }),
            grayscale_p: 0.2,
        }
    }

    /// Checks the crop config (if any) and that the probabilities are in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if let Some(crop) = &self.crop {
            crop.validate()?;
        }
        for (setting, p) in [("flip_p", self.flip_p), ("grayscale_p", self.grayscale_p)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::InvalidSetting {
                    setting,
                    expected: "a probability in [0, 1]".to_owned(),
                    found: p.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Runs the pipeline with randomness drawn from `seed`.
    pub fn apply(&self, image: &RgbImage, seed: u64) -> RgbImage {
        self.apply_with(image, &mut SplitMix64::new(seed))
    }

    pub(crate) fn apply_with(&self, image: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let out = match &self.crop {
            Some(crop) => crop.apply_with(image, rng),
            None => image.clone(),
        };
        let out = flip_with(&out, self.flip_p, rng);
        let out = match &self.jitter {
            Some(jitter) => jitter.apply_with(&out, rng),
            None => out,
        };
        grayscale_with(&out, self.grayscale_p, rng)
    }
}

/// A weak and a strong view of one image (FixMatch), from independent streams of one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct WeakStrongPair {
    /// The weak pipeline. Default [`AugmentConfig::weak`]`(224, 224)`.
    pub weak: AugmentConfig,
    /// The strong pipeline. Default [`AugmentConfig::strong`]`(224, 224)`.
    pub strong: AugmentConfig,
}

impl Default for WeakStrongPair {
    fn default() -> Self {
        Self::new(224, 224)
    }
}

impl WeakStrongPair {
    /// [`AugmentConfig::weak`] and [`AugmentConfig::strong`] at `(height, width)`.
    pub fn new(height: u32, width: u32) -> Self {
        Self {
            weak: AugmentConfig::weak(height, width),
            strong: AugmentConfig::strong(height, width),
        }
    }

    /// `(weak, strong)` views of `image`.
    pub fn apply(&self, image: &RgbImage, seed: u64) -> (RgbImage, RgbImage) {
        let weak = self.weak.apply(image, hash3(seed, STREAM_WEAK, 0));
        let strong = self.strong.apply(image, hash3(seed, STREAM_STRONG, 0));
        (weak, strong)
    }
}
