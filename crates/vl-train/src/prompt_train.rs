//! The training loop of prompt learning on burn-train: a [`Learner`] over [`PromptModel`] (the
//! prompt learner, plus the CLIP when PEFT adapts it) driven by [`SupervisedTraining`], with
//! burn-train's loss, accuracy and learning-rate metrics, its checkpointing strategy (atomic
//! files, last two epochs kept) and its resume.
//!
//! What burn-train does not know and this module supplies:
//! - **Only trainable parameters are checkpointed.** A frozen CLIP is a `#[module(skip)]` field
//!   of the model, so `into_record` — what burn-train's model checkpointer writes — holds the
//!   prompt learner alone (and the adapted CLIP when PEFT trains it).
//! - **Epoch data as a pure function of `(seed, epoch)`.** [`PromptLoader`] serves epoch `e` in
//!   the order and with the Monte Carlo draws that `(seed, e)` fix, so a run resumed at epoch
//!   `e` sees what an uninterrupted run sees (Burn's own shuffling restarts from its seed).
//!   Batches are made on demand: cached image features (no visual prompts, no PEFT) or images
//!   decoded on worker threads; a decoding error ends the run with that error, not a panic.
//! - **Dassl's schedule**: [`DasslSchedule`], a constant warm-up then a per-epoch cosine,
//!   stepped per iteration as burn-train does and recorded so a resume continues it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, SgdConfig};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::train::checkpoint::{Checkpointer, KeepLastNCheckpoints};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainOutput,
    TrainStep,
};
use vl_encoders::clip::Clip;
use vl_prompting::model::{PromptTask, loss_from_features, predict_from_features, sample_noise};
use vl_prompting::{HostRng, ObjectiveConfig, PromptLearner};

use crate::atomic::read_json;
use crate::checkpoint::AtomicCheckpointer;
use crate::prompt::{Images, OptimSection, OptimizerKind, PromptEpoch, RunLog, mix};
use crate::renderer::{EpochRecord, ProgressRenderer};
use crate::{Error, Result};

/// What a training step needs besides the parameters: computed once per run.
#[derive(Debug, Clone)]
pub(crate) struct StepConstants {
    /// The class prompts and the regularisers' hand-crafted features.
    pub task: PromptTask,
    /// The loss terms and weights.
    pub objective: ObjectiveConfig,
}

/// The module burn-train optimises and checkpoints.
#[derive(Module, Debug)]
pub(crate) struct PromptModel {
    /// The prompts (trained, checkpointed).
    pub learner: PromptLearner,
    /// The CLIP when PEFT adapts it (trained, checkpointed).
    pub adapted: Option<Clip>,
    /// The frozen CLIP otherwise: neither trained nor written to checkpoints.
    #[module(skip)]
    pub frozen: Option<Arc<Clip>>,
    /// Task constants.
    #[module(skip)]
    pub constants: Arc<StepConstants>,
}

impl PromptModel {
    /// The CLIP the step runs through.
    fn clip(&self) -> &Clip {
        match (&self.adapted, &self.frozen) {
            (Some(clip), _) => clip,
            (None, Some(clip)) => clip,
            (None, None) => unreachable!("a prompt model holds an adapted or a frozen CLIP"),
        }
    }

    fn features(&self, image: StepImage) -> Tensor<2> {
        match image {
            StepImage::Features(f) => f,
            StepImage::Pixels(px) => self.learner.image_features(self.clip(), px),
        }
    }
}

/// A batch's images: pixels, or their cached (learner-independent) features.
#[derive(Debug, Clone)]
pub(crate) enum StepImage {
    /// `[batch_size, 3, height, width]`.
    Pixels(Tensor<4>),
    /// `[batch_size, projection_dim]`, unit norm.
    Features(Tensor<2>),
}

/// One training step's input.
#[derive(Debug, Clone)]
pub(crate) struct PromptBatch {
    /// The images.
    pub image: StepImage,
    /// `[batch_size]` class indices.
    pub labels: Tensor<1, Int>,
    /// The variational residual's standard-normal draws (empty without a Gaussian).
    pub noise: Vec<Tensor<2>>,
}

impl TrainStep for PromptModel {
    type Input = PromptBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: PromptBatch) -> TrainOutput<ClassificationOutput> {
        let c = &self.constants;
        let image = self.features(batch.image);
        let terms = loss_from_features(
            self.clip(),
            &self.learner,
            &c.task,
            &c.objective,
            image.clone(),
            batch.labels.clone(),
            &batch.noise,
        );
        let grads = terms.total.backward();
        let probs = predict_from_features(
            self.clip(),
            &self.learner,
            &c.task,
            image.detach(),
            &batch.noise,
        );
        TrainOutput::new(
            self,
            grads,
            ClassificationOutput::new(terms.total.detach(), probs, batch.labels),
        )
    }
}

impl InferenceStep for PromptModel {
    type Input = PromptBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: PromptBatch) -> ClassificationOutput {
        let c = &self.constants;
        let image = self.features(batch.image);
        let terms = loss_from_features(
            self.clip(),
            &self.learner,
            &c.task,
            &c.objective,
            image.clone(),
            batch.labels.clone(),
            &batch.noise,
        );
        let probs = predict_from_features(self.clip(), &self.learner, &c.task, image, &batch.noise);
        ClassificationOutput::new(terms.total, probs, batch.labels)
    }
}

/// Dassl's schedule ([`OptimSection::lr_at`]) stepped per iteration: iteration `k` (from 0) of
/// a run with `steps_per_epoch` batches per epoch uses `lr_at(1 + k / steps_per_epoch)`.
#[derive(Debug, Clone)]
pub(crate) struct DasslSchedule {
    optim: OptimSection,
    steps_per_epoch: usize,
    step: usize,
}

impl DasslSchedule {
    pub(crate) fn new(optim: OptimSection, steps_per_epoch: usize) -> Self {
        Self {
            optim,
            steps_per_epoch: steps_per_epoch.max(1),
            step: 0,
        }
    }
}

impl LrScheduler for DasslSchedule {
    fn step(&mut self) -> f64 {
        let epoch = 1 + self.step / self.steps_per_epoch;
        self.step += 1;
        self.optim.lr_at(epoch)
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

/// The order of `items` in epoch `epoch` of a run with `seed` (a seeded Fisher-Yates shuffle;
/// the same permutation for every loop of this crate).
pub(crate) fn shuffled(items: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = items.to_vec();
    let mut state = mix(seed.wrapping_mul(31).wrapping_add(epoch as u64));
    for i in (1..order.len()).rev() {
        state = mix(state);
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

/// The first error a loader hit, kept with its type for the run's result (burn-train only
/// learns that the data failed).
pub(crate) type ErrorSlot = Arc<Mutex<Option<Error>>>;

/// The first error in `slot`, if any.
pub(crate) fn take_error(slot: &ErrorSlot) -> Option<Error> {
    slot.lock().ok().and_then(|mut slot| slot.take())
}

/// Makes the batch of a chunk of item indices.
type MakeBatch<'a, B> = Box<dyn FnMut(&[usize]) -> Result<B> + 'a>;

/// Batches of `order` in chunks of `batch_size`, each made by `make`; the first error ends the
/// pass (and lands in `errors`).
pub(crate) struct BatchIter<'a, B> {
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    make: MakeBatch<'a, B>,
    errors: ErrorSlot,
    failed: bool,
}

impl<'a, B> BatchIter<'a, B> {
    pub(crate) fn new(
        order: Vec<usize>,
        batch_size: usize,
        errors: &ErrorSlot,
        make: impl FnMut(&[usize]) -> Result<B> + 'a,
    ) -> Self {
        Self {
            order,
            next: 0,
            batch_size: batch_size.max(1),
            make: Box::new(make),
            errors: Arc::clone(errors),
            failed: false,
        }
    }
}

impl<B> Iterator for BatchIter<'_, B> {
    type Item = std::result::Result<B, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let chunk = self.order[self.next..end].to_vec();
        self.next = end;
        match (self.make)(&chunk) {
            Ok(batch) => Some(Ok(batch)),
            Err(e) => {
                self.failed = true;
                let message = e.to_string();
                if let Ok(mut slot) = self.errors.lock() {
                    slot.get_or_insert(e);
                }
                Some(Err(DatasetError::new(std::io::Error::other(message))))
            }
        }
    }
}

impl<B> DataLoaderIterator<B> for BatchIter<'_, B> {
    fn progress(&self) -> Progress {
        Progress::new(self.next, self.order.len(), None)
    }
}

/// The training data: epoch `e`'s batches are a pure function of `(seed, e)`.
#[derive(Clone)]
pub(crate) struct PromptLoader {
    images: Arc<Images>,
    /// Cached unit-norm image features of every training image, if the learner cannot change
    /// them.
    features: Option<Tensor<2>>,
    /// The learner at its initialisation: what [`sample_noise`] reads (config and sizes).
    shape: Arc<PromptLearner>,
    seed: u64,
    batch_size: usize,
    /// The epoch of the next pass minus one (advanced by `iter`).
    epoch: Arc<AtomicUsize>,
    errors: ErrorSlot,
    device: Device,
}

impl PromptLoader {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        images: Arc<Images>,
        features: Option<Tensor<2>>,
        learner: &PromptLearner,
        seed: u64,
        batch_size: usize,
        start_epoch: usize,
        device: &Device,
    ) -> Self {
        Self {
            images,
            features,
            shape: Arc::new(learner.clone()),
            seed,
            batch_size: batch_size.max(1),
            epoch: Arc::new(AtomicUsize::new(start_epoch.saturating_sub(1))),
            errors: ErrorSlot::default(),
            device: device.clone(),
        }
    }

    fn batch(&self, chunk: &[usize], rng: &mut HostRng) -> Result<PromptBatch> {
        let labels: Vec<i64> = chunk.iter().map(|&i| self.images.labels[i]).collect();
        let labels =
            Tensor::<1, Int>::from_data(TensorData::new(labels, [chunk.len()]), &self.device);
        let image = match &self.features {
            Some(f) => StepImage::Features(f.clone().select(0, rows(chunk, &self.device))),
            None => StepImage::Pixels(self.images.batch(chunk, &self.device)?.0),
        };
        let noise = sample_noise(&self.shape, chunk.len(), rng, &self.device);
        Ok(PromptBatch {
            image,
            labels,
            noise,
        })
    }
}

/// `chunk` as an index tensor.
pub(crate) fn rows(chunk: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(
        TensorData::new(
            chunk.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [chunk.len()],
        ),
        device,
    )
}

impl DataLoader<PromptBatch> for PromptLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<PromptBatch> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let all: Vec<usize> = (0..self.images.len()).collect();
        // The epoch's Monte Carlo draws, in batch order.
        let mut rng = HostRng::new(mix(self.seed ^ mix(epoch as u64)));
        Box::new(BatchIter::new(
            shuffled(&all, self.seed, epoch),
            self.batch_size,
            &self.errors,
            move |chunk| self.batch(chunk, &mut rng),
        ))
    }

    fn num_items(&self) -> usize {
        self.images.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<PromptBatch>> {
        let mut moved = self.clone();
        moved.device = device.clone();
        moved.features = self.features.clone().map(|f| f.to_device(device));
        Arc::new(moved)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<PromptBatch>> {
        // Used by burn-train only to split data across devices; prompt runs use one device,
        // so a slice is the images `start..end` of the set (same epoch counter and draws).
        let end = end.min(self.images.len());
        let start = start.min(end);
        let mut sliced = self.clone();
        sliced.images = Arc::new(Images {
            sources: self.images.sources[start..end].to_vec(),
            labels: self.images.labels[start..end].to_vec(),
            loader: Arc::clone(&self.images.loader),
        });
        sliced.features = self
            .features
            .clone()
            .map(|f| f.narrow(0, start, end - start));
        Arc::new(sliced)
    }
}

/// A loader with no items (these runs evaluate after training, not per epoch).
pub(crate) struct NoValidation;

impl<B: Send + Sync + 'static> DataLoader<B> for NoValidation {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<B> + 'a> {
        Box::new(BatchIter::new(Vec::new(), 1, &ErrorSlot::default(), |_| {
            Err(Error::Training("no validation data".into()))
        }))
    }
    fn num_items(&self) -> usize {
        0
    }
    fn to_device(&self, _device: &Device) -> Arc<dyn DataLoader<B>> {
        Arc::new(NoValidation)
    }
    fn slice(&self, _start: usize, _end: usize) -> Arc<dyn DataLoader<B>> {
        Arc::new(NoValidation)
    }
}

/// Where a run stands: the last complete epoch to resume from (if `resume` and there is one)
/// and the history of the epochs before the one it starts at.
pub(crate) fn resume_point(
    dir: &std::path::Path,
    resume: bool,
) -> Result<(Option<usize>, Vec<EpochRecord>)> {
    let done = if resume {
        crate::checkpoint::last_complete_epoch(&dir.join("checkpoints")).filter(|&d| d > 0)
    } else {
        None
    };
    let history_path = dir.join("history.json");
    let mut history: Vec<EpochRecord> = match done {
        Some(_) if history_path.is_file() => read_json(&history_path)?,
        _ => Vec::new(),
    };
    history.retain(|r| r.epoch <= done.unwrap_or(0));
    Ok((done, history))
}

/// How [`fit`] runs: where, how long, and how an epoch is logged.
pub(crate) struct FitRun<'a> {
    /// Run directory: `checkpoints/`, `history.json`, burn-train's metric logs in `train/`.
    pub dir: &'a std::path::Path,
    /// Epochs of the whole run.
    pub epochs: usize,
    /// The last complete epoch and the history before it ([`resume_point`]).
    pub done: Option<usize>,
    pub history: Vec<EpochRecord>,
    /// Stop after this many epochs (tests of resume).
    pub stop_after_epochs: Option<usize>,
    /// Train through this epoch only and return normally: one segment of a longer run whose
    /// caller does work between segments (SeLa relabels every epoch). `None`: to the end.
    pub until: Option<usize>,
    /// The run's log and the line written for each epoch.
    pub log: &'a RunLog,
    pub line: fn(&PromptEpoch, usize) -> String,
    /// The loader's error slot.
    pub errors: ErrorSlot,
}

/// Trains `learner` on `train` with burn-train (loss, accuracy and learning-rate metrics;
/// atomic model/optimiser/scheduler checkpoints, the last two kept; resume from `run.done`).
/// Returns the trained model (training mode), the per-epoch history and the seconds spent.
pub(crate) fn fit<M>(
    learner: Learner<M>,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    run: FitRun<'_>,
) -> Result<(M, Vec<PromptEpoch>, f64)>
where
    M: LearnerModel
        + TrainStep<Output = ClassificationOutput>
        + InferenceStep<Output = ClassificationOutput>,
    <M as InferenceStep>::Input: Send + Sync + 'static,
{
    let checkpoints = run.dir.join("checkpoints");
    let history_path = run.dir.join("history.json");
    let start_epoch = run.done.map_or(1, |d| d + 1);
    let epochs = run.epochs;
    let last_epoch = match run.stop_after_epochs {
        Some(k) => (start_epoch - 1 + k).min(epochs),
        None => epochs,
    };
    let last_epoch = run.until.map_or(last_epoch, |u| u.min(last_epoch));
    let log = run.log.clone();
    let line = run.line;
    let renderer = ProgressRenderer::new(history_path.clone(), run.history)
        .quiet()
        .on_epoch(Box::new(move |record: &EpochRecord| {
            log.line(&line(&epoch_of(record), epochs));
        }));
    let mut training = SupervisedTraining::new(
        run.dir.join("train"),
        train,
        Arc::new(NoValidation) as Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    )
    .metric_train_numeric(LossMetric::new())
    .metric_train_numeric(AccuracyMetric::new())
    .metric_train_numeric(LearningRateMetric::new())
    .num_epochs(last_epoch)
    .with_custom_checkpointers(
        AtomicCheckpointer::new(&checkpoints, "model"),
        AtomicCheckpointer::new(&checkpoints, "optim"),
        AtomicCheckpointer::new(&checkpoints, "scheduler"),
    )
    .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
    .with_application_logger(None)
    .renderer(Box::new(renderer));
    if let Some(done) = run.done {
        training = training.checkpoint(done);
    }
    let started = std::time::Instant::now();
    let model = if start_epoch <= last_epoch {
        let result = training.launch(learner);
        if let Some(e) = take_error(&run.errors) {
            return Err(e);
        }
        if let Some(error) = result.error {
            return Err(Error::Training(error.to_string()));
        }
        result.model.train()
    } else {
        // Every epoch was trained before (the run stopped during the final evaluation): the
        // last checkpoint is the trained model.
        let record = Checkpointer::<ModuleRecord>::restore(
            &AtomicCheckpointer::new(&checkpoints, "model"),
            start_epoch - 1,
        )
        .map_err(|e| Error::Training(format!("restoring checkpoint {}: {e}", start_epoch - 1)))?;
        learner
            .model()
            .try_load_record(record)
            .map_err(|e| Error::Training(format!("loading checkpoint {}: {e}", start_epoch - 1)))?
    };
    let seconds = started.elapsed().as_secs_f64();
    if last_epoch < epochs && run.until.is_none() {
        return Err(Error::Training(format!(
            "stopped after epoch {last_epoch} on request (--resume continues)"
        )));
    }
    let history: Vec<EpochRecord> = read_json(&history_path)?;
    Ok((model, history.iter().map(epoch_of).collect(), seconds))
}

/// Everything [`train_prompts`] needs.
pub(crate) struct PromptTraining<'a> {
    /// Run directory (`checkpoints/`, `history.json`, burn-train's metric logs in `train/`).
    pub dir: &'a std::path::Path,
    /// The learner at its initialisation.
    pub learner: PromptLearner,
    /// The CLIP: adapted by PEFT (`adapted = true`) or frozen.
    pub clip: Clip,
    /// Whether PEFT trains the CLIP.
    pub adapted: bool,
    /// Task constants.
    pub constants: StepConstants,
    /// The training images.
    pub train: Arc<Images>,
    /// Their cached features (see [`PromptLoader`]).
    pub features: Option<Tensor<2>>,
    /// The optimiser section.
    pub optim: &'a OptimSection,
    /// The run seed.
    pub seed: u64,
    /// Continue from the last complete checkpoint.
    pub resume: bool,
    /// Stop after this many epochs (tests of resume).
    pub stop_after_epochs: Option<usize>,
    /// The run's log.
    pub log: &'a RunLog,
    /// Training device (autodiff).
    pub device: &'a Device,
}

/// What training returns: the trained learner and CLIP (on the training device, training
/// mode), the per-epoch history and the training seconds of this process.
pub(crate) struct Trained {
    pub learner: PromptLearner,
    pub clip: Clip,
    pub history: Vec<PromptEpoch>,
    pub seconds: f64,
}

fn epoch_of(record: &EpochRecord) -> PromptEpoch {
    let get = |name: &str| record.train.get(name).copied().unwrap_or(f64::NAN);
    PromptEpoch {
        epoch: record.epoch,
        lr: get("Learning Rate"),
        loss: get("Loss"),
        train_accuracy: get("Accuracy"),
    }
}

/// Trains the prompts (and PEFT adapters) on burn-train.
pub(crate) fn train_prompts(t: PromptTraining<'_>) -> Result<Trained> {
    let o = t.optim;
    let (done, history) = resume_point(t.dir, t.resume)?;
    let loader = PromptLoader::new(
        Arc::clone(&t.train),
        t.features,
        &t.learner,
        t.seed,
        o.batch_size,
        done.map_or(1, |d| d + 1),
        t.device,
    );
    let errors = Arc::clone(&loader.errors);
    let steps_per_epoch = t.train.len().div_ceil(o.batch_size.max(1));
    let (adapted, frozen) = if t.adapted {
        (Some(t.clip), None)
    } else {
        (None, Some(Arc::new(t.clip)))
    };
    let model = PromptModel {
        learner: t.learner,
        adapted,
        frozen,
        constants: Arc::new(t.constants),
    };
    let schedule = DasslSchedule::new(o.clone(), steps_per_epoch);
    let learner = match o.kind {
        OptimizerKind::Sgd => Learner::new(
            model,
            SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum: o.momentum,
                    dampening: 0.0,
                    nesterov: false,
                }))
                .with_weight_decay(Some(WeightDecayConfig::new(o.weight_decay as f32)))
                .init(),
            schedule,
        ),
        OptimizerKind::AdamW => Learner::new(
            model,
            AdamWConfig::new()
                .with_weight_decay(o.weight_decay as f32)
                .init(),
            schedule,
        ),
    };
    let (model, history, seconds) = fit(
        learner,
        Arc::new(loader),
        FitRun {
            dir: t.dir,
            epochs: o.epochs,
            done,
            history,
            stop_after_epochs: t.stop_after_epochs,
            until: None,
            log: t.log,
            line: |e, epochs| {
                format!(
                    "epoch {}/{epochs} lr {:.2e} loss {:.4} train acc {:.1}%",
                    e.epoch, e.lr, e.loss, e.train_accuracy
                )
            },
            errors,
        },
    )?;
    let clip = match (model.adapted, model.frozen) {
        (Some(clip), _) => clip,
        (None, Some(clip)) => Arc::unwrap_or_clone(clip),
        (None, None) => unreachable!("a prompt model holds an adapted or a frozen CLIP"),
    };
    Ok(Trained {
        learner: model.learner,
        clip,
        history,
        seconds,
    })
}
