//! [`PreprocessConfig`]: every knob of CLIP-style image preprocessing, with presets for the
//! references it reproduces.
//!
//! References:
//! - transformers 5 `CLIPImageProcessor`
//!   ([`image_processing_clip.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/image_processing_clip.py),
//!   default torchvision backend in
//!   [`image_processing_backends.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/image_processing_backends.py))
//!   and its PIL backend `CLIPImageProcessorPil` (the transformers 4 "slow" processor);
//! - open_clip's eval transform `image_transform(..., is_train=False)`
//!   ([`transform.py`](https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/transform.py)).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::AlphaHandling;
use crate::preprocess::geometry::CropRule;
use crate::resize::{Resample, ResizeEngine};

/// OpenAI CLIP's per-channel mean (`OPENAI_CLIP_MEAN` in transformers, `OPENAI_DATASET_MEAN` in
/// open_clip).
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP's per-channel standard deviation.
// Spelled digit for digit as in the references; the f32 values are the ones Python rounds to.
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How the resize target is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// The short side becomes [`PreprocessConfig::resize_shortest_edge`], the long side
    /// `int(shortest_edge * long / short)` (transformers `size={"shortest_edge": n}`, torchvision
    /// `Resize(n)`, open_clip `resize_mode="shortest"` with a square image size). The default.
    #[default]
    ShortestEdge,
    /// Scale so the image covers the crop box, each side `round(side / ratio)` with
    /// `ratio = min(h / crop_h, w / crop_w)` (open_clip `resize_mode="shortest"` with a non-square
    /// image size, timm `ResizeKeepRatio(longest=0)`).
    CoverCrop,
    /// Scale so the image fits inside the crop box, `ratio = max(h / crop_h, w / crop_w)`
    /// (open_clip `resize_mode="longest"`, followed by padding to the crop box).
    FitCrop,
    /// Resize to exactly `height x width`, ignoring the aspect ratio (transformers
    /// `size={"height", "width"}`, open_clip `resize_mode="squash"`).
    Exact {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
}

/// The Python pipelines this crate reproduces; [`PreprocessConfig::with_reference`] sets the
/// resize arithmetic, crop rule and alpha handling of one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// transformers 5 `CLIPImageProcessor` (torchvision backend, the default): torch's uint8
    /// antialiased resize, floor crop offsets, alpha composited over white.
    Transformers,
    /// transformers 5 `CLIPImageProcessorPil` (PIL/numpy backend, the transformers 4 "slow"
    /// processor): Pillow resize, floor crop offsets with `ceil` padding, alpha composited over
    /// white (transformers 4 dropped alpha instead: set [`AlphaHandling::Drop`]).
    TransformersPil,
    /// open_clip's eval transform: Pillow resize in the image's own mode, torchvision center crop
    /// (round-half-to-even offsets), alpha dropped after resizing.
    OpenClip,
}

/// CLIP image preprocessing settings: resize, center crop (or pad), rescale, normalise.
///
/// Field defaults are those of [`PreprocessConfig::clip`]`(224)`, i.e. transformers'
/// `CLIPImageProcessor()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Whether to resize. Default `true`.
    pub do_resize: bool,
    /// How the resize target is chosen. Default [`ResizeMode::ShortestEdge`].
    pub resize_mode: ResizeMode,
    /// Target length of the short side for [`ResizeMode::ShortestEdge`]. Default 224.
    pub resize_shortest_edge: u32,
    /// Resampling filter. Default [`Resample::Bicubic`].
    pub resample: Resample,
    /// Whose fixed-point arithmetic the resize reproduces. Default [`ResizeEngine::Torch`]
    /// (transformers 5's default backend).
    pub resize_engine: ResizeEngine,
    /// Whether to center-crop (padding images smaller than the crop). Default `true`.
    pub do_center_crop: bool,
    /// Crop height. Default 224.
    pub crop_height: u32,
    /// Crop width. Default 224.
    pub crop_width: u32,
    /// Whose crop and padding offsets to use. Default [`CropRule::Hf`].
    pub crop_rule: CropRule,
    /// Value (0–255, before rescaling) of padded pixels in every channel. Default 0.
    pub pad_value: u8,
    /// Whether to multiply by [`Self::rescale_factor`]. Default `true`.
    pub do_rescale: bool,
    /// Rescale factor. Default `1 / 255`.
    pub rescale_factor: f64,
    /// Whether to subtract [`Self::mean`] and divide by [`Self::std`]. Default `true`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB). Default [`OPENAI_CLIP_MEAN`].
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB). Default [`OPENAI_CLIP_STD`].
    pub std: [f32; 3],
    /// What happens to alpha. Default [`AlphaHandling::CompositeWhite`].
    pub alpha: AlphaHandling,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self::clip(224)
    }
}

impl PreprocessConfig {
    /// transformers 5 `CLIPImageProcessor` with `size={"shortest_edge": size}` and a
    /// `size x size` crop: bicubic, OpenAI mean/std, rescale `1 / 255`.
    pub fn clip(size: u32) -> Self {
        Self {
            do_resize: true,
            resize_mode: ResizeMode::ShortestEdge,
            resize_shortest_edge: size,
            resample: Resample::Bicubic,
            resize_engine: ResizeEngine::Torch,
            do_center_crop: true,
            crop_height: size,
            crop_width: size,
            crop_rule: CropRule::Hf,
            pad_value: 0,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            mean: OPENAI_CLIP_MEAN,
            std: OPENAI_CLIP_STD,
            alpha: AlphaHandling::CompositeWhite,
        }
    }

    /// open_clip's eval transform for a square `size`: torchvision `Resize(size)` (bicubic, on the
    /// PIL image), `CenterCrop(size)`, `convert("RGB")`, `ToTensor`, OpenAI normalisation.
    pub fn open_clip(size: u32) -> Self {
        Self::clip(size).with_reference(Reference::OpenClip)
    }

    /// Sets the resize arithmetic, crop rule and alpha handling of `reference`.
    #[must_use]
    pub fn with_reference(mut self, reference: Reference) -> Self {
        let (engine, rule, alpha) = match reference {
            Reference::Transformers => (
                ResizeEngine::Torch,
                CropRule::Hf,
                AlphaHandling::CompositeWhite,
            ),
            Reference::TransformersPil => (
                ResizeEngine::Pillow,
                CropRule::HfPil,
                AlphaHandling::CompositeWhite,
            ),
            Reference::OpenClip => (
                ResizeEngine::Pillow,
                CropRule::Torchvision,
                AlphaHandling::ResizeThenDrop,
            ),
        };
        self.resize_engine = engine;
        self.crop_rule = rule;
        self.alpha = alpha;
        self
    }

    /// Checks the numeric settings: sizes used by the enabled steps are non-zero, mean and std
    /// are finite, std has no zero, the rescale factor is finite.
    pub fn validate(&self) -> Result<()> {
        fn positive(setting: &'static str, value: u32) -> Result<()> {
            if value == 0 {
                return Err(Error::InvalidSetting {
                    setting,
                    expected: "a positive size".to_owned(),
                    found: "0".to_owned(),
                });
            }
            Ok(())
        }
        if self.do_resize {
            match self.resize_mode {
                ResizeMode::ShortestEdge => {
                    positive("resize_shortest_edge", self.resize_shortest_edge)?;
                }
                ResizeMode::CoverCrop | ResizeMode::FitCrop => {
                    positive("crop_height", self.crop_height)?;
                    positive("crop_width", self.crop_width)?;
                }
                ResizeMode::Exact { height, width } => {
                    positive("resize_mode.height", height)?;
                    positive("resize_mode.width", width)?;
                }
            }
        }
        if self.do_center_crop {
            positive("crop_height", self.crop_height)?;
            positive("crop_width", self.crop_width)?;
        }
        if self.do_rescale && !self.rescale_factor.is_finite() {
            return Err(Error::InvalidSetting {
                setting: "rescale_factor",
                expected: "a finite number".to_owned(),
                found: self.rescale_factor.to_string(),
            });
        }
        if self.do_normalize {
            if self.mean.iter().any(|m| !m.is_finite()) {
                return Err(Error::InvalidSetting {
                    setting: "mean",
                    expected: "finite numbers".to_owned(),
                    found: format!("{:?}", self.mean),
                });
            }
            if self.std.iter().any(|s| !s.is_finite() || *s == 0.0) {
                return Err(Error::InvalidSetting {
                    setting: "std",
                    expected: "finite non-zero numbers".to_owned(),
                    found: format!("{:?}", self.std),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_preset_is_transformers_default() {
        let c = PreprocessConfig::clip(224);
        assert_eq!(c, PreprocessConfig::default());
        assert_eq!(
            (c.crop_height, c.crop_width, c.resize_shortest_edge),
            (224, 224, 224)
        );
        assert_eq!(c.resample, Resample::Bicubic);
        assert!((c.rescale_factor - 0.003_921_568_627_450_98).abs() < 1e-15);
        c.validate().unwrap();
    }

    #[test]
    fn open_clip_preset_uses_torchvision_rules() {
        let c = PreprocessConfig::open_clip(224);
        assert_eq!(c.crop_rule, CropRule::Torchvision);
        assert_eq!(c.alpha, AlphaHandling::ResizeThenDrop);
        assert_eq!(c.resize_engine, ResizeEngine::Pillow);
    }

    #[test]
    fn zero_std_and_zero_sizes_are_rejected() {
        let mut c = PreprocessConfig::clip(224);
        c.std[1] = 0.0;
        assert!(c.validate().unwrap_err().to_string().contains("std"));
        let mut c = PreprocessConfig::clip(224);
        c.crop_width = 0;
        assert!(c.validate().unwrap_err().to_string().contains("crop_width"));
        c.do_center_crop = false;
        c.validate().unwrap();
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = PreprocessConfig {
            resize_mode: ResizeMode::Exact {
                height: 3,
                width: 4,
            },
            ..PreprocessConfig::open_clip(32)
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<PreprocessConfig>(&json).unwrap(), c);
    }
}
