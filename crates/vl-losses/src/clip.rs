//! [`ClipLoss`]: CLIP's symmetric InfoNCE over a batch of matching image-text pairs (Radford et
//! al. 2021, "Learning Transferable Visual Models From Natural Language Supervision",
//! <https://arxiv.org/abs/2103.00020>, Figure 3), the same computation as open_clip's
//! `ClipLoss` for one process (`src/open_clip/loss.py`,
//! <https://github.com/mlfoundations/open_clip/blob/v3.3.0/src/open_clip/loss.py>).

use burn::prelude::*;

use crate::ops::{cross_entropy_with_diagonal_targets, l2_normalize};

/// Configuration of a [`ClipLoss`].
#[derive(Config, Debug)]
pub struct ClipLossConfig {
    /// L2-normalise the image and text features inside the loss (`F.normalize` semantics:
    /// `x / max(||x||, 1e-12)`). Default: `false`: like open_clip's `ClipLoss`, the features are
    /// expected to be unit-norm already (CLIP models normalise them before the loss).
    #[config(default = false)]
    pub normalize: bool,
}

impl ClipLossConfig {
    /// Creates the loss (it has no parameters; the scale is an argument of `forward`).
    pub fn init(&self) -> ClipLoss {
        ClipLoss {
            normalize: self.normalize,
        }
    }
}

/// CLIP's symmetric contrastive loss.
///
/// For `N` pairs with image features `I` and text features `T` (rows unit-norm) and scale `s`:
///
/// ```text
/// logits = s · I Tᵀ                                   [N, N], row i = image i against every text
/// ℓᵢ     = ½ (−log softmax(logits[i, :])[i] − log softmax(logits[:, i])[i])
/// L      = (1/N) Σᵢ ℓᵢ = ½ (CE(logits, arange N) + CE(logitsᵀ, arange N))
/// ```
///
/// `s` is usually `exp` of a learnable log-scale, clamped at 100: see
/// [`LogitScale`](crate::LogitScale). Both cross-entropies use `log_softmax`, so large scales do
/// not overflow.
#[derive(Module, Debug)]
pub struct ClipLoss {
    /// L2-normalise the features first (see [`ClipLossConfig::normalize`]).
    pub normalize: bool,
}

impl ClipLoss {
    /// The image-to-text logits `s · I Tᵀ` (text-to-image is the transpose), after the optional
    /// normalisation.
    ///
    /// # Shapes
    /// - image_features: `[batch_size, d_embed]`
    /// - text_features: `[batch_size, d_embed]`
    /// - logit_scale: `[1]`, the scale itself (not its log)
    /// - output: `[batch_size, batch_size]`
    pub fn logits(
        &self,
        image_features: Tensor<2>,
        text_features: Tensor<2>,
        logit_scale: Tensor<1>,
    ) -> Tensor<2> {
        let [batch_size, d_embed] = image_features.dims();
        assert_shape!(text_features, [batch_size, d_embed]);
        assert_shape!(logit_scale, [1]);
        let (image_features, text_features) = if self.normalize {
            (l2_normalize(image_features), l2_normalize(text_features))
        } else {
            (image_features, text_features)
        };
        image_features.matmul(text_features.transpose()) * logit_scale.reshape([1, 1])
    }

    /// The mean loss over the batch (open_clip's `ClipLoss` value).
    ///
    /// # Shapes
    /// - image_features: `[batch_size, d_embed]`, row `i` matches text row `i`
    /// - text_features: `[batch_size, d_embed]`
    /// - logit_scale: `[1]`, the scale itself (e.g. [`LogitScale::forward`](crate::LogitScale::forward))
    /// - output: `[1]`
    pub fn forward(
        &self,
        image_features: Tensor<2>,
        text_features: Tensor<2>,
        logit_scale: Tensor<1>,
    ) -> Tensor<1> {
        self.forward_no_reduction(image_features, text_features, logit_scale)
            .mean()
    }

    /// The loss of each pair, `ℓᵢ` = mean of its image-to-text and text-to-image
    /// cross-entropies; its mean is [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - image_features: `[batch_size, d_embed]`
    /// - text_features: `[batch_size, d_embed]`
    /// - logit_scale: `[1]`
    /// - output: `[batch_size]`
    pub fn forward_no_reduction(
        &self,
        image_features: Tensor<2>,
        text_features: Tensor<2>,
        logit_scale: Tensor<1>,
    ) -> Tensor<1> {
        let logits_per_image = self.logits(image_features, text_features, logit_scale);
        let logits_per_text = logits_per_image.clone().transpose();
        (cross_entropy_with_diagonal_targets(logits_per_image)
            + cross_entropy_with_diagonal_targets(logits_per_text))
        .div_scalar(2.0)
    }
}
