//! LaFTer (Mirza et al., NeurIPS 2023, <https://arxiv.org/abs/2305.18287>; reference code
//! `jmiemirza/LaFTer`) as a branch of the prompt-learning run ([`crate::prompt::run_prompt`]
//! with `[lafter]`): no image label is used.
//!
//! 1. A bias-free linear classifier is trained on the normalised text embeddings of every
//!    class's description sentences and template sentences, with Gaussian noise (σ = `noise`)
//!    added to each embedding (`vl_prompting::lafter::text_classifier_loss`; full batch, Adam).
//! 2. Unsupervised fine-tuning on an unlabeled pool: a teacher's argmax is the pseudo-label of a
//!    strongly augmented view, label-smoothed cross-entropy (`pseudo_label_loss`); trainable are
//!    shallow visual prompt tokens, the vision tower's LayerNorm affine parameters (`vl_peft`'s
//!    LayerNorm tuning) and the classifier. The teacher is, as in the reference code
//!    (`forward_normal_for_pl`, `adapter_pl`), the frozen CLIP and a frozen copy of the stage-1
//!    classifier on the clean image ([`LafterTeacher::Frozen`]), so every image's pseudo-label is
//!    fixed and computed once; [`LafterTeacher::Student`] takes the model being trained on a
//!    weakly augmented view instead (FixMatch-style self-training, which feeds its own errors
//!    back and collapsed on the tiny model: 8.9 % against 45 % before stage 2).
//!
//! Test accuracy is the classifier's on the frozen-pipeline features of the test images (no
//! augmentation). Descriptions come from a JSON file `{class name: [sentences]}` (as a user
//! makes with any LLM) or, on the synthetic world, from the world's own grammar
//! (`SyntheticWorld::class_descriptions`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::{DataLoader, DataLoaderIterator};
use burn::module::Module;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, Learner, TrainOutput, TrainStep};
use serde::{Deserialize, Serialize};
use vl_data::ClipTokenizer;
use vl_data::augment::{AugmentConfig, sample_seed};
use vl_encoders::clip::Clip;
use vl_prompting::{
    HostRng, PromptConfig, PromptLearner, Templates, TextClassifier, VisualPromptConfig,
    pseudo_label_loss, text_classifier_loss,
};

use crate::prompt::{Images, PromptEpoch, RunLog, labels_of, mix};
use crate::prompt_train::{BatchIter, ErrorSlot, FitRun, fit, resume_point, rows, shuffled};
use crate::{Error, Result};

/// Where stage 2's pseudo-labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LafterTeacher {
    /// The frozen CLIP and the frozen stage-1 classifier on the clean image (the reference).
    #[default]
    Frozen,
    /// The model being trained, on a weakly augmented view.
    Student,
}

/// `[lafter]` of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LafterConfig {
    /// Class descriptions, a JSON object `{class name: [sentence, ...]}`. Default: none (the
    /// synthetic world's own descriptions; required for CoOp data sets).
    pub descriptions: Option<PathBuf>,
    /// σ of the Gaussian noise on the normalised text embeddings. Default: `0.1` (the paper).
    pub noise: f64,
    /// Full-batch Adam epochs of the text classifier. Default: `200`.
    pub text_epochs: usize,
    /// Label smoothing of the text classifier's cross-entropy. Default: `0.1` (the reference).
    pub text_smoothing: f64,
    /// Learning rate of the text classifier. Default: `1e-2`.
    pub text_lr: f64,
    /// Source of the pseudo-labels. Default: `frozen` (the reference code).
    pub teacher: LafterTeacher,
    /// Unlabeled images per class in the pool (labels withheld). Default: `64`.
    pub pool_per_class: usize,
    /// Train stage 2 only on the `k` pool images per class that the frozen teacher labels with
    /// the highest confidence (UPL's class-balanced top-K selection,
    /// `vl_prompting::select_top_k_per_class`); `0` trains on every pool image, as the paper and
    /// its reference code do. Needs `teacher = "frozen"`. Default: `0`.
    pub confident_per_class: usize,
    /// Shallow visual prompt tokens; `0` trains no prompts (only the LayerNorms and the
    /// classifier). Default: `8` (the paper uses 50 on ViT-B/32's 50 tokens; the tiny model has
    /// 65).
    pub prompt_tokens: usize,
    /// Epochs of the unsupervised stage. Default: `5`.
    pub epochs: usize,
    /// AdamW learning rate of the unsupervised stage. Default: `1e-3`.
    pub lr: f64,
    /// Images per step. Default: `64`.
    pub batch_size: usize,
    /// Label smoothing of the pseudo-label loss. Default: `0.1`.
    pub smoothing: f64,
    /// Smallest crop area (fraction) of the weak view's random resized crop (`teacher =
    /// "student"` only). Default: `0.5`.
    pub weak_crop_min_scale: f64,
    /// Smallest crop area of the strong view's random resized crop. Default: `0.08`
    /// (torchvision's).
    pub strong_crop_min_scale: f64,
    /// Colour jitter and random greyscale in the strong view. Default: `true`. Turn off where
    /// colour is the class (the synthetic world's colour tasks): there it changes the label.
    pub colour_jitter: bool,
}

impl Default for LafterConfig {
    fn default() -> Self {
        Self {
            descriptions: None,
            noise: 0.1,
            text_epochs: 200,
            text_lr: 1e-2,
            text_smoothing: 0.1,
            teacher: LafterTeacher::Frozen,
            pool_per_class: 64,
            confident_per_class: 0,
            prompt_tokens: 8,
            epochs: 5,
            lr: 1e-3,
            batch_size: 64,
            smoothing: 0.1,
            weak_crop_min_scale: 0.5,
            strong_crop_min_scale: 0.08,
            colour_jitter: true,
        }
    }
}

/// What stage 2 trains (burn-train's model; checkpoints hold all of it, the CLIP included,
/// since its LayerNorms train).
#[derive(Module, Debug)]
struct LafterModel {
    learner: PromptLearner,
    clip: Clip,
    classifier: TextClassifier,
    /// Label smoothing of the pseudo-label loss.
    #[module(skip)]
    smoothing: f64,
}

impl LafterModel {
    fn logits(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.classifier
            .forward(self.learner.image_features(&self.clip, pixels))
    }

    /// The loss, the teacher's logits (the pseudo-labels) and the withheld labels of a batch.
    fn forward(&self, batch: LafterBatch) -> (Tensor<1>, Tensor<2>, Tensor<1, Int>) {
        let weak = match batch.weak {
            WeakView::Logits(logits) => logits,
            WeakView::Pixels(pixels) => self.logits(pixels).detach(),
        };
        let strong = self.logits(batch.strong);
        let loss = pseudo_label_loss(weak.clone(), strong, self.smoothing);
        (loss, weak, batch.truth)
    }
}

/// Where a batch's pseudo-labels come from.
#[derive(Debug, Clone)]
enum WeakView {
    /// The frozen teacher's logits, `[batch_size, n_classes]`.
    Logits(Tensor<2>),
    /// A weakly augmented view for the student teacher, `[batch_size, 3, h, w]`.
    Pixels(Tensor<4>),
}

/// One stage-2 step's input.
#[derive(Debug, Clone)]
struct LafterBatch {
    weak: WeakView,
    /// The strongly augmented view, `[batch_size, 3, h, w]`.
    strong: Tensor<4>,
    /// The withheld labels, for the pseudo-label accuracy metric only.
    truth: Tensor<1, Int>,
}

impl TrainStep for LafterModel {
    type Input = LafterBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: LafterBatch) -> TrainOutput<ClassificationOutput> {
        let (loss, weak, truth) = self.forward(batch);
        let grads = loss.backward();
        // "Accuracy" of the teacher's logits against the withheld labels: how often the
        // pseudo-label is right (a diagnostic; no label is used in training).
        TrainOutput::new(
            self,
            grads,
            ClassificationOutput::new(loss.detach(), weak, truth),
        )
    }
}

impl InferenceStep for LafterModel {
    type Input = LafterBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: LafterBatch) -> ClassificationOutput {
        let (loss, weak, truth) = self.forward(batch);
        ClassificationOutput::new(loss, weak, truth)
    }
}

/// Stage 2's data: epoch `e` is a pure function of `(seed, e)` (order and augmentations).
#[derive(Clone)]
struct LafterLoader {
    pool: Arc<Images>,
    train_set: Arc<Vec<usize>>,
    teacher: Option<Tensor<2>>,
    weak: Arc<AugmentConfig>,
    strong: Arc<AugmentConfig>,
    withheld: Arc<Vec<usize>>,
    seed: u64,
    batch_size: usize,
    epoch: Arc<AtomicUsize>,
    errors: ErrorSlot,
    device: Device,
}

impl LafterLoader {
    fn batch(&self, chunk: &[usize], epoch: usize) -> Result<LafterBatch> {
        let seed = self.seed;
        let view_seed = |i: usize, salt: u64| mix(sample_seed(seed, epoch as u64, i as u64) ^ salt);
        let weak = match &self.teacher {
            Some(all) => WeakView::Logits(all.clone().select(0, rows(chunk, &self.device))),
            None => WeakView::Pixels(
                self.pool
                    .batch_with(chunk, &self.device, |i, image| {
                        self.weak.apply(&image, view_seed(i, 1))
                    })?
                    .0,
            ),
        };
        let (strong, _) = self.pool.batch_with(chunk, &self.device, |i, image| {
            self.strong.apply(&image, view_seed(i, 2))
        })?;
        let truth: Vec<i64> = chunk.iter().map(|&i| self.withheld[i] as i64).collect();
        Ok(LafterBatch {
            weak,
            strong,
            truth: Tensor::from_data(TensorData::new(truth, [chunk.len()]), &self.device),
        })
    }
}

impl DataLoader<LafterBatch> for LafterLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<LafterBatch> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        Box::new(BatchIter::new(
            shuffled(&self.train_set, self.seed, epoch),
            self.batch_size,
            &self.errors,
            move |chunk| self.batch(chunk, epoch),
        ))
    }

    fn num_items(&self) -> usize {
        self.train_set.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<LafterBatch>> {
        let mut moved = self.clone();
        moved.device = device.clone();
        moved.teacher = self.teacher.clone().map(|t| t.to_device(device));
        Arc::new(moved)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<LafterBatch>> {
        // Only used to split data across devices (LaFTer runs on one): the pool images
        // `start..end` of the training set.
        let end = end.min(self.train_set.len());
        let mut sliced = self.clone();
        sliced.train_set = Arc::new(self.train_set[start.min(end)..end].to_vec());
        Arc::new(sliced)
    }
}

/// Where a LaFTer run writes its checkpoints and whether it resumes.
pub(crate) struct LafterRun<'a> {
    /// The run directory.
    pub dir: &'a Path,
    /// Continue from the last complete checkpoint.
    pub resume: bool,
    /// Stop after this many stage-2 epochs (tests of resume).
    pub stop_after_epochs: Option<usize>,
}

/// What [`run_lafter`] reports.
pub(crate) struct LafterOutcome {
    /// Test accuracy (%) after both stages.
    pub(crate) accuracy: f64,
    /// Per-epoch history (text-classifier epochs are not listed).
    pub(crate) history: Vec<PromptEpoch>,
    /// Trainable parameters of stage 2.
    pub(crate) trainable: usize,
}

/// The run: `clip` frozen on an autodiff device, `class_names` with their `descriptions`,
/// the unlabeled `pool`, the `test` images.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_lafter(
    lafter: &LafterConfig,
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    templates: &Templates,
    class_names: &[String],
    descriptions: &BTreeMap<String, Vec<String>>,
    (pool, test): (&Images, &Images),
    seed: u64,
    device: &Device,
    log: &RunLog,
    run: LafterRun<'_>,
) -> Result<LafterOutcome> {
    // Stage 1: the text-only classifier.
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (c, name) in class_names.iter().enumerate() {
        for t in 0..templates.len() {
            texts.push(templates.fill(t, name));
            labels.push(c as i64);
        }
        let found = descriptions.get(name).ok_or_else(|| Error::InvalidConfig {
            field: "lafter.descriptions".into(),
            expected: format!("sentences for every class, e.g. {name:?}"),
            found: format!("{} classes described", descriptions.len()),
        })?;
        for d in found {
            texts.push(d.clone());
            labels.push(c as i64);
        }
    }
    let text = vl_prompting::templates::encode_texts(clip, tokenizer, &texts, 256)?.detach();
    let [n_text, dim] = text.dims();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n_text]), device);
    let mut rng = HostRng::new(mix(seed ^ 0x1AF7));
    let bound = 1.0 / (dim as f64).sqrt();
    let mut classifier = TextClassifier::new(
        rng.uniform_tensor([class_names.len(), dim], bound, device)
            .require_grad(),
    );
    let mut adam = AdamConfig::new().init();
    let mut text_loss = f64::NAN;
    for _ in 0..lafter.text_epochs {
        let noise = rng.normal_tensor([n_text, dim], lafter.noise, device);
        let loss = text_classifier_loss(
            &classifier,
            text.clone(),
            noise,
            labels.clone(),
            lafter.text_smoothing,
        );
        text_loss = f64::from(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &classifier);
        classifier = adam.step(lafter.text_lr, classifier, grads);
    }
    let learner = PromptConfig {
        text: None,
        visual: (lafter.prompt_tokens > 0).then_some(VisualPromptConfig {
            n_tokens: lafter.prompt_tokens,
            depth: 1,
            init_std: 0.02,
            coupled: false,
        }),
    }
    .init(
        clip,
        tokenizer,
        class_names.len(),
        mix(seed ^ 0x7F7),
        device,
    )?;
    let accuracy = |model: &LafterModel, images: &Images| -> Result<f64> {
        let idx: Vec<usize> = (0..images.len()).collect();
        let mut hits = 0usize;
        for chunk in idx.chunks(128) {
            let (px, y) = images.batch(chunk, device)?;
            let pred = model.logits(px).detach().argmax(1).reshape([chunk.len()]);
            hits += pred.equal(y).int().sum().into_scalar::<i64>() as usize;
        }
        Ok(100.0 * hits as f64 / images.len() as f64)
    };
    // Stage 2 trains the prompts, the vision LayerNorms and the classifier.
    let ln = vl_peft::PeftConfig {
        method: vl_peft::PeftMethod::LayerNorm,
        target_modules: Vec::new(),
        tower: vl_peft::Tower::Vision,
    };
    let (tuned_clip, state) = vl_peft::apply_peft(clip.clone(), &ln, mix(seed ^ 0x1A))
        .map_err(|e| Error::Training(e.to_string()))?;
    let model = LafterModel {
        learner,
        clip: tuned_clip,
        classifier,
        smoothing: lafter.smoothing,
    };
    let text_only = accuracy(&model, test)?;
    let n = pool.len();
    let withheld = labels_of(pool);
    // The frozen teacher's logits on every clean pool image (computed once: they never change).
    let frozen_teacher = match lafter.teacher {
        LafterTeacher::Student => None,
        LafterTeacher::Frozen => {
            let teacher = TextClassifier::new(model.classifier.weight.val().detach());
            let idx: Vec<usize> = (0..n).collect();
            let mut rows = Vec::new();
            for chunk in idx.chunks(128) {
                let (px, _) = pool.batch(chunk, device)?;
                let features = vl_encoders::clip::l2_normalize(clip.encode_image(px));
                rows.push(teacher.forward(features).detach());
            }
            Some(Tensor::cat(rows, 0))
        }
    };
    // The images stage 2 trains on: all of the pool, or the teacher's most confident per class.
    let train_set: Vec<usize> = match (&frozen_teacher, lafter.confident_per_class) {
        (_, 0) => (0..n).collect(),
        (None, _) => {
            return Err(Error::InvalidConfig {
                field: "lafter.confident_per_class".into(),
                expected: "0 unless teacher = \"frozen\" (the selection ranks fixed labels)".into(),
                found: lafter.confident_per_class.to_string(),
            });
        }
        (Some(logits), k) => {
            let probs = burn::tensor::activation::softmax(logits.clone(), 1)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Training(format!("teacher probabilities: {e:?}")))?;
            let mut kept: Vec<usize> =
                vl_prompting::select_top_k_per_class(&probs, class_names.len(), k)
                    .into_iter()
                    .map(|p| p.index)
                    .collect();
            kept.sort_unstable();
            kept
        }
    };
    let trainable = model.learner.num_params() + state.trainable + model.classifier.num_params();
    let total = state.total + model.learner.num_params() + model.classifier.num_params();
    log.line(&format!(
        "LaFTer stage 1: text classifier on {n_text} sentences, final loss {text_loss:.4}; \
         test accuracy with the text classifier alone {text_only:.1}%"
    ));
    log.line(&format!(
        "LaFTer stage 2: trainable params: {trainable} || all params: {total} || trainable%: {:.4}; \
         {} of {n} pool images",
        100.0 * trainable as f64 / total as f64,
        train_set.len()
    ));
    let size = pool.loader.preprocessor.config().crop_height;
    let (mut weak, mut strong) = (
        AugmentConfig::weak(size, size),
        AugmentConfig::strong(size, size),
    );
    for (aug, min) in [
        (&mut weak, lafter.weak_crop_min_scale),
        (&mut strong, lafter.strong_crop_min_scale),
    ] {
        if let Some(crop) = aug.crop.as_mut() {
            crop.scale.0 = min;
        }
    }
    if !lafter.colour_jitter {
        strong.jitter = None;
        strong.grayscale_p = 0.0;
    }
    for aug in [&weak, &strong] {
        aug.validate().map_err(|e| Error::InvalidConfig {
            field: "lafter".into(),
            expected: "valid augmentation settings".into(),
            found: e.to_string(),
        })?;
    }
    // Stage 2 on burn-train: AdamW without weight decay at a constant learning rate.
    let (done, history) = resume_point(run.dir, run.resume)?;
    let loader = LafterLoader {
        pool: Arc::new(pool.clone()),
        train_set: Arc::new(train_set),
        teacher: frozen_teacher,
        weak: Arc::new(weak),
        strong: Arc::new(strong),
        withheld: Arc::new(withheld),
        seed,
        batch_size: lafter.batch_size.max(1),
        epoch: Arc::new(AtomicUsize::new(done.unwrap_or(0))),
        errors: ErrorSlot::default(),
        device: device.clone(),
    };
    let errors = Arc::clone(&loader.errors);
    let learner = Learner::new(
        model,
        AdamWConfig::new().with_weight_decay(0.0).init(),
        lafter.lr,
    );
    let (model, history, _) = fit(
        learner,
        Arc::new(loader),
        FitRun {
            dir: run.dir,
            epochs: lafter.epochs,
            done,
            history,
            stop_after_epochs: run.stop_after_epochs,
            until: None,
            log,
            line: |e, epochs| {
                format!(
                    "LaFTer epoch {}/{epochs} loss {:.4} pseudo-label accuracy {:.1}%",
                    e.epoch, e.loss, e.train_accuracy
                )
            },
            errors,
        },
    )?;
    Ok(LafterOutcome {
        accuracy: accuracy(&model, test)?,
        history,
        trainable,
    })
}
