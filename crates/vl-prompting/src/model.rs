//! The forward pass and the loss of a frozen CLIP with a [`PromptLearner`]: image features
//! (through visual prompts if any), class text features from the learned context (per image for
//! CoCoOp, per Monte Carlo sample for the variational form), logits, and the composed objective.
//!
//! [`PromptTask`] holds what is constant for one class list and computed once: the class
//! prompts, and the hand-crafted text features the KgCoOp and LASP terms compare against (text
//! features of frozen prompts are cached, never recomputed per step).

use burn::prelude::*;
use vl_data::ClipTokenizer;
use vl_data::rng::HostRng;
use vl_encoders::clip::Clip;

use crate::learner::{ClassPrompts, PromptLearner, l2_normalize3, prompt_logits};
use crate::objective::{
    LossTerms, ObjectiveConfig, average_probabilities, cross_entropy, kgcoop_distance,
    lasp_text_to_text,
};
use crate::templates::{Templates, class_text_features, template_class_features};
use crate::{Error, Result};

/// The constants of one classification task for one learner.
#[derive(Debug, Clone)]
pub struct PromptTask {
    /// The classifier: learned prompts of the classes, or (a learner without text context, e.g.
    /// visual prompts only) fixed hand-crafted class features `[n_classes, proj]`.
    pub classes: ClassText,
    /// KgCoOp targets: hand-crafted unit-norm features of the classes, `[n_classes, proj]`.
    pub handcrafted: Option<Tensor<2>>,
    /// LASP: prompts of the classes followed by the virtual classes, and the per-template
    /// hand-crafted features of the same list, `[n_templates, n_all, proj]`.
    pub lasp: Option<(ClassPrompts, Tensor<3>)>,
}

/// The text side of the classifier.
// One per task, built once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ClassText {
    /// Class prompts around the learned context.
    Learned(ClassPrompts),
    /// Fixed unit-norm class features (the zero-shot classifier), `[n_classes, proj]`.
    Fixed(Tensor<2>),
}

/// Hand-crafted prompts for the regularisers.
#[derive(Debug, Clone)]
pub struct TaskTemplates {
    /// The ensemble that classifies when the learner has no text context (visual prompts
    /// only).
    pub classifier: Templates,
    /// KgCoOp's hand-crafted prompt (its code: the dataset's CoOp template, "a photo of a {}."
    /// for most); an ensemble is averaged.
    pub kgcoop: Templates,
    /// LASP's templates (the paper: several hand-crafted templates, e.g. CoOp's ImageNet
    /// select set).
    pub lasp: Templates,
    /// Virtual classes: names with no images that take part in the LASP term only.
    pub virtual_classes: Vec<String>,
}

impl Default for TaskTemplates {
    fn default() -> Self {
        Self {
            classifier: Templates::imagenet_select(),
            kgcoop: Templates::new(["a photo of a {}."]).expect("valid template"),
            lasp: Templates::imagenet_select(),
            virtual_classes: Vec::new(),
        }
    }
}

impl PromptTask {
    /// Builds the task for `class_names`, caching what `objective` needs.
    pub fn new(
        clip: &Clip,
        tokenizer: &ClipTokenizer,
        learner: &PromptLearner,
        class_names: &[String],
        objective: &ObjectiveConfig,
        templates: &TaskTemplates,
    ) -> Result<Self> {
        let classes = if learner.ctx.is_some() {
            ClassText::Learned(learner.class_prompts(clip, tokenizer, class_names)?)
        } else {
            if objective.kgcoop_weight > 0.0 || objective.lasp_weight > 0.0 {
                return Err(Error::invalid(
                    "objective",
                    "no KgCoOp or LASP term without a learned text context",
                    format!(
                        "kgcoop_weight = {}, lasp_weight = {}",
                        objective.kgcoop_weight, objective.lasp_weight
                    ),
                ));
            }
            ClassText::Fixed(
                class_text_features(clip, tokenizer, class_names, &templates.classifier)?.detach(),
            )
        };
        let handcrafted = if objective.kgcoop_weight > 0.0 {
            Some(class_text_features(clip, tokenizer, class_names, &templates.kgcoop)?.detach())
        } else {
            None
        };
        let lasp = if objective.lasp_weight > 0.0 {
            let mut all = class_names.to_vec();
            for v in &templates.virtual_classes {
                if all.contains(v) {
                    return Err(Error::invalid(
                        "virtual_classes",
                        "names distinct from the real classes",
                        v,
                    ));
                }
                all.push(v.clone());
            }
            let prompts = learner.class_prompts(clip, tokenizer, &all)?;
            let groups = learner.groups();
            if templates.lasp.len() < groups {
                return Err(Error::invalid(
                    "templates",
                    format!("at least one LASP template per context group ({groups})"),
                    format!("{} templates", templates.lasp.len()),
                ));
            }
            let features =
                template_class_features(clip, tokenizer, &all, &templates.lasp)?.detach();
            Some((prompts, features))
        } else {
            None
        };
        Ok(Self {
            classes,
            handcrafted,
            lasp,
        })
    }

    /// A task for evaluation only (no regulariser targets).
    pub fn eval(
        clip: &Clip,
        tokenizer: &ClipTokenizer,
        learner: &PromptLearner,
        class_names: &[String],
    ) -> Result<Self> {
        Self::new(
            clip,
            tokenizer,
            learner,
            class_names,
            &ObjectiveConfig::default(),
            &TaskTemplates::default(),
        )
    }
}

/// Standard-normal draws for the variational residual: `samples` tensors of
/// `[batch_size | 1, text_width]` (per image in the conditional form), from `rng`. Empty
/// without a Gaussian.
pub fn sample_noise(
    learner: &PromptLearner,
    batch_size: usize,
    rng: &mut HostRng,
    device: &Device,
) -> Vec<Tensor<2>> {
    let Some(text) = &learner.config.text else {
        return Vec::new();
    };
    let Some(v) = &text.variational else {
        return Vec::new();
    };
    let Some(ctx) = &learner.ctx else {
        return Vec::new();
    };
    let d = ctx.dims()[2];
    let rows = if text.conditional { batch_size } else { 1 };
    (0..v.samples)
        .map(|_| rng.normal_tensor([rows, d], 1.0, device))
        .collect()
}

/// Logits for every draw: one `[batch_size, n_classes]` tensor per noise sample (one if there
/// is no Gaussian), and the KL of the residual if it is Gaussian.
fn logits_per_sample(
    clip: &Clip,
    learner: &PromptLearner,
    classes: &ClassText,
    image: Tensor<2>,
    noise: &[Tensor<2>],
) -> (Vec<Tensor<2>>, Option<Tensor<1>>) {
    let classes = match classes {
        ClassText::Learned(prompts) => prompts,
        ClassText::Fixed(text) => {
            return (
                vec![prompt_logits(clip, image, text.clone().unsqueeze_dim(0))],
                None,
            );
        }
    };
    let draws: Vec<Option<Tensor<2>>> = if noise.is_empty() {
        vec![None]
    } else {
        noise.iter().cloned().map(Some).collect()
    };
    let mut kl = None;
    let logits = draws
        .into_iter()
        .map(|eps| {
            let residual = learner.residual(image.clone(), eps);
            let value = residual.as_ref().map(|r| r.value.clone());
            if kl.is_none() {
                kl = residual.and_then(|r| r.kl);
            }
            let text = learner.text_features(clip, classes, value);
            prompt_logits(clip, image.clone(), text)
        })
        .collect();
    (logits, kl)
}

/// Class probabilities: softmax of the logits, averaged over the noise draws (the variational
/// predictive; pass [`sample_noise`] draws, or none to use the residual's mean).
///
/// # Shapes
/// - pixel_values: `[batch_size, 3, height, width]`
/// - output: `[batch_size, n_classes]`
pub fn predict(
    clip: &Clip,
    learner: &PromptLearner,
    task: &PromptTask,
    pixel_values: Tensor<4>,
    noise: &[Tensor<2>],
) -> Tensor<2> {
    let image = learner.image_features(clip, pixel_values);
    predict_from_features(clip, learner, task, image, noise)
}

/// [`predict`] from unit-norm image features already computed by
/// [`PromptLearner::image_features`] (without visual prompts they do not depend on the learner
/// and can be computed once).
///
/// # Shapes
/// - image_features: `[batch_size, projection_dim]`
/// - output: `[batch_size, n_classes]`
pub fn predict_from_features(
    clip: &Clip,
    learner: &PromptLearner,
    task: &PromptTask,
    image_features: Tensor<2>,
    noise: &[Tensor<2>],
) -> Tensor<2> {
    let (logits, _) = logits_per_sample(clip, learner, &task.classes, image_features, noise);
    average_probabilities(logits)
}

/// The residual at its "rest" value: the mean of the CoOp-form Gaussian (zero for the
/// conditional form, `None`).
fn rest_residual(learner: &PromptLearner) -> Option<Tensor<2>> {
    learner
        .residual_mean
        .as_ref()
        .map(|m| m.val().unsqueeze_dim::<2>(0))
}

/// Learned class features (groups averaged, no class-agnostic bias) with the residual at its
/// rest value, `[n_classes, proj]`.
fn rest_features(clip: &Clip, learner: &PromptLearner, classes: &ClassPrompts) -> Tensor<2> {
    let text = learner.unbiased_text_features(clip, classes, rest_residual(learner));
    let [_, n, p] = text.dims();
    text.reshape([n, p])
}

/// LASP's term over the context groups: group `g` against the templates `k` with
/// `k mod G = g`, averaged over groups (one group: every template).
fn lasp_term(
    clip: &Clip,
    learner: &PromptLearner,
    prompts: &ClassPrompts,
    handcrafted: &Tensor<3>,
) -> Tensor<1> {
    let scale = clip.logit_scale.val().exp();
    let handcrafted = l2_normalize3(handcrafted.clone());
    let groups = learner.group_text_features(clip, prompts, rest_residual(learner));
    let n_groups = groups.len();
    let [k, _, _] = handcrafted.dims();
    let device = handcrafted.device();
    groups
        .into_iter()
        .enumerate()
        .map(|(g, text)| {
            let [_, n, p] = text.dims();
            let learned = text.reshape([n, p]);
            let mine = if n_groups == 1 {
                handcrafted.clone()
            } else {
                let idx: Vec<i64> = (g..k).step_by(n_groups).map(|t| t as i64).collect();
                let len = idx.len();
                handcrafted.clone().select(
                    0,
                    Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), &device),
                )
            };
            lasp_text_to_text(learned, mine, scale.clone())
        })
        .reduce(|a, b| a + b)
        .expect("at least one group")
        .div_scalar(n_groups as f64)
}

/// The objective: cross-entropy (mean over Monte Carlo draws) plus the enabled terms.
///
/// # Shapes
/// - pixel_values: `[batch_size, 3, height, width]`
/// - targets: `[batch_size]`, class indices into `task.classes`
#[allow(clippy::too_many_arguments)]
pub fn loss(
    clip: &Clip,
    learner: &PromptLearner,
    task: &PromptTask,
    objective: &ObjectiveConfig,
    pixel_values: Tensor<4>,
    targets: Tensor<1, Int>,
    noise: &[Tensor<2>],
) -> LossTerms {
    let image = learner.image_features(clip, pixel_values);
    loss_from_features(clip, learner, task, objective, image, targets, noise)
}

/// [`loss`] from unit-norm image features (see [`predict_from_features`]).
///
/// # Shapes
/// - image_features: `[batch_size, projection_dim]`
/// - targets: `[batch_size]`
pub fn loss_from_features(
    clip: &Clip,
    learner: &PromptLearner,
    task: &PromptTask,
    objective: &ObjectiveConfig,
    image_features: Tensor<2>,
    targets: Tensor<1, Int>,
    noise: &[Tensor<2>],
) -> LossTerms {
    let (logits, kl) = logits_per_sample(clip, learner, &task.classes, image_features, noise);
    let n_draws = logits.len() as f64;
    let ce_loss = cross_entropy(objective.label_smoothing);
    let ce = logits
        .into_iter()
        .map(|l| ce_loss.forward(l, targets.clone()))
        .reduce(|a, b| a + b)
        .expect("at least one draw")
        .div_scalar(n_draws);
    let mut total = ce.clone();
    let kgcoop = task.handcrafted.as_ref().map(|h| {
        let ClassText::Learned(classes) = &task.classes else {
            unreachable!("PromptTask::new refuses KgCoOp without a text context");
        };
        let learned = rest_features(clip, learner, classes);
        kgcoop_distance(learned, h.clone())
    });
    if let Some(k) = &kgcoop {
        total = total + k.clone().mul_scalar(objective.kgcoop_weight);
    }
    let lasp = task
        .lasp
        .as_ref()
        .map(|(prompts, handcrafted)| lasp_term(clip, learner, prompts, handcrafted));
    if let Some(l) = &lasp {
        total = total + l.clone().mul_scalar(objective.lasp_weight);
    }
    if let (Some(k), Some(v)) = (
        &kl,
        learner
            .config
            .text
            .as_ref()
            .and_then(|t| t.variational.as_ref()),
    ) {
        total = total + k.clone().mul_scalar(v.kl_weight);
    }
    LossTerms {
        total,
        ce,
        kgcoop,
        lasp,
        kl,
    }
}
