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
use std::path::PathBuf;

use burn::module::Module;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use vl_data::ClipTokenizer;
use vl_data::augment::{AugmentConfig, sample_seed};
use vl_encoders::clip::Clip;
use vl_prompting::{
    HostRng, PromptConfig, PromptLearner, Templates, TextClassifier, VisualPromptConfig,
    pseudo_label_loss, text_classifier_loss,
};

use crate::prompt::{Images, PromptEpoch, RunLog, labels_of, mix};
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

/// What stage 2 trains.
#[derive(Module, Debug)]
struct LafterModel {
    learner: PromptLearner,
    clip: Clip,
    classifier: TextClassifier,
}

impl LafterModel {
    fn logits(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.classifier
            .forward(self.learner.image_features(&self.clip, pixels))
    }
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
    let mut model = LafterModel {
        learner,
        clip: tuned_clip,
        classifier,
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
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut history = Vec::new();
    for epoch in 1..=lafter.epochs {
        let mut order = train_set.clone();
        let mut s = mix(seed.wrapping_mul(31).wrapping_add(epoch as u64));
        for i in (1..order.len()).rev() {
            s = mix(s);
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let (mut loss_sum, mut agree, mut steps) = (0.0, 0usize, 0usize);
        for chunk in order.chunks(lafter.batch_size) {
            let view_seed =
                |i: usize, salt: u64| mix(sample_seed(seed, epoch as u64, i as u64) ^ salt);
            let weak_logits = match &frozen_teacher {
                Some(all) => {
                    let rows = chunk.iter().map(|&i| i as i64).collect::<Vec<_>>();
                    all.clone().select(
                        0,
                        Tensor::<1, Int>::from_data(TensorData::new(rows, [chunk.len()]), device),
                    )
                }
                None => {
                    let (pw, _) = pool.batch_with(chunk, device, |i, image| {
                        weak.apply(&image, view_seed(i, 1))
                    })?;
                    model.logits(pw).detach()
                }
            };
            let (ps, _) = pool.batch_with(chunk, device, |i, image| {
                strong.apply(&image, view_seed(i, 2))
            })?;
            let strong_logits = model.logits(ps);
            // Diagnostics only: how often the pseudo-label is the withheld true label.
            let truth = Tensor::<1, Int>::from_data(
                TensorData::new(
                    chunk
                        .iter()
                        .map(|&i| withheld[i] as i64)
                        .collect::<Vec<_>>(),
                    [chunk.len()],
                ),
                device,
            );
            agree += weak_logits
                .clone()
                .argmax(1)
                .reshape([chunk.len()])
                .equal(truth)
                .int()
                .sum()
                .into_scalar::<i64>() as usize;
            let loss = pseudo_label_loss(weak_logits, strong_logits, lafter.smoothing);
            loss_sum += f64::from(loss.clone().into_scalar::<f32>());
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lafter.lr, model, grads);
        }
        let record = PromptEpoch {
            epoch,
            lr: lafter.lr,
            loss: loss_sum / steps.max(1) as f64,
            // With no labels, "training accuracy" is the pseudo-labels' agreement with the
            // withheld labels.
            train_accuracy: 100.0 * agree as f64 / order.len().max(1) as f64,
        };
        log.line(&format!(
            "LaFTer epoch {epoch}/{} loss {:.4} pseudo-label accuracy {:.1}%",
            lafter.epochs, record.loss, record.train_accuracy
        ));
        history.push(record);
    }
    Ok(LafterOutcome {
        accuracy: accuracy(&model, test)?,
        history,
        trainable,
    })
}
