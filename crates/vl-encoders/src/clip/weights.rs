//! Weight import for [`Clip`] from Hugging Face `CLIPModel` and open_clip / OpenAI checkpoints
//! in safetensors.
//!
//! Every tensor is addressed by its Hugging Face name; an open_clip checkpoint is read through
//! the table below, which splits the fused `in_proj_weight` into q/k/v (`chunk(3, dim=0)`, as
//! transformers' `convert_clip_original_pytorch_to_hf.py` does) and transposes the projections
//! (open_clip computes `x @ proj`, transformers `x @ W^T`). Module paths equal the Hugging Face
//! names except where noted, so PEFT adapter keys map one to one.
//!
//! ```text
//! Hugging Face name                                   open_clip / OpenAI name                         module path / note
//! vision_model.embeddings.class_embedding             visual.class_embedding                          same
//! vision_model.embeddings.patch_embedding.weight      visual.conv1.weight                             same ([out, in, p, p])
//! vision_model.embeddings.position_embedding.weight   visual.positional_embedding                     same
//! vision_model.pre_layrnorm.{weight,bias}             visual.ln_pre.{weight,bias}                     vision_model.pre_layernorm.{gamma,beta}
//! vision_model.encoder.layers.{i}.…                   visual.transformer.resblocks.{i}.…              (layer table)
//! vision_model.post_layernorm.{weight,bias}           visual.ln_post.{weight,bias}                    ….{gamma,beta}
//! visual_projection.weight [P, W]                     visual.proj [W, P] (transposed)                 visual_projection.weight [W, P]
//! text_model.embeddings.token_embedding.weight        token_embedding.weight                          same
//! text_model.embeddings.position_embedding.weight     positional_embedding                            same
//! text_model.encoder.layers.{i}.…                     transformer.resblocks.{i}.…                     (layer table)
//! text_model.final_layer_norm.{weight,bias}           ln_final.{weight,bias}                          ….{gamma,beta}
//! text_projection.weight [P, W]                       text_projection [W, P] (transposed)             text_projection.weight [W, P]
//! logit_scale []                                      logit_scale []                                  logit_scale [1]
//!
//! layer table (per layer i)
//! self_attn.{q,k,v}_proj.weight                       attn.in_proj_weight, rows [0,W) [W,2W) [2W,3W)   Linear weights are stored [in, out]:
//! self_attn.{q,k,v}_proj.bias                         attn.in_proj_bias, same split                      every Linear weight is transposed
//! self_attn.out_proj.{weight,bias}                    attn.out_proj.{weight,bias}
//! layer_norm1.{weight,bias}                           ln_1.{weight,bias}                              layer_norm1.{gamma,beta}
//! mlp.fc1.{weight,bias}                               mlp.c_fc.{weight,bias}
//! mlp.fc2.{weight,bias}                               mlp.c_proj.{weight,bias}
//! layer_norm2.{weight,bias}                           ln_2.{weight,bias}                              layer_norm2.{gamma,beta}
//! ```
//!
//! Stray tensors (`position_ids` buffers, `attn_mask`, OpenAI's `input_resolution`, ...) are
//! ignored. Float tensors in F32, F16, BF16 or F64 are converted to F32 and then to the requested
//! compute dtype. Sharded Hugging Face checkpoints (`model.safetensors.index.json`) are read
//! shard by shard.
//!
//! The inverse, writing a [`Clip`] as a Hugging Face checkpoint, is
//! [`save_hf`](super::save_hf) in `save.rs`; it takes its tensor names from this table too
//! ([`hf_tensor_names`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::FloatDType;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::config::{ClipConfig, ClipTextConfig, ClipVisionConfig, TextPooling, read_json};
use super::layers::{ClipActivation, ClipEncoder};
use super::model::Clip;
use crate::error::{Error, Result};

/// How a Hugging Face tensor is obtained from an open_clip tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    /// Unchanged.
    Same,
    /// Transposed (2-D).
    Transpose,
    /// The `n`-th of three equal chunks along dim 0 (fused q/k/v).
    Chunk(usize),
}

/// Whole-model keys: (Hugging Face name, open_clip name, transform).
const MODEL_KEYS: &[(&str, &str, Transform)] = &[
    (
        "vision_model.embeddings.class_embedding",
        "visual.class_embedding",
        Transform::Same,
    ),
    (
        "vision_model.embeddings.patch_embedding.weight",
        "visual.conv1.weight",
        Transform::Same,
    ),
    (
        "vision_model.embeddings.position_embedding.weight",
        "visual.positional_embedding",
        Transform::Same,
    ),
    (
        "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.weight",
        Transform::Same,
    ),
    (
        "vision_model.pre_layrnorm.bias",
        "visual.ln_pre.bias",
        Transform::Same,
    ),
    (
        "vision_model.post_layernorm.weight",
        "visual.ln_post.weight",
        Transform::Same,
    ),
    (
        "vision_model.post_layernorm.bias",
        "visual.ln_post.bias",
        Transform::Same,
    ),
    (
        "visual_projection.weight",
        "visual.proj",
        Transform::Transpose,
    ),
    (
        "text_model.embeddings.token_embedding.weight",
        "token_embedding.weight",
        Transform::Same,
    ),
    (
        "text_model.embeddings.position_embedding.weight",
        "positional_embedding",
        Transform::Same,
    ),
    (
        "text_model.final_layer_norm.weight",
        "ln_final.weight",
        Transform::Same,
    ),
    (
        "text_model.final_layer_norm.bias",
        "ln_final.bias",
        Transform::Same,
    ),
    (
        "text_projection.weight",
        "text_projection",
        Transform::Transpose,
    ),
    ("logit_scale", "logit_scale", Transform::Same),
];

/// Per-layer keys: (Hugging Face suffix, open_clip suffix, transform).
const LAYER_KEYS: &[(&str, &str, Transform)] = &[
    (
        "self_attn.q_proj.weight",
        "attn.in_proj_weight",
        Transform::Chunk(0),
    ),
    (
        "self_attn.k_proj.weight",
        "attn.in_proj_weight",
        Transform::Chunk(1),
    ),
    (
        "self_attn.v_proj.weight",
        "attn.in_proj_weight",
        Transform::Chunk(2),
    ),
    (
        "self_attn.q_proj.bias",
        "attn.in_proj_bias",
        Transform::Chunk(0),
    ),
    (
        "self_attn.k_proj.bias",
        "attn.in_proj_bias",
        Transform::Chunk(1),
    ),
    (
        "self_attn.v_proj.bias",
        "attn.in_proj_bias",
        Transform::Chunk(2),
    ),
    (
        "self_attn.out_proj.weight",
        "attn.out_proj.weight",
        Transform::Same,
    ),
    (
        "self_attn.out_proj.bias",
        "attn.out_proj.bias",
        Transform::Same,
    ),
    ("layer_norm1.weight", "ln_1.weight", Transform::Same),
    ("layer_norm1.bias", "ln_1.bias", Transform::Same),
    ("mlp.fc1.weight", "mlp.c_fc.weight", Transform::Same),
    ("mlp.fc1.bias", "mlp.c_fc.bias", Transform::Same),
    ("mlp.fc2.weight", "mlp.c_proj.weight", Transform::Same),
    ("mlp.fc2.bias", "mlp.c_proj.bias", Transform::Same),
    ("layer_norm2.weight", "ln_2.weight", Transform::Same),
    ("layer_norm2.bias", "ln_2.bias", Transform::Same),
];

/// Layer prefixes of the two towers: (Hugging Face, open_clip).
const TOWER_LAYERS: &[(&str, &str)] = &[
    (
        "vision_model.encoder.layers.",
        "visual.transformer.resblocks.",
    ),
    ("text_model.encoder.layers.", "transformer.resblocks."),
];

/// Every tensor name of a Hugging Face `CLIPModel` state dict for `config`, buffers
/// (`position_ids`) excluded: the whole-model keys and the layer table once per layer of each
/// tower.
pub(super) fn hf_tensor_names(config: &ClipConfig) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = MODEL_KEYS
        .iter()
        .map(|(hf, _, _)| (*hf).to_string())
        .collect();
    for (hf_prefix, _) in TOWER_LAYERS {
        let n_layers = if hf_prefix.starts_with("vision_model.") {
            config.vision.n_layers
        } else {
            config.text.n_layers
        };
        for i in 0..n_layers {
            names.extend(
                LAYER_KEYS
                    .iter()
                    .map(|(suffix, _, _)| format!("{hf_prefix}{i}.{suffix}")),
            );
        }
    }
    names
}

/// The open_clip name and transform behind a Hugging Face tensor name.
fn open_clip_key(hf_name: &str) -> Option<(String, Transform)> {
    if let Some((_, oc, t)) = MODEL_KEYS.iter().find(|(hf, _, _)| *hf == hf_name) {
        return Some(((*oc).to_string(), *t));
    }
    for (hf_prefix, oc_prefix) in TOWER_LAYERS {
        if let Some(rest) = hf_name.strip_prefix(hf_prefix) {
            let (index, suffix) = rest.split_once('.')?;
            let (_, oc, t) = LAYER_KEYS.iter().find(|(hf, _, _)| *hf == suffix)?;
            return Some((format!("{oc_prefix}{index}.{oc}"), *t));
        }
    }
    None
}

/// The layout of a CLIP checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointFormat {
    /// Hugging Face `CLIPModel` (`config.json` + `model.safetensors`).
    HuggingFace,
    /// open_clip / OpenAI state dict (`open_clip_model.safetensors`, optional
    /// `open_clip_config.json`).
    OpenClip,
}

impl std::str::FromStr for CheckpointFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hf" | "huggingface" | "transformers" => Ok(Self::HuggingFace),
            "openclip" | "open_clip" | "openai" => Ok(Self::OpenClip),
            other => Err(format!(
                "unknown checkpoint format `{other}` (expected hf or openclip)"
            )),
        }
    }
}

/// Options for [`load_clip`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Force a layout instead of detecting it. Default: detect.
    pub format: Option<CheckpointFormat>,
    /// Compute dtype of the parameters. Default: F32.
    pub dtype: Option<FloatDType>,
    /// Activation to assume when an open_clip checkpoint has no config file. Default:
    /// QuickGELU, as OpenAI's weights need.
    pub activation_if_inferred: Option<ClipActivation>,
}

/// What [`load_clip`] found.
#[derive(Debug, Clone)]
pub struct LoadedCheckpoint {
    /// The layout.
    pub format: CheckpointFormat,
    /// The configuration used.
    pub config: ClipConfig,
    /// The configuration file read, or `None` when the architecture was inferred from shapes.
    pub config_file: Option<PathBuf>,
    /// The weight files read.
    pub weight_files: Vec<PathBuf>,
}

/// Metadata of one tensor inside a loaded file.
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The tensors of one or more safetensors files, converted on request.
pub struct TensorFiles {
    files: Vec<(PathBuf, Vec<u8>)>,
    entries: HashMap<String, Entry>,
}

impl TensorFiles {
    /// Reads and validates safetensors files (all tensors become visible by name; a leading
    /// `module.` from DDP training is stripped).
    pub fn read(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (file, path) in paths.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let st_err = |source| Error::Safetensors {
                path: path.clone(),
                source,
            };
            // `deserialize` validates the header and that the data covers every tensor.
            SafeTensors::deserialize(&bytes).map_err(st_err)?;
            let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(st_err)?;
            let base = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
                entries.insert(
                    name,
                    Entry {
                        file,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: base + info.data_offsets.0,
                        end: base + info.data_offsets.1,
                    },
                );
            }
            files.push((path.clone(), bytes));
        }
        Ok(Self { files, entries })
    }

    /// The (first) file path, for messages.
    pub fn path(&self) -> &Path {
        self.files
            .first()
            .map_or(Path::new("<no file>"), |(p, _)| p)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A float tensor as f32 values with its shape.
    pub fn f32(&self, name: &str) -> Option<Result<(Vec<usize>, Vec<f32>)>> {
        let e = self.entries.get(name)?;
        let (path, bytes) = &self.files[e.file];
        let raw = &bytes[e.start..e.end];
        let values: Vec<f32> = match e.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            other => {
                return Some(Err(Error::UnsupportedDtype {
                    path: path.clone(),
                    key: name.to_string(),
                    found: format!("{other:?}"),
                }));
            }
        };
        Some(Ok((e.shape.clone(), values)))
    }

    /// The file holding a tensor (for messages).
    fn file_of(&self, name: &str) -> PathBuf {
        self.entries.get(name).map_or_else(
            || self.path().to_path_buf(),
            |e| self.files[e.file].0.clone(),
        )
    }

    /// Detects the layout from the tensor names.
    pub fn detect_format(&self) -> Option<CheckpointFormat> {
        if self.contains("vision_model.embeddings.patch_embedding.weight") {
            Some(CheckpointFormat::HuggingFace)
        } else if self.contains("visual.conv1.weight") {
            Some(CheckpointFormat::OpenClip)
        } else {
            None
        }
    }
}

/// Where each Hugging Face tensor lives in the files and what shape it has there: everything
/// about a checkpoint that needs no device (architecture inference reads only this).
#[derive(Clone, Copy)]
struct Layout<'a> {
    files: &'a TensorFiles,
    format: CheckpointFormat,
}

impl Layout<'_> {
    /// The tensor's name in the file and the transform to apply.
    fn locate(&self, hf_name: &str) -> (String, Transform) {
        match self.format {
            CheckpointFormat::HuggingFace => (hf_name.to_string(), Transform::Same),
            CheckpointFormat::OpenClip => {
                open_clip_key(hf_name).unwrap_or_else(|| (hf_name.to_string(), Transform::Same))
            }
        }
    }

    /// Shape of a tensor as the Hugging Face layout has it, if present.
    fn hf_shape(&self, hf_name: &str) -> Option<Vec<usize>> {
        let (key, transform) = self.locate(hf_name);
        let shape = self.files.shape(&key)?.to_vec();
        Some(match (transform, shape.as_slice()) {
            (Transform::Transpose, [a, b]) => vec![*b, *a],
            (Transform::Chunk(_), [n, rest @ ..]) => {
                let mut s = vec![n / 3];
                s.extend_from_slice(rest);
                s
            }
            _ => shape,
        })
    }

    /// Counts layers `0..n` present under a tower prefix.
    fn count_layers(&self, hf_prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.hf_shape(&format!("{hf_prefix}.layers.{i}.self_attn.q_proj.weight"))
                    .is_some()
            })
            .count()
    }

    /// Infers the architecture from tensor shapes, as OpenAI's `build_model` does
    /// (heads = width / 64; the image is square).
    fn infer_config(&self, activation: ClipActivation) -> Result<ClipConfig> {
        let path = self.files.path().to_path_buf();
        let need = |name: &str, rank: usize| -> Result<Vec<usize>> {
            let (key, _) = self.locate(name);
            match self.hf_shape(name) {
                Some(s) if s.len() == rank => Ok(s),
                Some(s) => Err(Error::Architecture {
                    path: path.clone(),
                    reason: format!("tensor `{key}` has shape {s:?}, expected rank {rank}"),
                }),
                None => Err(Error::MissingTensor {
                    path: path.clone(),
                    key,
                    expected: vec![],
                }),
            }
        };
        let arch = |reason: String| Error::Architecture {
            path: path.clone(),
            reason,
        };
        let conv = need("vision_model.embeddings.patch_embedding.weight", 4)?;
        let (width, channels, patch) = (conv[0], conv[1], conv[2]);
        let n_positions = need("vision_model.embeddings.position_embedding.weight", 2)?[0];
        let grid = ((n_positions.saturating_sub(1)) as f64).sqrt().round() as usize;
        if grid * grid + 1 != n_positions {
            return Err(arch(format!(
                "{n_positions} vision positions is not a square grid plus a class token; \
                 add an open_clip_config.json giving vision_cfg.image_size"
            )));
        }
        let v_layers = self.count_layers("vision_model.encoder");
        let v_ff = need("vision_model.encoder.layers.0.mlp.fc1.weight", 2)?[0];
        let tok = need("text_model.embeddings.token_embedding.weight", 2)?;
        let context = need("text_model.embeddings.position_embedding.weight", 2)?[0];
        let t_width = need("text_model.final_layer_norm.weight", 1)?[0];
        let t_ff = need("text_model.encoder.layers.0.mlp.fc1.weight", 2)?[0];
        let projection = need("text_projection.weight", 2)?[0];
        for (tower, w) in [("vision", width), ("text", t_width)] {
            if w % 64 != 0 {
                return Err(arch(format!(
                    "{tower} width {w} is not a multiple of 64, so the head count cannot be \
                     inferred; add a config file"
                )));
            }
        }
        let mut vision =
            ClipVisionConfig::new(width, v_ff, width / 64, v_layers, [grid * patch; 2], patch)
                .with_activation(activation);
        vision.n_channels = channels;
        let text = ClipTextConfig::new(
            tok[0],
            t_width,
            t_ff,
            t_width / 64,
            self.count_layers("text_model.encoder"),
            context,
            TextPooling::ArgmaxId,
        )
        .with_activation(activation);
        Ok(ClipConfig::new(vision, text, projection))
    }
}

/// Reads tensors by Hugging Face name from either layout and turns them into parameters.
struct Reader<'a> {
    files: &'a TensorFiles,
    format: CheckpointFormat,
    device: &'a Device,
    dtype: Option<FloatDType>,
}

impl Reader<'_> {
    fn layout(&self) -> Layout<'_> {
        Layout {
            files: self.files,
            format: self.format,
        }
    }

    /// Values of `hf_name` in the Hugging Face layout, checked against `expected`.
    fn values(&self, hf_name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (key, transform) = self.layout().locate(hf_name);
        let path = self.files.file_of(&key);
        let (shape, data) = self.files.f32(&key).ok_or_else(|| Error::MissingTensor {
            path: path.clone(),
            key: key.clone(),
            expected: self.file_shape(transform, expected),
        })??;
        let file_expected = self.file_shape(transform, expected);
        // A scalar stored as [] or [1] is the same thing.
        let same = shape == file_expected
            || (file_expected.iter().product::<usize>() == 1
                && shape.iter().product::<usize>() == 1);
        if !same {
            return Err(Error::ShapeMismatch {
                path,
                key,
                expected: file_expected,
                found: shape,
            });
        }
        Ok(match transform {
            Transform::Same => data,
            Transform::Transpose => transpose(&data, shape[0], shape[1]),
            Transform::Chunk(i) => {
                let len = data.len() / 3;
                data[i * len..(i + 1) * len].to_vec()
            }
        })
    }

    /// The shape the file must have for a given Hugging Face shape.
    fn file_shape(&self, transform: Transform, hf: &[usize]) -> Vec<usize> {
        match (transform, hf) {
            (Transform::Transpose, [a, b]) => vec![*b, *a],
            (Transform::Chunk(_), [n, rest @ ..]) => {
                let mut s = vec![n * 3];
                s.extend_from_slice(rest);
                s
            }
            _ => hf.to_vec(),
        }
    }

    fn tensor<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        let t: Tensor<D> = Tensor::from_data(TensorData::new(data, shape), self.device);
        match self.dtype {
            Some(dtype) if dtype != FloatDType::F32 => t.cast(dtype),
            _ => t,
        }
    }

    fn param<const D: usize>(&self, hf_name: &str, shape: [usize; D]) -> Result<Param<Tensor<D>>> {
        let data = self.values(hf_name, &shape)?;
        Ok(Param::from_tensor(self.tensor(data, shape)))
    }

    /// A Linear from `{prefix}.weight` ([out, in] in the file) and optionally `{prefix}.bias`.
    fn linear(&self, linear: &mut Linear, prefix: &str) -> Result<()> {
        let [d_in, d_out] = linear.weight.shape().dims();
        let w = self.values(&format!("{prefix}.weight"), &[d_out, d_in])?;
        linear.weight = Param::from_tensor(self.tensor(transpose(&w, d_out, d_in), [d_in, d_out]));
        if linear.bias.is_some() {
            linear.bias = Some(self.param(&format!("{prefix}.bias"), [d_out])?);
        }
        Ok(())
    }

    fn layer_norm(&self, norm: &mut LayerNorm, prefix: &str) -> Result<()> {
        let [d] = norm.gamma.shape().dims();
        norm.gamma = self.param(&format!("{prefix}.weight"), [d])?;
        norm.beta = Some(self.param(&format!("{prefix}.bias"), [d])?);
        Ok(())
    }

    fn encoder(&self, encoder: &mut ClipEncoder, prefix: &str) -> Result<()> {
        for (i, layer) in encoder.layers.iter_mut().enumerate() {
            let p = format!("{prefix}.layers.{i}");
            let attn = &mut layer.self_attn;
            self.linear(&mut attn.q_proj, &format!("{p}.self_attn.q_proj"))?;
            self.linear(&mut attn.k_proj, &format!("{p}.self_attn.k_proj"))?;
            self.linear(&mut attn.v_proj, &format!("{p}.self_attn.v_proj"))?;
            self.linear(&mut attn.out_proj, &format!("{p}.self_attn.out_proj"))?;
            self.layer_norm(&mut layer.layer_norm1, &format!("{p}.layer_norm1"))?;
            self.linear(&mut layer.mlp.fc1, &format!("{p}.mlp.fc1"))?;
            self.linear(&mut layer.mlp.fc2, &format!("{p}.mlp.fc2"))?;
            self.layer_norm(&mut layer.layer_norm2, &format!("{p}.layer_norm2"))?;
        }
        Ok(())
    }

    /// Fills every parameter of `model` from the files.
    fn fill(&self, model: &mut Clip) -> Result<()> {
        let v = &mut model.vision_model;
        let [d] = v.embeddings.class_embedding.shape().dims();
        v.embeddings.class_embedding =
            self.param("vision_model.embeddings.class_embedding", [d])?;
        let conv = &mut v.embeddings.patch_embedding;
        let shape: [usize; 4] = conv.weight.shape().dims();
        conv.weight = self.param("vision_model.embeddings.patch_embedding.weight", shape)?;
        let pos = &mut v.embeddings.position_embedding;
        let shape: [usize; 2] = pos.weight.shape().dims();
        pos.weight = self.param("vision_model.embeddings.position_embedding.weight", shape)?;
        self.layer_norm(&mut v.pre_layernorm, "vision_model.pre_layrnorm")?;
        self.encoder(&mut v.encoder, "vision_model.encoder")?;
        self.layer_norm(&mut v.post_layernorm, "vision_model.post_layernorm")?;

        let t = &mut model.text_model;
        let tok = &mut t.embeddings.token_embedding;
        let shape: [usize; 2] = tok.weight.shape().dims();
        tok.weight = self.param("text_model.embeddings.token_embedding.weight", shape)?;
        let pos = &mut t.embeddings.position_embedding;
        let shape: [usize; 2] = pos.weight.shape().dims();
        pos.weight = self.param("text_model.embeddings.position_embedding.weight", shape)?;
        self.encoder(&mut t.encoder, "text_model.encoder")?;
        self.layer_norm(&mut t.final_layer_norm, "text_model.final_layer_norm")?;

        self.linear(&mut model.visual_projection, "visual_projection")?;
        self.linear(&mut model.text_projection, "text_projection")?;
        model.logit_scale = self.param("logit_scale", [1])?;
        Ok(())
    }
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Builds a [`Clip`] for `config` and fills it from `files`.
pub fn load_clip_from_files(
    files: &TensorFiles,
    format: CheckpointFormat,
    config: &ClipConfig,
    device: &Device,
    dtype: Option<FloatDType>,
) -> Result<Clip> {
    let reader = Reader {
        files,
        format,
        device,
        dtype,
    };
    let mut model = config.init(device);
    reader.fill(&mut model)?;
    Ok(model)
}

/// Infers a [`ClipConfig`] from tensor shapes alone (see [`LoadOptions::activation_if_inferred`]).
pub fn infer_config(
    files: &TensorFiles,
    format: CheckpointFormat,
    activation: ClipActivation,
) -> Result<ClipConfig> {
    Layout { files, format }.infer_config(activation)
}

/// The files of a checkpoint found at `path` (a directory, or a `.safetensors` file).
struct Located {
    format: Option<CheckpointFormat>,
    weights: Vec<PathBuf>,
    config: Option<PathBuf>,
}

/// The configuration file of a Hugging Face checkpoint.
pub(super) const HF_CONFIG: &str = "config.json";
/// The (unsharded) weight file of a Hugging Face checkpoint.
pub(super) const HF_WEIGHTS: &str = "model.safetensors";
const HF_INDEX: &str = "model.safetensors.index.json";
const OC_CONFIG: &str = "open_clip_config.json";
const OC_WEIGHTS: &str = "open_clip_model.safetensors";

fn locate(path: &Path, format: Option<CheckpointFormat>) -> Result<Located> {
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        return Ok(Located {
            format,
            weights: vec![path.to_path_buf()],
            config: [dir.join(HF_CONFIG), dir.join(OC_CONFIG)]
                .into_iter()
                .find(|p| p.is_file()),
        });
    }
    if !path.is_dir() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    let want_hf = format != Some(CheckpointFormat::OpenClip);
    let want_oc = format != Some(CheckpointFormat::HuggingFace);
    if want_hf && path.join(HF_CONFIG).is_file() {
        if path.join(HF_WEIGHTS).is_file() {
            return Ok(Located {
                format: Some(CheckpointFormat::HuggingFace),
                weights: vec![path.join(HF_WEIGHTS)],
                config: Some(path.join(HF_CONFIG)),
            });
        }
        if path.join(HF_INDEX).is_file() {
            return Ok(Located {
                format: Some(CheckpointFormat::HuggingFace),
                weights: shards(&path.join(HF_INDEX))?,
                config: Some(path.join(HF_CONFIG)),
            });
        }
    }
    if want_oc && path.join(OC_WEIGHTS).is_file() {
        let config = path.join(OC_CONFIG);
        return Ok(Located {
            format: Some(CheckpointFormat::OpenClip),
            weights: vec![path.join(OC_WEIGHTS)],
            config: config.is_file().then_some(config),
        });
    }
    let mut looked_for = Vec::new();
    if want_hf {
        looked_for.push(format!("{HF_CONFIG} with {HF_WEIGHTS} or {HF_INDEX}"));
    }
    if want_oc {
        looked_for.push(format!("{OC_WEIGHTS} (+ optional {OC_CONFIG})"));
    }
    let pickles: Vec<_> = ["pytorch_model.bin", "open_clip_pytorch_model.bin"]
        .iter()
        .filter(|f| path.join(f).is_file())
        .collect();
    if !pickles.is_empty() {
        looked_for.push(format!(
            "found only PyTorch pickles {pickles:?}: convert them to safetensors first \
             (`safetensors.torch.save_file(torch.load(f), \"model.safetensors\")`)"
        ));
    }
    Err(Error::NoCheckpoint {
        dir: path.to_path_buf(),
        looked_for: looked_for.join("; "),
    })
}

/// Shard files listed in a `model.safetensors.index.json`.
fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let value = read_json(index)?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::invalid_config(index, "weight_map", "an object", "nothing"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files = BTreeSet::new();
    for (key, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::invalid_config(index, format!("weight_map.{key}"), "a file name", file)
        })?;
        files.insert(dir.join(file));
    }
    Ok(files.into_iter().collect())
}

/// Loads a CLIP model from a checkpoint directory or a `.safetensors` file.
///
/// A directory with `config.json` and `model.safetensors` (or a sharded index) is read as a
/// Hugging Face `CLIPModel`; one with `open_clip_model.safetensors` as open_clip, with its
/// `open_clip_config.json` if present, else with the architecture inferred from the shapes.
/// A bare file is detected by its tensor names. [`LoadOptions::format`] forces a layout.
pub fn load_clip(
    path: impl AsRef<Path>,
    options: &LoadOptions,
    device: &Device,
) -> Result<(Clip, LoadedCheckpoint)> {
    let path = path.as_ref();
    let located = locate(path, options.format)?;
    let files = TensorFiles::read(&located.weights)?;
    let format = match located.format.or(options.format) {
        Some(f) => f,
        None => files.detect_format().ok_or_else(|| Error::Architecture {
            path: files.path().to_path_buf(),
            reason: "neither `vision_model.embeddings.patch_embedding.weight` (Hugging Face) nor \
                     `visual.conv1.weight` (open_clip) is present"
                .into(),
        })?,
    };
    let config_file = located.config.filter(|c| {
        let name = c.file_name().and_then(|n| n.to_str());
        match format {
            CheckpointFormat::HuggingFace => name == Some(HF_CONFIG),
            CheckpointFormat::OpenClip => name == Some(OC_CONFIG),
        }
    });
    let config = match (&config_file, format) {
        (Some(c), CheckpointFormat::HuggingFace) => ClipConfig::from_hf_file(c)?,
        (Some(c), CheckpointFormat::OpenClip) => ClipConfig::from_open_clip_file(c)?,
        (None, _) => infer_config(
            &files,
            format,
            options.activation_if_inferred.unwrap_or_default(),
        )?,
    };
    let model = load_clip_from_files(&files, format, &config, device, options.dtype)?;
    Ok((
        model,
        LoadedCheckpoint {
            format,
            config,
            config_file,
            weight_files: located.weights,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_table_splits_fused_qkv() {
        let (key, t) =
            open_clip_key("vision_model.encoder.layers.3.self_attn.k_proj.bias").unwrap();
        assert_eq!(key, "visual.transformer.resblocks.3.attn.in_proj_bias");
        assert_eq!(t, Transform::Chunk(1));
        let (key, t) = open_clip_key("text_model.encoder.layers.11.mlp.fc2.weight").unwrap();
        assert_eq!(key, "transformer.resblocks.11.mlp.c_proj.weight");
        assert_eq!(t, Transform::Same);
        assert_eq!(
            open_clip_key("text_projection.weight").unwrap().1,
            Transform::Transpose
        );
        assert!(open_clip_key("vision_model.encoder.layers.0.nonsense").is_none());
    }

    #[test]
    fn hf_tensor_names_list_every_table_key_per_layer() {
        let mut config = ClipConfig::vit_base_patch32();
        config.vision.n_layers = 2;
        config.text.n_layers = 3;
        let names = hf_tensor_names(&config);
        assert_eq!(names.len(), MODEL_KEYS.len() + 5 * LAYER_KEYS.len());
        assert!(names.contains("vision_model.encoder.layers.1.self_attn.q_proj.bias"));
        assert!(names.contains("text_model.encoder.layers.2.mlp.fc2.weight"));
        assert!(!names.contains("vision_model.encoder.layers.2.mlp.fc2.weight"));
        assert!(names.contains("vision_model.pre_layrnorm.weight"));
        // Every name is one the open_clip table can also place.
        assert!(names.iter().all(|n| open_clip_key(n).is_some()));
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
