//! [`SiglipLoss`]: SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language
//! Image Pre-Training", <https://arxiv.org/abs/2303.15343>, Algorithm 1), with its learnable bias
//! [`LogitBias`] (the scale is a [`LogitScale`](crate::LogitScale), see
//! [`LogitScaleConfig::siglip`](crate::LogitScaleConfig::siglip)).
//!
//! References: big_vision `big_vision/trainers/proj/image_text/siglip.py` (`sigmoid_loss`),
//! <https://github.com/google-research/big_vision>, and open_clip's `SigLipLoss` for one process
//! (`src/open_clip/loss.py`,
//! <https://github.com/mlfoundations/open_clip/blob/v3.3.0/src/open_clip/loss.py>), which this
//! matches.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;

use crate::ops::l2_normalize;

/// Configuration of a [`SiglipLoss`].
#[derive(Config, Debug)]
pub struct SiglipLossConfig {
    /// L2-normalise the image and text features inside the loss (`F.normalize` semantics).
    /// Default: `false`: like open_clip's `SigLipLoss`, the features are expected unit-norm.
    #[config(default = false)]
    pub normalize: bool,
}

impl SiglipLossConfig {
    /// Creates the loss (it has no parameters; scale and bias are arguments of `forward`).
    pub fn init(&self) -> SiglipLoss {
        SiglipLoss {
            normalize: self.normalize,
        }
    }
}

/// SigLIP's pairwise sigmoid loss.
///
/// For `N` pairs with image features `I`, text features `T` (rows unit-norm), scale `t` and bias
/// `b`, every image-text pair is a binary classification, positive on the diagonal:
///
/// ```text
/// logits = t · I Tᵀ + b                   [N, N]
/// zᵢⱼ    = +1 if i = j, −1 otherwise
/// ℓᵢ     = −Σⱼ log σ(zᵢⱼ · logitsᵢⱼ)        (one value per image)
/// L      = (1/N) Σᵢ ℓᵢ = −(1/N) Σᵢⱼ log σ(zᵢⱼ · logitsᵢⱼ)
/// ```
///
/// `log σ` is Burn's `log_sigmoid` (stable for large |logits|). The paper initialises
/// `t = exp(t')` with `t' = ln 10` and `b = −10`
/// ([`LogitScaleConfig::siglip`](crate::LogitScaleConfig::siglip), [`LogitBiasConfig`]).
#[derive(Module, Debug)]
pub struct SiglipLoss {
    /// L2-normalise the features first (see [`SiglipLossConfig::normalize`]).
    pub normalize: bool,
}

impl SiglipLoss {
    /// The logits `t · I Tᵀ + b`, after the optional normalisation.
    ///
    /// # Shapes
    /// - image_features: `[batch_size, d_embed]`
    /// - text_features: `[batch_size, d_embed]`
    /// - logit_scale: `[1]`, the scale `t` itself (not its log)
    /// - logit_bias: `[1]`
    /// - output: `[batch_size, batch_size]`
    pub fn logits(
        &self,
        image_features: Tensor<2>,
        text_features: Tensor<2>,
        logit_scale: Tensor<1>,
        logit_bias: Tensor<1>,
    ) -> Tensor<2> {
        let [batch_size, d_embed] = image_features.dims();
        assert_shape!(text_features, [batch_size, d_embed]);
        assert_shape!(logit_scale, [1]);
        assert_shape!(logit_bias, [1]);
        let (image_features, text_features) = if self.normalize {
            (l2_normalize(image_features), l2_normalize(text_features))
        } else {
            (image_features, text_features)
        };
        image_features.matmul(text_features.transpose()) * logit_scale.reshape([1, 1])
            + logit_bias.reshape([1, 1])
    }

    /// The loss, `−(1/N) Σᵢⱼ log σ(zᵢⱼ logitsᵢⱼ)` (open_clip's `SigLipLoss` value).
    ///
    /// # Shapes
    /// - image_features: `[batch_size, d_embed]`, row `i` matches text row `i`
    /// - text_features: `[batch_size, d_embed]`
    /// - logit_scale: `[1]`, the scale `t` (e.g. [`LogitScale::forward`](crate::LogitScale::forward))
    /// - logit_bias: `[1]` (e.g. [`LogitBias::forward`])
    /// - output: `[1]`
    pub fn forward(
        &self,
        image_features: Tensor<2>,
        text_features: Tensor<2>,
        logit_scale: Tensor<1>,
        logit_bias: Tensor<1>,
    ) -> Tensor<1> {
        self.forward_no_reduction(image_features, text_features, logit_scale, logit_bias)
            .mean()
    }

    /// The loss of each image against all texts, `ℓᵢ = −Σⱼ log σ(zᵢⱼ logitsᵢⱼ)`; its mean is
    /// [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - image_features: `[batch_size, d_embed]`
    /// - text_features: `[batch_size, d_embed]`
    /// - logit_scale: `[1]`
    /// - logit_bias: `[1]`
    /// - output: `[batch_size]`
    pub fn forward_no_reduction(
        &self,
        image_features: Tensor<2>,
        text_features: Tensor<2>,
        logit_scale: Tensor<1>,
        logit_bias: Tensor<1>,
    ) -> Tensor<1> {
        let logits = self.logits(image_features, text_features, logit_scale, logit_bias);
        let [batch_size, _] = logits.dims();
        // z = 2·eye − 1: +1 for the matching pair, −1 for every other.
        let labels = Tensor::<2>::eye(batch_size, &logits.device())
            .mul_scalar(2.0)
            .sub_scalar(1.0);
        log_sigmoid(labels * logits)
            .sum_dim(1)
            .reshape([batch_size])
            .neg()
    }
}

/// Configuration of a [`LogitBias`].
#[derive(Config, Debug)]
pub struct LogitBiasConfig {
    /// Initial bias. Default: `-10.0` (SigLIP), which makes the many negatives start with a
    /// small loss.
    #[config(default = -10.0)]
    pub init_bias: f64,
}

impl LogitBiasConfig {
    /// Creates the parameter on `device`.
    ///
    /// # Panics
    /// If `init_bias` is not finite.
    pub fn init(&self, device: &Device) -> LogitBias {
        assert!(
            self.init_bias.is_finite(),
            "init_bias must be finite, got {}",
            self.init_bias
        );
        LogitBias {
            bias: Param::from_tensor(Tensor::full([1], self.init_bias, device)),
        }
    }
}

/// SigLIP's learnable logit bias `b`.
#[derive(Module, Debug)]
pub struct LogitBias {
    /// The bias, shape `[1]` (what checkpoints call `logit_bias`).
    pub bias: Param<Tensor<1>>,
}

impl LogitBias {
    /// The bias, to pass to [`SiglipLoss::forward`]'s `logit_bias` argument.
    ///
    /// # Shapes
    /// - output: `[1]`
    pub fn forward(&self) -> Tensor<1> {
        let bias = self.bias.val();
        assert_shape!(bias, [1]);
        bias
    }
}
