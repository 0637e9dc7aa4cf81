//! [`PretrainConfig`]: everything a CLIP pretraining run on the synthetic world depends on, read
//! from TOML (`experiments/pretrain-tiny.toml` holds the defaults). Unknown keys are errors, every
//! field has a documented default, and [`PretrainConfig::validate`] checks ranges before any work
//! starts, naming the offending field.

use std::path::Path;

use serde::{Deserialize, Serialize};
use vl_data::synthetic::{SizeClass, SyntheticWorldConfig};
use vl_encoders::clip::{
    ClipActivation, ClipConfig, ClipTextConfig, ClipVisionConfig, TextPooling,
};

use crate::error::{Error, Result};

/// The contrastive objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// CLIP's symmetric InfoNCE over a learnable, clamped logit scale.
    Clip,
    /// SigLIP's pairwise sigmoid loss with a learnable scale and bias.
    Siglip,
}

/// A CLIP pretraining run on the synthetic world.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// The one seed: model initialisation, the world's images and captions, the tokenizer corpus.
    /// Default: `0`.
    pub seed: u64,
    /// The synthetic world the images and captions come from.
    pub world: WorldSection,
    /// The CLIP architecture.
    pub model: ModelSection,
    /// The BPE tokenizer trained on the world's captions.
    pub tokenizer: TokenizerSection,
    /// Optimisation.
    pub train: TrainSection,
    /// Held-out zero-shot evaluation.
    pub eval: EvalSection,
}

/// `[world]`: the synthetic world (see [`SyntheticWorldConfig`] for the rest of its defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldSection {
    /// Image side in pixels (also the model's input size). Default: `48`.
    pub image_size: u32,
    /// Fewest objects per pretraining image, 1 or 2. Default: `1`.
    pub min_objects: u8,
    /// Most objects per pretraining image, 1 or 2. Default: `2`.
    pub max_objects: u8,
    /// Side of a "small" object as a fraction of the image side (at most 0.5 with two objects).
    /// Default: `0.4` (the world's own default, 0.3, leaves shapes too few pixels for a tiny ViT
    /// to learn them in minutes).
    pub small_size: f32,
    /// Side of a "large" object as a fraction of the image side. Default: `0.5`.
    pub large_size: f32,
    /// Snap object boxes to a grid of this many pixels
    /// ([`SyntheticWorldConfig::position_grid`]); `0` keeps positions continuous. Default: `0`
    /// (`experiments/pretrain-tiny.toml` sets the patch size, 6).
    pub position_grid: u32,
    /// Width in pixels of the dark contour around every object
    /// ([`SyntheticWorldConfig::outline`]); `0` draws none. Default: `0`
    /// (`experiments/pretrain-tiny.toml` sets 1).
    pub outline: f32,
}

/// `[model]`: a small CLIP (ViT image tower, causal text transformer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// ViT patch size; must divide `world.image_size`. Default: `6` (8 x 8 patches).
    pub patch_size: usize,
    /// Vision width. Default: `96`.
    pub vision_width: usize,
    /// Vision transformer layers. Default: `3`.
    pub vision_layers: usize,
    /// Vision attention heads. Default: `4`.
    pub vision_heads: usize,
    /// Text width. Default: `96`.
    pub text_width: usize,
    /// Text transformer layers. Default: `2`.
    pub text_layers: usize,
    /// Text attention heads. Default: `4`.
    pub text_heads: usize,
    /// MLP width as a multiple of the width. Default: `4`.
    pub mlp_ratio: usize,
    /// Context length in tokens (start and end markers included). Default: `32`.
    pub context_length: usize,
    /// Shared embedding width. Default: `96`.
    pub projection_dim: usize,
}

/// `[tokenizer]`: byte-level BPE trained with the `tokenizers` crate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerSection {
    /// Largest vocabulary size, special tokens included (at least 514: 512 byte symbols and the
    /// two special tokens); training stops earlier when no pair is frequent enough. Default:
    /// `1024`.
    pub vocab_size: usize,
    /// Pretraining captions the tokenizer is trained on (the first ones of the stream). Default:
    /// `20000`.
    pub captions: usize,
    /// Fewest occurrences for a merge. Default: `2`.
    pub min_frequency: u64,
}

/// `[train]`: optimisation (AdamW, linear warm-up then cosine decay, per step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// The objective. Default: `"clip"`.
    pub loss: LossKind,
    /// Epochs. Default: `10`.
    pub epochs: usize,
    /// Optimiser steps per epoch; each epoch draws fresh images. Default: `50`.
    pub steps_per_epoch: usize,
    /// Image-caption pairs per step. Default: `128`.
    pub batch_size: usize,
    /// Peak learning rate. Default: `1e-3`.
    pub lr: f64,
    /// Final learning rate of the cosine decay. Default: `1e-5`.
    pub min_lr: f64,
    /// Linear warm-up steps from `lr / 100` to `lr`. Default: `50`.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay. Default: `0.1`.
    pub weight_decay: f32,
    /// AdamW beta 1. Default: `0.9`.
    pub beta_1: f32,
    /// AdamW beta 2 (CLIP uses 0.98). Default: `0.98`.
    pub beta_2: f32,
    /// AdamW epsilon (CLIP uses 1e-6). Default: `1e-6`.
    pub epsilon: f32,
    /// Gradient-norm clipping; `0` disables it. Default: `1.0`.
    pub grad_clip_norm: f32,
    /// Hard negatives: each batch draws its images from this many colours (picked per batch), so
    /// most in-batch negatives share the positive's colour and only shape, size or background
    /// separate them; `0` draws batches i.i.d. Default: `0` (with 2 groups the tiny run learned
    /// more slowly in its first epochs).
    pub colour_groups: usize,
    /// Hard negatives: each batch is made of groups of this many counterfactual twins, one
    /// scene in which one object's shape is replaced by distinct shapes (same colours, sizes,
    /// layout, background and caption words), so within a group only shape separates image and
    /// caption. `0` or `1` draws batches i.i.d.; at most 6 (an object's colour allows 7 shapes,
    /// one of which the other object may take). Must divide `batch_size`. Default: `0` (with 4,
    /// the 10-epoch tiny run reached 22.5% shape accuracy on unseen images of seen pairs instead
    /// of 13.3%, and 24.2% instead of 22.9% on held-out pairs: better, far from enough).
    pub shape_variants: usize,
    /// Data-loader worker threads rendering the world while the model trains. More than one
    /// would deliver batches in completion order and break bit-reproducibility. Default: `1`.
    pub num_workers: usize,
}

/// `[eval]`: zero-shot classification of held-out images after every epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// One-object images whose (shape, colour) pair never appears in pretraining. Default: `512`.
    pub held_out_images: usize,
    /// One-object images of seen pairs, for the final report. Default: `512`.
    pub seen_images: usize,
    /// Images per evaluation batch. Default: `256`.
    pub batch_size: usize,
    /// Prompt templates; `{}` is replaced by the class phrase (`"a red circle"`), and the class
    /// embedding is the normalised mean over templates (CLIP's prompt ensembling). Default: the
    /// world's five caption templates.
    pub templates: Vec<String>,
}

impl Default for WorldSection {
    fn default() -> Self {
        Self {
            image_size: 48,
            min_objects: 1,
            max_objects: 2,
            small_size: 0.4,
            large_size: 0.5,
            position_grid: 0,
            outline: 0.0,
        }
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            patch_size: 6,
            vision_width: 96,
            vision_layers: 3,
            vision_heads: 4,
            text_width: 96,
            text_layers: 2,
            text_heads: 4,
            mlp_ratio: 4,
            context_length: 32,
            projection_dim: 96,
        }
    }
}

impl Default for TokenizerSection {
    fn default() -> Self {
        Self {
            vocab_size: 1024,
            captions: 20_000,
            min_frequency: 2,
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            loss: LossKind::Clip,
            epochs: 10,
            steps_per_epoch: 50,
            batch_size: 128,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 50,
            weight_decay: 0.1,
            beta_1: 0.9,
            beta_2: 0.98,
            epsilon: 1e-6,
            grad_clip_norm: 1.0,
            colour_groups: 0,
            shape_variants: 0,
            num_workers: 1,
        }
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            held_out_images: 512,
            seen_images: 512,
            batch_size: 256,
            templates: [
                "{}",
                "a photo of {}",
                "there is {}",
                "an image of {}",
                "a picture of {}",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

impl PretrainConfig {
    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = toml::from_str(&text).map_err(|source| Error::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML text (what a run directory records in `run.toml`).
    pub fn to_toml(&self) -> String {
        // Every field is a plain number, string, bool or list: serialisation cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every range; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, value: usize| {
            if value == 0 {
                Err(Error::invalid(field, "at least 1", value))
            } else {
                Ok(())
            }
        };
        let m = &self.model;
        positive("model.patch_size", m.patch_size)?;
        if !(self.world.image_size as usize).is_multiple_of(m.patch_size) {
            return Err(Error::invalid(
                "model.patch_size",
                format!("a divisor of world.image_size = {}", self.world.image_size),
                m.patch_size,
            ));
        }
        for (field, width, heads) in [
            ("model.vision_heads", m.vision_width, m.vision_heads),
            ("model.text_heads", m.text_width, m.text_heads),
        ] {
            positive(field, heads)?;
            if width % heads != 0 {
                return Err(Error::invalid(
                    field,
                    format!("a divisor of the width {width}"),
                    heads,
                ));
            }
        }
        positive("model.vision_layers", m.vision_layers)?;
        positive("model.text_layers", m.text_layers)?;
        positive("model.mlp_ratio", m.mlp_ratio)?;
        positive("model.projection_dim", m.projection_dim)?;
        if m.context_length < 8 {
            return Err(Error::invalid(
                "model.context_length",
                "at least 8",
                m.context_length,
            ));
        }
        if self.tokenizer.vocab_size < vl_data::tokenizer_train::MIN_VOCAB_SIZE {
            return Err(Error::invalid(
                "tokenizer.vocab_size",
                format!(
                    "at least {} (512 byte symbols and 2 special tokens)",
                    vl_data::tokenizer_train::MIN_VOCAB_SIZE
                ),
                self.tokenizer.vocab_size,
            ));
        }
        positive("tokenizer.captions", self.tokenizer.captions)?;
        let t = &self.train;
        positive("train.epochs", t.epochs)?;
        positive("train.steps_per_epoch", t.steps_per_epoch)?;
        if t.batch_size < 2 {
            return Err(Error::invalid(
                "train.batch_size",
                "at least 2 (contrastive losses need negatives)",
                t.batch_size,
            ));
        }
        if !(t.lr > 0.0 && t.lr <= 1.0) {
            return Err(Error::invalid("train.lr", "in (0, 1]", t.lr));
        }
        if !(t.min_lr >= 0.0 && t.min_lr <= t.lr) {
            return Err(Error::invalid("train.min_lr", "in [0, train.lr]", t.min_lr));
        }
        if t.warmup_steps >= t.epochs * t.steps_per_epoch {
            return Err(Error::invalid(
                "train.warmup_steps",
                format!(
                    "fewer than the {} training steps",
                    t.epochs * t.steps_per_epoch
                ),
                t.warmup_steps,
            ));
        }
        if t.grad_clip_norm.is_nan() || t.grad_clip_norm < 0.0 {
            return Err(Error::invalid(
                "train.grad_clip_norm",
                "0 (off) or a positive norm",
                t.grad_clip_norm,
            ));
        }
        positive("train.num_workers", t.num_workers)?;
        let n_colours = self.world_config().colours.len();
        if t.colour_groups > n_colours {
            return Err(Error::invalid(
                "train.colour_groups",
                format!("0 (off) or at most the {n_colours} colours"),
                t.colour_groups,
            ));
        }
        if t.shape_variants > 6
            || (t.shape_variants > 1 && !t.batch_size.is_multiple_of(t.shape_variants))
        {
            return Err(Error::invalid(
                "train.shape_variants",
                format!(
                    "0 (off) or at most 6, dividing train.batch_size = {}",
                    t.batch_size
                ),
                t.shape_variants,
            ));
        }
        if t.shape_variants > 1 && t.colour_groups > 0 {
            return Err(Error::invalid(
                "train.shape_variants",
                "0 when train.colour_groups is set (choose one kind of hard negative)",
                t.shape_variants,
            ));
        }
        positive("eval.held_out_images", self.eval.held_out_images)?;
        positive("eval.batch_size", self.eval.batch_size)?;
        if self.eval.templates.is_empty() {
            return Err(Error::invalid(
                "eval.templates",
                "at least one template",
                "[]",
            ));
        }
        if let Some(t) = self
            .eval
            .templates
            .iter()
            .find(|t| t.matches("{}").count() != 1)
        {
            return Err(Error::invalid(
                "eval.templates",
                "templates with exactly one `{}`",
                format!("{t:?}"),
            ));
        }
        self.world_config().validate()?;
        Ok(())
    }

    /// The synthetic world of this run (the run seed is the world seed).
    pub fn world_config(&self) -> SyntheticWorldConfig {
        SyntheticWorldConfig {
            image_size: self.world.image_size,
            seed: self.seed,
            min_objects: self.world.min_objects,
            max_objects: self.world.max_objects,
            sizes: vec![
                SizeClass {
                    name: "small".into(),
                    fraction: self.world.small_size,
                },
                SizeClass {
                    name: "large".into(),
                    fraction: self.world.large_size,
                },
            ],
            position_grid: self.world.position_grid,
            outline: self.world.outline,
            ..SyntheticWorldConfig::default()
        }
    }

    /// The CLIP architecture for a tokenizer with `vocab_size` ids whose end-of-text id is
    /// `eot_id` (pooling at the first end-of-text token, as transformers does for new models).
    pub fn clip_config(&self, vocab_size: usize, eot_id: u32) -> ClipConfig {
        let m = &self.model;
        let size = self.world.image_size as usize;
        let vision = ClipVisionConfig::new(
            m.vision_width,
            m.vision_width * m.mlp_ratio,
            m.vision_heads,
            m.vision_layers,
            [size, size],
            m.patch_size,
        )
        .with_activation(ClipActivation::QuickGelu);
        let text = ClipTextConfig::new(
            vocab_size,
            m.text_width,
            m.text_width * m.mlp_ratio,
            m.text_heads,
            m.text_layers,
            m.context_length,
            TextPooling::FirstId(i64::from(eot_id)),
        )
        .with_activation(ClipActivation::QuickGelu);
        ClipConfig::new(vision, text, m.projection_dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_round_trips_through_toml() {
        let config = PretrainConfig::default();
        config.validate().unwrap();
        let back: PretrainConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = toml::from_str::<PretrainConfig>("[train]\nepochz = 3\n").unwrap_err();
        assert!(err.to_string().contains("epochz"), "{err}");
    }

    #[test]
    fn patch_size_must_divide_image_size() {
        let mut config = PretrainConfig::default();
        config.model.patch_size = 7;
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("model.patch_size") && err.contains("48"),
            "{err}"
        );
    }

    #[test]
    fn warmup_longer_than_training_is_rejected() {
        let mut config = PretrainConfig::default();
        config.train.warmup_steps = 10_000;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("train.warmup_steps"), "{err}");
    }
}
