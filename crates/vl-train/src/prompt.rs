//! Few-shot prompt learning on a frozen CLIP, base-to-novel protocol (Zhou et al. 2022, CoCoOp
//! §4.1): train on `shots` images of each base class, test on base and on novel classes, report
//! the harmonic mean. One loop for every method of `vl-prompting` (the method is the
//! [`PromptConfig`] + [`ObjectiveConfig`] of the run's config; named presets carry each paper's
//! ViT-B/16 hyper-parameters).
//!
//! The loop: SGD with momentum (or AdamW), Dassl's schedule (one constant warm-up epoch at
//! `warmup_lr`, then cosine over the remaining epochs, stepped per epoch), the seed fixing the
//! shots, the initialisation, the batch order and every Monte Carlo draw. After every epoch the
//! learner's parameters and the optimiser state (nothing of the frozen CLIP) are checkpointed
//! atomically; `resume` continues from the last complete epoch with bit-identical results.
//! Without visual prompts the image features do not depend on the learner and are computed
//! once; the hand-crafted text features of the regularisers are computed once per run.
//!
//! Data: the synthetic world of the pretraining run that produced the model (its `run.toml`),
//! one-object images; a class's images come from the evaluation split, or from the held-out
//! split for the shape-colour pairs never shown in pretraining. Test images are the first
//! `test_per_class` of each class (the same for every seed); training shots are drawn from a
//! disjoint, seed-dependent index range.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use vl_data::synthetic::{Split, SyntheticWorld, Task};
use vl_data::{ClipTokenizer, ImagePreprocessor, PreprocessConfig};
use vl_encoders::clip::Clip;
use vl_prompting::model::{PromptTask, TaskTemplates, predict_from_features, sample_noise};
use vl_prompting::{
    HostRng, LfaConfig, ObjectiveConfig, PromptConfig, PromptLearner, Templates, TextPromptConfig,
    VariationalConfig, VisualPromptConfig, class_text_features, lfa_logits, lfa_refine_loss,
    model_fingerprint, procrustes, save_prompts,
};

use crate::atomic::{read_json, write_json_atomic};
use crate::config::PretrainConfig;
use crate::prompt_train::{PromptTraining, StepConstants, Trained, train_prompts};
use crate::{Error, Result};

/// Which optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with momentum (CoOp, CoCoOp, KgCoOp, ...).
    Sgd,
    /// AdamW.
    AdamW,
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    /// The optimiser. Default: `sgd`.
    pub kind: OptimizerKind,
    /// Peak learning rate. Default: `0.002` (CoOp).
    pub lr: f64,
    /// SGD momentum. Default: `0.9`.
    pub momentum: f64,
    /// Weight decay (L2 for SGD, decoupled for AdamW). Default: `5e-4` (Dassl).
    pub weight_decay: f64,
    /// Epochs. Default: `10`.
    pub epochs: usize,
    /// Images per step. Default: `32`.
    pub batch_size: usize,
    /// Constant warm-up epochs at `warmup_lr` before the cosine. Default: `1`.
    pub warmup_epochs: usize,
    /// Warm-up learning rate. Default: `1e-5`.
    pub warmup_lr: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Sgd,
            lr: 0.002,
            momentum: 0.9,
            weight_decay: 5e-4,
            epochs: 10,
            batch_size: 32,
            warmup_epochs: 1,
            warmup_lr: 1e-5,
        }
    }
}

impl OptimSection {
    /// Dassl's per-epoch schedule: `warmup_lr` for the warm-up epochs, then
    /// `lr * (1 + cos(pi * t / T)) / 2` with `t` counting epochs after the warm-up.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        if epoch <= self.warmup_epochs {
            return self.warmup_lr;
        }
        let t = (epoch - 1 - self.warmup_epochs) as f64;
        let total = self.epochs.saturating_sub(self.warmup_epochs).max(1) as f64;
        0.5 * self.lr * (1.0 + (std::f64::consts::PI * t / total).cos())
    }
}

/// Which classes a run trains and tests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassProtocol {
    /// CoCoOp's base-to-novel protocol: train on the base half of the classes, test on base
    /// and on novel classes separately (the default).
    #[default]
    BaseToNovel,
    /// The few-shot protocol of CoOp: train and test on all classes (reported as `base`;
    /// `novel` and `hm` are absent).
    AllClasses,
}

/// A method without learned prompts: the zero-shot baseline or a probe on frozen image
/// features (`vl_eval`). A probe sees only the base classes' images, so it has no novel
/// accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeConfig {
    /// The hand-crafted template ensemble (`templates`), nothing trained.
    ZeroShot,
    /// Multinomial logistic regression with L2 on the frozen, normalised image features; its
    /// strength is chosen on a validation set of `shots` further images per class, then the
    /// probe is refit on train and validation (`vl_eval::linear_probe`).
    Linear {
        /// Candidate inverse strengths `C`. Default: `vl_eval`'s grid, 1e-3 to 1e3.
        #[serde(default)]
        c_grid: Option<Vec<f64>>,
    },
    /// k-nearest neighbours among the training shots (`vl_eval::knn`).
    Knn {
        /// Neighbours. Default: `20`.
        #[serde(default = "default_knn_k")]
        k: usize,
        /// Vote weight temperature; `None` = one vote each. Default: `0.07`.
        #[serde(default = "default_knn_temperature")]
        temperature: Option<f64>,
    },
}

fn default_knn_k() -> usize {
    vl_eval::knn::KnnConfig::default().k
}

fn default_knn_temperature() -> Option<f64> {
    vl_eval::knn::KnnConfig::default().temperature
}

/// A prompt-learning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptRunConfig {
    /// The method's name, for tables. Default: `"coop"`.
    pub method: String,
    /// Seed of every random choice. Default: `1`.
    pub seed: u64,
    /// The pretrained model directory (a finished `vl pretrain` run). Default:
    /// `runs/pretrain-tiny`.
    pub model: PathBuf,
    /// The synthetic-world task. Default: `shape_colour` (64 classes).
    pub task: Task,
    /// Base-to-novel or all classes. Default: `base_to_novel`.
    pub protocol: ClassProtocol,
    /// Training images per base class. Default: `16`.
    pub shots: usize,
    /// Test images per class. Default: `16`.
    pub test_per_class: usize,
    /// The learnable prompts. Default: CoOp with 4 random context vectors (a `[prompt]` table
    /// replaces it whole).
    pub prompt: PromptConfig,
    /// Extra loss terms.
    pub objective: ObjectiveConfig,
    /// KgCoOp's hand-crafted template. Default: `"a photo of {}"` (a template of the world's
    /// captions; class names come with their article, `"an orange circle"`).
    pub kgcoop_template: String,
    /// LASP's hand-crafted templates; also the zero-shot ensemble. Default: the five
    /// evaluation templates of the tiny pretraining run.
    pub templates: Vec<String>,
    /// LASP's virtual classes (names with no images). Default: none.
    pub virtual_classes: Vec<String>,
    /// The optimiser.
    pub optim: OptimSection,
    /// Run LFA instead of a prompt learner (`prompt` and `objective` are then unused).
    /// Default: `None`.
    pub lfa: Option<LfaConfig>,
    /// Parameter-efficient fine-tuning of the encoders, trained jointly with the prompts (e.g.
    /// LoRA on the vision tower plus CoOp on the text side). Without a text prompt, classes are
    /// the fixed hand-crafted ensemble, so the text tower cannot be adapted. Default: `None`.
    pub peft: Option<vl_peft::PeftConfig>,
    /// Run a baseline or a probe on frozen features instead of learning prompts (`prompt`,
    /// `objective`, `peft` and `lfa` are then unused). Default: `None`.
    pub probe: Option<ProbeConfig>,
    /// A CoOp-suite data set instead of the synthetic world (`task` is then unused and `model`
    /// may be any CLIP checkpoint). Default: `None`.
    pub data: Option<CoopData>,
    /// Label-free training with UPL's pseudo-labels instead of labelled shots (`shots` is then
    /// unused). Default: `None`.
    pub pseudo_labels: Option<PseudoLabelConfig>,
    /// Run LaFTer (label-free: a text-trained classifier, then pseudo-label fine-tuning of
    /// visual prompts, vision LayerNorms and the classifier) instead of a prompt learner
    /// (`prompt`, `objective`, `peft`, `shots` unused). Default: `None`.
    pub lafter: Option<crate::lafter::LafterConfig>,
}

/// UPL (Huang et al. 2022): the training set is an unlabeled pool, pseudo-labelled by the frozen
/// CLIP zero-shot (the hand-crafted ensemble), keeping the `top_k` most confident images of each
/// predicted class (`vl_prompting::upl`); then the run's prompt learner trains on them as on
/// labelled shots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PseudoLabelConfig {
    /// Unlabeled pool: on the synthetic world, this many one-object images of each class from
    /// a seed-dependent range (labels withheld); on a CoOp data set, the whole `train` split.
    /// Default: `64`.
    pub pool_per_class: usize,
    /// Pseudo-labelled images kept per class (UPL's K). Default: `16`.
    pub top_k: usize,
}

impl Default for PseudoLabelConfig {
    fn default() -> Self {
        Self {
            pool_per_class: 64,
            top_k: 16,
        }
    }
}

impl Default for PromptRunConfig {
    fn default() -> Self {
        Self {
            method: "coop".into(),
            seed: 1,
            model: PathBuf::from("runs/pretrain-tiny"),
            task: Task::ShapeColour,
            protocol: ClassProtocol::BaseToNovel,
            shots: 16,
            test_per_class: 16,
            prompt: PromptConfig::coop(),
            objective: ObjectiveConfig::default(),
            kgcoop_template: "a photo of {}".into(),
            templates: [
                "{}",
                "a photo of {}",
                "there is {}",
                "an image of {}",
                "a picture of {}",
            ]
            .map(String::from)
            .to_vec(),
            virtual_classes: Vec::new(),
            optim: OptimSection::default(),
            lfa: None,
            peft: None,
            probe: None,
            data: None,
            pseudo_labels: None,
            lafter: None,
        }
    }
}

/// The methods with a preset.
pub const PRESETS: [&str; 7] = [
    "coop",
    "cocoop",
    "kgcoop",
    "lasp",
    "variational",
    "vpt",
    "maple",
];

impl PromptRunConfig {
    /// A method with its paper's ViT-B/16 hyper-parameters (CoOp `vit_b16.yaml`: M = 16,
    /// batch 32, lr 0.002, 200 epochs (50 for ImageNet); CoCoOp `vit_b16_c4_ep10_batch1_ctxv1`:
    /// M = 4 from "a photo of a", batch 1, 10 epochs; KgCoOp `vit_b16_ep100_ctxv1`: M = 4 from
    /// "a photo of a", W = 8, batch 128, 100 epochs; LASP (paper §4): CoOp's context with the
    /// text-to-text term at weight 1; variational (Derakhshani et al. configs): M = 4, L = 10,
    /// KL weight 0.001, batch 1, 10 epochs; VPT-deep: 2 tokens, depth 9; MaPLe
    /// `vit_b16_c2_ep5_batch4_2ctx`: 2 text tokens from "a photo", deep text and coupled visual
    /// prompts to depth 9 (a model needs 9 layers per tower for either); both batch 4, lr
    /// 0.0035, 5 epochs).
    /// All use SGD with one warm-up epoch at 1e-5 and a cosine schedule.
    pub fn paper_preset(method: &str) -> Result<Self> {
        let mut c = Self {
            method: method.to_string(),
            ..Self::default()
        };
        let photo = |n_ctx| TextPromptConfig {
            n_ctx,
            ctx_init: Some("a photo of a".into()),
            ..TextPromptConfig::default()
        };
        match method {
            "coop" => {
                c.prompt.text = Some(TextPromptConfig {
                    n_ctx: 16,
                    ..TextPromptConfig::default()
                });
                c.optim.epochs = 200;
            }
            "cocoop" => {
                c.prompt.text = Some(TextPromptConfig {
                    conditional: true,
                    ..photo(4)
                });
                c.optim.batch_size = 1;
            }
            "kgcoop" => {
                c.prompt.text = Some(photo(4));
                c.objective.kgcoop_weight = 8.0;
                c.optim.batch_size = 128;
                c.optim.epochs = 100;
            }
            "lasp" => {
                c.prompt.text = Some(photo(4));
                c.objective.lasp_weight = 1.0;
                c.optim.epochs = 50;
            }
            "variational" => {
                c.prompt.text = Some(TextPromptConfig {
                    variational: Some(VariationalConfig::default()),
                    ..photo(4)
                });
                c.optim.batch_size = 1;
            }
            "vpt" | "maple" => {
                let maple = method == "maple";
                c.prompt.text = maple.then(|| TextPromptConfig {
                    n_ctx: 2,
                    ctx_init: Some("a photo".into()),
                    depth: 9,
                    ..TextPromptConfig::default()
                });
                c.prompt.visual = Some(VisualPromptConfig {
                    n_tokens: 2,
                    depth: 9,
                    coupled: maple,
                    ..VisualPromptConfig::default()
                });
                c.optim.batch_size = 4;
                c.optim.lr = 0.0035;
                c.optim.epochs = 5;
            }
            other => {
                return Err(Error::InvalidConfig {
                    field: "method".into(),
                    expected: format!("one of {}", PRESETS.join(", ")),
                    found: other.into(),
                });
            }
        }
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |field: &str, expected: &str, found: String| {
            Err(Error::InvalidConfig {
                field: field.into(),
                expected: expected.into(),
                found,
            })
        };
        if self.shots == 0 {
            return invalid("shots", "at least 1", "0".into());
        }
        if self.test_per_class == 0 {
            return invalid("test_per_class", "at least 1", "0".into());
        }
        if self.probe.is_some() || self.lafter.is_some() {
            return Ok(());
        }
        if self.prompt.text.is_none()
            && self.prompt.visual.is_none()
            && self.peft.is_none()
            && self.lfa.is_none()
        {
            return invalid(
                "prompt",
                "something to learn: [prompt.text], [prompt.visual], [peft], [lfa] or [probe]",
                "none".into(),
            );
        }
        if self.optim.epochs == 0 || self.optim.batch_size == 0 {
            return invalid(
                "optim",
                "epochs >= 1 and batch_size >= 1",
                format!(
                    "epochs {}, batch_size {}",
                    self.optim.epochs, self.optim.batch_size
                ),
            );
        }
        Ok(())
    }
}

/// Accuracy (%) on base and novel classes and their harmonic mean. With
/// [`ClassProtocol::AllClasses`], `base` is the accuracy among all classes and there is no
/// novel accuracy; a probe has none either.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaseNovel {
    /// Base-class accuracy (%), classifying among base classes.
    pub base: f64,
    /// Novel-class accuracy (%), classifying among novel classes.
    #[serde(default)]
    pub novel: Option<f64>,
    /// Harmonic mean of base and novel.
    #[serde(default)]
    pub hm: Option<f64>,
}

impl BaseNovel {
    fn new(base: f64, novel: Option<f64>) -> Self {
        Self {
            base,
            novel,
            hm: novel.map(|n| vl_eval::metrics::harmonic_mean(base, n)),
        }
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean total loss.
    pub loss: f64,
    /// Training accuracy (%) on the shots.
    pub train_accuracy: f64,
}

/// What a finished run reports (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptReport {
    /// The config.
    pub config: PromptRunConfig,
    /// Fingerprint of the base model.
    pub base_model: String,
    /// Backend name.
    pub backend: String,
    /// Float type.
    pub dtype: String,
    /// Git revision of the code.
    pub git_revision: String,
    /// Zero-shot accuracy with the hand-crafted ensemble.
    pub zero_shot: BaseNovel,
    /// Zero-shot top-1, top-5 and per-class accuracy of each test set.
    #[serde(default)]
    pub zero_shot_detail: Vec<ZeroShotDetail>,
    /// UPL: the share (%) of kept pseudo-labels that are right.
    #[serde(default)]
    pub pseudo_label_accuracy: Option<f64>,
    /// Accuracy with the learned prompts.
    pub learned: BaseNovel,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Per-epoch history.
    pub history: Vec<PromptEpoch>,
    /// Training seconds (this invocation).
    pub seconds: f64,
}

/// How to run a prompt run.
#[derive(Debug, Clone)]
pub struct PromptOptions {
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
    /// Print progress (it always goes to the run's `log.txt` too).
    pub verbose: bool,
    /// Directory of cached frozen image features (probes), keyed by the model's fingerprint
    /// and the exact images; `None` computes them every time. Default in the CLI:
    /// `runs/.feature-cache`.
    pub feature_cache: Option<PathBuf>,
}

/// Progress lines of a run: printed when verbose, always appended to `<run>/log.txt`.
#[derive(Clone)]
pub(crate) struct RunLog {
    path: PathBuf,
    verbose: bool,
    method: String,
}

impl RunLog {
    pub(crate) fn new(dir: &Path, verbose: bool, method: &str) -> Self {
        Self {
            path: dir.join("log.txt"),
            verbose,
            method: method.to_string(),
        }
    }

    pub(crate) fn line(&self, message: &str) {
        let line = format!("[{}] {message}", self.method);
        if self.verbose {
            eprintln!("{line}");
        }
        // A log line that cannot be written is not worth failing a run for.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            use std::io::Write as _;
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Labels of an image set as `usize`.
pub(crate) fn labels_of(images: &Images) -> Vec<usize> {
    images.labels.iter().map(|&l| l as usize).collect()
}

/// FNV-1a, 64 bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The normalised frozen image features of `images` (`[n * dim]`, `dim`), from the cache
/// directory when an entry for this model and these exact images (and pixels) exists; a new
/// entry is written atomically.
fn frozen_features(
    clip: &Clip,
    images: &Images,
    cache: Option<(&Path, &str)>,
    device: &Device,
) -> Result<(Vec<f32>, usize)> {
    let key = cache.map(|(dir, model)| {
        let mut bytes = model.as_bytes().to_vec();
        bytes.extend(format!("{:?}", images.loader.preprocessor.config()).as_bytes());
        if let Some(world) = &images.loader.world {
            bytes.extend(format!("{:?}", world.config()).as_bytes());
        }
        for source in &images.sources {
            bytes.extend(format!("{source:?};").as_bytes());
        }
        dir.join(format!("{:016x}.json", fnv1a(&bytes)))
    });
    if let Some(path) = &key
        && path.is_file()
    {
        let (features, dim): (Vec<f32>, usize) = read_json(path)?;
        if features.len() == images.len() * dim {
            return Ok((features, dim));
        }
    }
    let idx: Vec<usize> = (0..images.len()).collect();
    let parts: Vec<Tensor<2>> = idx
        .chunks(128)
        .map(|c| {
            let (px, _) = images.batch(c, device)?;
            Ok(vl_encoders::clip::l2_normalize(clip.encode_image(px)).detach())
        })
        .collect::<Result<_>>()?;
    let all = Tensor::cat(parts, 0);
    let dim = all.dims()[1];
    let features: Vec<f32> = all
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Training(format!("reading image features: {e:?}")))?;
    if let Some(path) = &key {
        write_json_atomic(path, &(&features, dim))?;
    }
    Ok((features, dim))
}

/// `manifest.json`: exactly which images (synthetic world split and index, or file) and classes
/// a run used, and the world or data set they come from.
fn write_manifest(
    dir: &Path,
    config: &PromptRunConfig,
    source: serde_json::Value,
    (base, novel): (&[String], &[String]),
    sets: [(&str, Option<&Images>); 5],
) -> Result<()> {
    let mut map = serde_json::Map::new();
    map.insert("model".into(), serde_json::json!(config.model));
    map.insert("data".into(), source);
    map.insert(
        "classes".into(),
        serde_json::json!({ "base": base, "novel": novel }),
    );
    for (name, set) in sets {
        if let Some(set) = set {
            let items: Vec<serde_json::Value> = set
                .sources
                .iter()
                .zip(&set.labels)
                .map(|(source, label)| match source {
                    Source::World(split, index) => serde_json::json!([split, index, label]),
                    Source::File(path) => serde_json::json!([path, label]),
                })
                .collect();
            map.insert(name.into(), serde_json::Value::Array(items));
        }
    }
    write_json_atomic(&dir.join("manifest.json"), &serde_json::Value::Object(map))
}

/// Labelled images of one class list: preprocessed pixels, labels.
#[derive(Clone)]
pub(crate) struct Images {
    /// Where each image comes from (also the manifest and the feature-cache key).
    pub(crate) sources: Vec<Source>,
    pub(crate) labels: Vec<i64>,
    pub(crate) loader: Arc<Loader>,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Source {
    /// A synthetic-world sample.
    World(Split, u64),
    /// An image file.
    File(PathBuf),
}

/// Decodes and preprocesses [`Source`]s on demand (images are never all held in memory).
pub(crate) struct Loader {
    pub(crate) world: Option<SyntheticWorld>,
    pub(crate) preprocessor: ImagePreprocessor,
}

impl Loader {
    /// The decoded image.
    pub(crate) fn image(&self, source: &Source) -> Result<image::RgbImage> {
        match (source, &self.world) {
            (Source::World(split, index), Some(world)) => Ok(world.sample_in(*split, *index).image),
            (Source::File(path), _) => Ok(vl_data::image::load_image(path)?),
            (Source::World(..), None) => Err(Error::Training(
                "a synthetic-world image without a world".into(),
            )),
        }
    }
}

impl Images {
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Decodes, preprocesses and stacks the images `idx` (on worker threads).
    pub(crate) fn batch(
        &self,
        idx: &[usize],
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<1, Int>)> {
        self.batch_with(idx, device, |_, image| image)
    }

    /// [`Images::batch`] with each decoded image passed through `transform(position in the
    /// set, image)` first (augmentations).
    pub(crate) fn batch_with(
        &self,
        idx: &[usize],
        device: &Device,
        transform: impl Fn(usize, image::RgbImage) -> image::RgbImage + Sync,
    ) -> Result<(Tensor<4>, Tensor<1, Int>)> {
        let c = self.loader.preprocessor.config();
        let (h, w) = (c.crop_height as usize, c.crop_width as usize);
        let per = 3 * h * w;
        let mut px = vec![0.0f32; idx.len() * per];
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rows = idx.len().div_ceil(workers).max(1);
        let transform = &transform;
        std::thread::scope(|scope| {
            let handles: Vec<_> = px
                .chunks_mut(rows * per)
                .zip(idx.chunks(rows))
                .map(|(out, ids)| {
                    scope.spawn(move || -> Result<()> {
                        for (o, &i) in out.chunks_mut(per).zip(ids) {
                            let image = transform(i, self.loader.image(&self.sources[i])?);
                            let p = self.loader.preprocessor.preprocess(&image);
                            if p.len() != per {
                                return Err(Error::Training(format!(
                                    "{:?}: preprocessed to {} values, expected {per}",
                                    self.sources[i],
                                    p.len()
                                )));
                            }
                            o.copy_from_slice(&p);
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Training("image decoding panicked".into())))
            })
        })?;
        let labels: Vec<i64> = idx.iter().map(|&i| self.labels[i]).collect();
        Ok((
            Tensor::from_data(TensorData::new(px, [idx.len(), 3, h, w]), device),
            Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
        ))
    }
}

/// SplitMix64 step.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `per_class` one-object images of each class in `classes` (task labels), scanning world
/// indices from `start`; relabelled to positions in `classes`.
fn class_images(
    loader: &Arc<Loader>,
    task: Task,
    classes: &[usize],
    per_class: usize,
    start: u64,
) -> Result<Images> {
    let world = loader
        .world
        .as_ref()
        .ok_or_else(|| Error::Training("synthetic images without a world".into()))?;
    let names = world.class_names(task);
    let mut picked: Vec<Vec<(Split, u64)>> = vec![Vec::new(); classes.len()];
    for split in [Split::Eval, Split::HeldOut] {
        let mut index = start;
        let limit = start + 400 * (per_class as u64) * (names.len() as u64);
        while index < limit && picked.iter().any(|p| p.len() < per_class) {
            let sample_objects = world.objects_in(split, index);
            if sample_objects.len() == 1 {
                let o = &sample_objects[0];
                let label = match task {
                    Task::Shape => Some(o.shape_index),
                    Task::Colour => Some(o.colour_index),
                    Task::ShapeColour => {
                        Some(o.shape_index * world.config().colours.len() + o.colour_index)
                    }
                    Task::Size => Some(o.size_index),
                    Task::Background => None,
                };
                if let Some(pos) = label.and_then(|l| classes.iter().position(|&c| c == l))
                    && picked[pos].len() < per_class
                {
                    picked[pos].push((split, index));
                }
            }
            index += 1;
        }
    }
    if let Some(short) = picked.iter().position(|p| p.len() < per_class) {
        return Err(Error::InvalidConfig {
            field: "task".into(),
            expected: format!(
                "{per_class} one-object images of class {:?}",
                names[classes[short]]
            ),
            found: format!("{} in the scanned range", picked[short].len()),
        });
    }
    let mut labels = Vec::new();
    let mut sources = Vec::new();
    for (pos, list) in picked.iter().enumerate() {
        for &(split, index) in list {
            labels.push(pos as i64);
            sources.push(Source::World(split, index));
        }
    }
    Ok(Images {
        sources,
        labels,
        loader: loader.clone(),
    })
}

/// What a run needs from its task: tokenizer, classes, image sets, templates.
struct TaskData {
    tokenizer: ClipTokenizer,
    base_names: Vec<String>,
    novel_names: Vec<String>,
    train: Images,
    val: Option<Images>,
    base_test: Images,
    novel_test: Option<Images>,
    templates: Templates,
    kgcoop_template: Templates,
    /// Class descriptions by class name (the synthetic world's own; none for CoOp data).
    descriptions: std::collections::BTreeMap<String, Vec<String>>,
    /// Where the data comes from, for the manifest.
    source: serde_json::Value,
}

/// The classes a run trains on (base) and the others (novel), by the run's protocol.
fn split_classes(config: &PromptRunConfig, n: usize) -> (Vec<usize>, Vec<usize>) {
    match config.protocol {
        ClassProtocol::BaseToNovel => vl_data::base_novel_split(n),
        ClassProtocol::AllClasses => ((0..n).collect(), Vec::new()),
    }
}

/// The synthetic world of the pretraining run that made the model (its `run.toml`).
fn synthetic_task(config: &PromptRunConfig) -> Result<TaskData> {
    let pretrain: PretrainConfig = {
        let path = config.model.join("run.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| Error::Toml { path, source })?
    };
    let world = SyntheticWorld::new(pretrain.world_config())?;
    let tokenizer = ClipTokenizer::from_dir(&config.model)?
        .with_context_length(pretrain.model.context_length)?;
    // Class names as the captions say them ("an orange circle").
    let all_names: Vec<String> = world
        .class_names(config.task)
        .iter()
        .map(|n| vl_data::synthetic::with_article(n))
        .collect();
    let descriptions = match world.class_descriptions(config.task) {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let sentences = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (vl_data::synthetic::with_article(&k), sentences)
            })
            .collect(),
        _ => std::collections::BTreeMap::new(),
    };
    let loader = Arc::new(Loader {
        world: Some(world),
        preprocessor: ImagePreprocessor::new(PreprocessConfig::clip(pretrain.world.image_size))?,
    });
    let (base, novel) = split_classes(config, all_names.len());
    let names = |ids: &[usize]| ids.iter().map(|&i| all_names[i].clone()).collect();
    let base_test = class_images(&loader, config.task, &base, config.test_per_class, 0)?;
    let novel_test = if novel.is_empty() {
        None
    } else {
        Some(class_images(
            &loader,
            config.task,
            &novel,
            config.test_per_class,
            0,
        )?)
    };
    let train_start = (1u64 << 32) + (mix(config.seed) >> 40) * 4096;
    let train_per_class = match (&config.pseudo_labels, &config.lafter) {
        (Some(p), _) => p.pool_per_class,
        (None, Some(l)) => l.pool_per_class,
        (None, None) => config.shots,
    };
    let train = class_images(&loader, config.task, &base, train_per_class, train_start)?;
    // The linear probe's validation set: `shots` more images per base class, disjoint from the
    // shots (a later index range of the same seed).
    let val = match &config.probe {
        Some(ProbeConfig::Linear { .. }) => Some(class_images(
            &loader,
            config.task,
            &base,
            config.shots,
            train_start + (1 << 24),
        )?),
        _ => None,
    };
    Ok(TaskData {
        tokenizer,
        base_names: names(&base),
        novel_names: names(&novel),
        train,
        val,
        base_test,
        novel_test,
        templates: Templates::new(config.templates.clone())?,
        kgcoop_template: Templates::new([config.kgcoop_template.clone()])?,
        descriptions,
        source: serde_json::json!({
            "synthetic_world": pretrain.world,
            "task": config.task,
        }),
    })
}

pub use crate::coop_data::{COOP_DATASETS, CoopData};

/// A CoOp-suite data set: shots drawn from `train` with the seed (`vl_data::few_shot`), the
/// linear probe's validation shots from `val`, every `test` image of a class (the protocol's
/// test set; `test_per_class` does not apply). Class names with `_` read as spaces (CoOp's
/// `classname.replace("_", " ")`); the templates are the data set's CoOp template unless the
/// config sets its own.
fn coop_task(config: &PromptRunConfig, data: &CoopData) -> Result<TaskData> {
    let sets = crate::coop_data::read_coop(data)?;
    let name = sets.name;
    let all_names: Vec<String> = sets.classes.iter().map(|c| c.1.clone()).collect();
    let labels: Vec<usize> = sets.classes.iter().map(|c| c.0).collect();
    let (base, novel) = split_classes(config, labels.len());
    let preprocessor = ImagePreprocessor::new(PreprocessConfig::from_hf_file(
        config.model.join("preprocessor_config.json"),
    )?)?;
    let loader = Arc::new(Loader {
        world: None,
        preprocessor,
    });
    // Images of the classes `ids` (positions in `labels`), relabelled to their position.
    let subset = |items: &[vl_data::LabeledImage], ids: &[usize]| {
        Images {
            sources: Vec::new(),
            labels: Vec::new(),
            loader: loader.clone(),
        }
        .with(items.iter().filter_map(|item| {
            let pos = labels.iter().position(|&l| l == item.label)?;
            let rel = ids.iter().position(|&i| i == pos)?;
            Some((Source::File(item.path.clone()), rel as i64))
        }))
    };
    let shots =
        |items: &[vl_data::LabeledImage], what: &str| -> Result<Vec<vl_data::LabeledImage>> {
            let picked = vl_data::few_shot(items, config.shots, config.seed)?;
            if let Some(short) = picked.shortfalls.first() {
                return Err(Error::InvalidConfig {
                    field: "shots".into(),
                    expected: format!("{} {what} images of every class", config.shots),
                    found: format!(
                        "{} of class {:?} in {} ({} classes short)",
                        short.available,
                        short.class_name,
                        sets.listing.display(),
                        picked.shortfalls.len()
                    ),
                });
            }
            Ok(picked.items)
        };
    let label_free = config.pseudo_labels.is_some() || config.lafter.is_some();
    let train_shots = if label_free {
        Vec::new()
    } else {
        shots(&sets.train, "train")?
    };
    let train = if label_free {
        subset(&sets.train, &base)
    } else {
        subset(&train_shots, &base)
    };
    let val = match (&config.probe, &sets.val) {
        (Some(ProbeConfig::Linear { .. }), Some(val)) => Some(subset(&shots(val, "val")?, &base)),
        // No validation split (ImageNet): validation shots from the rest of `train`.
        (Some(ProbeConfig::Linear { .. }), None) => {
            let taken: std::collections::HashSet<&Path> =
                train_shots.iter().map(|i| i.path.as_path()).collect();
            let rest: Vec<vl_data::LabeledImage> = sets
                .train
                .iter()
                .filter(|i| !taken.contains(i.path.as_path()))
                .cloned()
                .collect();
            Some(subset(&shots(&rest, "further train")?, &base))
        }
        _ => None,
    };
    let base_test = subset(&sets.test, &base);
    let novel_test = (!novel.is_empty()).then(|| subset(&sets.test, &novel));
    let default = PromptRunConfig::default();
    let templates = if config.templates == default.templates {
        vl_prompting::Templates::coop(name)?
    } else {
        Templates::new(config.templates.clone())?
    };
    let kgcoop_template = if config.kgcoop_template == default.kgcoop_template {
        vl_prompting::Templates::coop(name)?
    } else {
        Templates::new([config.kgcoop_template.clone()])?
    };
    let names = |ids: &[usize]| ids.iter().map(|&i| all_names[i].clone()).collect();
    Ok(TaskData {
        tokenizer: ClipTokenizer::from_dir(&config.model)?,
        base_names: names(&base),
        novel_names: names(&novel),
        train,
        val,
        base_test,
        novel_test,
        templates,
        kgcoop_template,
        descriptions: std::collections::BTreeMap::new(),
        source: serde_json::json!({
            "coop_dataset": name,
            "listing": sets.listing,
        }),
    })
}

impl Images {
    /// Appends `(source, label)` pairs.
    fn with(mut self, items: impl Iterator<Item = (Source, i64)>) -> Self {
        for (source, label) in items {
            self.sources.push(source);
            self.labels.push(label);
        }
        self
    }
}

fn accuracy(probs: Tensor<2>, labels: Tensor<1, Int>) -> (usize, usize) {
    let [n, _] = probs.dims();
    let pred = probs.argmax(1).reshape([n]);
    let hits = pred.equal(labels).int().sum().into_scalar::<i64>() as usize;
    (hits, n)
}

/// Image features of a whole image set, in chunks (inference only).
fn features(
    learner: &PromptLearner,
    clip: &Clip,
    images: &Images,
    device: &Device,
) -> Result<Tensor<2>> {
    let idx: Vec<usize> = (0..images.len()).collect();
    let parts: Vec<Tensor<2>> = idx
        .chunks(128)
        .map(|chunk| {
            let (px, _) = images.batch(chunk, device)?;
            Ok(learner.image_features(clip, px).detach())
        })
        .collect::<Result<_>>()?;
    Ok(Tensor::cat(parts, 0))
}

/// Accuracy (%) of the learned prompts on `images` of `class_names`.
fn evaluate(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    learner: &PromptLearner,
    templates: &Templates,
    class_names: &[String],
    images: &Images,
    device: &Device,
) -> Result<f64> {
    let templates = TaskTemplates {
        classifier: templates.clone(),
        ..TaskTemplates::default()
    };
    let task = PromptTask::new(
        clip,
        tokenizer,
        learner,
        class_names,
        &ObjectiveConfig::default(),
        &templates,
    )?;
    let feats = features(learner, clip, images, device)?;
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(images.labels.clone(), [images.len()]),
        device,
    );
    let mut hits = 0;
    let n = images.len();
    let mut rng = HostRng::new(0xE7A1);
    for start in (0..n).step_by(128) {
        let len = 128.min(n - start);
        let f = feats.clone().narrow(0, start, len);
        let noise = sample_noise(learner, len, &mut rng, device);
        let probs = predict_from_features(clip, learner, &task, f, &noise);
        hits += accuracy(probs, labels.clone().narrow(0, start, len)).0;
    }
    Ok(100.0 * hits as f64 / n as f64)
}

/// Zero-shot classification of one image set with the hand-crafted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotDetail {
    /// Which set: `"base"` or `"novel"` (`"base"` is every class with all classes).
    pub set: String,
    /// Top-1 accuracy (%).
    pub top1: f64,
    /// Top-5 accuracy (%) (top-k with k = the number of classes when there are fewer).
    pub top5: f64,
    /// Accuracy (%) of each class over its own test images.
    pub per_class: Vec<(String, f64)>,
}

/// Cosine similarities (row-major `[images, classes]`) of the images to the classes'
/// hand-crafted ensemble features.
fn zero_shot_scores(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    class_names: &[String],
    templates: &Templates,
    images: &Images,
    device: &Device,
) -> Result<Vec<f32>> {
    let text = class_text_features(clip, tokenizer, class_names, templates)?;
    let idx: Vec<usize> = (0..images.len()).collect();
    let mut scores: Vec<f32> = Vec::with_capacity(images.len() * class_names.len());
    for chunk in idx.chunks(128) {
        let (px, _) = images.batch(chunk, device)?;
        let img = vl_encoders::clip::l2_normalize(clip.encode_image(px));
        scores.extend(
            img.matmul(text.clone().transpose())
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Training(format!("reading zero-shot scores: {e:?}")))?,
        );
    }
    Ok(scores)
}

/// UPL's pseudo-labelled training set from the unlabeled `pool`: CLIP's zero-shot
/// probabilities (softmax of the logit-scaled cosines), the `top_k` most confident per
/// predicted class. Returns the set and the share (%) of kept pseudo-labels that are right
/// (the pool's true labels are used for nothing else).
#[allow(clippy::too_many_arguments)]
fn pseudo_label(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    class_names: &[String],
    templates: &Templates,
    pool: &Images,
    top_k: usize,
    device: &Device,
) -> Result<(Images, f64)> {
    let n = class_names.len();
    let cos = zero_shot_scores(clip, tokenizer, class_names, templates, pool, device)?;
    let scale = clip.logit_scale.val().exp().into_scalar::<f32>();
    let mut probs = Vec::with_capacity(cos.len());
    for row in cos.chunks(n) {
        let max = row.iter().fold(f32::MIN, |m, &v| m.max(v));
        let e: Vec<f32> = row.iter().map(|&v| ((v - max) * scale).exp()).collect();
        let z: f32 = e.iter().sum();
        probs.extend(e.iter().map(|v| v / z));
    }
    let picked = vl_prompting::select_top_k_per_class(&probs, n, top_k);
    if picked.is_empty() {
        return Err(Error::Training(
            "UPL: no unlabeled image could be pseudo-labelled".into(),
        ));
    }
    let right = picked
        .iter()
        .filter(|p| pool.labels[p.index] == p.class as i64)
        .count();
    let set = Images {
        sources: picked
            .iter()
            .map(|p| pool.sources[p.index].clone())
            .collect(),
        labels: picked.iter().map(|p| p.class as i64).collect(),
        loader: pool.loader.clone(),
    };
    Ok((set, 100.0 * right as f64 / picked.len() as f64))
}

/// Zero-shot classification with the hand-crafted ensemble: top-1, top-5, per class.
fn zero_shot(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    class_names: &[String],
    templates: &Templates,
    images: &Images,
    device: &Device,
) -> Result<ZeroShotDetail> {
    let scores = zero_shot_scores(clip, tokenizer, class_names, templates, images, device)?;
    let labels = labels_of(images);
    let n = class_names.len();
    let eval = |e: vl_eval::Error| Error::Training(format!("zero-shot metrics: {e}"));
    let pred = vl_eval::metrics::argmax_rows(&scores, n).map_err(eval)?;
    let per = vl_eval::metrics::per_class_accuracy(&pred, &labels, n).map_err(eval)?;
    Ok(ZeroShotDetail {
        set: String::new(),
        top1: vl_eval::metrics::accuracy(&pred, &labels).map_err(eval)?,
        top5: vl_eval::metrics::top_k_accuracy(&scores, n, &labels, 5.min(n)).map_err(eval)?,
        per_class: class_names
            .iter()
            .zip(per)
            .filter_map(|(c, a)| Some((c.clone(), a?)))
            .collect(),
    })
}

fn count_params(learner: &PromptLearner) -> usize {
    learner.num_params()
}

/// Runs one prompt-learning experiment; returns (and writes) its report.
pub fn run_prompt(config: &PromptRunConfig, opts: &PromptOptions) -> Result<PromptReport> {
    config.validate()?;
    // Modules built here may draw from the process-wide device generator (lazy initialisers):
    // one run at a time per process, so that no other run's draws interleave with its own.
    let _rng = crate::device_rng::exclusive();
    let dir = &opts.out_dir;
    let report_path = dir.join("report.json");
    let config_path = dir.join("run.json");
    if report_path.exists() {
        let report: PromptReport = read_json(&report_path)?;
        if &report.config == config {
            return Ok(report);
        }
        return Err(Error::RunDir {
            path: dir.clone(),
            message: "holds a finished run with another config (choose another --out)".into(),
        });
    }
    if config_path.exists() {
        let previous: PromptRunConfig = read_json(&config_path)?;
        if &previous != config {
            return Err(Error::RunDir {
                path: dir.clone(),
                message: "holds an unfinished run with another config".into(),
            });
        }
        if !opts.resume {
            return Err(Error::RunDir {
                path: dir.clone(),
                message: "holds an unfinished run: pass --resume to continue it".into(),
            });
        }
    }
    std::fs::create_dir_all(dir.join("checkpoints")).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    write_json_atomic(&config_path, config)?;

    // The model and the task's data.
    let device = opts.device.clone().autodiff();
    let clip = crate::pretrain::load_exported(&config.model, &device)?.no_grad();
    let fingerprint = model_fingerprint(&clip);
    let frozen = clip.clone();
    let TaskData {
        tokenizer,
        base_names,
        novel_names,
        train,
        val,
        base_test,
        novel_test,
        templates,
        kgcoop_template,
        descriptions,
        source,
    } = match &config.data {
        None => synthetic_task(config)?,
        Some(data) => coop_task(config, data)?,
    };
    let log = RunLog::new(dir, opts.verbose, &config.method);

    // Zero-shot baseline.
    let inference = device.clone();
    let mut zero_shot_detail = vec![ZeroShotDetail {
        set: "base".into(),
        ..zero_shot(
            &clip,
            &tokenizer,
            &base_names,
            &templates,
            &base_test,
            &inference,
        )?
    }];
    if let Some(novel_test) = &novel_test {
        zero_shot_detail.push(ZeroShotDetail {
            set: "novel".into(),
            ..zero_shot(
                &clip,
                &tokenizer,
                &novel_names,
                &templates,
                novel_test,
                &inference,
            )?
        });
    }
    let zs = BaseNovel::new(
        zero_shot_detail[0].top1,
        zero_shot_detail.get(1).map(|d| d.top1),
    );
    log.line(&format!(
        "zero-shot: base {:.1}{}",
        zs.base,
        zs.novel.map_or(String::new(), |n| format!(" novel {n:.1}"))
    ));

    // UPL: the unlabeled pool becomes a pseudo-labelled training set.
    let (train, pool, pseudo_label_accuracy) = match &config.pseudo_labels {
        Some(p) => {
            let (set, acc) = pseudo_label(
                &clip,
                &tokenizer,
                &base_names,
                &templates,
                &train,
                p.top_k,
                &inference,
            )?;
            log.line(&format!(
                "UPL: {} of {} unlabeled images pseudo-labelled ({acc:.1}% right)",
                set.len(),
                train.len()
            ));
            (set, Some(train), Some(acc))
        }
        None => (train, None, None),
    };
    write_manifest(
        dir,
        config,
        source,
        (&base_names, &novel_names),
        [
            ("train", Some(&train)),
            ("unlabeled_pool", pool.as_ref()),
            ("val", val.as_ref()),
            ("base_test", Some(&base_test)),
            ("novel_test", novel_test.as_ref()),
        ],
    )?;

    if let Some(lafter) = &config.lafter {
        let started = std::time::Instant::now();
        let descriptions = match &lafter.descriptions {
            Some(path) => read_json(path)?,
            None => descriptions,
        };
        let outcome = crate::lafter::run_lafter(
            lafter,
            &clip,
            &tokenizer,
            &templates,
            &base_names,
            &descriptions,
            (&train, &base_test),
            config.seed,
            &device,
            &log,
            crate::lafter::LafterRun {
                dir,
                resume: opts.resume,
                stop_after_epochs: opts.stop_after_epochs,
            },
        )?;
        let report = PromptReport {
            config: config.clone(),
            base_model: fingerprint,
            backend: opts.backend.clone(),
            dtype: "f32".into(),
            git_revision: opts.git_revision.clone(),
            zero_shot: zs,
            zero_shot_detail,
            pseudo_label_accuracy,
            learned: BaseNovel::new(outcome.accuracy, None),
            trainable_parameters: outcome.trainable,
            history: outcome.history,
            seconds: started.elapsed().as_secs_f64(),
        };
        write_json_atomic(&report_path, &report)?;
        return Ok(report);
    }

    if let Some(probe) = &config.probe {
        let started = std::time::Instant::now();
        let cache = opts
            .feature_cache
            .as_deref()
            .map(|c| (c, fingerprint.as_str()));
        let learned = match probe {
            ProbeConfig::ZeroShot => zs,
            ProbeConfig::Linear { c_grid } => {
                let val = val.as_ref().ok_or_else(|| {
                    Error::Training("linear probe without a validation set".into())
                })?;
                let probe_config = vl_eval::linear_probe::LinearProbeConfig {
                    c_grid: c_grid.clone().unwrap_or_else(|| {
                        vl_eval::linear_probe::LinearProbeConfig::default().c_grid
                    }),
                    ..vl_eval::linear_probe::LinearProbeConfig::default()
                };
                let (tr, va, te) = (
                    frozen_features(&clip, &train, cache, &inference)?,
                    frozen_features(&clip, val, cache, &inference)?,
                    frozen_features(&clip, &base_test, cache, &inference)?,
                );
                let (fitted, search) = vl_eval::linear_probe::fit_with_validation(
                    (&tr.0, &labels_of(&train)),
                    (&va.0, &labels_of(val)),
                    tr.1,
                    base_names.len(),
                    &probe_config,
                )
                .map_err(|e| Error::Training(format!("linear probe: {e}")))?;
                log.line(&format!(
                    "linear probe: C = {:.4e} chosen among {} values on validation",
                    fitted.c,
                    search.len()
                ));
                let pred = fitted
                    .predict(&te.0)
                    .map_err(|e| Error::Training(format!("linear probe: {e}")))?;
                BaseNovel::new(
                    vl_eval::metrics::accuracy(&pred, &labels_of(&base_test))
                        .map_err(|e| Error::Training(e.to_string()))?,
                    None,
                )
            }
            ProbeConfig::Knn { k, temperature } => {
                let (tr, te) = (
                    frozen_features(&clip, &train, cache, &inference)?,
                    frozen_features(&clip, &base_test, cache, &inference)?,
                );
                let pred = vl_eval::knn::knn_classify(
                    &tr.0,
                    &labels_of(&train),
                    &te.0,
                    tr.1,
                    base_names.len(),
                    &vl_eval::knn::KnnConfig {
                        k: *k,
                        temperature: *temperature,
                    },
                )
                .map_err(|e| Error::Training(format!("kNN: {e}")))?;
                BaseNovel::new(
                    vl_eval::metrics::accuracy(&pred, &labels_of(&base_test))
                        .map_err(|e| Error::Training(e.to_string()))?,
                    None,
                )
            }
        };
        let d = clip.text_projection.weight.dims()[1];
        let report = PromptReport {
            config: config.clone(),
            base_model: fingerprint,
            backend: opts.backend.clone(),
            dtype: "f32".into(),
            git_revision: opts.git_revision.clone(),
            zero_shot: zs,
            zero_shot_detail: zero_shot_detail.clone(),
            pseudo_label_accuracy,
            learned,
            trainable_parameters: match probe {
                ProbeConfig::ZeroShot | ProbeConfig::Knn { .. } => 0,
                ProbeConfig::Linear { .. } => (d + 1) * base_names.len(),
            },
            history: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        };
        write_json_atomic(&report_path, &report)?;
        return Ok(report);
    }

    if let Some(lfa) = &config.lfa {
        let started = std::time::Instant::now();
        let sets = LfaSets {
            train: &train,
            base_test: &base_test,
            novel_test: novel_test.as_ref(),
        };
        let (learned, history) = run_lfa(
            lfa,
            &clip,
            &tokenizer,
            &templates,
            (&base_names, &novel_names),
            &sets,
            config,
            &device,
            &log,
        )?;
        let d = clip.text_projection.weight.dims()[1];
        let report = PromptReport {
            config: config.clone(),
            base_model: fingerprint,
            backend: opts.backend.clone(),
            dtype: "f32".into(),
            git_revision: opts.git_revision.clone(),
            zero_shot: zs,
            zero_shot_detail: zero_shot_detail.clone(),
            pseudo_label_accuracy,
            learned,
            trainable_parameters: d * d,
            history,
            seconds: started.elapsed().as_secs_f64(),
        };
        write_json_atomic(&report_path, &report)?;
        return Ok(report);
    }

    // PEFT on the encoders (the zero-shot baseline above used the plain model).
    let (clip, peft_state) = match &config.peft {
        Some(p) => {
            if config.prompt.text.is_none() && p.tower != vl_peft::Tower::Vision {
                return Err(Error::InvalidConfig {
                    field: "peft.tower".into(),
                    expected: "\"vision\" when there is no [prompt.text] (the classes are then fixed hand-crafted text features)".into(),
                    found: format!("{:?}", p.tower),
                });
            }
            let (clip, state) = vl_peft::apply_peft(clip, p, mix(config.seed ^ 0x9EF7))
                .map_err(|e| Error::Training(e.to_string()))?;
            log.line(&state.trainable_line());
            (clip, Some(state))
        }
        None => (clip, None),
    };

    // The learner, its task, the optimiser.
    let learner = config.prompt.init(
        &clip,
        &tokenizer,
        base_names.len(),
        mix(config.seed ^ 0x1417),
        &device,
    )?;
    let task_templates = TaskTemplates {
        classifier: templates.clone(),
        kgcoop: kgcoop_template,
        lasp: templates.clone(),
        virtual_classes: config.virtual_classes.clone(),
    };
    let task = PromptTask::new(
        &frozen,
        &tokenizer,
        &learner,
        &base_names,
        &config.objective,
        &task_templates,
    )?;
    // Training, on burn-train (`prompt_train`). Without visual prompts or PEFT the image
    // features do not depend on what is trained: computed once.
    let cached = (!learner.has_visual_prompts() && peft_state.is_none())
        .then(|| features(&learner, &clip, &train, &device))
        .transpose()?;
    let trained = train_prompts(PromptTraining {
        dir,
        learner,
        clip,
        adapted: peft_state.is_some(),
        constants: StepConstants {
            task,
            objective: config.objective.clone(),
        },
        train: Arc::new(train.clone()),
        features: cached,
        optim: &config.optim,
        seed: config.seed,
        resume: opts.resume,
        stop_after_epochs: opts.stop_after_epochs,
        log: &log,
        device: &device,
    })?;
    let Trained {
        learner,
        clip,
        history,
        seconds,
    } = trained;

    let learned = BaseNovel::new(
        evaluate(
            &clip,
            &tokenizer,
            &learner,
            &templates,
            &base_names,
            &base_test,
            &inference,
        )?,
        match &novel_test {
            Some(novel_test) => Some(evaluate(
                &clip,
                &tokenizer,
                &learner,
                &templates,
                &novel_names,
                novel_test,
                &inference,
            )?),
            None => None,
        },
    );
    if learner.ctx.is_some() || learner.has_visual_prompts() {
        save_prompts(
            &learner,
            &frozen,
            &base_names,
            config.model.to_str(),
            dir.join("prompt"),
            vl_data::Overwrite::Allow,
        )?;
    }
    let mut trainable = count_params(&learner);
    if let Some(state) = &peft_state {
        trainable += state.trainable;
        if !matches!(
            state.config.method,
            vl_peft::PeftMethod::BitFit | vl_peft::PeftMethod::LayerNorm
        ) {
            vl_peft::save_peft_adapter(
                &clip,
                state,
                dir.join("adapter"),
                vl_data::Overwrite::Allow,
            )
            .map_err(|e| Error::Training(e.to_string()))?;
        }
    }
    let report = PromptReport {
        config: config.clone(),
        base_model: fingerprint,
        backend: opts.backend.clone(),
        dtype: "f32".into(),
        git_revision: opts.git_revision.clone(),
        zero_shot: zs,
        zero_shot_detail,
        pseudo_label_accuracy,
        learned,
        trainable_parameters: trainable,
        history,
        seconds,
    };
    write_json_atomic(&report_path, &report)?;
    Ok(report)
}

/// The image sets of an LFA run.
struct LfaSets<'a> {
    train: &'a Images,
    base_test: &'a Images,
    novel_test: Option<&'a Images>,
}

/// LFA: closed-form regularised Procrustes from the shots' image features to their classes'
/// hand-crafted text features, then optional refinement (see `vl_prompting::lfa`).
#[allow(clippy::too_many_arguments)]
fn run_lfa(
    lfa: &LfaConfig,
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    templates: &Templates,
    (base_names, novel_names): (&[String], &[String]),
    sets: &LfaSets<'_>,
    config: &PromptRunConfig,
    device: &Device,
    log: &RunLog,
) -> Result<(BaseNovel, Vec<PromptEpoch>)> {
    let frozen = |images: &Images| -> Result<Tensor<2>> {
        let idx: Vec<usize> = (0..images.len()).collect();
        let parts: Vec<Tensor<2>> = idx
            .chunks(128)
            .map(|c| {
                let (px, _) = images.batch(c, device)?;
                Ok(vl_encoders::clip::l2_normalize(clip.encode_image(px)).detach())
            })
            .collect::<Result<_>>()?;
        Ok(Tensor::cat(parts, 0))
    };
    let labels = |images: &Images| {
        Tensor::<1, Int>::from_data(
            TensorData::new(images.labels.clone(), [images.len()]),
            device,
        )
    };
    let base_text = class_text_features(clip, tokenizer, base_names, templates)?.detach();
    let novel_text = if novel_names.is_empty() {
        base_text.clone()
    } else {
        class_text_features(clip, tokenizer, novel_names, templates)?.detach()
    };
    let x = frozen(sets.train)?;
    let y = base_text.clone().select(0, labels(sets.train));
    let mut w = burn::module::Param::from_tensor(procrustes(x.clone(), y, lfa.beta)?);
    let scale = clip.logit_scale.val().exp().detach();
    let logits = |w: &Tensor<2>, feats: Tensor<2>, text: &Tensor<2>| {
        lfa_logits(w.clone(), feats, text.clone(), scale.clone())
    };
    let mut history = Vec::new();
    let mut optim = AdamConfig::new().init();
    let n = sets.train.len();
    for epoch in 1..=lfa.refine_epochs {
        let mut state = mix(config.seed.wrapping_mul(31).wrapping_add(epoch as u64));
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            state = mix(state);
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let (mut loss_sum, mut hits, mut steps) = (0.0, 0, 0);
        for chunk in order.chunks(config.optim.batch_size) {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(
                    chunk.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [chunk.len()],
                ),
                device,
            );
            let target = labels(sets.train).select(0, idx.clone());
            let feats = x.clone().select(0, idx);
            hits += accuracy(
                logits(&w.val().detach(), feats.clone(), &base_text),
                target.clone(),
            )
            .0;
            let loss = lfa_refine_loss(w.val(), feats, base_text.clone(), target, scale.clone());
            loss_sum += f64::from(loss.clone().into_scalar::<f32>());
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &LfaMap { w: w.clone() });
            w = optim.step(lfa.refine_lr, LfaMap { w }, grads).w;
        }
        let record = PromptEpoch {
            epoch,
            lr: lfa.refine_lr,
            loss: loss_sum / f64::from(steps.max(1)),
            train_accuracy: 100.0 * hits as f64 / n as f64,
        };
        log.line(&format!(
            "refine epoch {epoch}/{} loss {:.4} train acc {:.1}%",
            lfa.refine_epochs, record.loss, record.train_accuracy
        ));
        history.push(record);
    }
    let acc = |images: &Images, text: &Tensor<2>| -> Result<f64> {
        let (hits, total) = accuracy(logits(&w.val(), frozen(images)?, text), labels(images));
        Ok(100.0 * hits as f64 / total as f64)
    };
    let novel = match sets.novel_test {
        Some(n) => Some(acc(n, &novel_text)?),
        None => None,
    };
    Ok((
        BaseNovel::new(acc(sets.base_test, &base_text)?, novel),
        history,
    ))
}

/// The LFA map as a module (so the optimiser can step it).
#[derive(Module, Debug)]
struct LfaMap {
    w: burn::module::Param<Tensor<2>>,
}

/// Reads a finished run's report.
pub fn read_prompt_report(dir: &Path) -> Result<PromptReport> {
    read_json(&dir.join("report.json"))
}

/// The reports grouped by method, in order of first appearance.
fn by_method(reports: &[PromptReport]) -> Vec<(&str, Vec<&PromptReport>)> {
    let mut groups: Vec<(&str, Vec<&PromptReport>)> = Vec::new();
    for r in reports {
        match groups.iter_mut().find(|(m, _)| *m == r.config.method) {
            Some((_, runs)) => runs.push(r),
            None => groups.push((&r.config.method, vec![r])),
        }
    }
    groups
}

/// Zero-shot's row name in sweep tables and charts; zero-shot does not depend on the seed (fixed
/// test images), so it is shown once, from the first report.
const ZERO_SHOT_ROW: &str = "zero-shot (template ensemble)";

/// The base-to-novel table (Markdown): zero-shot first, then each method in order of first
/// appearance; mean ± std over its seeds.
pub fn base_novel_table(reports: &[PromptReport]) -> String {
    let cell = |v: Vec<f64>| vl_eval::table::mean_std_cell(&v);
    let row = |name: &str, rows: Vec<BaseNovel>, seeds: usize, params: String| {
        format!(
            "| {name} | {} | {} | {} | {seeds} | {params} |\n",
            cell(rows.iter().map(|r| r.base).collect()),
            cell(rows.iter().filter_map(|r| r.novel).collect()),
            cell(rows.iter().filter_map(|r| r.hm).collect()),
        )
    };
    let mut out = String::from(
        "| method | base (%) | novel (%) | HM (%) | seeds | trainable params |\n|---|---:|---:|---:|---:|---:|\n",
    );
    if let Some(first) = reports.first() {
        out += &row(ZERO_SHOT_ROW, vec![first.zero_shot], 1, "0".into());
    }
    for (m, runs) in by_method(reports) {
        out += &row(
            m,
            runs.iter().map(|r| r.learned).collect(),
            runs.len(),
            runs[0].trainable_parameters.to_string(),
        );
    }
    out
}

/// The base-to-novel bar chart of the same rows as [`base_novel_table`]: one group per row
/// (zero-shot first), bars base / novel / HM at their mean over seeds with a ± std whisker.
pub fn base_novel_chart(reports: &[PromptReport], title: &str) -> vl_eval::plot::BarChart {
    let ms = |v: Vec<f64>| (!v.is_empty()).then(|| vl_eval::metrics::mean_std(&v));
    let bars = |rows: Vec<BaseNovel>| {
        vec![
            ms(rows.iter().map(|r| r.base).collect()),
            ms(rows.iter().filter_map(|r| r.novel).collect()),
            ms(rows.iter().filter_map(|r| r.hm).collect()),
        ]
    };
    let mut groups = Vec::new();
    let mut values = Vec::new();
    if let Some(first) = reports.first() {
        groups.push("zero-shot".to_string());
        values.push(bars(vec![first.zero_shot]));
    }
    for (m, runs) in by_method(reports) {
        groups.push(m.to_string());
        values.push(bars(runs.iter().map(|r| r.learned).collect()));
    }
    vl_eval::plot::BarChart {
        title: title.to_string(),
        y_label: "accuracy (%)".into(),
        groups,
        bars: vec!["base".into(), "novel".into(), "HM".into()],
        values,
    }
}

/// Writes a sweep's `results.md` (the [`base_novel_table`]), `results.json` (the reports) and
/// `b2n.svg` / `b2n.png` (the [`base_novel_chart`]) into `out`, each atomically; returns the table.
pub fn write_sweep_results(reports: &[PromptReport], out: &Path) -> Result<String> {
    let table = base_novel_table(reports);
    crate::atomic::write_atomic(&out.join("results.md"), table.as_bytes())?;
    crate::atomic::write_json_atomic(&out.join("results.json"), &reports)?;
    let shots: Vec<usize> = reports.iter().map(|r| r.config.shots).collect();
    let title = match shots.first() {
        Some(&s) if shots.iter().all(|&t| t == s) => format!("base-to-novel, {s} shots"),
        _ => "base-to-novel".to_string(),
    };
    let chart = base_novel_chart(reports, &title);
    let plot = crate::experiment::plot_error;
    vl_eval::plot::write_svg_png(
        &out.join("b2n"),
        &chart.to_svg().map_err(plot)?,
        &chart.to_png().map_err(plot)?,
    )
    .map_err(plot)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(method: &str, seed: u64, base: f64, novel: f64) -> PromptReport {
        let config = PromptRunConfig {
            method: method.into(),
            seed,
            ..PromptRunConfig::default()
        };
        let bn = |b: f64, n: f64| BaseNovel {
            base: b,
            novel: Some(n),
            hm: Some(2.0 * b * n / (b + n)),
        };
        PromptReport {
            config,
            base_model: "fingerprint".into(),
            backend: "flex".into(),
            dtype: "f32".into(),
            git_revision: "rev".into(),
            zero_shot: bn(50.0, 30.0),
            zero_shot_detail: vec![],
            pseudo_label_accuracy: None,
            learned: bn(base, novel),
            trainable_parameters: 288,
            history: vec![],
            seconds: 1.0,
        }
    }

    #[test]
    fn sweep_table_and_chart_group_seeds_by_method_in_first_appearance_order() {
        let reports = [
            report("coop", 1, 52.0, 30.0),
            report("lfa", 1, 56.0, 34.0),
            report("coop", 2, 54.0, 32.0),
        ];
        let table = base_novel_table(&reports);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[2].starts_with("| zero-shot (template ensemble) | 50.0 ± 0.0 | 30.0 ± 0.0 |")
        );
        // Sample std of 52 and 54 is sqrt(2).
        assert!(
            lines[3].starts_with("| coop | 53.0 ± 1.4 | 31.0 ± 1.4 |"),
            "{}",
            lines[3]
        );
        assert!(lines[3].ends_with("| 2 | 288 |"), "{}", lines[3]);
        assert!(lines[4].starts_with("| lfa | 56.0 ± 0.0 |"), "{}", lines[4]);

        let chart = base_novel_chart(&reports, "demo");
        assert_eq!(chart.groups, ["zero-shot", "coop", "lfa"]);
        assert_eq!(chart.bars, ["base", "novel", "HM"]);
        let (m, s) = chart.values[1][0].unwrap();
        assert_eq!(m, 53.0);
        assert!((s - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(chart.values[0][1], Some((30.0, 0.0)));
        assert!(chart.to_svg().unwrap().contains("demo"));
    }
}
