//! Classification metrics as pure functions: accuracy, top-k, per-class accuracy, harmonic mean,
//! mean ± standard deviation over seeds, and the base-to-novel dataset average of the CoOp line
//! of papers (Zhou et al., CoCoOp, CVPR 2022, Table 1: the harmonic mean of the *averaged* base
//! and novel accuracies, not the average of per-dataset harmonic means).
//!
//! Accuracies are percentages. Ties in scores go to the lower class index everywhere (as
//! `argmax` does), so every function is deterministic.

use crate::{Error, Result};

fn check_labels(what: &str, labels: &[usize], n_classes: usize) -> Result<()> {
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= n_classes) {
        return Err(Error::input(
            format!("{what}[{i}]"),
            format!("a class index below {n_classes}"),
            l.to_string(),
        ));
    }
    Ok(())
}

fn check_scores(scores: &[f32], n_classes: usize, n: usize) -> Result<()> {
    if n_classes == 0 || scores.len() != n * n_classes {
        return Err(Error::input(
            "scores",
            format!("{n} rows x {n_classes} classes = {} values", n * n_classes),
            format!("{} values", scores.len()),
        ));
    }
    Ok(())
}

/// Accuracy (%) of predictions against labels.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    if predictions.len() != labels.len() || labels.is_empty() {
        return Err(Error::input(
            "predictions",
            format!("one per label ({}), at least one", labels.len()),
            format!("{}", predictions.len()),
        ));
    }
    let hits = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(100.0 * hits as f64 / labels.len() as f64)
}

/// The index of the largest score of each row of a row-major `[n, n_classes]` matrix (the lowest
/// index among equal maxima; NaN never wins).
pub fn argmax_rows(scores: &[f32], n_classes: usize) -> Result<Vec<usize>> {
    if n_classes == 0 || !scores.len().is_multiple_of(n_classes) {
        return Err(Error::input(
            "scores",
            format!("a multiple of {n_classes} values"),
            scores.len().to_string(),
        ));
    }
    Ok(scores
        .chunks(n_classes)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() && !v.is_nan() {
                    best = j;
                }
            }
            best
        })
        .collect())
}

/// Rank (0 = first) of class `target` in `row`: the classes scoring higher, plus those scoring
/// the same with a lower index.
fn rank_in(row: &[f32], target: usize) -> usize {
    let s = row[target];
    row.iter()
        .enumerate()
        .filter(|&(j, &v)| v > s || (v == s && j < target) || s.is_nan() && j != target)
        .count()
}

/// Top-k accuracy (%): a row counts if its label is among the `k` highest scores.
pub fn top_k_accuracy(scores: &[f32], n_classes: usize, labels: &[usize], k: usize) -> Result<f64> {
    check_scores(scores, n_classes, labels.len())?;
    check_labels("labels", labels, n_classes)?;
    if labels.is_empty() || k == 0 {
        return Err(Error::input(
            "top-k accuracy",
            "at least one row and k >= 1",
            format!("{} rows, k = {k}", labels.len()),
        ));
    }
    let hits = scores
        .chunks(n_classes)
        .zip(labels)
        .filter(|(row, l)| rank_in(row, **l) < k)
        .count();
    Ok(100.0 * hits as f64 / labels.len() as f64)
}

/// Accuracy (%) of each class over its own samples; `None` for a class with no samples.
pub fn per_class_accuracy(
    predictions: &[usize],
    labels: &[usize],
    n_classes: usize,
) -> Result<Vec<Option<f64>>> {
    accuracy(predictions, labels)?;
    check_labels("labels", labels, n_classes)?;
    let mut hits = vec![0usize; n_classes];
    let mut totals = vec![0usize; n_classes];
    for (&p, &l) in predictions.iter().zip(labels) {
        totals[l] += 1;
        hits[l] += usize::from(p == l);
    }
    Ok(hits
        .iter()
        .zip(&totals)
        .map(|(&h, &t)| (t > 0).then(|| 100.0 * h as f64 / t as f64))
        .collect())
}

/// The mean of the per-class accuracies over the classes that have samples (the "mean per-class
/// accuracy" some data sets report).
pub fn mean_per_class_accuracy(
    predictions: &[usize],
    labels: &[usize],
    n_classes: usize,
) -> Result<f64> {
    let per = per_class_accuracy(predictions, labels, n_classes)?;
    let present: Vec<f64> = per.into_iter().flatten().collect();
    Ok(present.iter().sum::<f64>() / present.len() as f64)
}

/// Harmonic mean of two accuracies, `2ab / (a + b)`; 0 when both are 0.
pub fn harmonic_mean(a: f64, b: f64) -> f64 {
    if a + b > 0.0 {
        2.0 * a * b / (a + b)
    } else {
        0.0
    }
}

/// Mean and sample standard deviation (`n - 1`; 0 for a single value; NaN for none).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The base-to-novel average over data sets as the CoOp line of papers computes it: average the
/// base accuracies, average the novel accuracies, then take the harmonic mean of the two
/// averages. Returns `(base, novel, hm)`.
pub fn base_novel_average(rows: &[(f64, f64)]) -> Result<(f64, f64, f64)> {
    if rows.is_empty() {
        return Err(Error::input(
            "base-to-novel average",
            "at least one data set",
            "none",
        ));
    }
    let n = rows.len() as f64;
    let base = rows.iter().map(|r| r.0).sum::<f64>() / n;
    let novel = rows.iter().map(|r| r.1).sum::<f64>() / n;
    Ok((base, novel, harmonic_mean(base, novel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_hits_over_all_rows() {
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]).unwrap(), 75.0);
        assert!(accuracy(&[0], &[0, 1]).is_err());
        assert!(accuracy(&[], &[]).is_err());
    }

    #[test]
    fn argmax_breaks_ties_to_the_lower_index_and_skips_nan() {
        let s = [1.0, 3.0, 3.0, /* */ f32::NAN, 0.5, 0.2];
        assert_eq!(argmax_rows(&s, 3).unwrap(), vec![1, 1]);
        assert!(argmax_rows(&s, 4).is_err());
    }

    #[test]
    fn top_k_counts_the_label_among_the_k_best() {
        // Row 0: label 2 ranks 2nd; row 1: label 0 ranks 3rd; row 2: label 1 ties with class 0
        // and loses the tie (lower index first), so it ranks 2nd.
        let s = [0.1, 0.9, 0.5, 0.1, 0.9, 0.5, 0.7, 0.7, 0.1];
        let labels = [2, 0, 1];
        assert_eq!(top_k_accuracy(&s, 3, &labels, 1).unwrap(), 0.0);
        assert!((top_k_accuracy(&s, 3, &labels, 2).unwrap() - 200.0 / 3.0).abs() < 1e-12);
        assert_eq!(top_k_accuracy(&s, 3, &labels, 3).unwrap(), 100.0);
        assert!(top_k_accuracy(&s, 3, &[3, 0, 0], 1).is_err());
        assert!(top_k_accuracy(&s[..8], 3, &labels, 1).is_err());
    }

    #[test]
    fn per_class_accuracy_is_none_for_absent_classes() {
        let per = per_class_accuracy(&[0, 0, 1, 1], &[0, 1, 1, 1], 3).unwrap();
        assert_eq!(per, vec![Some(100.0), Some(100.0 * 2.0 / 3.0), None]);
        let mean = mean_per_class_accuracy(&[0, 0, 1, 1], &[0, 1, 1, 1], 3).unwrap();
        assert!((mean - (100.0 + 200.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn harmonic_mean_matches_hand_computed_values() {
        assert_eq!(harmonic_mean(80.0, 80.0), 80.0);
        assert!((harmonic_mean(90.0, 60.0) - 72.0).abs() < 1e-12);
        assert_eq!(harmonic_mean(0.0, 0.0), 0.0);
        assert_eq!(harmonic_mean(50.0, 0.0), 0.0);
    }

    #[test]
    fn mean_std_uses_the_sample_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn base_novel_average_is_the_hm_of_the_averages() {
        // Averages 80 / 60 -> HM 68.571...; the mean of the per-row HMs would be 64.5.
        let (b, n, hm) = base_novel_average(&[(90.0, 30.0), (70.0, 90.0)]).unwrap();
        assert_eq!((b, n), (80.0, 60.0));
        assert!((hm - 2.0 * 80.0 * 60.0 / 140.0).abs() < 1e-12);
        assert!(base_novel_average(&[]).is_err());
    }
}
