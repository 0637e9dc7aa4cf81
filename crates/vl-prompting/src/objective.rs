//! The training objective of prompt learning, composed by config: cross-entropy on the image
//! logits (optionally label-smoothed) plus any of
//!
//! - **KgCoOp** (Yao et al. 2023, <https://arxiv.org/abs/2303.13283>, reference
//!   htyao89/KgCoOp `trainers/kgcoop.py`): `w * (1 - mean_c cos(t_c, h_c))`, the distance of the
//!   learned class features `t_c` from the hand-crafted ones `h_c` (the paper's `W = 8`);
//! - **LASP** text-to-text (Bulat & Tzimiropoulos 2023, <https://arxiv.org/abs/2210.01115>):
//!   `w * mean_k CE(s * t h_k^T, identity)`, classifying each learned class feature against the
//!   hand-crafted features `h_k` of template `k` (virtual classes take part here only);
//! - **KL** of the variational residual to `N(0, I)` with the weight of its config.
//!
//! In the conditional (CoCoOp) form the KgCoOp and LASP terms use the context without the
//! image-conditional bias (its value for a zero residual); the paper pair never combined them,
//! this is our choice, written down in `docs/prompting.md`.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};
use vl_losses::{LabelSmoothingCrossEntropyLoss, LabelSmoothingCrossEntropyLossConfig};

/// Extra loss terms and their weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Label smoothing of the image cross-entropy. Default: `0.0`.
    pub label_smoothing: f64,
    /// KgCoOp weight `w` (`0` disables the term). Default: `0.0` (KgCoOp's preset: `8.0`).
    pub kgcoop_weight: f64,
    /// LASP text-to-text weight (`0` disables the term). Default: `0.0`.
    pub lasp_weight: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            label_smoothing: 0.0,
            kgcoop_weight: 0.0,
            lasp_weight: 0.0,
        }
    }
}

/// The terms of one loss evaluation, each a `[1]` tensor.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// The weighted sum that is minimised.
    pub total: Tensor<1>,
    /// Image cross-entropy (averaged over Monte Carlo samples in the variational form).
    pub ce: Tensor<1>,
    /// Unweighted `1 - mean cos` (KgCoOp), if enabled.
    pub kgcoop: Option<Tensor<1>>,
    /// Unweighted text-to-text cross-entropy (LASP), if enabled.
    pub lasp: Option<Tensor<1>>,
    /// Unweighted KL (variational), if any.
    pub kl: Option<Tensor<1>>,
}

/// Cross-entropy with optional label smoothing (PyTorch semantics).
pub(crate) fn cross_entropy(smoothing: f64) -> LabelSmoothingCrossEntropyLoss {
    LabelSmoothingCrossEntropyLossConfig::new(smoothing).init()
}

/// KgCoOp's term: `1 - mean_c cos(learned_c, handcrafted_c)`.
///
/// # Shapes
/// - learned, handcrafted: `[n_classes, projection_dim]`, unit norm
/// - output: `[1]`
pub fn kgcoop_distance(learned: Tensor<2>, handcrafted: Tensor<2>) -> Tensor<1> {
    let [n, _] = learned.dims();
    let cos = (learned * handcrafted).sum_dim(1).reshape([n]);
    cos.mean().neg().add_scalar(1.0)
}

/// LASP's text-to-text cross-entropy averaged over templates.
///
/// # Shapes
/// - learned: `[n_classes, projection_dim]`, unit norm
/// - handcrafted: `[n_templates, n_classes, projection_dim]`, unit norm
/// - scale: `[1]`, the (exponentiated) logit scale
/// - output: `[1]`
pub fn lasp_text_to_text(
    learned: Tensor<2>,
    handcrafted: Tensor<3>,
    scale: Tensor<1>,
) -> Tensor<1> {
    let [k, n, p] = handcrafted.dims();
    let device = learned.device();
    let targets = Tensor::<1, Int>::arange(0..n as i64, &device);
    let ce = cross_entropy(0.0);
    let mut total = Tensor::<1>::zeros([1], &device);
    for t in 0..k {
        let h = handcrafted.clone().narrow(0, t, 1).reshape([n, p]);
        let logits = learned.clone().matmul(h.transpose()) * scale.clone().reshape([1, 1]);
        total = total + ce.forward(logits, targets.clone());
    }
    total.div_scalar(k as f64)
}

/// Class probabilities averaged over Monte Carlo samples of logits.
///
/// # Shapes
/// - logits: each `[batch_size, n_classes]`
/// - output: `[batch_size, n_classes]`
pub fn average_probabilities(logits: Vec<Tensor<2>>) -> Tensor<2> {
    let n = logits.len() as f64;
    let probs: Vec<Tensor<2>> = logits.into_iter().map(|l| softmax(l, 1)).collect();
    Tensor::stack::<3>(probs, 0)
        .sum_dim(0)
        .squeeze_dim::<2>(0)
        .div_scalar(n)
}
