//! Learned prompts on disk: `<stem>.safetensors` (the [`PromptLearner`]'s parameters under their
//! module paths: `ctx`, `meta_net.linear1.weight`, `visual.0`, ...) plus `<stem>.json` (format
//! tag, the [`PromptConfig`], the class names, and the fingerprint of the base model). Both are
//! written atomically and never overwrite an existing file unless asked. Loading onto a model
//! whose fingerprint differs is an [`Error::WrongBaseModel`]: a context learned in one model's
//! token-embedding space means nothing in another's.
//!
//! The fingerprint is FNV-1a (64 bit) over every parameter's shape and f32 values in module
//! order, so it identifies the weights, not the file they came from (a safetensors file and the
//! same weights converted from open_clip give the same fingerprint).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};
use vl_data::{Overwrite, write_atomic};
use vl_encoders::clip::Clip;

use crate::learner::{PromptConfig, PromptLearner};
use crate::{Error, Result};

/// The format tag of `<stem>.json`.
pub const PROMPT_FORMAT: &str = "vlkit-prompt/1";

/// The JSON half of a prompt file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFileInfo {
    /// Always [`PROMPT_FORMAT`].
    pub format: String,
    /// The learner's config.
    pub config: PromptConfig,
    /// The classes a class-specific context was learned for (informative otherwise).
    pub class_names: Vec<String>,
    /// [`model_fingerprint`] of the base model, as 16 hex digits.
    pub base_model: String,
    /// Where the base model was loaded from, if known (informative).
    pub base_model_path: Option<String>,
}

struct Fnv(u64);

impl ModuleVisitor for Fnv {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        for &d in tensor.dims().iter() {
            self.eat(&(d as u64).to_le_bytes());
        }
        let values = tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        for v in values {
            self.eat(&v.to_le_bytes());
        }
    }
}

impl Fnv {
    fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A 64-bit fingerprint of a model's weights, as 16 hex digits.
pub fn model_fingerprint(clip: &Clip) -> String {
    let mut fnv = Fnv(0xcbf2_9ce4_8422_2325);
    clip.visit(&mut fnv);
    format!("{:016x}", fnv.0)
}

fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    (
        stem.with_extension("safetensors"),
        stem.with_extension("json"),
    )
}

/// Writes `learner` to `<stem>.safetensors` + `<stem>.json` (atomically; an existing file is an
/// error unless `overwrite` allows it).
pub fn save_prompts(
    learner: &PromptLearner,
    clip: &Clip,
    class_names: &[String],
    base_model_path: Option<&str>,
    stem: impl AsRef<Path>,
    overwrite: Overwrite,
) -> Result<()> {
    let (weights, json) = paths(stem.as_ref());
    let mut store = SafetensorsStore::from_bytes(None);
    learner
        .save_into(&mut store)
        .map_err(|e| Error::invalid("prompt weights", "serialisable tensors", e))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| Error::invalid("prompt weights", "serialisable tensors", e))?;
    // Re-serialised without burn-store's metadata map (hash-ordered), so that the same prompts
    // always give the same bytes.
    let bytes = {
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
                path: weights.clone(),
                source,
            })?;
        let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> =
            st.tensors().into_iter().collect();
        safetensors::serialize(tensors, None).map_err(|source| Error::Safetensors {
            path: weights.clone(),
            source,
        })?
    };
    let info = PromptFileInfo {
        format: PROMPT_FORMAT.to_string(),
        config: learner.config.clone(),
        class_names: class_names.to_vec(),
        base_model: model_fingerprint(clip),
        base_model_path: base_model_path.map(str::to_string),
    };
    let text = serde_json::to_string_pretty(&info).map_err(|source| Error::Json {
        path: json.clone(),
        what: "a prompt file description",
        source,
    })?;
    let write = |path: &Path, bytes: &[u8]| {
        write_atomic(path, bytes, overwrite).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    };
    write(&weights, &bytes)?;
    write(&json, text.as_bytes())
}

/// Reads `<stem>.json` + `<stem>.safetensors` and rebuilds the learner on `clip`'s device;
/// refuses a file learned on another base model.
pub fn load_prompts(
    clip: &Clip,
    tokenizer: &vl_data::ClipTokenizer,
    stem: impl AsRef<Path>,
) -> Result<(PromptLearner, PromptFileInfo)> {
    let (weights, json) = paths(stem.as_ref());
    let text = std::fs::read_to_string(&json).map_err(|source| Error::Io {
        path: json.clone(),
        source,
    })?;
    let info: PromptFileInfo = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: json.clone(),
        what: "a prompt file description",
        source,
    })?;
    if info.format != PROMPT_FORMAT {
        return Err(Error::invalid(
            format!("{}: format", json.display()),
            PROMPT_FORMAT,
            &info.format,
        ));
    }
    let found = model_fingerprint(clip);
    if found != info.base_model {
        return Err(Error::WrongBaseModel {
            path: json,
            expected: info.base_model,
            found,
        });
    }
    let device = clip.logit_scale.val().device();
    let mut learner = info
        .config
        .init(clip, tokenizer, info.class_names.len(), 0, &device)?;
    let bytes = std::fs::read(&weights).map_err(|source| Error::Io {
        path: weights.clone(),
        source,
    })?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = learner.load_from(&mut store).map_err(|e| Error::Tensor {
        path: weights.clone(),
        tensor: "*".into(),
        expected: "the learner's parameters".into(),
        found: e.to_string(),
    })?;
    if let Some((missing, _)) = result.missing.first() {
        return Err(Error::Tensor {
            path: weights,
            tensor: missing.clone(),
            expected: "present (the config asks for it)".into(),
            found: "missing".into(),
        });
    }
    if let Some(error) = result.errors.first() {
        return Err(Error::Tensor {
            path: weights,
            tensor: "*".into(),
            expected: "tensors matching the config's shapes".into(),
            found: format!("{error:?}"),
        });
    }
    Ok((learner, info))
}
