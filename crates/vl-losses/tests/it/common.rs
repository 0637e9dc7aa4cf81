//! Shared helpers of the integration tests: reading the PyTorch reference fixture
//! (`tests/fixtures/losses.{safetensors,json}`), reading tensors back, comparing with a
//! tolerance, and the finite-difference gradient check.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The reference tensors and hyper-parameters written by `tests/fixtures/make_fixtures.py`.
pub struct Reference {
    bytes: Vec<u8>,
    meta: serde_json::Value,
}

impl Reference {
    pub fn open() -> Self {
        let read = |name: &str| {
            let path = fixture(name);
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let meta = serde_json::from_slice(&read("losses.json")).expect("losses.json parses");
        Self {
            bytes: read("losses.safetensors"),
            meta,
        }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("losses.safetensors parses")
    }

    /// `<case>.<name>` as f32 values and its shape.
    pub fn f32(&self, case: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.view();
        let key = format!("{case}.{name}");
        let t = st
            .tensor(&key)
            .unwrap_or_else(|_| panic!("fixture lacks {key}"));
        assert_eq!(t.dtype(), Dtype::F32, "{key}");
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), data)
    }

    /// Just the values of `<case>.<name>`.
    pub fn values(&self, case: &str, name: &str) -> Vec<f32> {
        self.f32(case, name).1
    }

    pub fn tensor<const D: usize>(&self, case: &str, name: &str, device: &Device) -> Tensor<D> {
        let (shape, data) = self.f32(case, name);
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    /// An int64 tensor of class indices.
    pub fn targets(&self, case: &str, name: &str, device: &Device) -> Tensor<1, Int> {
        let st = self.view();
        let key = format!("{case}.{name}");
        let t = st
            .tensor(&key)
            .unwrap_or_else(|_| panic!("fixture lacks {key}"));
        assert_eq!(t.dtype(), Dtype::I64, "{key}");
        let data: Vec<i64> = t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_data(TensorData::new(data, t.shape().to_vec()), device)
    }

    /// A hyper-parameter of a case, from `losses.json`.
    pub fn param(&self, case: &str, name: &str) -> &serde_json::Value {
        let value = &self.meta["cases"][case]["params"][name];
        assert!(
            !value.is_null(),
            "losses.json lacks cases.{case}.params.{name}"
        );
        value
    }

    pub fn param_f64(&self, case: &str, name: &str) -> f64 {
        self.param(case, name).as_f64().expect("a number")
    }
}

/// The values of a tensor as f32.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// The gradient of `x` in `grads`, as values.
pub fn grad_values<const D: usize>(x: &Tensor<D>, grads: &burn::tensor::Gradients) -> Vec<f32> {
    values(x.grad(grads).expect("a gradient"))
}

pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Asserts `|got − want| <= tol · max(1, |want|)` elementwise (absolute below 1, relative
/// above, where f32's own spacing exceeds an absolute 1e-5: it is 7.6e-6 at 64), prints the
/// measured max absolute difference (run with `--nocapture` to see it) and returns it.
pub fn assert_close(label: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{label}: non-finite values {got:?}"
    );
    let diff = max_abs_diff(got, want);
    let scaled = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max);
    println!(
        "{label:<32} max |diff| = {diff:.3e}  max |diff|/max(1,|ref|) = {scaled:.3e}  (max |ref| = {:.3e})",
        max_abs(want)
    );
    assert!(
        scaled <= tol,
        "{label}: max |diff| / max(1, |ref|) = {scaled:e} > {tol:e}\n got: {got:?}\nwant: {want:?}"
    );
    diff
}

/// [`assert_close`] for a tensor against a reference `(shape, values)`, checking the shape too.
pub fn assert_tensor_close<const D: usize>(
    label: &str,
    got: Tensor<D>,
    want: (Vec<usize>, Vec<f32>),
    tol: f32,
) -> f32 {
    assert_eq!(got.dims().to_vec(), want.0, "{label}: shape");
    assert_close(label, &values(got), &want.1, tol)
}

/// Central differences `(f(x + h eᵢ) − f(x − h eᵢ)) / 2h` for every coordinate `i`, in f32.
pub fn central_differences(f: impl Fn(&[f32]) -> f32, x: &[f32], h: f32) -> Vec<f32> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let original = x[i];
            x[i] = original + h;
            let plus = f(&x);
            x[i] = original - h;
            let minus = f(&x);
            x[i] = original;
            // The step actually taken (x ± h is rounded in f32).
            let step = (original + h) - (original - h);
            (plus - minus) / step
        })
        .collect()
}

/// `max |g − g_fd| / max |g_fd|`: the error relative to the gradient's scale.
pub fn relative_error(gradient: &[f32], finite_differences: &[f32]) -> f32 {
    max_abs_diff(gradient, finite_differences) / max_abs(finite_differences)
}

/// Checks an autodiff gradient against finite differences with relative tolerance `tol`, and
/// checks that the comparison has teeth: three deliberately wrong versions of the gradient
/// (scaled by 0.9; its largest entry zeroed; its sign flipped in the first half of the
/// entries) must all fail it. Returns the relative error.
pub fn check_gradient(label: &str, gradient: &[f32], finite_differences: &[f32], tol: f32) -> f32 {
    assert!(
        max_abs(finite_differences) > 0.0,
        "{label}: the finite differences are all zero, nothing to check"
    );
    let error = relative_error(gradient, finite_differences);
    println!("{label:<40} relative error vs finite differences = {error:.3e} (tol {tol:e})");
    assert!(
        error <= tol,
        "{label}: relative error {error:e} > {tol:e}\n  autodiff: {gradient:?}\nfinite diff: {finite_differences:?}"
    );

    let scaled: Vec<f32> = gradient.iter().map(|g| g * 0.9).collect();
    let mut largest_zeroed = gradient.to_vec();
    let largest = (0..gradient.len())
        .max_by(|&a, &b| gradient[a].abs().total_cmp(&gradient[b].abs()))
        .unwrap();
    largest_zeroed[largest] = 0.0;
    let half = gradient.len().div_ceil(2);
    let half_flipped: Vec<f32> = gradient
        .iter()
        .enumerate()
        .map(|(i, g)| if i < half { -g } else { *g })
        .collect();
    for (what, wrong) in [
        ("scaled by 0.9", scaled),
        ("largest entry zeroed", largest_zeroed),
        ("first half sign-flipped", half_flipped),
    ] {
        let wrong_error = relative_error(&wrong, finite_differences);
        assert!(
            wrong_error > tol,
            "{label}: a wrong gradient ({what}) passes the check: error {wrong_error:e} <= {tol:e}"
        );
    }
    error
}
