//! Zero-shot image-text retrieval on the synthetic world, the protocol of the CLIP paper's
//! Flickr30k / MS-COCO evaluation (Radford et al. 2021, Table 13; open_clip's
//! `zero_shot_retrieval`): `images` images of one split, each with `captions_per_image` captions
//! drawn from the world's grammar (all of them true of the image, like COCO's five human
//! captions); normalised embeddings, cosine similarity, then `vl_eval::retrieval` for recall@K
//! and ranks in both directions.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use vl_data::synthetic::{Split, SyntheticWorld};
use vl_data::{ClipTokenizer, ImagePreprocessor, PreprocessConfig};
use vl_eval::retrieval::{RetrievalMetrics, retrieval_metrics};

use crate::atomic::{read_json, write_json_atomic};
use crate::config::PretrainConfig;
use crate::{Error, Result};

/// `[retrieval]` of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Images (queries of image-to-text). Default: `1000` (the size of Flickr30k's test set).
    pub images: usize,
    /// Captions per image. Default: `5` (as COCO and Flickr30k).
    pub captions_per_image: usize,
    /// The world's split. Default: `held_out` (images of shape-colour pairs never captioned in
    /// pretraining).
    pub split: Split,
    /// Recall cut-offs. Default: `[1, 5, 10]`.
    pub recall_at: Vec<usize>,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        Self {
            images: 1000,
            captions_per_image: 5,
            split: Split::HeldOut,
            recall_at: vec![1, 5, 10],
        }
    }
}

/// `retrieval.json` of a finished retrieval cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalReport {
    /// The model directory.
    pub model: std::path::PathBuf,
    /// The config.
    pub config: RetrievalConfig,
    /// The metrics.
    pub metrics: RetrievalMetrics,
    /// Fingerprint of the model's weights.
    pub base_model: String,
    /// Backend name.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// Git revision of the code.
    pub git_revision: String,
    /// Seconds.
    pub seconds: f64,
}

/// Runs (or reads back) the retrieval evaluation of `model` into `dir/retrieval.json`.
pub fn run_retrieval(
    model: &Path,
    config: &RetrievalConfig,
    dir: &Path,
    device: &Device,
    backend: &str,
    git_revision: &str,
) -> Result<RetrievalReport> {
    // See `device_rng`: one run at a time per process.
    let _rng = crate::device_rng::exclusive();
    let path = dir.join("retrieval.json");
    if path.is_file() {
        let report: RetrievalReport = read_json(&path)?;
        if report.config == *config && report.model == model {
            return Ok(report);
        }
        return Err(Error::RunDir {
            path: dir.to_path_buf(),
            message: "holds a retrieval result with another config (choose another --out)".into(),
        });
    }
    if config.images == 0 || config.captions_per_image == 0 || config.recall_at.is_empty() {
        return Err(Error::InvalidConfig {
            field: "retrieval".into(),
            expected: "images, captions_per_image >= 1 and at least one recall_at".into(),
            found: format!("{config:?}"),
        });
    }
    let started = std::time::Instant::now();
    let pretrain = PretrainConfig::from_toml_file(model.join("run.toml"))?;
    let world = SyntheticWorld::new(pretrain.world_config())?;
    let preprocessor = ImagePreprocessor::new(PreprocessConfig::clip(pretrain.world.image_size))?;
    let tokenizer =
        ClipTokenizer::from_dir(model)?.with_context_length(pretrain.model.context_length)?;
    let clip = crate::pretrain::load_exported(model, device)?;
    let size = pretrain.world.image_size as usize;
    let (mut image_feats, mut text_feats, mut text_image) = (Vec::new(), Vec::new(), Vec::new());
    let indices: Vec<u64> = (0..config.images as u64).collect();
    for chunk in indices.chunks(128) {
        let mut pixels = Vec::new();
        let mut captions = Vec::new();
        for &i in chunk {
            pixels.extend(preprocessor.preprocess(&world.sample_in(config.split, i).image));
            for c in world.captions_in(config.split, i, config.captions_per_image) {
                captions.push(c);
                text_image.push(i as usize);
            }
        }
        let px = Tensor::<4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, size, size]),
            device,
        );
        let img = vl_encoders::clip::l2_normalize(clip.encode_image(px));
        let tokens = tokenizer.encode_batch(&captions)?.to_tensor(device);
        let txt = vl_encoders::clip::l2_normalize(clip.encode_text(tokens));
        image_feats.push(img);
        text_feats.push(txt);
    }
    let sim = Tensor::cat(image_feats, 0).matmul(Tensor::cat(text_feats, 0).transpose());
    let sim: Vec<f32> = sim
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Training(format!("reading similarities: {e:?}")))?;
    let metrics = retrieval_metrics(&sim, config.images, &text_image, &config.recall_at)
        .map_err(|e| Error::Training(format!("retrieval: {e}")))?;
    let report = RetrievalReport {
        model: model.to_path_buf(),
        config: config.clone(),
        metrics,
        base_model: vl_prompting::model_fingerprint(&clip),
        backend: backend.to_string(),
        dtype: "f32".into(),
        git_revision: git_revision.to_string(),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_json_atomic(&path, &report)?;
    Ok(report)
}
