//! Every loss, its per-sample values and its gradients (w.r.t. the inputs and the learnable
//! scale and bias) against PyTorch / open_clip references computed in float64 by
//! `tests/fixtures/make_fixtures.py`, within 1e-5 in f32; and the Sinkhorn assignments against
//! SwAV's `distributed_sinkhorn`. Run with `--nocapture` to see the measured differences.

use crate::common::{Reference, assert_tensor_close};
use burn::prelude::*;
use vl_losses::{
    ClipLossConfig, DistillationLossConfig, LabelSmoothingCrossEntropyLossConfig, LogitBiasConfig,
    LogitScaleConfig, NtXentLossConfig, SiglipLossConfig, SinkhornConfig,
};

/// Tolerance on every value and gradient: absolute, relative above 1 (see `assert_close`).
const TOL: f32 = 1e-5;

fn autodiff_device() -> Device {
    Device::flex().autodiff()
}

#[test]
fn clip_loss_and_gradients_match_open_clip() {
    let r = Reference::open();
    let device = autodiff_device();
    for case in ["clip_a", "clip_b", "clip_c"] {
        let image = r.tensor::<2>(case, "image", &device).require_grad();
        let text = r.tensor::<2>(case, "text", &device).require_grad();
        let logit_scale = LogitScaleConfig::new()
            .with_init_log_scale(r.values(case, "log_scale")[0].into())
            .with_max_scale(Some(r.param_f64(case, "max_scale")))
            .init(&device);
        let loss_fn = ClipLossConfig::new()
            .with_normalize(r.param(case, "normalize").as_bool().unwrap())
            .init();

        let per_pair =
            loss_fn.forward_no_reduction(image.clone(), text.clone(), logit_scale.forward());
        assert_tensor_close(
            &format!("{case} per_pair"),
            per_pair,
            r.f32(case, "per_pair"),
            TOL,
        );
        let loss = loss_fn.forward(image.clone(), text.clone(), logit_scale.forward());
        let grads = loss.backward();
        assert_tensor_close(&format!("{case} loss"), loss, r.f32(case, "loss"), TOL);
        let grad = |t: &Tensor<2>| t.grad(&grads).expect("gradient");
        assert_tensor_close(
            &format!("{case} grad_image"),
            grad(&image),
            r.f32(case, "grad_image"),
            TOL,
        );
        assert_tensor_close(
            &format!("{case} grad_text"),
            grad(&text),
            r.f32(case, "grad_text"),
            TOL,
        );
        let grad_log_scale = logit_scale.log_scale.val().grad(&grads).expect("gradient");
        assert_tensor_close(
            &format!("{case} grad_log_scale"),
            grad_log_scale,
            r.f32(case, "grad_log_scale"),
            TOL,
        );
    }
}

#[test]
fn siglip_loss_and_gradients_match_open_clip() {
    let r = Reference::open();
    let device = autodiff_device();
    for case in ["siglip_a", "siglip_b"] {
        let image = r.tensor::<2>(case, "image", &device).require_grad();
        let text = r.tensor::<2>(case, "text", &device).require_grad();
        let logit_scale = LogitScaleConfig::siglip()
            .with_init_log_scale(r.values(case, "log_scale")[0].into())
            .with_max_scale(Some(r.param_f64(case, "max_scale")))
            .init(&device);
        let logit_bias = LogitBiasConfig::new()
            .with_init_bias(r.values(case, "bias")[0].into())
            .init(&device);
        let loss_fn = SiglipLossConfig::new()
            .with_normalize(r.param(case, "normalize").as_bool().unwrap())
            .init();

        let per_image = loss_fn.forward_no_reduction(
            image.clone(),
            text.clone(),
            logit_scale.forward(),
            logit_bias.forward(),
        );
        assert_tensor_close(
            &format!("{case} per_image"),
            per_image,
            r.f32(case, "per_image"),
            TOL,
        );
        let loss = loss_fn.forward(
            image.clone(),
            text.clone(),
            logit_scale.forward(),
            logit_bias.forward(),
        );
        let grads = loss.backward();
        assert_tensor_close(&format!("{case} loss"), loss, r.f32(case, "loss"), TOL);
        let grad = |t: &Tensor<2>| t.grad(&grads).expect("gradient");
        assert_tensor_close(
            &format!("{case} grad_image"),
            grad(&image),
            r.f32(case, "grad_image"),
            TOL,
        );
        assert_tensor_close(
            &format!("{case} grad_text"),
            grad(&text),
            r.f32(case, "grad_text"),
            TOL,
        );
        assert_tensor_close(
            &format!("{case} grad_log_scale"),
            logit_scale.log_scale.val().grad(&grads).expect("gradient"),
            r.f32(case, "grad_log_scale"),
            TOL,
        );
        assert_tensor_close(
            &format!("{case} grad_bias"),
            logit_bias.bias.val().grad(&grads).expect("gradient"),
            r.f32(case, "grad_bias"),
            TOL,
        );
    }
}

#[test]
fn nt_xent_loss_and_gradients_match_pytorch() {
    let r = Reference::open();
    let device = autodiff_device();
    for case in ["nt_xent_a", "nt_xent_b"] {
        let view_a = r.tensor::<2>(case, "view_a", &device).require_grad();
        let view_b = r.tensor::<2>(case, "view_b", &device).require_grad();
        let loss_fn = NtXentLossConfig::new(r.param_f64(case, "temperature")).init();

        let per_anchor = loss_fn.forward_no_reduction(view_a.clone(), view_b.clone());
        assert_tensor_close(
            &format!("{case} per_anchor"),
            per_anchor,
            r.f32(case, "per_anchor"),
            TOL,
        );
        let loss = loss_fn.forward(view_a.clone(), view_b.clone());
        let grads = loss.backward();
        assert_tensor_close(&format!("{case} loss"), loss, r.f32(case, "loss"), TOL);
        for (name, t) in [("grad_view_a", &view_a), ("grad_view_b", &view_b)] {
            assert_tensor_close(
                &format!("{case} {name}"),
                t.grad(&grads).expect("gradient"),
                r.f32(case, name),
                TOL,
            );
        }
    }
}

#[test]
fn label_smoothing_loss_and_gradients_match_pytorch() {
    let r = Reference::open();
    let device = autodiff_device();
    for case in ["label_smooth_a", "label_smooth_b", "label_smooth_c"] {
        let logits = r.tensor::<2>(case, "logits", &device).require_grad();
        let loss_fn =
            LabelSmoothingCrossEntropyLossConfig::new(r.param_f64(case, "smoothing")).init();
        let soft = case == "label_smooth_c";
        let (per_sample, loss) = if soft {
            let probs = r.tensor::<2>(case, "target_probs", &device);
            (
                loss_fn.forward_soft_no_reduction(logits.clone(), probs.clone()),
                loss_fn.forward_soft(logits.clone(), probs),
            )
        } else {
            let targets = r.targets(case, "targets", &device);
            (
                loss_fn.forward_no_reduction(logits.clone(), targets.clone()),
                loss_fn.forward(logits.clone(), targets),
            )
        };
        assert_tensor_close(
            &format!("{case} per_sample"),
            per_sample,
            r.f32(case, "per_sample"),
            TOL,
        );
        let grads = loss.backward();
        assert_tensor_close(&format!("{case} loss"), loss, r.f32(case, "loss"), TOL);
        assert_tensor_close(
            &format!("{case} grad_logits"),
            logits.grad(&grads).expect("gradient"),
            r.f32(case, "grad_logits"),
            TOL,
        );
    }
}

#[test]
fn distillation_loss_and_gradients_match_pytorch() {
    let r = Reference::open();
    let device = autodiff_device();
    for case in ["distill_a", "distill_b"] {
        let student = r.tensor::<2>(case, "student", &device).require_grad();
        let teacher = r.tensor::<2>(case, "teacher", &device).require_grad();
        let loss_fn = DistillationLossConfig::new(r.param_f64(case, "temperature")).init();

        let per_sample = loss_fn.forward_no_reduction(student.clone(), teacher.clone());
        assert_tensor_close(
            &format!("{case} per_sample"),
            per_sample,
            r.f32(case, "per_sample"),
            TOL,
        );
        let loss = loss_fn.forward(student.clone(), teacher.clone());
        let grads = loss.backward();
        assert_tensor_close(&format!("{case} loss"), loss, r.f32(case, "loss"), TOL);
        for (name, t) in [("grad_student", &student), ("grad_teacher", &teacher)] {
            assert_tensor_close(
                &format!("{case} {name}"),
                t.grad(&grads).expect("gradient"),
                r.f32(case, name),
                TOL,
            );
        }
    }
}

#[test]
fn sinkhorn_matches_swav() {
    let r = Reference::open();
    let device = Device::flex();
    for case in ["sinkhorn_a", "sinkhorn_b", "sinkhorn_c"] {
        let sinkhorn = SinkhornConfig::new()
            .with_epsilon(r.param_f64(case, "epsilon"))
            .with_n_iters(r.param(case, "n_iters").as_u64().unwrap() as usize)
            .init();
        let scores = r.tensor::<2>(case, "scores", &device);
        let assignments = if case == "sinkhorn_c" {
            sinkhorn.forward_with_marginals(
                scores,
                r.tensor(case, "row_marginals", &device),
                r.tensor(case, "col_marginals", &device),
            )
        } else {
            sinkhorn.forward(scores)
        };
        assert_tensor_close(
            &format!("{case} assignments"),
            assignments,
            r.f32(case, "assignments"),
            TOL,
        );
    }
    // The fixture's small-epsilon case is one where SwAV's own code fails in float32.
    assert_eq!(r.param("sinkhorn_b", "swav_float32_is_finite"), false);
}
