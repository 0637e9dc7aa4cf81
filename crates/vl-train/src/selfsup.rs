//! Self-supervised image representations learnt from scratch on the synthetic world's pixels,
//! with no caption and no label:
//!
//! - **SimCLR** (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
//!   Representations", <https://arxiv.org/abs/2002.05709>): two strongly augmented views of each
//!   image, the vision tower, a projection head (Linear-BatchNorm-ReLU-Linear, as SimCLR's and
//!   SwAV's), NT-Xent over the 2N views (`vl_losses::NtXentLoss`).
//! - **Self-labelling with Sinkhorn-Knopp** (SeLa, Asano et al. 2020,
//!   <https://arxiv.org/abs/1911.05371>; in the swapped-prediction form of SwAV, Caron et al.
//!   2020, <https://arxiv.org/abs/2006.09882>, `main_swav.py`): the projected views are scored
//!   against `K` learnable, normalised prototypes; the equal-partition assignment of each view
//!   (log-domain Sinkhorn-Knopp, `vl_losses::Sinkhorn`, no gradient) is the soft target of the
//!   other view's softmax(scores / T). The head's BatchNorm matters here: without it the
//!   features of a randomly initialised tower are nearly identical across images, the first
//!   assignments are nearly uniform, and training settles on the trivial fixed point where every
//!   score is equal and the loss is exactly `ln K` (measured: both tiny-model runs did).
//!
//! - **Self-labelling over the epoch** (`self_labelling`, SeLa's own form): the same prototypes,
//!   but the equal-partition assignment is computed once per epoch over all of that epoch's
//!   images (clean views, `N × K` Sinkhorn-Knopp, hard labels by argmax), and both augmented
//!   views are trained to predict their image's label. With thousands of images per assignment
//!   instead of one batch, the partition constraint holds the labels apart.
//!
//! The vision tower is the one of a pretraining config (`experiments/pretrain-tiny.toml`), so the
//! result compares directly with CLIP pretraining. Evaluation: a linear probe
//! (`vl_eval::linear_probe`, C chosen on validation) and kNN (`vl_eval::knn`) on the encoder's
//! normalised output, for the trained encoder and for the same encoder at its random
//! initialisation, on the world's shape and colour tasks (one-object evaluation images).
//!
//! Training runs on burn-train, the loop of prompt learning and LaFTer
//! (`prompt_train::fit`): a [`Learner`] over [`SelfSupModel`] with AdamW and the warm-up +
//! cosine schedule (`WarmupCosine`), burn-train's loss, learning-rate and agreement metrics
//! (SimCLR: contrastive top-1; Sinkhorn-Knopp and self-labelling: prototype argmax against the
//! target), atomic model/optimiser/scheduler checkpoints (the last two kept) and its resume. SeLa
//! relabels between epochs, so its run is a sequence of one-epoch burn-train segments, each
//! resuming from the previous epoch's checkpoint.
//!
//! Determinism: the seed fixes the initialisation (`Device::seed` before it), every image index
//! and every augmentation (`vl_data::augment::sample_seed(seed, epoch, item)`): epoch `e`'s
//! batches are a pure function of `(seed, e)` (`SelfSupLoader`), so a resumed run ends
//! bit-identical to an uninterrupted one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::{DataLoader, DataLoaderIterator};
use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::optim::AdamWConfig;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::train::checkpoint::Checkpointer;
use burn::train::{ClassificationOutput, InferenceStep, Learner, TrainOutput, TrainStep};
use serde::{Deserialize, Serialize};
use vl_data::augment::{AugmentConfig, sample_seed};
use vl_data::synthetic::{Split, SyntheticWorld, Task};
use vl_data::{ImagePreprocessor, PreprocessConfig};
use vl_encoders::clip::{Clip, l2_normalize};
use vl_losses::{LabelSmoothingCrossEntropyLossConfig, NtXentLossConfig, SinkhornConfig};

use crate::atomic::{read_json, write_atomic, write_json_atomic};
use crate::checkpoint::AtomicCheckpointer;
use crate::config::PretrainConfig;
use crate::prompt::{PromptEpoch, RunLog};
use crate::prompt_train::{BatchIter, ErrorSlot, FitRun, fit, resume_point};
use crate::renderer::EpochRecord;
use crate::{Error, Result};

/// Which objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfSupMethod {
    /// SimCLR's NT-Xent.
    Simclr,
    /// Swapped prediction of Sinkhorn-Knopp self-labels (SwAV's per-batch form).
    SinkhornKnopp,
    /// SeLa's form: at the start of every epoch, the clean views of all the epoch's images are
    /// scored against the prototypes and given equal-partition hard labels by Sinkhorn-Knopp
    /// over the whole epoch; both augmented views then learn them by cross-entropy.
    SelfLabelling,
}

/// A self-supervised run (TOML; unknown keys are errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfSupConfig {
    /// The objective. Default: `simclr`.
    pub method: SelfSupMethod,
    /// Seed of every random choice. Default: `0`.
    pub seed: u64,
    /// The pretraining config whose world and vision tower are used. Default:
    /// `experiments/pretrain-tiny.toml`.
    pub architecture: PathBuf,
    /// Epochs. Default: `10`.
    pub epochs: usize,
    /// Steps per epoch. Default: `40`.
    pub steps_per_epoch: usize,
    /// Images per step (each gives two views). Default: `128`.
    pub batch_size: usize,
    /// Peak learning rate (AdamW; linear warm-up over `warmup_steps`, then cosine to 0).
    /// Default: `2e-3`.
    pub lr: f64,
    /// Warm-up steps. Default: `40`.
    pub warmup_steps: usize,
    /// Decoupled weight decay. Default: `1e-4`.
    pub weight_decay: f64,
    /// Temperature of NT-Xent or of the prototype softmax. Default: `0.1`.
    pub temperature: f64,
    /// Hidden width of the projection head. Default: `128`.
    pub hidden_dim: usize,
    /// Output width of the projection head. Default: `64`.
    pub projection_dim: usize,
    /// BatchNorm after the head's hidden layer (SimCLR's and SwAV's heads). Default: `true`.
    pub head_batch_norm: bool,
    /// Smallest crop area (fraction) of the views' random resized crop. Default: `0.08`
    /// (torchvision's and SimCLR's).
    pub crop_min_scale: f64,
    /// Largest hue shift (turns, at most `0.5`) of the views' colour jitter; `0.5` draws any hue,
    /// so colour no longer ties the two views together. Default: `0.1` (`AugmentConfig::strong`).
    pub jitter_hue: f64,
    /// Prototypes (Sinkhorn-Knopp). Default: `64`.
    pub prototypes: usize,
    /// Entropic regularisation of Sinkhorn-Knopp (SwAV's 0.05). Default: `0.05`.
    pub sinkhorn_epsilon: f64,
    /// Sinkhorn-Knopp iterations (SwAV's 3). Default: `3`.
    pub sinkhorn_iters: usize,
    /// Steps during which the prototypes get no gradient (SwAV's `freeze_prototypes_niters`,
    /// one epoch there). Default: `40`.
    pub freeze_prototypes_steps: usize,
    /// Evaluation.
    pub eval: SelfSupEval,
}

/// `[eval]` of a self-supervised run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfSupEval {
    /// Tasks. Default: `["shape", "colour"]`.
    pub tasks: Vec<Task>,
    /// Labelled training images (linear probe, kNN memory). Default: `512`.
    pub train_images: usize,
    /// Validation images (the probe's C). Default: `256`.
    pub val_images: usize,
    /// Test images. Default: `1024`.
    pub test_images: usize,
    /// kNN neighbours. Default: `20`.
    pub knn_k: usize,
}

impl Default for SelfSupEval {
    fn default() -> Self {
        Self {
            tasks: vec![Task::Shape, Task::Colour],
            train_images: 512,
            val_images: 256,
            test_images: 1024,
            knn_k: 20,
        }
    }
}

impl Default for SelfSupConfig {
    fn default() -> Self {
        Self {
            method: SelfSupMethod::Simclr,
            seed: 0,
            architecture: PathBuf::from("experiments/pretrain-tiny.toml"),
            epochs: 10,
            steps_per_epoch: 40,
            batch_size: 128,
            lr: 2e-3,
            warmup_steps: 40,
            weight_decay: 1e-4,
            temperature: 0.1,
            hidden_dim: 128,
            projection_dim: 64,
            head_batch_norm: true,
            crop_min_scale: 0.08,
            jitter_hue: 0.1,
            prototypes: 64,
            sinkhorn_epsilon: 0.05,
            sinkhorn_iters: 3,
            freeze_prototypes_steps: 40,
            eval: SelfSupEval::default(),
        }
    }
}

impl SelfSupConfig {
    /// Learning rate at (0-based) global step `step`.
    fn lr_at(&self, step: usize) -> f64 {
        let total = (self.epochs * self.steps_per_epoch).max(1);
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let t = (step - self.warmup_steps) as f64 / (total - self.warmup_steps).max(1) as f64;
        0.5 * self.lr * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0
            || self.steps_per_epoch == 0
            || self.batch_size < 2
            || self.prototypes == 0
            || self.temperature <= 0.0
        {
            return Err(Error::InvalidConfig {
                field: "selfsup".into(),
                expected:
                    "epochs, steps_per_epoch, prototypes >= 1, batch_size >= 2, temperature > 0"
                        .into(),
                found: format!(
                    "epochs {}, steps_per_epoch {}, batch_size {}, prototypes {}, temperature {}",
                    self.epochs,
                    self.steps_per_epoch,
                    self.batch_size,
                    self.prototypes,
                    self.temperature
                ),
            });
        }
        Ok(())
    }
}

/// The trained model: CLIP's vision tower (the text tower is unused), projection head,
/// prototypes. burn-train optimises and checkpoints it; the run config rides along unsaved.
#[derive(Module, Debug)]
pub struct SelfSupModel {
    /// The CLIP whose `encode_image` is the encoder.
    pub clip: Clip,
    head_in: Linear,
    head_bn: Option<BatchNorm>,
    head_out: Linear,
    /// `[prototypes, projection_dim]`, normalised in the forward pass.
    prototypes: Param<Tensor<2>>,
    /// The run config (objective, temperature, Sinkhorn settings); not a parameter.
    #[module(skip)]
    config: Arc<SelfSupConfig>,
}

/// One training step's input: the two views of the step's images.
#[derive(Debug, Clone)]
pub struct SelfSupBatch {
    /// `[batch_size, 3, size, size]`, first view.
    a: Tensor<4>,
    /// `[batch_size, 3, size, size]`, second view.
    b: Tensor<4>,
    /// Global (0-based) step: SwAV freezes the prototypes for the first steps.
    step: usize,
    /// Self-labelling: the images' labels of this epoch, `[batch_size]`.
    labels: Option<Tensor<1, Int>>,
}

impl SelfSupModel {
    /// Normalised projections of a batch of images.
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, size, size]`
    /// - output: `[batch, projection_dim]`
    fn project(&self, pixels: Tensor<4>) -> Tensor<2> {
        let h = self.head_in.forward(self.clip.encode_image(pixels));
        let h = match &self.head_bn {
            Some(bn) => bn.forward(h),
            None => h,
        };
        l2_normalize(self.head_out.forward(burn::tensor::activation::relu(h)))
    }

    /// The objective on one batch, with what burn-train's accuracy metric reads: logits and
    /// the targets they should pick (no gradient through either).
    ///
    /// - SimCLR: each of the 2N views scored against the other 2N - 1 (itself masked out); the
    ///   target is its positive (the contrastive top-1 accuracy of SimCLR's own logs).
    /// - Sinkhorn-Knopp: the first view's prototype scores; the target is the argmax of the
    ///   second view's assignment (how often the swapped prediction already agrees).
    /// - Self-labelling: the first view's prototype scores against the epoch's labels.
    ///
    /// # Shapes
    /// - batch.a, batch.b: `[n, 3, size, size]`
    /// - output: loss `[1]`, logits `[2n, 2n]` (SimCLR) or `[n, prototypes]`, targets `[2n]`
    ///   or `[n]`
    fn forward(&self, batch: SelfSupBatch) -> (Tensor<1>, Tensor<2>, Tensor<1, Int>) {
        let config = &self.config;
        let [n, _, _, _] = batch.a.dims();
        assert_shape!(batch.b, [n, _, _, _]);
        let t = config.temperature;
        let ce = LabelSmoothingCrossEntropyLossConfig::new(0.0).init();
        let (za, zb) = (self.project(batch.a), self.project(batch.b));
        match (config.method, batch.labels) {
            (SelfSupMethod::Simclr, _) => {
                let loss = NtXentLossConfig::new(config.temperature)
                    .init()
                    .forward(za.clone(), zb.clone());
                let device = za.device();
                let z = Tensor::cat(vec![za.detach(), zb.detach()], 0);
                let eye = Tensor::<2, Int>::from_data(
                    TensorData::new(
                        (0..2 * n)
                            .flat_map(|i| (0..2 * n).map(move |j| i64::from(i == j)))
                            .collect::<Vec<_>>(),
                        [2 * n, 2 * n],
                    ),
                    &device,
                )
                .bool();
                let logits = z.clone().matmul(z.transpose()).mask_fill(eye, -1e4);
                let targets: Vec<i64> = (0..2 * n).map(|i| ((i + n) % (2 * n)) as i64).collect();
                let targets = Tensor::from_data(TensorData::new(targets, [2 * n]), &device);
                (loss, logits, targets)
            }
            (SelfSupMethod::SinkhornKnopp, _) => {
                let protos = if batch.step < config.freeze_prototypes_steps {
                    l2_normalize(self.prototypes.val().detach())
                } else {
                    l2_normalize(self.prototypes.val())
                };
                let sa = za.matmul(protos.clone().transpose());
                let sb = zb.matmul(protos.transpose());
                let sk = SinkhornConfig::new()
                    .with_epsilon(config.sinkhorn_epsilon)
                    .with_n_iters(config.sinkhorn_iters)
                    .init();
                let (qa, qb) = (sk.forward(sa.clone()), sk.forward(sb.clone()));
                let targets = qb.clone().argmax(1).reshape([n]);
                let logits = sa.clone().detach();
                let loss = (ce.forward_soft(sb.div_scalar(t), qa)
                    + ce.forward_soft(sa.div_scalar(t), qb))
                .div_scalar(2.0);
                (loss, logits, targets)
            }
            (SelfSupMethod::SelfLabelling, Some(labels)) => {
                let la = self.scores(za).div_scalar(t);
                let lb = self.scores(zb).div_scalar(t);
                let logits = la.clone().detach();
                let loss = (ce.forward(la, labels.clone()) + ce.forward(lb, labels.clone()))
                    .div_scalar(2.0);
                (loss, logits, labels)
            }
            (SelfSupMethod::SelfLabelling, None) => {
                unreachable!("the self-labelling loader attaches the epoch's labels to every batch")
            }
        }
    }

    /// Prototype scores `[batch, prototypes]` of normalised projections.
    fn scores(&self, z: Tensor<2>) -> Tensor<2> {
        z.matmul(l2_normalize(self.prototypes.val()).transpose())
    }
}

impl TrainStep for SelfSupModel {
    type Input = SelfSupBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: SelfSupBatch) -> TrainOutput<ClassificationOutput> {
        let (loss, logits, targets) = self.forward(batch);
        let grads = loss.backward();
        TrainOutput::new(
            self,
            grads,
            ClassificationOutput::new(loss.detach(), logits, targets),
        )
    }
}

impl InferenceStep for SelfSupModel {
    type Input = SelfSupBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: SelfSupBatch) -> ClassificationOutput {
        let (loss, logits, targets) = self.forward(batch);
        ClassificationOutput::new(loss, logits, targets)
    }
}

/// [`SelfSupConfig::lr_at`] (linear warm-up, then cosine to 0) stepped per iteration as
/// burn-train does, recorded so a resume continues it.
#[derive(Debug, Clone)]
pub(crate) struct WarmupCosine {
    config: Arc<SelfSupConfig>,
    step: usize,
}

impl LrScheduler for WarmupCosine {
    fn step(&mut self) -> f64 {
        let lr = self.config.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

/// The training data: epoch `e`'s `steps_per_epoch` batches of view pairs are a pure function
/// of `(seed, e)` ([`views`]), made on demand on worker threads.
#[derive(Clone)]
pub(crate) struct SelfSupLoader {
    world: Arc<SyntheticWorld>,
    preprocessor: Arc<ImagePreprocessor>,
    augment: Arc<AugmentConfig>,
    config: Arc<SelfSupConfig>,
    /// Self-labelling: the labels of the epoch about to be served, in item order.
    labels: Option<Arc<Vec<i64>>>,
    /// Steps `first_step..end_step` of every epoch are served (all of them but in a slice).
    steps: (usize, usize),
    /// The epoch of the next pass minus one (advanced by `iter`).
    epoch: Arc<AtomicUsize>,
    errors: ErrorSlot,
    device: Device,
}

impl SelfSupLoader {
    fn batch(&self, epoch: usize, step: usize) -> Result<SelfSupBatch> {
        let (a, b) = views(
            &self.world,
            &self.preprocessor,
            &self.augment,
            &self.config,
            (epoch, step),
            &self.device,
        );
        let n = self.config.batch_size;
        let labels = match &self.labels {
            Some(all) => {
                let mine = all.get(step * n..(step + 1) * n).ok_or_else(|| {
                    Error::Training(format!(
                        "self-labelling: {} labels for the epoch, step {step} needs {}",
                        all.len(),
                        (step + 1) * n
                    ))
                })?;
                Some(Tensor::<1, Int>::from_data(
                    TensorData::new(mine.to_vec(), [n]),
                    &self.device,
                ))
            }
            None => None,
        };
        Ok(SelfSupBatch {
            a,
            b,
            step: (epoch - 1) * self.config.steps_per_epoch + step,
            labels,
        })
    }
}

impl DataLoader<SelfSupBatch> for SelfSupLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<SelfSupBatch> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let n = self.config.batch_size;
        Box::new(BatchIter::new(
            (self.steps.0 * n..self.steps.1 * n).collect(),
            n,
            &self.errors,
            move |chunk| self.batch(epoch, chunk[0] / n),
        ))
    }

    fn num_items(&self) -> usize {
        (self.steps.1 - self.steps.0) * self.config.batch_size
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<SelfSupBatch>> {
        let mut moved = self.clone();
        moved.device = device.clone();
        Arc::new(moved)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<SelfSupBatch>> {
        // Used by burn-train only to split data across devices (these runs use one): the
        // steps whose images fall in `start..end`.
        let n = self.config.batch_size.max(1);
        let mut sliced = self.clone();
        let first = self.steps.0 + start / n;
        sliced.steps = (
            first.min(self.steps.1),
            (self.steps.0 + end.div_ceil(n)).min(self.steps.1),
        );
        Arc::new(sliced)
    }
}

/// The image index of `item` in `epoch` (the same stream [`views`] draws from).
fn image_index(config: &SelfSupConfig, epoch: usize, item: u64) -> u64 {
    mix(config.seed ^ mix(epoch as u64) ^ mix(item)) >> 24
}

/// SeLa's labels of one epoch: the clean views of all `steps_per_epoch × batch_size` images,
/// scored against the prototypes by the model in evaluation mode (`valid()`: no autodiff, the
/// head's BatchNorm on its running statistics, as SeLa's labelling pass), equal-partition
/// assignment by Sinkhorn-Knopp over all of them, argmax. `device` is the plain (inference)
/// device: scoring on the autodiff device kept every batch's graph alive (24 GB by epoch 2).
/// Returns the labels in item order and how many prototypes are used.
fn epoch_labels(
    model: &SelfSupModel,
    world: &SyntheticWorld,
    preprocessor: &ImagePreprocessor,
    config: &SelfSupConfig,
    epoch: usize,
    device: &Device,
) -> Result<(Vec<i64>, usize)> {
    let model = model.valid();
    let size = world.config().image_size as usize;
    let n = config.batch_size;
    let mut scores = Vec::with_capacity(config.steps_per_epoch);
    for step in 0..config.steps_per_epoch {
        let pixels: Vec<f32> = (0..n)
            .flat_map(|r| {
                let item = (step * n + r) as u64;
                let image = world
                    .sample_in(Split::Pretrain, image_index(config, epoch, item))
                    .image;
                preprocessor.preprocess(&image)
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, size, size]), device);
        scores.push(model.scores(model.project(x)));
    }
    let all = Tensor::cat(scores, 0);
    let q = SinkhornConfig::new()
        .with_epsilon(config.sinkhorn_epsilon)
        .with_n_iters(config.sinkhorn_iters)
        .init()
        .forward(all);
    let total = q.dims()[0];
    let labels: Vec<i64> = q
        .argmax(1)
        .reshape([total])
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| Error::Training(format!("reading the self-labels back: {e:?}")))?;
    let mut used = vec![false; config.prototypes];
    for &l in &labels {
        used[l as usize] = true;
    }
    let used = used.into_iter().filter(|&u| u).count();
    Ok((labels, used))
}

/// Linear-probe and kNN accuracy (%) of one encoder on one task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeScores {
    /// Linear probe (C chosen on validation, refit on train + validation).
    pub linear_probe: f64,
    /// kNN.
    pub knn: f64,
}

/// One epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfSupEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean loss.
    pub loss: f64,
    /// Learning rate of the epoch's last step (`NaN` in reports written before burn-train).
    #[serde(default = "nan")]
    pub lr: f64,
    /// Mean agreement (%) of the step's logits with their targets (see
    /// [`SelfSupModel`]'s `forward`; `NaN` in reports written before burn-train).
    #[serde(default = "nan")]
    pub agreement: f64,
    /// Seconds.
    pub seconds: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// The model of checkpoint `epoch` of the run in `dir` (`like` gives the structure).
fn restore(like: &SelfSupModel, dir: &Path, epoch: usize) -> Result<SelfSupModel> {
    let record = Checkpointer::<ModuleRecord>::restore(
        &AtomicCheckpointer::new(dir.join("checkpoints"), "model"),
        epoch,
    )
    .map_err(|e| Error::Training(format!("restoring model checkpoint {epoch}: {e}")))?;
    like.clone()
        .try_load_record(record)
        .map_err(|e| Error::Training(format!("loading model checkpoint {epoch}: {e}")))
}

/// `report.json` of a self-supervised run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfSupReport {
    /// The config.
    pub config: SelfSupConfig,
    /// Backend name.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// Git revision of the code.
    pub git_revision: String,
    /// Trainable parameters (vision tower, head, prototypes).
    pub trainable_parameters: usize,
    /// Per-epoch loss.
    pub history: Vec<SelfSupEpoch>,
    /// `(task, random-init encoder, trained encoder)`.
    pub eval: Vec<(Task, ProbeScores, ProbeScores)>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct SelfSupOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Continue an interrupted run.
    pub resume: bool,
    /// Compute device (autodiff is added for training).
    pub device: Device,
    /// Backend name for the report.
    pub backend: String,
    /// Git revision for the report.
    pub git_revision: String,
    /// Stop after this many epochs of this invocation (for interrupting on purpose).
    pub stop_after_epochs: Option<usize>,
    /// Print progress.
    pub verbose: bool,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The two augmented views of one step's images, decoded on worker threads.
fn views(
    world: &SyntheticWorld,
    preprocessor: &ImagePreprocessor,
    augment: &AugmentConfig,
    config: &SelfSupConfig,
    (epoch, step): (usize, usize),
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let size = world.config().image_size as usize;
    let per = 3 * size * size;
    let n = config.batch_size;
    let mut a = vec![0.0f32; n * per];
    let mut b = vec![0.0f32; n * per];
    let workers = std::thread::available_parallelism().map_or(1, |w| w.get());
    let rows = n.div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        for (chunk, (oa, ob)) in a
            .chunks_mut(rows * per)
            .zip(b.chunks_mut(rows * per))
            .enumerate()
        {
            scope.spawn(move || {
                for (r, (va, vb)) in oa.chunks_mut(per).zip(ob.chunks_mut(per)).enumerate() {
                    let item = ((step * n) + chunk * rows + r) as u64;
                    let image = world
                        .sample_in(Split::Pretrain, image_index(config, epoch, item))
                        .image;
                    let s = sample_seed(config.seed, epoch as u64, item);
                    va.copy_from_slice(&preprocessor.preprocess(&augment.apply(&image, mix(s))));
                    vb.copy_from_slice(&preprocessor.preprocess(&augment.apply(&image, mix(!s))));
                }
            });
        }
    });
    let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [n, 3, size, size]), device);
    (t(a), t(b))
}

/// Normalised encoder features and labels of `n` one-object evaluation images from `skip`.
fn labelled_features(
    clip: &Clip,
    world: &SyntheticWorld,
    preprocessor: &ImagePreprocessor,
    set: &[(u64, usize)],
    device: &Device,
) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    let size = world.config().image_size as usize;
    let mut feats = Vec::new();
    let mut dim = 0;
    for chunk in set.chunks(256) {
        let mut px = Vec::with_capacity(chunk.len() * 3 * size * size);
        for &(index, _) in chunk {
            px.extend(preprocessor.preprocess(&world.sample_in(Split::Eval, index).image));
        }
        let x = Tensor::<4>::from_data(TensorData::new(px, [chunk.len(), 3, size, size]), device);
        let f = l2_normalize(clip.encode_image(x));
        dim = f.dims()[1];
        feats.extend(
            f.into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Training(format!("reading features: {e:?}")))?,
        );
    }
    Ok((feats, set.iter().map(|s| s.1).collect(), dim))
}

/// Linear probe and kNN of `clip`'s encoder on each task.
fn evaluate(
    clip: &Clip,
    world: &SyntheticWorld,
    preprocessor: &ImagePreprocessor,
    eval: &SelfSupEval,
    device: &Device,
) -> Result<Vec<(Task, ProbeScores)>> {
    let mut out = Vec::new();
    let err = |e: vl_eval::Error| Error::Training(format!("self-supervised evaluation: {e}"));
    for &task in &eval.tasks {
        let n_classes = world.class_names(task).len();
        let total = eval.train_images + eval.val_images + eval.test_images;
        let set = world.classification_set(task, Split::Eval, total)?;
        let (tr, va) = (eval.train_images, eval.train_images + eval.val_images);
        let (xt, yt, dim) = labelled_features(clip, world, preprocessor, &set[..tr], device)?;
        let (xv, yv, _) = labelled_features(clip, world, preprocessor, &set[tr..va], device)?;
        let (xs, ys, _) = labelled_features(clip, world, preprocessor, &set[va..], device)?;
        let (probe, _) = vl_eval::linear_probe::fit_with_validation(
            (&xt, &yt),
            (&xv, &yv),
            dim,
            n_classes,
            &vl_eval::linear_probe::LinearProbeConfig::default(),
        )
        .map_err(err)?;
        let lp = vl_eval::metrics::accuracy(&probe.predict(&xs).map_err(err)?, &ys).map_err(err)?;
        let knn = vl_eval::knn::knn_classify(
            &xt,
            &yt,
            &xs,
            dim,
            n_classes,
            &vl_eval::knn::KnnConfig {
                k: eval.knn_k,
                ..vl_eval::knn::KnnConfig::default()
            },
        )
        .map_err(err)?;
        let knn = vl_eval::metrics::accuracy(&knn, &ys).map_err(err)?;
        out.push((
            task,
            ProbeScores {
                linear_probe: lp,
                knn,
            },
        ));
    }
    Ok(out)
}

/// Runs (or resumes, or reads back) a self-supervised run; writes `report.json` and
/// `results.md` into the output directory.
pub fn run_selfsup(config: &SelfSupConfig, opts: &SelfSupOptions) -> Result<SelfSupReport> {
    config.validate()?;
    let dir = &opts.out_dir;
    let report_path = dir.join("report.json");
    let run_path = dir.join("run.json");
    if report_path.is_file() {
        let report: SelfSupReport = read_json(&report_path)?;
        if &report.config == config {
            return Ok(report);
        }
        return Err(Error::RunDir {
            path: dir.clone(),
            message: "holds a finished run with another config (choose another --out)".into(),
        });
    }
    if run_path.is_file() {
        let previous: SelfSupConfig = read_json(&run_path)?;
        if &previous != config || !opts.resume {
            return Err(Error::RunDir {
                path: dir.clone(),
                message: if &previous != config {
                    "holds an unfinished run with another config".into()
                } else {
                    "holds an unfinished run: pass --resume to continue it".into()
                },
            });
        }
    }
    std::fs::create_dir_all(dir.join("checkpoints")).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    write_json_atomic(&run_path, config)?;

    let arch = PretrainConfig::from_toml_file(&config.architecture)?;
    let world = SyntheticWorld::new(arch.world_config())?;
    let size = arch.world.image_size;
    let preprocessor = ImagePreprocessor::new(PreprocessConfig::clip(size))?;
    let mut augment = AugmentConfig::strong(size, size);
    if let Some(crop) = augment.crop.as_mut() {
        crop.scale.0 = config.crop_min_scale;
    }
    if !(0.0..=0.5).contains(&config.jitter_hue) {
        return Err(Error::InvalidConfig {
            field: "jitter_hue".into(),
            expected: "a hue shift in [0, 0.5] turns".into(),
            found: config.jitter_hue.to_string(),
        });
    }
    if let Some(jitter) = augment.jitter.as_mut() {
        jitter.hue = config.jitter_hue;
    }
    augment.validate().map_err(|e| Error::InvalidConfig {
        field: "crop_min_scale".into(),
        expected: "a valid crop scale in (0, 1]".into(),
        found: e.to_string(),
    })?;
    let device = opts.device.clone().autodiff();
    // Held to the end of the run: the device generator is process-wide.
    let _rng = crate::device_rng::exclusive();
    device.seed(config.seed);
    // The text tower is unused; a minimal vocabulary keeps it small.
    let clip = arch.clip_config(8, 1).init(&device);
    let width = clip.visual_projection.weight.dims()[1];
    let model = SelfSupModel {
        clip,
        head_in: LinearConfig::new(width, config.hidden_dim).init(&device),
        head_bn: config
            .head_batch_norm
            .then(|| BatchNormConfig::new(config.hidden_dim).init(&device)),
        head_out: LinearConfig::new(config.hidden_dim, config.projection_dim).init(&device),
        prototypes: Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .init([config.prototypes, config.projection_dim], &device),
        config: Arc::new(config.clone()),
    };
    let inference = opts.device.clone();
    // The random-init encoder is evaluated on a separate copy on the inference device: calling
    // `no_grad()` on a clone of a lazily initialised module would also freeze the original's
    // parameters (clones share the lazy initialisation), and only the head would train.
    let random_clip = arch
        .clip_config(8, 1)
        .init(&inference)
        .load_record(model.clip.clone().into_record());
    let random_init = evaluate(
        &random_clip,
        &world,
        &preprocessor,
        &config.eval,
        &inference,
    )?;
    let shared = Arc::new(config.clone());
    let learner_of = |model: SelfSupModel| {
        Learner::new(
            model,
            AdamWConfig::new()
                .with_weight_decay(config.weight_decay as f32)
                .init(),
            WarmupCosine {
                config: Arc::clone(&shared),
                step: 0,
            },
        )
    };
    let loader = SelfSupLoader {
        world: Arc::new(world.clone()),
        preprocessor: Arc::new(preprocessor.clone()),
        augment: Arc::new(augment),
        config: Arc::clone(&shared),
        labels: None,
        steps: (0, config.steps_per_epoch),
        epoch: Arc::new(AtomicUsize::new(0)),
        errors: ErrorSlot::default(),
        device: device.clone(),
    };
    let log = RunLog::new(dir, opts.verbose, &format!("{:?}", config.method));
    let line: fn(&PromptEpoch, usize) -> String = |e, epochs| {
        format!(
            "epoch {}/{epochs} lr {:.2e} loss {:.4} agreement {:.1}%",
            e.epoch, e.lr, e.loss, e.train_accuracy
        )
    };
    let (done, history) = resume_point(dir, opts.resume)?;
    let model = if config.method == SelfSupMethod::SelfLabelling {
        // SeLa relabels every epoch with the model as it stands: burn-train runs one epoch at
        // a time, resuming each from the previous epoch's checkpoint, with the labels computed
        // in between.
        let start = done.map_or(1, |d| d + 1);
        let initial = model.clone();
        let mut current = match done {
            Some(d) => restore(&initial, dir, d)?,
            None => model,
        };
        let (mut done, mut history) = (done, history);
        for epoch in start..=config.epochs {
            if opts.stop_after_epochs.is_some_and(|k| epoch >= start + k) {
                return Err(Error::Training(format!(
                    "stopped after epoch {} on request (--resume continues)",
                    epoch - 1
                )));
            }
            let (labels, used) =
                epoch_labels(&current, &world, &preprocessor, config, epoch, &inference)?;
            log.line(&format!(
                "epoch {epoch}: {used} of {} prototypes hold images",
                config.prototypes
            ));
            let mut epoch_loader = loader.clone();
            epoch_loader.labels = Some(Arc::new(labels));
            epoch_loader.epoch = Arc::new(AtomicUsize::new(epoch - 1));
            let errors = Arc::clone(&epoch_loader.errors);
            let (trained, _, _) = fit(
                learner_of(initial.clone()),
                Arc::new(epoch_loader),
                FitRun {
                    dir,
                    epochs: config.epochs,
                    done,
                    history,
                    stop_after_epochs: None,
                    until: Some(epoch),
                    log: &log,
                    line,
                    errors,
                },
            )?;
            current = trained;
            (done, history) = resume_point(dir, true)?;
        }
        if start > config.epochs {
            current = restore(&initial, dir, config.epochs)?;
        }
        current
    } else {
        loader.epoch.store(done.unwrap_or(0), Ordering::SeqCst);
        let errors = Arc::clone(&loader.errors);
        let (trained, _, _) = fit(
            learner_of(model),
            Arc::new(loader),
            FitRun {
                dir,
                epochs: config.epochs,
                done,
                history,
                stop_after_epochs: opts.stop_after_epochs,
                until: None,
                log: &log,
                line,
                errors,
            },
        )?;
        trained
    };
    let history: Vec<EpochRecord> = read_json(&dir.join("history.json"))?;
    let history: Vec<SelfSupEpoch> = history
        .iter()
        .map(|r| {
            let get = |name: &str| r.train.get(name).copied().unwrap_or(f64::NAN);
            SelfSupEpoch {
                epoch: r.epoch,
                loss: get("Loss"),
                lr: get("Learning Rate"),
                agreement: get("Accuracy"),
                seconds: r.seconds,
            }
        })
        .collect();
    let trained = evaluate(
        &model.clip.clone().no_grad(),
        &world,
        &preprocessor,
        &config.eval,
        &inference,
    )?;
    let report = SelfSupReport {
        config: config.clone(),
        backend: opts.backend.clone(),
        dtype: "f32".into(),
        git_revision: opts.git_revision.clone(),
        trainable_parameters: model.num_params(),
        history,
        eval: random_init
            .into_iter()
            .zip(trained)
            .map(|((task, r), (_, t))| (task, r, t))
            .collect(),
    };
    write_atomic(
        &dir.join("results.md"),
        selfsup_markdown(&report).as_bytes(),
    )?;
    write_json_atomic(&report_path, &report)?;
    Ok(report)
}

/// The results table of a run.
pub fn selfsup_markdown(report: &SelfSupReport) -> String {
    let mut t = vl_eval::table::Table::new([
        "task",
        "random-init linear probe (%)",
        "random-init kNN (%)",
        "trained linear probe (%)",
        "trained kNN (%)",
    ]);
    for (task, r, s) in &report.eval {
        t.push([
            format!("{task:?}").to_lowercase(),
            format!("{:.1}", r.linear_probe),
            format!("{:.1}", r.knn),
            format!("{:.1}", s.linear_probe),
            format!("{:.1}", s.knn),
        ]);
    }
    format!(
        "### {:?} on the synthetic world, from scratch ({} epochs x {} steps x {} images)\n\n{}\nBackend {} {}, git revision {}, seed {}.\n",
        report.config.method,
        report.config.epochs,
        report.config.steps_per_epoch,
        report.config.batch_size,
        t.to_markdown(),
        report.backend,
        report.dtype,
        report.git_revision,
        report.config.seed
    )
}

/// Reads a self-supervised config file (unknown keys are errors).
pub fn read_selfsup_config(path: &Path) -> Result<SelfSupConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| Error::Toml {
        path: path.to_path_buf(),
        source,
    })
}
