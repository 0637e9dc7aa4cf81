//! Numerically stable building blocks shared by the losses: L2 normalisation with PyTorch's
//! `F.normalize` semantics, log-sum-exp along a dimension, and the cross-entropy of each row of
//! a square logit matrix against its diagonal (the "labels = arange(N)" of contrastive losses).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// The floor on the norm in [`l2_normalize`], as in PyTorch's `F.normalize` (`eps=1e-12`).
const NORM_EPS: f64 = 1e-12;

/// `x / max(||x||_2, 1e-12)` along the last dimension (`F.normalize(x, dim=-1)`).
pub(crate) fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(NORM_EPS);
    x / norm
}

/// `log(sum(exp(x), dim))`, keeping `dim` (size 1), computed as `m + log(sum(exp(x - m)))` with
/// `m` the (detached) maximum, so it neither overflows nor underflows to `-inf` for finite `x`.
pub(crate) fn logsumexp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().detach().max_dim(dim);
    (x - max.clone()).exp().sum_dim(dim).log() + max
}

/// `-log_softmax(logits)[i, i]` for each row `i` of a square `[N, N]` matrix: the per-row
/// cross-entropy against targets `0..N`. Masked (`-inf`) off-diagonal entries are fine.
pub(crate) fn cross_entropy_with_diagonal_targets(logits: Tensor<2>) -> Tensor<1> {
    let [n_rows, _] = logits.dims();
    let targets = Tensor::<1, Int>::arange(0..n_rows as i64, &logits.device());
    cross_entropy_with_targets(logits, targets)
}

/// `-log_softmax(logits)[i, targets[i]]` for each row: per-row cross-entropy with class-index
/// targets (gathered, so `-inf` logits elsewhere in a row do not produce `0 * inf`).
pub(crate) fn cross_entropy_with_targets(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n_rows, _] = logits.dims();
    let targets = targets.reshape([n_rows, 1]);
    log_softmax(logits, 1)
        .gather(1, targets)
        .reshape([n_rows])
        .neg()
}
