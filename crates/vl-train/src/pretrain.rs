//! [`pretrain`]: trains a CLIP from scratch on the synthetic world with burn-train and leaves a
//! standard Hugging Face checkpoint behind.
//!
//! The run directory holds, when the run has finished:
//!
//! ```text
//! config.json  model.safetensors  tokenizer.json  tokenizer_config.json  preprocessor_config.json
//!                                  the checkpoint: `vl embed --model <dir>` loads it as any CLIP
//! run.toml                         the resolved config the run was started with
//! history.json                     per-epoch metrics (loss, in-batch accuracy, held-out zero-shot)
//! report.json                      config, seed, backend, dtype, git revision, history, final numbers
//! results.md  curve.svg            the same as a Markdown table and a plot
//! train/                           burn-train's directory: checkpoint/{model,optim,scheduler}-N.bpk
//!                                  (atomic, last two epochs), metric logs, experiment.log
//! ```
//!
//! Determinism: the seed fixes the model initialisation (`Device::seed` before the lazy parameters
//! are first used), the world, the tokenizer corpus and every epoch's data (a pure function of
//! `(seed, epoch)`, see [`crate::data`]); one data worker delivers batches in order. A run killed
//! at any point resumes from the last complete epoch checkpoint and, since nothing else carries
//! state across epochs, ends with the same weights and numbers as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::optim::AdamWConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::lr_scheduler::LrSchedulerConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::optim::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::prelude::*;
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use serde::{Deserialize, Serialize};
use vl_data::synthetic::{Split, SyntheticWorld};
use vl_data::{ClipTokenizer, ImagePreprocessor, PreprocessConfig};
use vl_encoders::clip::Clip;

use crate::atomic::{read_json, write_atomic, write_json_atomic};
use crate::checkpoint::{AtomicCheckpointer, last_complete_epoch};
use crate::config::{LossKind, PretrainConfig};
use crate::data::{LabelledBatcher, LabelledItem, labelled_images, pretrain_loader};
use crate::error::{Error, Result};
use crate::model::{PretrainModel, ZeroShotAccuracy};
use crate::renderer::{EpochRecord, ProgressRenderer};
use crate::report;
use crate::zeroshot::{ZeroShotPrompts, ZeroShotTask};

/// How to run (not part of the experiment's identity).
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    /// The run directory.
    pub out_dir: PathBuf,
    /// Continue an interrupted run in `out_dir` (its `run.toml` must equal the config).
    pub resume: bool,
    /// Delete whatever `out_dir` holds and start over.
    pub force: bool,
    /// The compute device (without autodiff; it is added for training).
    pub device: Device,
    /// The backend's name for the report (`flex`, `wgpu`, `cuda`, ...).
    pub backend: String,
    /// The git revision of the code, for the report.
    pub git_revision: String,
    /// Stop after this many epochs of this invocation (the checkpoint is kept, `--resume`
    /// continues); for interrupting runs on purpose. Default `None`.
    pub stop_after_epochs: Option<usize>,
}

/// Zero-shot accuracies (%) on one image set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotScores {
    /// Images evaluated.
    pub images: usize,
    /// Shape accuracy (pair marginal), %.
    pub shape: f64,
    /// Shape accuracy with the colour-free prompt, %.
    pub shape_prompt: f64,
    /// Shape accuracy with the colour-free prompt, colour subspace projected out, %.
    pub shape_debiased: f64,
    /// Colour accuracy, %.
    pub colour: f64,
    /// (shape, colour) accuracy among all pairs, %.
    pub pair_all: f64,
    /// (shape, colour) accuracy among the held-out pairs only, % (held-out images only).
    pub pair_held_out: Option<f64>,
}

/// What a finished run reports (also `report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    /// The resolved config.
    pub config: PretrainConfig,
    /// The seed.
    pub seed: u64,
    /// The backend.
    pub backend: String,
    /// Compute dtype.
    pub dtype: String,
    /// Git revision of the code.
    pub git_revision: String,
    /// Trainable parameters.
    pub parameters: usize,
    /// Tokenizer vocabulary size.
    pub vocab_size: usize,
    /// Per-epoch metrics.
    pub history: Vec<EpochRecord>,
    /// Final zero-shot accuracy on held-out (never captioned) combinations.
    pub held_out: ZeroShotScores,
    /// Final zero-shot accuracy on seen combinations (evaluation images, never trained on).
    pub seen: ZeroShotScores,
    /// Wall-clock seconds of the training epochs (summed over resumed invocations).
    pub train_seconds: f64,
}

/// Files of the run directory.
struct RunPaths {
    dir: PathBuf,
}

impl RunPaths {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn train_dir(&self) -> PathBuf {
        self.dir.join("train")
    }
    fn checkpoint_dir(&self) -> PathBuf {
        self.train_dir().join("checkpoint")
    }
}

/// Whether `dir` holds a finished run (its `report.json`).
pub fn is_finished(dir: &Path) -> bool {
    dir.join("report.json").is_file()
}

/// Reads the report of a finished run.
pub fn read_report(dir: &Path) -> Result<PretrainReport> {
    read_json(&dir.join("report.json"))
}

/// Decides where to start: `Ok(None)` for a fresh run, `Ok(Some(epoch))` to resume after the
/// checkpoint of `epoch` (0 when the run was started but no epoch finished).
fn prepare_dir(config: &PretrainConfig, opts: &PretrainOptions) -> Result<Option<usize>> {
    let dir = &opts.out_dir;
    let run_dir_error = |message: String| Error::RunDir {
        path: dir.clone(),
        message,
    };
    let non_empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if opts.force && non_empty {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        return Ok(None);
    }
    if is_finished(dir) {
        return Err(run_dir_error(
            "holds a finished run (report.json); pass --force to replace it or choose another directory"
                .into(),
        ));
    }
    let run_toml = dir.join("run.toml");
    if run_toml.is_file() {
        let previous = PretrainConfig::from_toml_file(&run_toml)?;
        let done = last_complete_epoch(&dir.join("train").join("checkpoint")).unwrap_or(0);
        if !opts.resume {
            return Err(run_dir_error(format!(
                "holds an unfinished run (checkpoints up to epoch {done}); pass --resume to continue it or --force to start over"
            )));
        }
        if previous != *config {
            return Err(run_dir_error(format!(
                "was started with another config ({}); resume with the same config or pass --force",
                run_toml.display()
            )));
        }
        return Ok(Some(done));
    }
    if non_empty {
        return Err(run_dir_error(
            "exists and is not a vlkit run; pass --force to replace its contents or choose another directory"
                .into(),
        ));
    }
    Ok(None)
}

/// Trains (or resumes) the run described by `config` into `opts.out_dir`.
pub fn pretrain(config: &PretrainConfig, opts: &PretrainOptions) -> Result<PretrainReport> {
    config.validate()?;
    let resume_from = prepare_dir(config, opts)?;
    let paths = RunPaths {
        dir: opts.out_dir.clone(),
    };
    std::fs::create_dir_all(&paths.dir).map_err(|e| Error::io(&paths.dir, e))?;
    write_atomic(&paths.file("run.toml"), config.to_toml().as_bytes())?;

    let world = Arc::new(SyntheticWorld::new(config.world_config())?);

    // Tokenizer: trained once, deterministically, on the first captions of the stream.
    let tokenizer_path = paths.file("tokenizer.json");
    if resume_from.is_none() || !tokenizer_path.is_file() {
        eprintln!(
            "training a {}-token BPE tokenizer on {} captions",
            config.tokenizer.vocab_size, config.tokenizer.captions
        );
        crate::tokenizer::train_and_save(config, &world, &paths.dir)?;
    }
    let tokenizer = Arc::new(
        ClipTokenizer::from_dir(&paths.dir)?.with_context_length(config.model.context_length)?,
    );
    let preprocess = PreprocessConfig::clip(config.world.image_size);
    write_json_atomic(
        &paths.file("preprocessor_config.json"),
        &report::preprocessor_config_json(&preprocess),
    )?;
    let preprocessor = Arc::new(ImagePreprocessor::new(preprocess)?);

    // Model.
    let train_device = opts.device.clone().autodiff();
    // Held to the end of the run: the device generator is process-wide.
    let _rng = crate::device_rng::exclusive();
    train_device.seed(config.seed);
    let mut clip_config = config.clip_config(tokenizer.vocab_size(), tokenizer.eot_id());
    if config.train.loss == LossKind::Siglip {
        clip_config.logit_scale_init = 10f64.ln();
    }
    let clip = clip_config.init(&train_device);
    let prompts = ZeroShotPrompts::new(&tokenizer, &world, &config.eval.templates);
    let model = PretrainModel::new(clip, config.train.loss, prompts.clone(), &train_device);
    let parameters = model.num_params();

    // Data.
    let start_epoch = resume_from.map_or(1, |done| done + 1);
    let t = &config.train;
    let train_loader = pretrain_loader(
        Arc::clone(&world),
        Arc::clone(&preprocessor),
        Arc::clone(&tokenizer),
        t.batch_size,
        t.steps_per_epoch,
        start_epoch,
        t.num_workers,
        t.colour_groups,
        t.shape_variants,
        &train_device,
    );
    let held_out = labelled_images(
        &world,
        &preprocessor,
        Split::HeldOut,
        config.eval.held_out_images,
    )?;
    let valid_loader = DataLoaderBuilder::new(LabelledBatcher)
        .batch_size(config.eval.batch_size)
        .num_workers(1)
        .set_device(opts.device.clone())
        .build(InMemDataset::new(held_out.clone()));

    // Optimiser and schedule (per step).
    let total_steps = t.epochs * t.steps_per_epoch;
    let mut optim = AdamWConfig::new()
        .with_beta_1(t.beta_1)
        .with_beta_2(t.beta_2)
        .with_epsilon(t.epsilon)
        .with_weight_decay(t.weight_decay);
    if t.grad_clip_norm > 0.0 {
        optim = optim.with_grad_clipping(Some(GradientClippingConfig::Norm(t.grad_clip_norm)));
    }
    let schedule = SequentialLrSchedulerConfig::new(
        vec![
            LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(
                t.lr / 100.0,
                t.lr,
                t.warmup_steps.max(1),
            )),
            LrSchedulerConfig::Cosine(
                CosineAnnealingLrSchedulerConfig::new(t.lr, total_steps - t.warmup_steps.max(1))
                    .with_min_lr(t.min_lr),
            ),
        ],
        vec![t.warmup_steps.max(1)],
    )
    .init()
    .map_err(|e| Error::invalid("train", "a valid learning-rate schedule", e))?;
    let learner = Learner::new(model, optim.init(), schedule);

    // History of the epochs already done.
    let history_path = paths.file("history.json");
    let mut history: Vec<EpochRecord> = if resume_from.is_some() && history_path.is_file() {
        read_json(&history_path)?
    } else {
        Vec::new()
    };
    history.retain(|r| r.epoch < start_epoch);

    let last_epoch = match opts.stop_after_epochs {
        Some(n) => (start_epoch - 1 + n).min(t.epochs),
        None => t.epochs,
    };
    let checkpoint_dir = paths.checkpoint_dir();
    let mut training = SupervisedTraining::new(paths.train_dir(), train_loader, valid_loader)
        .metric_train_numeric(LossMetric::new())
        .metric_train_numeric(AccuracyMetric::new())
        .metric_train_numeric(LearningRateMetric::new())
        .num_epochs(last_epoch)
        .with_custom_checkpointers(
            AtomicCheckpointer::new(&checkpoint_dir, "model"),
            AtomicCheckpointer::new(&checkpoint_dir, "optim"),
            AtomicCheckpointer::new(&checkpoint_dir, "scheduler"),
        )
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
        .renderer(Box::new(ProgressRenderer::new(
            history_path.clone(),
            history,
        )));
    for task in ZeroShotTask::ALL {
        training = training.metric_valid_numeric(ZeroShotAccuracy::new(task));
    }
    if let Some(done) = resume_from.filter(|&d| d > 0) {
        training = training.checkpoint(done);
    }
    let started = Instant::now();
    let result = training.launch(learner);
    if let Some(error) = result.error {
        return Err(Error::Training(error.to_string()));
    }
    let history: Vec<EpochRecord> = read_json(&history_path).unwrap_or_default();
    eprintln!(
        "trained epochs {start_epoch}..={last_epoch} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if last_epoch < t.epochs {
        return Err(Error::RunDir {
            path: paths.dir.clone(),
            message: format!(
                "stopped after epoch {last_epoch} of {} as asked; pass --resume to continue",
                t.epochs
            ),
        });
    }

    // Export, final evaluation, report.
    let model = result.model;
    vl_encoders::clip::save_hf(&model.clip, &clip_config, &paths.dir)?;
    let seen = labelled_images(&world, &preprocessor, Split::Eval, config.eval.seen_images)?;
    let held_out_scores = evaluate(
        &model,
        &held_out,
        config.eval.batch_size,
        true,
        &opts.device,
    );
    let seen_scores = evaluate(&model, &seen, config.eval.batch_size, false, &opts.device);
    let train_seconds = history.iter().map(|r| r.seconds).sum();
    let report = PretrainReport {
        config: config.clone(),
        seed: config.seed,
        backend: opts.backend.clone(),
        dtype: "f32".into(),
        git_revision: opts.git_revision.clone(),
        parameters,
        vocab_size: tokenizer.vocab_size(),
        history,
        held_out: held_out_scores,
        seen: seen_scores,
        train_seconds,
    };
    report::write_outputs(&report, &paths.dir)?;
    Ok(report)
}

/// Zero-shot scores of `model` on `items`.
pub fn evaluate(
    model: &PretrainModel,
    items: &[LabelledItem],
    batch_size: usize,
    held_out: bool,
    device: &Device,
) -> ZeroShotScores {
    use burn::data::dataloader::batcher::Batcher;
    let mut hits = [0usize; ZeroShotTask::ALL.len()];
    let mut total = 0;
    for chunk in items.chunks(batch_size.max(1)) {
        let batch = LabelledBatcher.batch(chunk.to_vec(), device);
        let predictions = model.zero_shot(batch);
        for (slot, task) in ZeroShotTask::ALL.into_iter().enumerate() {
            hits[slot] += predictions.correct(task).0;
        }
        total += chunk.len();
    }
    let pct = |h: usize| 100.0 * h as f64 / total.max(1) as f64;
    ZeroShotScores {
        images: total,
        shape: pct(hits[0]),
        shape_prompt: pct(hits[1]),
        shape_debiased: pct(hits[2]),
        colour: pct(hits[3]),
        pair_all: pct(hits[4]),
        pair_held_out: held_out.then(|| pct(hits[5])),
    }
}

/// Loads the exported checkpoint of a finished run as a plain [`Clip`] (what every other vlkit
/// method sees).
pub fn load_exported(dir: &Path, device: &Device) -> Result<Clip> {
    let (clip, _) =
        vl_encoders::clip::load_clip(dir, &vl_encoders::clip::LoadOptions::default(), device)?;
    Ok(clip)
}
