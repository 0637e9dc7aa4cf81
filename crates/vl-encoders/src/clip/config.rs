//! CLIP configuration: [`ClipConfig`] with its two towers, presets named after the Hugging Face
//! model ids, and readers for the two configuration files found next to checkpoints:
//!
//! - Hugging Face `config.json` (`CLIPConfig`,
//!   <https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/configuration_clip.py>):
//!   hub files are often a diff against the defaults, older ones use `text_config_dict` /
//!   `vision_config_dict`, and unknown keys are common. Missing fields take transformers'
//!   defaults; a field of the wrong type is an error naming it.
//! - open_clip `open_clip_config.json` (`{"model_cfg": {...}, "preprocess_cfg": {...}}`,
//!   <https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/model.py>): `CLIPVisionCfg`
//!   and `CLIPTextCfg` fields; options this port does not implement are rejected, never ignored.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::layers::{ClipActivation, ClipEncoderConfig};
use crate::error as err;

/// How the text tower picks the token whose final hidden state becomes the text feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "id")]
pub enum TextPooling {
    /// The position of the largest token id (the first one on ties). OpenAI and open_clip use
    /// this, and transformers does too when the config has the legacy `eos_token_id == 2`.
    ArgmaxId,
    /// The first position holding this end-of-text id (transformers for `eos_token_id != 2`);
    /// position 0 when the id does not occur, as transformers does.
    FirstId(i64),
}

/// Configuration of the vision tower (a ViT as in CLIP).
#[derive(Config, Debug)]
pub struct ClipVisionConfig {
    /// Width of the transformer (`hidden_size`).
    pub d_model: usize,
    /// MLP hidden width (`intermediate_size`).
    pub d_ff: usize,
    /// Attention heads (`num_attention_heads`).
    pub n_heads: usize,
    /// Transformer layers (`num_hidden_layers`).
    pub n_layers: usize,
    /// Input image size `[height, width]` (`image_size`; open_clip allows non-square).
    pub image_size: [usize; 2],
    /// Side of the square patches (`patch_size`).
    pub patch_size: usize,
    /// Input channels. Default: `3`.
    #[config(default = 3)]
    pub n_channels: usize,
    /// LayerNorm epsilon. Default: `1e-5`.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// MLP activation. Default: [`ClipActivation::QuickGelu`].
    #[config(default = "ClipActivation::QuickGelu")]
    pub activation: ClipActivation,
}

impl ClipVisionConfig {
    /// The patch grid `[rows, columns]`.
    pub fn grid(&self) -> [usize; 2] {
        [
            self.image_size[0] / self.patch_size,
            self.image_size[1] / self.patch_size,
        ]
    }

    /// Number of tokens: patches plus the class token.
    pub fn n_positions(&self) -> usize {
        let [rows, cols] = self.grid();
        rows * cols + 1
    }

    /// The encoder stack's configuration.
    pub fn encoder(&self) -> ClipEncoderConfig {
        ClipEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_activation(self.activation)
    }
}

/// Configuration of the text tower (a causal transformer as in CLIP).
#[derive(Config, Debug)]
pub struct ClipTextConfig {
    /// Vocabulary size (`vocab_size`).
    pub vocab_size: usize,
    /// Width (`hidden_size`).
    pub d_model: usize,
    /// MLP hidden width (`intermediate_size`).
    pub d_ff: usize,
    /// Attention heads (`num_attention_heads`).
    pub n_heads: usize,
    /// Transformer layers (`num_hidden_layers`).
    pub n_layers: usize,
    /// Maximum sequence length (`max_position_embeddings`, open_clip `context_length`).
    pub context_length: usize,
    /// Pooling rule.
    pub pooling: TextPooling,
    /// LayerNorm epsilon. Default: `1e-5`.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// MLP activation. Default: [`ClipActivation::QuickGelu`].
    #[config(default = "ClipActivation::QuickGelu")]
    pub activation: ClipActivation,
}

impl ClipTextConfig {
    /// The encoder stack's configuration.
    pub fn encoder(&self) -> ClipEncoderConfig {
        ClipEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_activation(self.activation)
    }
}

/// Configuration of a [`Clip`](super::Clip) model.
#[derive(Config, Debug)]
pub struct ClipConfig {
    /// The vision tower.
    pub vision: ClipVisionConfig,
    /// The text tower.
    pub text: ClipTextConfig,
    /// Width of the shared embedding space (`projection_dim`, open_clip `embed_dim`).
    pub projection_dim: usize,
    /// Initial value of the learnable log temperature. Default: `ln(1/0.07) = 2.6592`.
    #[config(default = 2.6592)]
    pub logit_scale_init: f64,
}

/// Transformers' `CLIPTextConfig` defaults (vocab 49408, 512 wide, 12 layers, 8 heads).
fn default_text(eos_token_id: i64) -> ClipTextConfig {
    ClipTextConfig::new(49408, 512, 2048, 8, 12, 77, pooling_for_eos(eos_token_id))
}

/// Transformers' rule: legacy `eos_token_id == 2` means argmax of the ids.
fn pooling_for_eos(eos_token_id: i64) -> TextPooling {
    if eos_token_id == 2 {
        TextPooling::ArgmaxId
    } else {
        TextPooling::FirstId(eos_token_id)
    }
}

fn vision(
    d_model: usize,
    n_layers: usize,
    n_heads: usize,
    image: usize,
    patch: usize,
) -> ClipVisionConfig {
    ClipVisionConfig::new(
        d_model,
        4 * d_model,
        n_heads,
        n_layers,
        [image, image],
        patch,
    )
}

impl ClipConfig {
    /// `openai/clip-vit-base-patch32`.
    pub fn vit_base_patch32() -> Self {
        Self::new(vision(768, 12, 12, 224, 32), default_text(2), 512)
    }

    /// `openai/clip-vit-base-patch16`.
    pub fn vit_base_patch16() -> Self {
        Self::new(vision(768, 12, 12, 224, 16), default_text(2), 512)
    }

    /// `openai/clip-vit-large-patch14`.
    pub fn vit_large_patch14() -> Self {
        let text = ClipTextConfig::new(49408, 768, 3072, 12, 12, 77, TextPooling::ArgmaxId);
        Self::new(vision(1024, 24, 16, 224, 14), text, 768)
    }

    /// A preset by name: `ViT-B-32`, `ViT-B-16`, `ViT-L-14` (open_clip spelling) or the
    /// Hugging Face ids `openai/clip-vit-base-patch32`, ...
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "ViT-B-32" | "ViT-B/32" | "openai/clip-vit-base-patch32" => {
                Some(Self::vit_base_patch32())
            }
            "ViT-B-16" | "ViT-B/16" | "openai/clip-vit-base-patch16" => {
                Some(Self::vit_base_patch16())
            }
            "ViT-L-14" | "ViT-L/14" | "openai/clip-vit-large-patch14" => {
                Some(Self::vit_large_patch14())
            }
            _ => None,
        }
    }

    /// Reads a Hugging Face `config.json` (see the module docs for what is tolerated).
    pub fn from_hf_file(path: impl AsRef<Path>) -> err::Result<Self> {
        let path = path.as_ref();
        let value = read_json(path)?;
        Self::from_hf_value(&value, path)
    }

    /// Parses the JSON of a Hugging Face `config.json`; `path` is used in error messages.
    pub fn from_hf_value(value: &Value, path: &Path) -> err::Result<Self> {
        let root = Fields::root(value, path)?;
        if let Some(model_type) = root.opt_str("model_type")?
            && model_type != "clip"
        {
            return Err(err::Error::invalid_config(
                path,
                "model_type",
                "\"clip\"",
                model_type,
            ));
        }
        let text = root.merged_section("text_config", "text_config_dict")?;
        let vision = root.merged_section("vision_config", "vision_config_dict")?;

        let eos_token_id = text.i64_or("eos_token_id", 49407)?;
        let text_cfg = ClipTextConfig {
            vocab_size: text.usize_or("vocab_size", 49408)?,
            d_model: text.usize_or("hidden_size", 512)?,
            d_ff: text.usize_or("intermediate_size", 2048)?,
            n_heads: text.usize_or("num_attention_heads", 8)?,
            n_layers: text.usize_or("num_hidden_layers", 12)?,
            context_length: text.usize_or("max_position_embeddings", 77)?,
            pooling: pooling_for_eos(eos_token_id),
            layer_norm_eps: text.f64_or("layer_norm_eps", 1e-5)?,
            activation: text.activation_or("hidden_act", ClipActivation::QuickGelu)?,
        };
        let image_size = vision.usize_or("image_size", 224)?;
        let vision_cfg = ClipVisionConfig {
            d_model: vision.usize_or("hidden_size", 768)?,
            d_ff: vision.usize_or("intermediate_size", 3072)?,
            n_heads: vision.usize_or("num_attention_heads", 12)?,
            n_layers: vision.usize_or("num_hidden_layers", 12)?,
            image_size: [image_size, image_size],
            patch_size: vision.usize_or("patch_size", 32)?,
            n_channels: vision.usize_or("num_channels", 3)?,
            layer_norm_eps: vision.f64_or("layer_norm_eps", 1e-5)?,
            activation: vision.activation_or("hidden_act", ClipActivation::QuickGelu)?,
        };
        let config = Self {
            vision: vision_cfg,
            text: text_cfg,
            projection_dim: root.usize_or("projection_dim", 512)?,
            logit_scale_init: root.f64_or("logit_scale_init_value", 2.6592)?,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Reads an open_clip `open_clip_config.json` (its `model_cfg`).
    pub fn from_open_clip_file(path: impl AsRef<Path>) -> err::Result<Self> {
        let path = path.as_ref();
        let value = read_json(path)?;
        Self::from_open_clip_value(&value, path)
    }

    /// Parses the JSON of an open_clip config: either the hub file (`{"model_cfg": ...}`) or a
    /// bare model config as in open_clip's `model_configs/*.json`.
    pub fn from_open_clip_value(value: &Value, path: &Path) -> err::Result<Self> {
        let root = Fields::root(value, path)?;
        let model = match root.opt_section("model_cfg")? {
            Some(model) => model,
            None => root,
        };
        for unsupported in ["timm_model_name", "hf_model_name"] {
            for section in ["vision_cfg", "text_cfg"] {
                if let Some(s) = model.opt_section(section)?
                    && s.get(unsupported).is_some_and(|v| !v.is_null())
                {
                    return Err(err::Error::invalid_config(
                        path,
                        format!("model_cfg.{section}.{unsupported}"),
                        "a plain CLIP transformer tower (timm and HF towers are not supported)",
                        s.get(unsupported).map(Value::to_string).unwrap_or_default(),
                    ));
                }
            }
        }
        let quick_gelu = model.bool_or("quick_gelu", false)?;
        let activation = if quick_gelu {
            ClipActivation::QuickGelu
        } else {
            ClipActivation::Gelu
        };
        let v = model.section("vision_cfg")?;
        let t = model.section("text_cfg")?;
        v.reject_non_default(&[
            ("ls_init_value", Value::Null),
            ("attentional_pool", Value::Bool(false)),
            ("no_ln_pre", Value::Bool(false)),
            ("final_ln_after_pool", Value::Bool(false)),
            ("pool_type", Value::String("tok".into())),
            ("output_tokens", Value::Bool(false)),
            ("act_kwargs", Value::Null),
            ("norm_kwargs", Value::Null),
        ])?;
        t.reject_non_default(&[
            ("ls_init_value", Value::Null),
            ("embed_cls", Value::Bool(false)),
            ("no_causal_mask", Value::Bool(false)),
            ("final_ln_after_pool", Value::Bool(false)),
            ("pool_type", Value::String("argmax".into())),
            ("proj_type", Value::String("linear".into())),
            ("proj_bias", Value::Bool(false)),
            ("output_tokens", Value::Bool(false)),
            ("act_kwargs", Value::Null),
            ("norm_kwargs", Value::Null),
        ])?;

        let width = v.usize_or("width", 768)?;
        let head_width = v.usize_or("head_width", 64)?;
        let mlp_ratio = v.f64_or("mlp_ratio", 4.0)?;
        let patch_size = v.usize_or("patch_size", 16)?;
        let image_size = v.image_size_or("image_size", 224)?;
        if head_width == 0 || !width.is_multiple_of(head_width) {
            return Err(err::Error::invalid_config(
                path,
                "model_cfg.vision_cfg.head_width",
                format!("a divisor of width {width}"),
                head_width,
            ));
        }
        let vision = ClipVisionConfig {
            d_model: width,
            d_ff: (width as f64 * mlp_ratio) as usize,
            n_heads: width / head_width,
            n_layers: v.usize_or("layers", 12)?,
            image_size,
            patch_size,
            n_channels: 3,
            layer_norm_eps: 1e-5,
            activation,
        };
        let text_width = t.usize_or("width", 512)?;
        let text = ClipTextConfig {
            vocab_size: t.usize_or("vocab_size", 49408)?,
            d_model: text_width,
            d_ff: (text_width as f64 * t.f64_or("mlp_ratio", 4.0)?) as usize,
            n_heads: t.usize_or("heads", 8)?,
            n_layers: t.usize_or("layers", 12)?,
            context_length: t.usize_or("context_length", 77)?,
            pooling: TextPooling::ArgmaxId,
            layer_norm_eps: 1e-5,
            activation,
        };
        let config = Self {
            vision,
            text,
            projection_dim: model.usize("embed_dim")?,
            logit_scale_init: 2.6592,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the divisibility rules the model relies on.
    pub fn validate(&self, path: &Path) -> err::Result<()> {
        let v = &self.vision;
        if v.patch_size == 0
            || !v.image_size[0].is_multiple_of(v.patch_size)
            || !v.image_size[1].is_multiple_of(v.patch_size)
        {
            return Err(err::Error::invalid_config(
                path,
                "vision_config.patch_size",
                format!("a divisor of the image size {:?}", v.image_size),
                v.patch_size,
            ));
        }
        for (tower, d_model, n_heads) in [
            ("vision_config", v.d_model, v.n_heads),
            ("text_config", self.text.d_model, self.text.n_heads),
        ] {
            if n_heads == 0 || !d_model.is_multiple_of(n_heads) {
                return Err(err::Error::invalid_config(
                    path,
                    format!("{tower}.num_attention_heads"),
                    format!("a divisor of hidden_size {d_model}"),
                    n_heads,
                ));
            }
        }
        Ok(())
    }

    /// The configuration as a Hugging Face `config.json` value (for writing checkpoints that
    /// transformers loads). Non-square images cannot be expressed there and are an error.
    pub fn to_hf_value(&self) -> err::Result<Value> {
        let v = &self.vision;
        let t = &self.text;
        if v.image_size[0] != v.image_size[1] {
            return Err(err::Error::invalid_config(
                "<config>",
                "vision.image_size",
                "a square image (Hugging Face CLIP has a single image_size)",
                format!("{:?}", v.image_size),
            ));
        }
        let eos = match t.pooling {
            TextPooling::ArgmaxId => 2,
            TextPooling::FirstId(id) => id,
        };
        Ok(serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init,
            "text_config": {
                "model_type": "clip_text_model",
                "vocab_size": t.vocab_size,
                "hidden_size": t.d_model,
                "intermediate_size": t.d_ff,
                "num_attention_heads": t.n_heads,
                "num_hidden_layers": t.n_layers,
                "max_position_embeddings": t.context_length,
                "layer_norm_eps": t.layer_norm_eps,
                "hidden_act": t.activation.hf_name(),
                "eos_token_id": eos,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.d_model,
                "intermediate_size": v.d_ff,
                "num_attention_heads": v.n_heads,
                "num_hidden_layers": v.n_layers,
                "image_size": v.image_size[0],
                "patch_size": v.patch_size,
                "num_channels": v.n_channels,
                "layer_norm_eps": v.layer_norm_eps,
                "hidden_act": v.activation.hf_name(),
            },
        }))
    }
}

pub(crate) fn read_json(path: &Path) -> err::Result<Value> {
    let bytes = std::fs::read(path).map_err(|source| err::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| err::Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Typed, defaulted access to one JSON object, with errors naming `prefix.field` and the file.
#[derive(Clone)]
struct Fields<'a> {
    map: Map<String, Value>,
    prefix: String,
    path: &'a Path,
}

fn kind(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut text = value.to_string();
    if text.len() > 40 {
        text.truncate(40);
        text.push_str("...");
    }
    format!("{kind} ({text})")
}

impl<'a> Fields<'a> {
    fn root(value: &Value, path: &'a Path) -> err::Result<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                map: map.clone(),
                prefix: String::new(),
                path,
            }),
            other => Err(err::Error::invalid_config(
                path,
                "<root>",
                "a JSON object",
                kind(other),
            )),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// A present, non-null value.
    fn present(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn err(&self, key: &str, expected: &str, found: &Value) -> err::Error {
        err::Error::invalid_config(self.path, self.name(key), expected, kind(found))
    }

    fn opt_section(&self, key: &str) -> err::Result<Option<Fields<'a>>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields {
                map: map.clone(),
                prefix: self.name(key),
                path: self.path,
            })),
            Some(other) => Err(self.err(key, "an object", other)),
        }
    }

    fn section(&self, key: &str) -> err::Result<Fields<'a>> {
        Ok(self.opt_section(key)?.unwrap_or_else(|| Fields {
            map: Map::new(),
            prefix: self.name(key),
            path: self.path,
        }))
    }

    /// `key` with the legacy `legacy_key` merged over it, as `CLIPConfig.__init__` does.
    fn merged_section(&self, key: &str, legacy_key: &str) -> err::Result<Fields<'a>> {
        let mut section = self.section(key)?;
        if let Some(legacy) = self.opt_section(legacy_key)? {
            section.map.extend(legacy.map);
        }
        Ok(section)
    }

    fn usize(&self, key: &str) -> err::Result<usize> {
        match self.present(key) {
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.err(key, "a non-negative integer", v)),
            None => Err(err::Error::invalid_config(
                self.path,
                self.name(key),
                "a non-negative integer",
                "nothing (the field is missing)",
            )),
        }
    }

    fn usize_or(&self, key: &str, default: usize) -> err::Result<usize> {
        if self.present(key).is_none() {
            return Ok(default);
        }
        self.usize(key)
    }

    fn i64_or(&self, key: &str, default: i64) -> err::Result<i64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.err(key, "an integer", v)),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> err::Result<f64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(key, "a number", v)),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> err::Result<bool> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(key, "a boolean", v)),
        }
    }

    fn opt_str(&self, key: &str) -> err::Result<Option<&str>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, "a string", other)),
        }
    }

    fn activation_or(&self, key: &str, default: ClipActivation) -> err::Result<ClipActivation> {
        match self.opt_str(key)? {
            None => Ok(default),
            Some(name) => ClipActivation::from_hf_name(name).ok_or_else(|| {
                err::Error::invalid_config(
                    self.path,
                    self.name(key),
                    "one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh",
                    format!("\"{name}\""),
                )
            }),
        }
    }

    /// An image size: an integer or `[height, width]`.
    fn image_size_or(&self, key: &str, default: usize) -> err::Result<[usize; 2]> {
        match self.present(key) {
            None => Ok([default, default]),
            Some(v) => {
                if let Some(n) = v.as_u64() {
                    return Ok([n as usize, n as usize]);
                }
                if let Some([h, w]) = v.as_array().map(Vec::as_slice)
                    && let (Some(h), Some(w)) = (h.as_u64(), w.as_u64())
                {
                    return Ok([h as usize, w as usize]);
                }
                Err(self.err(key, "an integer or [height, width]", v))
            }
        }
    }

    /// Errors on any of `keys` set to something other than its default.
    fn reject_non_default(&self, keys: &[(&str, Value)]) -> err::Result<()> {
        for (key, default) in keys {
            if let Some(v) = self.get(key)
                && v != default
                && !(v.is_null() && default.is_null())
            {
                return Err(err::Error::invalid_config(
                    self.path,
                    self.name(key),
                    format!("{default} (other values are not supported by vlkit's CLIP)"),
                    v,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hf(value: Value) -> err::Result<ClipConfig> {
        ClipConfig::from_hf_value(&value, Path::new("config.json"))
    }

    #[test]
    fn diff_style_config_takes_transformers_defaults() {
        let config = hf(json!({
            "projection_dim": 512, "text_config": {"eos_token_id": 2},
            "vision_config": {"patch_size": 16}, "unknown": [1, 2]
        }))
        .unwrap();
        assert_eq!(config.vision.patch_size, 16);
        assert_eq!(config.vision.d_model, 768);
        assert_eq!(config.text.d_model, 512);
        assert_eq!(config.text.pooling, TextPooling::ArgmaxId);
        assert_eq!(config.vision.activation, ClipActivation::QuickGelu);
    }

    #[test]
    fn legacy_dicts_override_the_new_sections() {
        let config = hf(json!({
            "text_config": {"hidden_size": 64, "num_attention_heads": 2},
            "text_config_dict": {"hidden_size": 32, "hidden_act": "gelu"},
            "vision_config_dict": {"image_size": 48, "patch_size": 16}
        }))
        .unwrap();
        assert_eq!(config.text.d_model, 32);
        assert_eq!(config.text.activation, ClipActivation::Gelu);
        assert_eq!(config.vision.image_size, [48, 48]);
        assert_eq!(config.text.pooling, TextPooling::FirstId(49407));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = hf(json!({"vision_config": {"hidden_size": "wide"}})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("vision_config.hidden_size"), "{msg}");
        assert!(msg.contains("config.json"), "{msg}");
        assert!(msg.contains("\"wide\""), "{msg}");
    }

    #[test]
    fn unknown_activation_is_an_error() {
        let err = hf(json!({"text_config": {"hidden_act": "relu"}})).unwrap_err();
        assert!(err.to_string().contains("text_config.hidden_act"), "{err}");
    }

    #[test]
    fn indivisible_heads_are_reported() {
        let err =
            hf(json!({"text_config": {"hidden_size": 30, "num_attention_heads": 4}})).unwrap_err();
        assert!(
            err.to_string().contains("text_config.num_attention_heads"),
            "{err}"
        );
    }

    #[test]
    fn open_clip_config_reads_non_square_images_and_head_width() {
        let value = json!({"model_cfg": {"embed_dim": 16, "quick_gelu": false,
            "vision_cfg": {"image_size": [28, 42], "patch_size": 14, "width": 48, "head_width": 16, "layers": 2},
            "text_cfg": {"context_length": 12, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}}});
        let config =
            ClipConfig::from_open_clip_value(&value, Path::new("open_clip_config.json")).unwrap();
        assert_eq!(config.vision.grid(), [2, 3]);
        assert_eq!(config.vision.n_heads, 3);
        assert_eq!(config.vision.activation, ClipActivation::Gelu);
        assert_eq!(config.text.pooling, TextPooling::ArgmaxId);
    }

    #[test]
    fn open_clip_unsupported_option_is_an_error() {
        let value =
            json!({"embed_dim": 16, "vision_cfg": {"attentional_pool": true}, "text_cfg": {}});
        let err = ClipConfig::from_open_clip_value(&value, Path::new("x.json")).unwrap_err();
        assert!(
            err.to_string().contains("vision_cfg.attentional_pool"),
            "{err}"
        );
    }

    #[test]
    fn hf_round_trip_keeps_the_architecture() {
        let config = ClipConfig::vit_base_patch16();
        let back = hf(config.to_hf_value().unwrap()).unwrap();
        assert_eq!(back.vision.patch_size, 16);
        assert_eq!(back.text.pooling, TextPooling::ArgmaxId);
        assert_eq!(back.projection_dim, 512);
    }
}
