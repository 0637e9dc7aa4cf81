//! [`LogitScale`]: the learnable, log-parameterised and clamped inverse temperature of CLIP
//! (Radford et al. 2021, <https://arxiv.org/abs/2103.00020>, §2.5: "initialized to the equivalent
//! of 0.07 from (Wu et al., 2018) and clipped to prevent scaling the logits by more than 100")
//! and SigLIP (Zhai et al. 2023, <https://arxiv.org/abs/2303.15343>, `t = exp(t')`, `t' = ln 10`).
//!
//! Reference: open_clip `src/open_clip/model.py` (`logit_scale = nn.Parameter(ones([]) *
//! np.log(1 / 0.07))`, used as `logit_scale.exp()`) and `src/open_clip_train/train.py`
//! (`logit_scale.clamp_(0, math.log(100))` after each step),
//! <https://github.com/mlfoundations/open_clip/tree/v3.3.0/src>.

use burn::module::Param;
use burn::prelude::*;

/// Configuration of a [`LogitScale`].
#[derive(Config, Debug)]
pub struct LogitScaleConfig {
    /// Initial value of the log-scale parameter `s`; the scale is `exp(s)`.
    /// Default: `ln(1 / 0.07) ≈ 2.6593` (CLIP). SigLIP uses `ln 10`, see [`Self::siglip`].
    #[config(default = 2.659_260_036_932_778)]
    pub init_log_scale: f64,
    /// Largest scale [`LogitScale::forward`] returns: `exp(min(s, ln(max_scale)))`. `None`
    /// leaves the scale unbounded (big_vision's SigLIP). Default: `Some(100.0)` (CLIP, open_clip).
    #[config(default = "Some(100.0)")]
    pub max_scale: Option<f64>,
}

impl LogitScaleConfig {
    /// SigLIP's initialisation: `init_log_scale = ln 10` (and the default clamp at 100, as
    /// open_clip's training loop applies to every model).
    pub fn siglip() -> Self {
        Self::new().with_init_log_scale(10f64.ln())
    }

    /// Creates the parameter on `device`.
    ///
    /// # Panics
    /// If `init_log_scale` is not finite, or `max_scale` is not a positive finite number.
    pub fn init(&self, device: &Device) -> LogitScale {
        assert!(
            self.init_log_scale.is_finite(),
            "init_log_scale must be finite, got {}",
            self.init_log_scale
        );
        let max_log_scale = match self.max_scale {
            Some(max) => {
                assert!(
                    max.is_finite() && max > 0.0,
                    "max_scale must be positive and finite, got {max}"
                );
                max.ln()
            }
            None => f64::INFINITY,
        };
        LogitScale {
            log_scale: Param::from_tensor(Tensor::full([1], self.init_log_scale, device)),
            max_log_scale,
        }
    }
}

/// A learnable inverse temperature `exp(min(s, ln max_scale))` with `s` the parameter, for
/// [`ClipLoss`](crate::ClipLoss) and [`SiglipLoss`](crate::SiglipLoss).
///
/// The clamp is applied in the forward pass, so above the bound the scale saturates and `s`
/// gets no gradient. open_clip instead clamps the parameter itself after every optimizer step;
/// both keep the scale at most `max_scale` (CLIP's 100), but here `s` keeps its value, so with
/// weight decay it can come back below the bound.
#[derive(Module, Debug)]
pub struct LogitScale {
    /// The log-scale `s`, shape `[1]` (what checkpoints call `logit_scale`).
    pub log_scale: Param<Tensor<1>>,
    /// `ln(max_scale)`, or `+inf` when unbounded.
    pub max_log_scale: f64,
}

impl LogitScale {
    /// The scale `exp(min(s, ln max_scale))`, to pass to a loss's `logit_scale` argument.
    ///
    /// # Shapes
    /// - output: `[1]`
    pub fn forward(&self) -> Tensor<1> {
        let log_scale = self.log_scale.val();
        assert_shape!(log_scale, [1]);
        let log_scale = if self.max_log_scale.is_finite() {
            log_scale.clamp_max(self.max_log_scale)
        } else {
            log_scale
        };
        log_scale.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_initial_scale_is_clip_temperature() {
        let scale = LogitScaleConfig::new().init(&Device::flex()).forward();
        let value: f32 = scale.into_scalar();
        assert!((value - 1.0 / 0.07).abs() < 1e-4, "{value}");
        let init = LogitScaleConfig::new().init_log_scale;
        assert!((init - (1.0f64 / 0.07).ln()).abs() < 1e-15, "{init}");
    }

    #[test]
    fn scale_is_clamped_to_max_scale() {
        let device = Device::flex();
        let clamped = LogitScaleConfig::new()
            .with_init_log_scale(6.0)
            .init(&device);
        let value: f32 = clamped.forward().into_scalar();
        assert!((value - 100.0).abs() < 1e-3, "{value}");
        let unbounded = LogitScaleConfig::new()
            .with_init_log_scale(6.0)
            .with_max_scale(None)
            .init(&device);
        let value: f32 = unbounded.forward().into_scalar();
        assert!((value - 6f32.exp()).abs() < 1e-2, "{value}");
    }

    #[test]
    #[should_panic(expected = "max_scale must be positive and finite")]
    fn non_positive_max_scale_is_rejected() {
        LogitScaleConfig::new()
            .with_max_scale(Some(0.0))
            .init(&Device::flex());
    }
}
