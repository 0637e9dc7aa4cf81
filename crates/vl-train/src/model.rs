//! [`PretrainModel`]: a [`Clip`] plus what its objective needs (SigLIP's bias), wired into
//! burn-train. The training step computes the contrastive loss of a batch of pairs and reports
//! in-batch image-to-text accuracy (is each image's own caption its best match); the inference
//! step classifies held-out images zero-shot. [`ZeroShotAccuracy`] is the metric over the latter.

use burn::module::Module;
use burn::prelude::*;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, ItemLazy, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use vl_encoders::clip::{Clip, l2_normalize};
use vl_losses::{ClipLoss, ClipLossConfig, LogitBias, LogitBiasConfig, SiglipLossConfig};

use crate::config::LossKind;
use crate::data::{LabelledBatch, PairBatch};
use crate::zeroshot::{MAX_LOG_SCALE, ZeroShotPredictions, ZeroShotPrompts, ZeroShotTask, predict};

/// The model burn-train optimises.
#[derive(Module, Debug)]
pub struct PretrainModel {
    /// The CLIP model (exported as the checkpoint).
    pub clip: Clip,
    /// SigLIP's learnable bias (`None` for the CLIP loss). Not part of the exported checkpoint.
    pub logit_bias: Option<LogitBias>,
    /// The objective.
    #[module(skip)]
    pub loss: LossKind,
    /// Tokenised class prompts for the zero-shot evaluation step.
    #[module(skip)]
    pub prompts: ZeroShotPrompts,
}

impl PretrainModel {
    /// Wraps `clip`; `loss` picks the objective (SigLIP adds a bias initialised at -10).
    pub fn new(clip: Clip, loss: LossKind, prompts: ZeroShotPrompts, device: &Device) -> Self {
        let logit_bias = match loss {
            LossKind::Clip => None,
            LossKind::Siglip => Some(LogitBiasConfig::new().init(device)),
        };
        Self {
            clip,
            logit_bias,
            loss,
            prompts,
        }
    }

    /// The loss and the image-to-text logits of a batch of matching pairs.
    ///
    /// # Shapes
    /// - output: loss `[1]`, logits `[n, n]`
    pub fn loss_and_logits(&self, batch: PairBatch) -> (Tensor<1>, Tensor<2>) {
        let [n, _, _, _] = batch.pixel_values.dims();
        let [n_text, _] = batch.input_ids.dims();
        assert_eq!(n, n_text, "a pair batch has as many captions as images");
        let image = l2_normalize(self.clip.encode_image(batch.pixel_values));
        let text = l2_normalize(self.clip.encode_text(batch.input_ids));
        let scale = self.clip.logit_scale.val().clamp_max(MAX_LOG_SCALE).exp();
        let loss = match (&self.loss, &self.logit_bias) {
            (LossKind::Siglip, Some(bias)) => SiglipLossConfig::new().init().forward(
                image.clone(),
                text.clone(),
                scale.clone(),
                bias.forward(),
            ),
            _ => clip_loss().forward(image.clone(), text.clone(), scale.clone()),
        };
        let logits = clip_loss().logits(image, text, scale);
        assert_shape!(logits, [n, n]);
        (loss, logits)
    }

    /// Zero-shot predictions for a batch of labelled images.
    pub fn zero_shot(&self, batch: LabelledBatch) -> ZeroShotPredictions {
        let device = batch.pixel_values.device();
        let classes = self.prompts.class_embeddings(&self.clip, &device);
        let image = l2_normalize(self.clip.encode_image(batch.pixel_values));
        let labels = |t: Tensor<1, Int>| -> Vec<usize> {
            t.into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v as usize)
                .collect()
        };
        predict(
            image,
            &classes,
            self.prompts.held_out(),
            labels(batch.shapes),
            labels(batch.colours),
        )
    }
}

fn clip_loss() -> ClipLoss {
    ClipLossConfig::new().init()
}

impl TrainStep for PretrainModel {
    type Input = PairBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: PairBatch) -> TrainOutput<ClassificationOutput> {
        let device = batch.pixel_values.device();
        let [n, _, _, _] = batch.pixel_values.dims();
        let (loss, logits) = self.loss_and_logits(batch);
        let targets = Tensor::<1, Int>::arange(0..n as i64, &device);
        let grads = loss.backward();
        TrainOutput::new(
            self,
            grads,
            ClassificationOutput::new(loss, logits, targets),
        )
    }
}

/// The output of the evaluation step.
#[derive(Debug, Clone)]
pub struct ZeroShotOutput(pub ZeroShotPredictions);

impl ItemLazy for ZeroShotOutput {
    fn sync(self) -> Result<Self, burn_std::ExecutionError> {
        // Predictions are already host values.
        Ok(self)
    }
}

impl Adaptor<ZeroShotOutput> for ZeroShotOutput {
    fn adapt(&self) -> ZeroShotOutput {
        self.clone()
    }
}

impl InferenceStep for PretrainModel {
    type Input = LabelledBatch;
    type Output = ZeroShotOutput;

    fn step(&self, batch: LabelledBatch) -> ZeroShotOutput {
        ZeroShotOutput(self.zero_shot(batch))
    }
}

/// Zero-shot accuracy (%) of one [`ZeroShotTask`], averaged over the images of an epoch.
#[derive(Clone)]
pub struct ZeroShotAccuracy {
    task: ZeroShotTask,
    name: MetricName,
    state: NumericMetricState,
}

impl ZeroShotAccuracy {
    /// The metric for `task`.
    pub fn new(task: ZeroShotTask) -> Self {
        Self {
            task,
            name: MetricName::new(task.name().to_owned()),
            state: NumericMetricState::default(),
        }
    }
}

impl Metric for ZeroShotAccuracy {
    type Input = ZeroShotOutput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("%".to_owned()),
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &ZeroShotOutput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, burn::tensor::TensorReadError> {
        let (hits, n) = item.0.correct(self.task);
        self.state
            .update(100.0 * hits as f64 / n.max(1) as f64, n.max(1));
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).unit("%").precision(2)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, burn::tensor::TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).unit("%").precision(2)))
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for ZeroShotAccuracy {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}
