//! [`DistillationLoss`]: knowledge distillation by the KL divergence between temperature-softened
//! teacher and student distributions, scaled by `T²` (Hinton et al. 2015, "Distilling the
//! Knowledge in a Neural Network", <https://arxiv.org/abs/1503.02531>, §2).
//!
//! Same value as PyTorch's `F.kl_div(F.log_softmax(s / T), F.softmax(t / T),
//! reduction="batchmean") * T**2` (`torch/nn/functional.py`, `kl_div`,
//! <https://github.com/pytorch/pytorch/blob/main/torch/nn/functional.py>), the usual way
//! distillation is written in PyTorch code.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Configuration of a [`DistillationLoss`].
#[derive(Config, Debug)]
pub struct DistillationLossConfig {
    /// The temperature `T` softening both distributions. Required: it is tuned per setting
    /// (`1` gives the plain KL between the two softmaxes).
    pub temperature: f64,
}

impl DistillationLossConfig {
    /// Creates the loss.
    ///
    /// # Panics
    /// If `temperature` is not a positive finite number.
    pub fn init(&self) -> DistillationLoss {
        assert!(
            self.temperature.is_finite() && self.temperature > 0.0,
            "temperature must be positive and finite, got {}",
            self.temperature
        );
        DistillationLoss {
            temperature: self.temperature,
        }
    }
}

/// Temperature-scaled KL distillation.
///
/// With `pᵗ = softmax(teacher / T)` and `pˢ = softmax(student / T)` per row:
///
/// ```text
/// ℓᵢ = T² · KL(pᵗᵢ ‖ pˢᵢ) = T² Σₖ pᵗᵢₖ (log pᵗᵢₖ − log pˢᵢₖ)
/// L  = (1/N) Σᵢ ℓᵢ                                   ("batchmean")
/// ```
///
/// Both log-probabilities come from `log_softmax`, so a teacher probability that underflows
/// to 0 contributes exactly 0. The `T²` keeps the gradient magnitude independent of `T`.
///
/// Gradients flow into both arguments, as in PyTorch. A frozen teacher should be passed
/// detached (or computed on a device without autodiff), as is usual.
#[derive(Module, Debug)]
pub struct DistillationLoss {
    /// The temperature `T`.
    pub temperature: f64,
}

impl DistillationLoss {
    /// The batch-mean loss.
    ///
    /// # Shapes
    /// - student_logits: `[batch_size, n_classes]`
    /// - teacher_logits: `[batch_size, n_classes]`
    /// - output: `[1]`
    pub fn forward(&self, student_logits: Tensor<2>, teacher_logits: Tensor<2>) -> Tensor<1> {
        self.forward_no_reduction(student_logits, teacher_logits)
            .mean()
    }

    /// `T² · KL(pᵗᵢ ‖ pˢᵢ)` of each sample; its mean is [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - student_logits: `[batch_size, n_classes]`
    /// - teacher_logits: `[batch_size, n_classes]`
    /// - output: `[batch_size]`
    pub fn forward_no_reduction(
        &self,
        student_logits: Tensor<2>,
        teacher_logits: Tensor<2>,
    ) -> Tensor<1> {
        let [batch_size, n_classes] = student_logits.dims();
        assert_shape!(teacher_logits, [batch_size, n_classes]);
        let t = self.temperature;
        let log_p_student = log_softmax(student_logits.div_scalar(t), 1);
        let log_p_teacher = log_softmax(teacher_logits.div_scalar(t), 1);
        let p_teacher = log_p_teacher.clone().exp();
        (p_teacher * (log_p_teacher - log_p_student))
            .sum_dim(1)
            .reshape([batch_size])
            .mul_scalar(t * t)
    }
}
