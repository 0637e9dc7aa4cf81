//! [`NtXentLoss`]: SimCLR's normalized temperature-scaled cross-entropy over two augmented views
//! of a batch (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
//! Representations", <https://arxiv.org/abs/2002.05709>, Eq. 1 and Algorithm 1).
//!
//! Reference: google-research/simclr `objective.py` (`add_contrastive_loss`),
//! <https://github.com/google-research/simclr/blob/master/objective.py>. That function returns
//! `loss_a + loss_b` (each a mean over N anchors), i.e. twice the mean over the 2N anchors that
//! the paper's `L` and this loss compute.

use burn::prelude::*;

use crate::ops::{cross_entropy_with_targets, l2_normalize};

/// Configuration of an [`NtXentLoss`].
#[derive(Config, Debug)]
pub struct NtXentLossConfig {
    /// The temperature `τ` dividing the cosine similarities. Required: it is tuned per setting
    /// (SimCLR's paper compares values from 0.05 to 1).
    pub temperature: f64,
}

impl NtXentLossConfig {
    /// Creates the loss.
    ///
    /// # Panics
    /// If `temperature` is not a positive finite number.
    pub fn init(&self) -> NtXentLoss {
        assert!(
            self.temperature.is_finite() && self.temperature > 0.0,
            "temperature must be positive and finite, got {}",
            self.temperature
        );
        NtXentLoss {
            temperature: self.temperature,
        }
    }
}

/// SimCLR's NT-Xent loss.
///
/// With `z₁..z₂ₙ` the L2-normalised rows of `[view_a; view_b]` (anchor `k` and `k + N` are the
/// two views of image `k`), `sim(u, v) = uᵀv` and `p(i)` the other view of anchor `i`:
///
/// ```text
/// ℓᵢ = −log( exp(sim(zᵢ, z_p(i)) / τ) / Σ_{k ≠ i} exp(sim(zᵢ, zₖ) / τ) )
/// L  = (1 / 2N) Σᵢ ℓᵢ
/// ```
///
/// The self-similarity `k = i` is masked out with `-inf` before a `log_softmax`. Each anchor's
/// denominator has `2N − 1` terms: its positive and the `2N − 2` other views as negatives.
#[derive(Module, Debug)]
pub struct NtXentLoss {
    /// The temperature `τ`.
    pub temperature: f64,
}

impl NtXentLoss {
    /// The mean loss over the `2N` anchors.
    ///
    /// # Shapes
    /// - view_a: `[batch_size, d_embed]`, row `k` is one view of image `k`
    /// - view_b: `[batch_size, d_embed]`, row `k` is the other view of image `k`
    /// - output: `[1]`
    pub fn forward(&self, view_a: Tensor<2>, view_b: Tensor<2>) -> Tensor<1> {
        self.forward_no_reduction(view_a, view_b).mean()
    }

    /// The loss of each anchor: entries `0..N` are the anchors of `view_a`, `N..2N` those of
    /// `view_b`; their mean is [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - view_a: `[batch_size, d_embed]`
    /// - view_b: `[batch_size, d_embed]`
    /// - output: `[2 * batch_size]`
    pub fn forward_no_reduction(&self, view_a: Tensor<2>, view_b: Tensor<2>) -> Tensor<1> {
        let [batch_size, d_embed] = view_a.dims();
        assert_shape!(view_b, [batch_size, d_embed]);
        let device = view_a.device();
        let n_anchors = 2 * batch_size;

        let z = l2_normalize(Tensor::cat(vec![view_a, view_b], 0));
        let similarities = z.clone().matmul(z.transpose()).div_scalar(self.temperature);
        let self_mask = Tensor::<2>::eye(n_anchors, &device).bool();
        let logits = similarities.mask_fill(self_mask, f32::NEG_INFINITY);

        // The positive of anchor i is i + N for the first view and i − N for the second.
        let n = batch_size as i64;
        let positives = Tensor::cat(
            vec![
                Tensor::<1, Int>::arange(n..2 * n, &device),
                Tensor::<1, Int>::arange(0..n, &device),
            ],
            0,
        );
        cross_entropy_with_targets(logits, positives)
    }
}
