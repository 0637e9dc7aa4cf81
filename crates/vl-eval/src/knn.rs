//! k-nearest-neighbour classification on image features, the evaluation of self-supervised
//! representations (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
//! Discrimination", §3.4; DINO's `eval_knn.py`): cosine similarity to every training feature,
//! the `k` most similar vote for their labels with weight `exp(sim / T)` (or 1 each when no
//! temperature is given), the heaviest label wins.
//!
//! Deterministic: among equally similar neighbours the lower training index comes first, and
//! among labels with equal votes the lower label wins.

use crate::{Error, Result};

/// How the neighbours vote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Neighbours. Default: `20` (DINO's k = 20).
    pub k: usize,
    /// Vote weight `exp(sim / T)`; `None` = one vote each. Default: `Some(0.07)` (DINO).
    pub temperature: Option<f64>,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 20,
            temperature: Some(0.07),
        }
    }
}

fn normalized(what: &str, x: &[f32], dim: usize) -> Result<Vec<f64>> {
    if dim == 0 || x.is_empty() || !x.len().is_multiple_of(dim) {
        return Err(Error::input(
            what,
            format!("a non-empty multiple of dim = {dim} values"),
            format!("{} values", x.len()),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::input(
            format!("{what}[{}][{}]", i / dim, i % dim),
            "a finite value",
            x[i].to_string(),
        ));
    }
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(dim) {
        let norm = row
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        out.extend(row.iter().map(|&v| f64::from(v) / norm));
    }
    Ok(out)
}

/// Predicts a label for each row of `test` from the labelled rows of `train` (row-major,
/// `dim` columns).
pub fn knn_classify(
    train: &[f32],
    train_labels: &[usize],
    test: &[f32],
    dim: usize,
    n_classes: usize,
    config: &KnnConfig,
) -> Result<Vec<usize>> {
    let train = normalized("kNN train features", train, dim)?;
    let test = normalized("kNN test features", test, dim)?;
    let n_train = train.len() / dim;
    if train_labels.len() != n_train {
        return Err(Error::input(
            "kNN train labels",
            format!("one per train row ({n_train})"),
            train_labels.len().to_string(),
        ));
    }
    if let Some(&l) = train_labels.iter().find(|&&l| l >= n_classes) {
        return Err(Error::input(
            "kNN train labels",
            format!("class indices below {n_classes}"),
            l.to_string(),
        ));
    }
    if config.k == 0 || config.temperature.is_some_and(|t| t.is_nan() || t <= 0.0) {
        return Err(Error::input(
            "kNN config",
            "k >= 1 and a positive temperature",
            format!("{config:?}"),
        ));
    }
    let k = config.k.min(n_train);
    let mut sims: Vec<(f64, usize)> = Vec::with_capacity(n_train);
    let mut votes = vec![0.0f64; n_classes];
    Ok(test
        .chunks(dim)
        .map(|q| {
            sims.clear();
            sims.extend(
                train
                    .chunks(dim)
                    .enumerate()
                    .map(|(i, t)| (q.iter().zip(t).map(|(a, b)| a * b).sum::<f64>(), i)),
            );
            // Highest similarity first, lower index first among equals.
            sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            votes.iter_mut().for_each(|v| *v = 0.0);
            for &(s, i) in &sims[..k] {
                votes[train_labels[i]] += config.temperature.map_or(1.0, |t| (s / t).exp());
            }
            let mut best = 0;
            for (c, &v) in votes.iter().enumerate() {
                if v > votes[best] {
                    best = c;
                }
            }
            best
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbour_takes_the_label_of_the_most_similar_direction() {
        // Two classes along the axes; magnitudes do not matter (cosine).
        let train = [1.0, 0.0, 10.0, 0.5, 0.0, 1.0, 0.3, 5.0];
        let labels = [0, 0, 1, 1];
        let test = [2.0, 0.1, 0.1, 3.0, 1.0, 1.0001];
        let cfg = KnnConfig {
            k: 1,
            temperature: None,
        };
        assert_eq!(
            knn_classify(&train, &labels, &test, 2, 2, &cfg).unwrap(),
            vec![0, 1, 1]
        );
    }

    #[test]
    fn majority_vote_and_ties_go_to_the_lower_label() {
        // k = 3 unweighted: two neighbours of class 1 beat one of class 0, even though the
        // nearest is class 0.
        let train = [1.0, 0.0, 0.9, 0.1, 0.8, 0.2, 0.0, 1.0];
        let labels = [0, 1, 1, 2];
        let cfg = KnnConfig {
            k: 3,
            temperature: None,
        };
        assert_eq!(
            knn_classify(&train, &labels, &[1.0, 0.0], 2, 3, &cfg).unwrap(),
            vec![1]
        );
        // k = 2: one vote each for 0 and 1 -> the lower label.
        let cfg = KnnConfig { k: 2, ..cfg };
        assert_eq!(
            knn_classify(&train, &labels, &[1.0, 0.0], 2, 3, &cfg).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn temperature_weighting_lets_a_much_closer_neighbour_win() {
        let train = [1.0, 0.0, 0.0, 1.0, 0.1, 1.0];
        let labels = [0, 1, 1];
        let q = [1.0, 0.05];
        let sharp = KnnConfig {
            k: 3,
            temperature: Some(0.05),
        };
        assert_eq!(
            knn_classify(&train, &labels, &q, 2, 2, &sharp).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_input() {
        let cfg = KnnConfig::default();
        let e = knn_classify(&[1.0, 2.0], &[0, 1], &[1.0, 0.0], 2, 2, &cfg).unwrap_err();
        assert!(e.to_string().contains("kNN train labels"), "{e}");
        let e = knn_classify(&[1.0, f32::NAN], &[0], &[1.0, 0.0], 2, 2, &cfg).unwrap_err();
        assert!(e.to_string().contains("kNN train features[0][1]"), "{e}");
        let e = knn_classify(&[1.0, 0.0], &[5], &[1.0, 0.0], 2, 2, &cfg).unwrap_err();
        assert!(e.to_string().contains("below 2"), "{e}");
    }
}
