//! LFA against PyTorch (`tests/fixtures/lfa/make_fixture.py`): the closed-form regularised
//! Procrustes map (`torch.linalg.svd` in float64) for class and per-shot targets at two betas,
//! and the refinement logits, loss and gradient with respect to `W` (torch autograd), all within
//! 1e-4. Where `X^T Y + beta I` is singular (fewer classes than dimensions at `beta = 0`) only
//! the part of `W` on its row space is determined, and that part, the logits and the loss at the
//! closed form are what must match. The measured max-abs-diffs are printed
//! (`cargo test -p vl-prompting --test it lfa -- --nocapture`).

use burn::prelude::*;
use vl_prompting::{lfa_logits, lfa_refine_loss, procrustes};

const TOLERANCE: f32 = 1e-4;

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lfa/fixture.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn tensor(v: &serde_json::Value, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(floats(v), shape), device)
}

fn usize_of(v: &serde_json::Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn labels(f: &serde_json::Value, device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let n = labels.len();
    Tensor::from_data(TensorData::new(labels, [n]), device)
}

fn scale(f: &serde_json::Value, device: &Device) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(vec![f["scale"].as_f64().unwrap() as f32], [1]),
        device,
    )
}

fn max_diff(a: Tensor<2>, b: &[f32]) -> f32 {
    let a: Vec<f32> = a.into_data().convert::<f32>().try_to_vec().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lfa_closed_form_matches_pytorch_svd() {
    let f = fixture();
    let device = Device::flex();
    let (n, d, c) = (
        usize_of(&f["n"]),
        usize_of(&f["dim"]),
        usize_of(&f["classes"]),
    );
    let image = tensor(&f["image"], [n, d], &device);
    let class_targets = tensor(&f["class_text"], [c, d], &device).select(0, labels(&f, &device));
    let shot_targets = tensor(&f["shot_text"], [n, d], &device);
    let cases = f["closed_form"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let mut full_rank_cases = 0;
    for case in cases {
        let beta = case["beta"].as_f64().unwrap();
        let name = case["targets"].as_str().unwrap();
        let targets = match name {
            "class" => class_targets.clone(),
            "shot" => shot_targets.clone(),
            other => panic!("unknown targets {other}"),
        };
        let rank = usize_of(&case["rank"]);
        let w = procrustes(image.clone(), targets, beta).unwrap();
        let eye = Tensor::<2>::eye(d, &device);
        let orthogonality = max_diff(w.clone().transpose().matmul(w.clone()) - eye, &[0.0; 64]);
        // The determined part: W V_r V_r^T = U_r V_r^T (all of W when the rank is full).
        let projector = tensor(&case["row_space_projector"], [d, d], &device);
        let determined = max_diff(w.clone().matmul(projector), &floats(&case["P"]));
        println!(
            "lfa closed form, {name} targets, beta {beta}, rank {rank}/{d}: \
             max |W V_r V_r^T - U_r V_r^T| = {determined:.3e}, max |W^T W - I| = {orthogonality:.3e}"
        );
        assert!(orthogonality <= TOLERANCE, "W^T W - I: {orthogonality}");
        assert!(determined <= TOLERANCE, "{name} beta {beta}: {determined}");
        // Printed in every case; only a full rank makes it an expectation.
        let diff = max_diff(w, &floats(&case["W"]));
        println!("lfa closed form, {name} targets, beta {beta}: max |W - W_torch| = {diff:.3e}");
        if rank == d {
            full_rank_cases += 1;
            assert!(
                diff <= TOLERANCE,
                "{name} beta {beta}: W max abs diff {diff}"
            );
        }
    }
    // Both betas are checked on the whole of W (shot targets), and beta = 0.5 also with class
    // targets; class targets at beta = 0 are rank-deficient (4 classes < 8 dimensions).
    assert_eq!(full_rank_cases, 3);
}

#[test]
fn lfa_refine_loss_and_gradient_match_pytorch() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let (n, d, c) = (
        usize_of(&f["n"]),
        usize_of(&f["dim"]),
        usize_of(&f["classes"]),
    );
    let image = tensor(&f["image"], [n, d], &device);
    let class_text = tensor(&f["class_text"], [c, d], &device);
    let w0 = tensor(&f["refine_W0"], [d, d], &device).require_grad();

    let logits = lfa_logits(
        w0.clone(),
        image.clone(),
        class_text.clone(),
        scale(&f, &device),
    );
    let logits_diff = max_diff(logits, &floats(&f["refine_logits"]));
    let loss = lfa_refine_loss(
        w0.clone(),
        image,
        class_text,
        labels(&f, &device),
        scale(&f, &device),
    );
    let value = loss.clone().into_scalar::<f32>();
    let loss_diff = (f64::from(value) - f["refine_loss"].as_f64().unwrap()).abs() as f32;
    let grads = loss.backward();
    let grad = w0.grad(&grads).unwrap();
    let grad_diff = max_diff(grad, &floats(&f["refine_grad_W"]));
    println!(
        "lfa refinement at W0 (torch's): max |logits - torch| = {logits_diff:.3e}, \
         |loss - torch| = {loss_diff:.3e} (loss {value}), max |dL/dW - torch| = {grad_diff:.3e}"
    );
    assert!(
        logits_diff <= TOLERANCE,
        "logits max abs diff {logits_diff}"
    );
    assert!(loss_diff <= TOLERANCE, "loss abs diff {loss_diff}");
    assert!(grad_diff <= TOLERANCE, "grad W max abs diff {grad_diff}");
}

/// With 4 classes in 8 dimensions the beta = 0 closed form is not unique (our Jacobi SVD and
/// torch's LAPACK complete the null space differently), but `W T^T` is determined (the class
/// text features span the row space of `X^T Y`) and `W` is orthogonal, so the logits and the
/// loss at our closed form equal PyTorch's.
#[test]
fn lfa_refine_loss_at_our_closed_form_matches_pytorch_despite_rank_deficiency() {
    let f = fixture();
    let device = Device::flex();
    let (n, d, c) = (
        usize_of(&f["n"]),
        usize_of(&f["dim"]),
        usize_of(&f["classes"]),
    );
    let image = tensor(&f["image"], [n, d], &device);
    let class_text = tensor(&f["class_text"], [c, d], &device);
    let targets = class_text.clone().select(0, labels(&f, &device));
    let w = procrustes(image.clone(), targets, 0.0).unwrap();
    let logits = lfa_logits(
        w.clone(),
        image.clone(),
        class_text.clone(),
        scale(&f, &device),
    );
    let logits_diff = max_diff(logits, &floats(&f["refine_logits"]));
    let loss = lfa_refine_loss(
        w,
        image,
        class_text,
        labels(&f, &device),
        scale(&f, &device),
    )
    .into_scalar::<f32>();
    let loss_diff = (f64::from(loss) - f["refine_loss"].as_f64().unwrap()).abs() as f32;
    println!(
        "lfa refinement at our closed form: max |logits - torch| = {logits_diff:.3e}, \
         |loss - torch| = {loss_diff:.3e}"
    );
    assert!(
        logits_diff <= TOLERANCE,
        "logits max abs diff {logits_diff}"
    );
    assert!(loss_diff <= TOLERANCE, "loss abs diff {loss_diff}");
}
