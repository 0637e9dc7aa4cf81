//! The weight reparameterizations (Burn 0.22 `Reparameterization`s): an adapted `Linear` keeps
//! its frozen base weight and materialises `apply(base)` on every `val()`, so no layer code
//! changes. LoRA is Burn's own [`LoraAdapter`] (`base + scale * a b`); this file adds
//!
//! - [`DoraAdapter`] (Liu et al. 2024, <https://arxiv.org/abs/2402.09353>; PEFT
//!   `tuners/lora/dora.py`): `m * (W + s a b) / ||W + s a b||`, the norm per output unit and
//!   detached from the graph as PEFT does;
//! - [`VeraAdapter`] (Kopiczko et al. 2024, <https://arxiv.org/abs/2310.11454>; PEFT
//!   `tuners/vera/layer.py`): `W + (A^T diag(d)) (B^T diag(b))` with frozen random `A`, `B`
//!   shared by all layers (sliced to the layer's size) and trainable vectors `d`, `b`; with a
//!   magnitude vector it is DVoRA (DoRA's magnitude on top of VeRA).
//!
//! Layouts are Burn's: a `Linear` weight is `[d_in, d_out]`, the transpose of PyTorch's.

use burn::module::{Module, Param, Reparameterization};
use burn::prelude::*;

pub use burn::module::LoraAdapter;

/// `w * m / ||w||`, the norm of each output column (`[d_in, d_out]` layout), detached.
fn rescale(w: Tensor<2>, magnitude: &Param<Tensor<1>>) -> Tensor<2> {
    let [_, d_out] = w.dims();
    let norm = w.clone().powi_scalar(2).sum_dim(0).sqrt().detach();
    w * (magnitude.val().reshape([1, d_out]) / norm)
}

fn as_2d<const D: usize>(base: Tensor<D>) -> Tensor<2> {
    let dims = base.dims();
    base.reshape([dims[0], dims[1]])
}

/// DoRA: LoRA factors plus a magnitude per output unit.
#[derive(Module, Debug)]
pub struct DoraAdapter {
    /// `[d_in, r]` (PEFT `lora_A.weight` transposed), trainable.
    pub a: Param<Tensor<2>>,
    /// `[r, d_out]` (PEFT `lora_B.weight` transposed), trainable.
    pub b: Param<Tensor<2>>,
    /// `[d_out]` (PEFT `lora_magnitude_vector`), trainable; initialised to the norms of `W`.
    pub magnitude: Param<Tensor<1>>,
    /// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub scale: f64,
}

impl Reparameterization for DoraAdapter {
    const NAME: &'static str = "dora";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        let w = as_2d(base) + self.a.val().matmul(self.b.val()).mul_scalar(self.scale);
        rescale(w, &self.magnitude).reshape(shape)
    }
}

/// VeRA (and DVoRA with a magnitude).
#[derive(Module, Debug)]
pub struct VeraAdapter {
    /// `[d_in, r]`: the shared `vera_A` sliced to this layer and transposed; frozen.
    pub a: Param<Tensor<2>>,
    /// `[r, d_out]`: the shared `vera_B` sliced and transposed; frozen.
    pub b: Param<Tensor<2>>,
    /// `[r]` (PEFT `vera_lambda_d`), trainable, initialised to `d_initial`.
    pub lambda_d: Param<Tensor<1>>,
    /// `[d_out]` (PEFT `vera_lambda_b`), trainable, initialised to zero.
    pub lambda_b: Param<Tensor<1>>,
    /// DVoRA: `[d_out]` magnitude, initialised to the norms of `W`.
    pub magnitude: Option<Param<Tensor<1>>>,
}

impl VeraAdapter {
    /// `(A^T diag(d)) (B^T diag(b))`, `[d_in, d_out]`.
    pub fn delta(&self) -> Tensor<2> {
        let [_, r] = self.a.dims();
        let [_, d_out] = self.b.dims();
        let a = self.a.val() * self.lambda_d.val().reshape([1, r]);
        let b = self.b.val() * self.lambda_b.val().reshape([1, d_out]);
        a.matmul(b)
    }
}

impl Reparameterization for VeraAdapter {
    const NAME: &'static str = "vera";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        let w = as_2d(base) + self.delta();
        match &self.magnitude {
            Some(m) => rescale(w, m).reshape(shape),
            None => w.reshape(shape),
        }
    }
}

/// The column norms of a `[d_in, d_out]` weight: DoRA's and DVoRA's initial magnitude.
pub fn column_norms(w: Tensor<2>) -> Tensor<1> {
    let [_, d_out] = w.dims();
    w.powi_scalar(2).sum_dim(0).sqrt().reshape([d_out])
}
