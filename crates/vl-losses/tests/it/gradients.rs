//! Autodiff gradients of every loss against central finite differences computed here in f32
//! (independent of PyTorch), on the fixture inputs. Each check also feeds three deliberately
//! wrong gradients through the same comparison and requires them to fail (see
//! `common::check_gradient`), so the tolerance cannot pass by accident.

use crate::common::{Reference, central_differences, check_gradient, max_abs, values};
use burn::module::Param;
use burn::prelude::*;
use vl_losses::{
    ClipLossConfig, DistillationLossConfig, LabelSmoothingCrossEntropyLossConfig, LogitBias,
    LogitScale, NtXentLossConfig, SiglipLossConfig,
};

/// Relative tolerance: `max |autodiff − fd| / max |fd|`. The f32 finite differences themselves
/// are off by 1e-4 relative typically and 2.3e-3 at worst here (NT-Xent at τ = 0.1, whose loss
/// is 0.015, so f32 rounding `~6e-8 · |L| / h` is large against the gradient); the wrong
/// gradients of `check_gradient` are off by 1e-1 or more.
const TOL: f32 = 1e-2;

/// One input of a loss: name, shape (as 2-D; `[1, 1]` for scalars) and values.
struct Input {
    name: &'static str,
    shape: [usize; 2],
    values: Vec<f32>,
}

fn input(r: &Reference, case: &str, name: &'static str) -> Input {
    let (shape, values) = r.f32(case, name);
    let shape = match shape[..] {
        [n] => [1, n],
        [rows, cols] => [rows, cols],
        _ => panic!("{case}.{name}: unexpected rank"),
    };
    Input {
        name,
        shape,
        values,
    }
}

fn tensor(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// The arguments handed to a loss closure: each input as a flat leaf tensor, so that a scalar
/// can become a `Param` (which must wrap a leaf) and a matrix is a reshape of it.
struct Args<'a> {
    tensors: Vec<Tensor<1>>,
    inputs: &'a [Input],
}

impl Args<'_> {
    fn matrix(&self, j: usize) -> Tensor<2> {
        self.tensors[j].clone().reshape(self.inputs[j].shape)
    }

    fn vector(&self, j: usize) -> Tensor<1> {
        self.tensors[j].clone()
    }
}

fn flat(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

/// Compares the autodiff gradient of `loss` w.r.t. each input with central differences of step
/// `h`. `loss` gets the inputs in order, on whichever device is being used.
fn check_loss_gradients(label: &str, inputs: &[Input], h: f32, loss: impl Fn(&Args) -> Tensor<1>) {
    let autodiff = Device::flex().autodiff();
    let leaves: Vec<Tensor<1>> = inputs
        .iter()
        .map(|i| flat(&i.values, &autodiff).require_grad())
        .collect();
    let grads = loss(&Args {
        tensors: leaves.clone(),
        inputs,
    })
    .backward();

    let plain = Device::flex();
    let constants: Vec<Tensor<1>> = inputs.iter().map(|i| flat(&i.values, &plain)).collect();
    for (j, input) in inputs.iter().enumerate() {
        let gradient = values(leaves[j].grad(&grads).expect("a gradient"));
        let fd = central_differences(
            |x| {
                let mut tensors = constants.clone();
                tensors[j] = flat(x, &plain);
                loss(&Args { tensors, inputs }).into_scalar::<f32>()
            },
            &input.values,
            h,
        );
        let what = format!("{label} d/d{}", input.name);
        if max_abs(&fd) == 0.0 {
            // A flat direction (the clamped log-scale): the gradient must be exactly zero too.
            println!(
                "{what:<40} finite differences all 0; autodiff max |g| = {}",
                max_abs(&gradient)
            );
            assert_eq!(max_abs(&gradient), 0.0, "{what}: {gradient:?}");
        } else {
            check_gradient(&what, &gradient, &fd, TOL);
        }
    }
}

/// A [`LogitScale`] whose log-scale is `t` (so the gradient reaches `t`), clamped at 100.
fn logit_scale(t: Tensor<1>) -> LogitScale {
    LogitScale {
        log_scale: Param::from_tensor(t),
        max_log_scale: 100f64.ln(),
    }
}

#[test]
fn clip_gradients_match_finite_differences() {
    let r = Reference::open();
    for (case, h) in [("clip_a", 1e-2), ("clip_b", 1e-2), ("clip_c", 1e-3)] {
        let loss_fn = ClipLossConfig::new()
            .with_normalize(r.param(case, "normalize").as_bool().unwrap())
            .init();
        let inputs = ["image", "text", "log_scale"].map(|name| input(&r, case, name));
        check_loss_gradients(case, &inputs, h, |x| {
            loss_fn.forward(x.matrix(0), x.matrix(1), logit_scale(x.vector(2)).forward())
        });
    }
}

#[test]
fn siglip_gradients_match_finite_differences() {
    let r = Reference::open();
    for (case, h) in [("siglip_a", 1e-2), ("siglip_b", 1e-2)] {
        let loss_fn = SiglipLossConfig::new()
            .with_normalize(r.param(case, "normalize").as_bool().unwrap())
            .init();
        let inputs = ["image", "text", "log_scale", "bias"].map(|name| input(&r, case, name));
        check_loss_gradients(case, &inputs, h, |x| {
            let bias = LogitBias {
                bias: Param::from_tensor(x.vector(3)),
            };
            loss_fn.forward(
                x.matrix(0),
                x.matrix(1),
                logit_scale(x.vector(2)).forward(),
                bias.forward(),
            )
        });
    }
}

#[test]
fn nt_xent_gradients_match_finite_differences() {
    let r = Reference::open();
    for (case, h) in [("nt_xent_a", 1e-2), ("nt_xent_b", 2e-3)] {
        let loss_fn = NtXentLossConfig::new(r.param_f64(case, "temperature")).init();
        let inputs = ["view_a", "view_b"].map(|name| input(&r, case, name));
        check_loss_gradients(case, &inputs, h, |x| {
            loss_fn.forward(x.matrix(0), x.matrix(1))
        });
    }
}

#[test]
fn label_smoothing_gradients_match_finite_differences() {
    let r = Reference::open();
    let hard = "label_smooth_a";
    let loss_fn = LabelSmoothingCrossEntropyLossConfig::new(r.param_f64(hard, "smoothing")).init();
    let targets = r.targets(hard, "targets", &Device::flex()).into_data();
    check_loss_gradients(hard, &[input(&r, hard, "logits")], 1e-2, |x| {
        let logits = x.matrix(0);
        let targets = Tensor::<1, Int>::from_data(targets.clone(), &logits.device());
        loss_fn.forward(logits, targets)
    });

    let soft = "label_smooth_c";
    let loss_fn = LabelSmoothingCrossEntropyLossConfig::new(r.param_f64(soft, "smoothing")).init();
    let probs = r.values(soft, "target_probs");
    let inputs = [input(&r, soft, "logits")];
    let shape = inputs[0].shape;
    check_loss_gradients(soft, &inputs, 1e-2, |x| {
        let logits = x.matrix(0);
        let probs = tensor(&probs, shape, &logits.device());
        loss_fn.forward_soft(logits, probs)
    });
}

#[test]
fn distillation_gradients_match_finite_differences() {
    let r = Reference::open();
    for (case, h) in [("distill_a", 1e-2), ("distill_b", 1e-2)] {
        let loss_fn = DistillationLossConfig::new(r.param_f64(case, "temperature")).init();
        let inputs = ["student", "teacher"].map(|name| input(&r, case, name));
        check_loss_gradients(case, &inputs, h, |x| {
            loss_fn.forward(x.matrix(0), x.matrix(1))
        });
    }
}
