//! LFA, linear feature alignment (Ouali et al. 2023, "Black Box Few-Shot Adaptation for
//! Vision-Language models", <https://arxiv.org/abs/2304.01752>, reference saic-fi/LFA): map
//! frozen image features into the text space with one `d x d` matrix `W`, found in closed form
//! and then optionally refined; no gradient ever passes through the encoders (only their
//! features are used, so it works on black-box models).
//!
//! Closed form, regularised orthogonal Procrustes:
//!
//! ```text
//! W = argmax_{W^T W = I} tr(W^T (X^T Y + beta I))  =  U V^T,   U S V^T = svd(X^T Y + beta I)
//! ```
//!
//! with `X` the unit-norm image features of the shots and `Y` the unit-norm hand-crafted text
//! features of their classes. `beta = 0` is plain Procrustes (`min ||X W - Y||_F` over rotations);
//! `beta > 0` is the same problem with `+ beta ||W - I||_F^2`, pulling `W` toward the identity
//! (the paper's beta-Procrustes regularises toward the zero-shot solution; this is our exact
//! form of it, written down in `docs/prompting.md`). Refinement: a few epochs of cross-entropy on
//! `scale * normalize(X W) Y_classes^T` with Adam, starting from the closed form (the paper
//! refines with a re-ranking loss; cross-entropy is our simpler choice).
//!
//! The SVD is a one-sided Jacobi (Hestenes) iteration in f64 on the host: exact to round-off
//! for the `d <= 1024` matrices met here. The closed form, the refinement logits
//! ([`lfa_logits`]) and loss ([`lfa_refine_loss`]) and its gradient are checked against PyTorch
//! in `tests/it/lfa.rs`.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use vl_encoders::clip::l2_normalize;

use crate::{Error, Result};

/// LFA's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LfaConfig {
    /// Pull toward the identity in the closed form. Default: `0.0` (plain Procrustes).
    pub beta: f64,
    /// Refinement epochs after the closed form (`0`: closed form only). Default: `0`.
    pub refine_epochs: usize,
    /// Refinement learning rate (Adam). Default: `1e-3`.
    pub refine_lr: f64,
}

impl Default for LfaConfig {
    fn default() -> Self {
        Self {
            beta: 0.0,
            refine_epochs: 0,
            refine_lr: 1e-3,
        }
    }
}

/// Polar factor `U V^T` of a square `d x d` row-major matrix `m` (`U S V^T = svd(m)`), by
/// one-sided Jacobi rotations on its columns: the orthogonal matrix nearest to `m`. For a
/// singular `m` the factor is not unique and one minimiser is returned; a zero or non-finite
/// `m` is an error.
pub fn polar_factor(m: &[f64], d: usize) -> Result<Vec<f64>> {
    if m.len() != d * d || d == 0 {
        return Err(Error::invalid(
            "procrustes matrix",
            "a non-empty square matrix",
            format!("{} values for d = {d}", m.len()),
        ));
    }
    // Work on columns: a[j] is column j of m; v accumulates the rotations.
    let mut a: Vec<Vec<f64>> = (0..d)
        .map(|j| (0..d).map(|i| m[i * d + j]).collect())
        .collect();
    let mut v: Vec<Vec<f64>> = (0..d)
        .map(|j| (0..d).map(|i| f64::from(u8::from(i == j))).collect())
        .collect();
    for _sweep in 0..60 {
        let mut off = 0.0f64;
        for p in 0..d {
            for q in p + 1..d {
                let alpha: f64 = a[p].iter().map(|x| x * x).sum();
                let beta: f64 = a[q].iter().map(|x| x * x).sum();
                let gamma: f64 = a[p].iter().zip(&a[q]).map(|(x, y)| x * y).sum();
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                off = off.max(gamma.abs() / (alpha * beta).sqrt());
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for k in 0..d {
                    let (x, y) = (a[p][k], a[q][k]);
                    a[p][k] = c * x - s * y;
                    a[q][k] = s * x + c * y;
                    let (x, y) = (v[p][k], v[q][k]);
                    v[p][k] = c * x - s * y;
                    v[q][k] = s * x + c * y;
                }
            }
        }
        if off < 1e-13 {
            break;
        }
    }
    // Columns of a are U_j * s_j; v[j] is column j of V. Columns with a zero singular value
    // (a rank-deficient problem, e.g. fewer classes than dimensions) get any unit vector
    // orthogonal to the others: every such completion is a minimiser, and Gram-Schmidt over
    // the standard basis in order makes the choice deterministic.
    let norms: Vec<f64> = a
        .iter()
        .map(|c| c.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    let largest = norms.iter().cloned().fold(0.0, f64::max);
    if largest <= 1e-300 || !largest.is_finite() {
        return Err(Error::invalid(
            "procrustes matrix",
            "a non-zero, finite X^T Y + beta I",
            "a zero or non-finite matrix",
        ));
    }
    let tol = 1e-10 * largest;
    let mut u: Vec<Option<Vec<f64>>> = (0..d)
        .map(|j| (norms[j] > tol).then(|| a[j].iter().map(|x| x / norms[j]).collect()))
        .collect();
    let mut basis = 0;
    for j in 0..d {
        if u[j].is_some() {
            continue;
        }
        while basis < d {
            let mut e = vec![0.0; d];
            e[basis] = 1.0;
            basis += 1;
            for other in u.iter().flatten() {
                let dot: f64 = e.iter().zip(other).map(|(x, y)| x * y).sum();
                for (x, y) in e.iter_mut().zip(other) {
                    *x -= dot * y;
                }
            }
            let n = e.iter().map(|x| x * x).sum::<f64>().sqrt();
            if n > 1e-6 {
                u[j] = Some(e.into_iter().map(|x| x / n).collect());
                break;
            }
        }
    }
    let mut w = vec![0.0; d * d];
    for (j, uj) in u.iter().enumerate() {
        let uj = uj.as_ref().expect("completed above");
        for i in 0..d {
            for k in 0..d {
                w[i * d + k] += uj[i] * v[j][k];
            }
        }
    }
    Ok(w)
}

/// The closed-form LFA map: `W = polar(X^T Y + beta I)`, `[d, d]`, so that `X W ≈ Y`.
///
/// # Shapes
/// - image: `[n, d]` unit-norm image features
/// - text: `[n, d]` unit-norm text features of each image's class
/// - output: `[d, d]`
pub fn procrustes(image: Tensor<2>, text: Tensor<2>, beta: f64) -> Result<Tensor<2>> {
    let [n, d] = image.dims();
    if text.dims() != [n, d] {
        return Err(Error::invalid(
            "lfa text features",
            format!("[{n}, {d}] like the image features"),
            format!("{:?}", text.dims()),
        ));
    }
    let device = image.device();
    let cross = image.transpose().matmul(text);
    let values = cross
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map_err(|e| Error::invalid("lfa", "readable features", format!("{e:?}")))?;
    let mut m = values;
    for i in 0..d {
        m[i * d + i] += beta;
    }
    let w = polar_factor(&m, d)?;
    let w: Vec<f32> = w.into_iter().map(|x| x as f32).collect();
    Ok(Tensor::from_data(TensorData::new(w, [d, d]), &device))
}

/// LFA's logits: the image features mapped by `W`, re-normalised, against the class text
/// features, times the logit scale: `scale * normalize(X W) T^T`.
///
/// # Shapes
/// - w: `[d, d]`
/// - image: `[n, d]` image features (unit-norm in use; `W` is orthogonal after the closed form,
///   but refinement lets it drift, hence the re-normalisation)
/// - class_text: `[c, d]` unit-norm text features of the classes
/// - scale: `[1]`, the scale itself (CLIP's `exp(logit_scale)`), not its log
/// - output: `[n, c]`
pub fn lfa_logits(
    w: Tensor<2>,
    image: Tensor<2>,
    class_text: Tensor<2>,
    scale: Tensor<1>,
) -> Tensor<2> {
    let [_, d] = image.dims();
    assert_shape!(w, [d, d]);
    assert_shape!(class_text, [_, d]);
    assert_shape!(scale, [1]);
    l2_normalize(image.matmul(w)).matmul(class_text.transpose()) * scale.reshape([1, 1])
}

/// LFA's refinement objective: the mean cross-entropy of [`lfa_logits`] against the shots'
/// labels (our choice; the paper refines with a re-ranking loss, see the module docs).
///
/// # Shapes
/// - w: `[d, d]`
/// - image: `[n, d]`
/// - class_text: `[c, d]`
/// - labels: `[n]`, class indices in `0..c`
/// - scale: `[1]`
/// - output: `[1]`
pub fn lfa_refine_loss(
    w: Tensor<2>,
    image: Tensor<2>,
    class_text: Tensor<2>,
    labels: Tensor<1, Int>,
    scale: Tensor<1>,
) -> Tensor<1> {
    let [n, _] = image.dims();
    assert_shape!(labels, [n]);
    let device = image.device();
    let logits = lfa_logits(w, image, class_text, scale);
    CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn random_rotation(d: usize, device: &Device) -> Tensor<2> {
        let m = Tensor::<2>::random([d, d], Distribution::Normal(0.0, 1.0), device);
        let v = m.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        let q = polar_factor(&v, d).unwrap();
        Tensor::from_data(
            TensorData::new(q.into_iter().map(|x| x as f32).collect::<Vec<_>>(), [d, d]),
            device,
        )
    }

    fn max_abs(t: Tensor<2>) -> f32 {
        t.abs().max().into_scalar::<f32>()
    }

    #[test]
    fn polar_factor_is_orthogonal_and_recovers_the_rotation_of_q_times_spd() {
        let device = Device::flex();
        device.seed(3);
        let d = 12;
        let q = random_rotation(d, &device);
        let eye = Tensor::<2>::eye(d, &device);
        assert!(max_abs(q.clone().transpose().matmul(q.clone()) - eye.clone()) < 1e-5);
        // M = Q S with S symmetric positive definite: polar(M) = Q.
        let b = Tensor::<2>::random([d, d], Distribution::Normal(0.0, 1.0), &device);
        let s = b.clone().transpose().matmul(b) + eye.mul_scalar(0.5);
        let m = q.clone().matmul(s);
        let values = m.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        let w = polar_factor(&values, d).unwrap();
        let w = Tensor::<2>::from_data(
            TensorData::new(w.into_iter().map(|x| x as f32).collect::<Vec<_>>(), [d, d]),
            &device,
        );
        assert!(max_abs(w - q) < 1e-4);
    }

    #[test]
    fn procrustes_recovers_a_known_rotation_and_beta_pulls_toward_identity() {
        let device = Device::flex();
        device.seed(4);
        let (n, d) = (40, 8);
        let r = random_rotation(d, &device);
        let x = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
        let y = x.clone().matmul(r.clone());
        let w = procrustes(x.clone(), y.clone(), 0.0).unwrap();
        assert!(max_abs(w - r.clone()) < 1e-4, "exact alignment recovered");
        // A huge beta gives (nearly) the identity.
        let w = procrustes(x.clone(), y.clone(), 1e6).unwrap();
        assert!(max_abs(w - Tensor::<2>::eye(d, &device)) < 1e-3);
        // Fewer distinct targets than dimensions (rank 3 < 8): still an orthogonal minimiser.
        let few = y
            .clone()
            .narrow(0, 0, 3)
            .repeat_dim(0, n / 3 + 1)
            .narrow(0, 0, n);
        let w = procrustes(x.clone(), few, 0.0).unwrap();
        let eye = Tensor::<2>::eye(d, &device);
        assert!(max_abs(w.clone().transpose().matmul(w) - eye) < 1e-4);
        // A zero problem is an error, not a panic.
        let zero = Tensor::<2>::zeros([n, d], &device);
        assert!(procrustes(zero, y, 0.0).is_err());
    }
}
