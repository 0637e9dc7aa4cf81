//! Training objectives for vision-language and self-supervised models on Burn 0.22.
//!
//! Each loss is a `FooConfig` + `Foo` module (parameter-free, so `FooConfig::init(&self)`) with
//! `forward` (reduced: a `Tensor<1>` of shape `[1]`) and `forward_no_reduction` (one value per
//! sample), written with `log_softmax` / log-sum-exp / `log_sigmoid` so they stay finite for
//! large logits:
//!
//! - [`ClipLoss`]: CLIP's symmetric InfoNCE (Radford et al. 2021), as open_clip's `ClipLoss`;
//!   its learnable temperature is a [`LogitScale`] (log-parameterised, clamped to at most 100).
//! - [`SiglipLoss`]: SigLIP's pairwise sigmoid loss (Zhai et al. 2023), as open_clip's
//!   `SigLipLoss`; learnable scale and bias are a [`LogitScale`] and a [`LogitBias`].
//! - [`NtXentLoss`]: SimCLR's NT-Xent over two views (Chen et al. 2020).
//! - [`LabelSmoothingCrossEntropyLoss`]: cross-entropy with label smoothing, hard or soft
//!   targets (PyTorch `F.cross_entropy(label_smoothing=..)` semantics).
//! - [`DistillationLoss`]: temperature-scaled KL distillation (Hinton et al. 2015).
//! - [`Sinkhorn`]: Sinkhorn-Knopp equal-partition assignment (SwAV, SeLa) in the log domain,
//!   stable for small `ε`. Not a loss: its `forward` returns the (detached) soft assignments
//!   `[N, K]`, optionally with other marginals (`forward_with_marginals`).
//!
//! Values and gradients match float64 PyTorch / open_clip references to 1e-5 in f32 (relative
//! for magnitudes above 1) and agree with finite differences (`tests/`). The learnable scale and bias are modules of their own, so a model
//! can own them next to its encoders (where checkpoints keep `logit_scale`), and the losses take
//! them as tensors. There is no backend type parameter: tensors live on a runtime
//! [`burn::prelude::Device`] (autodiff is a device flag), and this crate's features choose the
//! backends compiled in (`flex` by default, `wgpu`, `cuda`).
//!
//! ```
//! use burn::prelude::*;
//! use vl_losses::{ClipLossConfig, LogitScaleConfig};
//!
//! let device = Device::flex().autodiff();
//! let logit_scale = LogitScaleConfig::new().init(&device); // exp(ln(1/0.07)), clamped to <= 100
//! let loss_fn = ClipLossConfig::new().with_normalize(true).init();
//! let image = Tensor::<2>::random([4, 8], burn::tensor::Distribution::Default, &device);
//! let text = Tensor::<2>::random([4, 8], burn::tensor::Distribution::Default, &device);
//! let loss = loss_fn.forward(image, text, logit_scale.forward()); // [1]
//! let grads = loss.backward();
//! assert!(logit_scale.log_scale.val().grad(&grads).is_some());
//! ```

#![warn(missing_docs)]

mod clip;
mod distillation;
mod label_smoothing;
mod logit_scale;
mod nt_xent;
mod ops;
mod siglip;
mod sinkhorn;

pub use clip::{ClipLoss, ClipLossConfig};
pub use distillation::{DistillationLoss, DistillationLossConfig};
pub use label_smoothing::{LabelSmoothingCrossEntropyLoss, LabelSmoothingCrossEntropyLossConfig};
pub use logit_scale::{LogitScale, LogitScaleConfig};
pub use nt_xent::{NtXentLoss, NtXentLossConfig};
pub use siglip::{LogitBias, LogitBiasConfig, SiglipLoss, SiglipLossConfig};
pub use sinkhorn::{Sinkhorn, SinkhornConfig};
