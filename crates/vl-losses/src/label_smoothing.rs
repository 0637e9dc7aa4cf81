//! [`LabelSmoothingCrossEntropyLoss`]: cross-entropy against targets mixed with the uniform
//! distribution (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
//! Vision", <https://arxiv.org/abs/1512.00567>, §7), with class-index or probability targets.
//!
//! Semantics of PyTorch's `F.cross_entropy(logits, target, label_smoothing=ε)`
//! (`aten/src/ATen/native/LossNLL.cpp`, `cross_entropy_loss_label_smoothing` and
//! `cross_entropy_loss_prob_target`, <https://github.com/pytorch/pytorch/blob/main/aten/src/ATen/native/LossNLL.cpp>),
//! without class weights or an ignore index.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::ops::cross_entropy_with_targets;

/// Configuration of a [`LabelSmoothingCrossEntropyLoss`].
#[derive(Config, Debug)]
pub struct LabelSmoothingCrossEntropyLossConfig {
    /// The smoothing `ε` in `[0, 1]`: the target becomes `(1 − ε) · target + ε / K`. `0` gives
    /// plain cross-entropy.
    pub smoothing: f64,
}

impl LabelSmoothingCrossEntropyLossConfig {
    /// Creates the loss.
    ///
    /// # Panics
    /// If `smoothing` is not in `[0, 1]`.
    pub fn init(&self) -> LabelSmoothingCrossEntropyLoss {
        assert!(
            (0.0..=1.0).contains(&self.smoothing),
            "smoothing must be in [0, 1], got {}",
            self.smoothing
        );
        LabelSmoothingCrossEntropyLoss {
            smoothing: self.smoothing,
        }
    }
}

/// Cross-entropy with label smoothing.
///
/// For logits `x` over `K` classes, `log pᵢ = log_softmax(xᵢ)` and a target distribution `tᵢ`
/// (one-hot for a class index):
///
/// ```text
/// qᵢ = (1 − ε) tᵢ + ε / K
/// ℓᵢ = −Σₖ qᵢₖ log pᵢₖ        = −(1 − ε) log pᵢ,yᵢ − (ε / K) Σₖ log pᵢₖ   (class index yᵢ)
/// L  = (1/N) Σᵢ ℓᵢ
/// ```
///
/// as PyTorch's `F.cross_entropy(.., label_smoothing=ε)` with the default mean reduction.
#[derive(Module, Debug)]
pub struct LabelSmoothingCrossEntropyLoss {
    /// The smoothing `ε`.
    pub smoothing: f64,
}

impl LabelSmoothingCrossEntropyLoss {
    /// The mean loss with class-index targets.
    ///
    /// # Shapes
    /// - logits: `[batch_size, n_classes]`
    /// - targets: `[batch_size]`, class indices in `0..n_classes` (an index outside that range
    ///   is invalid input, and what happens then depends on the backend's `gather`)
    /// - output: `[1]`
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.forward_no_reduction(logits, targets).mean()
    }

    /// The loss of each sample with class-index targets; its mean is [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - logits: `[batch_size, n_classes]`
    /// - targets: `[batch_size]`
    /// - output: `[batch_size]`
    pub fn forward_no_reduction(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let [batch_size, n_classes] = logits.dims();
        assert_shape!(targets, [batch_size]);
        let nll = cross_entropy_with_targets(logits.clone(), targets);
        if self.smoothing == 0.0 {
            return nll;
        }
        // −(1/K) Σₖ log pᵢₖ: the cross-entropy against the uniform distribution.
        let uniform = log_softmax(logits, 1)
            .sum_dim(1)
            .reshape([batch_size])
            .div_scalar(-(n_classes as f64));
        nll.mul_scalar(1.0 - self.smoothing) + uniform.mul_scalar(self.smoothing)
    }

    /// The mean loss with probability ("soft") targets.
    ///
    /// # Shapes
    /// - logits: `[batch_size, n_classes]`
    /// - target_probs: `[batch_size, n_classes]`, each row a distribution (not checked; rows
    ///   that do not sum to 1 are used as given, as PyTorch does)
    /// - output: `[1]`
    pub fn forward_soft(&self, logits: Tensor<2>, target_probs: Tensor<2>) -> Tensor<1> {
        self.forward_soft_no_reduction(logits, target_probs).mean()
    }

    /// The loss of each sample with probability targets; its mean is
    /// [`forward_soft`](Self::forward_soft).
    ///
    /// # Shapes
    /// - logits: `[batch_size, n_classes]`
    /// - target_probs: `[batch_size, n_classes]`
    /// - output: `[batch_size]`
    pub fn forward_soft_no_reduction(
        &self,
        logits: Tensor<2>,
        target_probs: Tensor<2>,
    ) -> Tensor<1> {
        let [batch_size, n_classes] = logits.dims();
        assert_shape!(target_probs, [batch_size, n_classes]);
        let targets = target_probs
            .mul_scalar(1.0 - self.smoothing)
            .add_scalar(self.smoothing / n_classes as f64);
        (targets * log_softmax(logits, 1))
            .sum_dim(1)
            .reshape([batch_size])
            .neg()
    }
}
