//! Pseudo-label selection of UPL (Huang, Chu & Wei 2022, "Unsupervised Prompt Learning for
//! Vision-Language Models", <https://arxiv.org/abs/2204.03649>, §3.2; reference code
//! `tonyhuang2022/UPL`, `trainers/upltrainer.py`): the frozen CLIP classifies every unlabeled
//! image zero-shot; for each class, the `k` images predicted as that class with the highest
//! confidence are kept with that class as their label ("top-K confident pseudo-labels per
//! class", which keeps the pseudo-labelled set class-balanced where the zero-shot predictions
//! are not). A class predicted for fewer than `k` images keeps all of them.
//!
//! Pure function on probabilities; deterministic (ties in confidence keep the lower index).

use serde::{Deserialize, Serialize};

/// One kept pseudo-label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PseudoLabel {
    /// Index of the image in the unlabeled pool.
    pub index: usize,
    /// The class it is labelled with (the zero-shot prediction).
    pub class: usize,
    /// The predicted class's probability.
    pub confidence: f32,
}

/// UPL's selection from row-major `[n, n_classes]` probabilities: per class, the `k` most
/// confident images predicted as that class, ordered by class then by decreasing confidence.
/// Rows with a non-finite maximum are never selected. `n_classes == 0` or ragged input gives an
/// empty selection.
pub fn select_top_k_per_class(probs: &[f32], n_classes: usize, k: usize) -> Vec<PseudoLabel> {
    if n_classes == 0 || !probs.len().is_multiple_of(n_classes) {
        return Vec::new();
    }
    let mut by_class: Vec<Vec<PseudoLabel>> = vec![Vec::new(); n_classes];
    for (index, row) in probs.chunks(n_classes).enumerate() {
        let mut best = 0;
        for (j, &p) in row.iter().enumerate() {
            if p > row[best] {
                best = j;
            }
        }
        if row[best].is_finite() {
            by_class[best].push(PseudoLabel {
                index,
                class: best,
                confidence: row[best],
            });
        }
    }
    by_class
        .into_iter()
        .flat_map(|mut list| {
            // Stable sort: equal confidences keep the lower index first.
            list.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            list.truncate(k);
            list
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_most_confident_predictions_of_each_class() {
        #[rustfmt::skip]
        let probs = [
            0.9, 0.1, 0.0, // 0 -> class 0 (0.9)
            0.6, 0.4, 0.0, // 1 -> class 0 (0.6)
            0.8, 0.2, 0.0, // 2 -> class 0 (0.8)
            0.3, 0.7, 0.0, // 3 -> class 1 (0.7)
            0.2, 0.2, 0.6, // 4 -> class 2 (0.6)
            0.1, 0.1, 0.8, // 5 -> class 2 (0.8)
        ];
        let picked = select_top_k_per_class(&probs, 3, 2);
        let got: Vec<(usize, usize)> = picked.iter().map(|p| (p.index, p.class)).collect();
        // Class 0 keeps its two most confident (0 and 2, not 1); class 1 has only one.
        assert_eq!(got, vec![(0, 0), (2, 0), (3, 1), (5, 2), (4, 2)]);
        assert_eq!(picked[0].confidence, 0.9);
    }

    #[test]
    fn ties_keep_the_lower_index_and_nan_rows_are_skipped() {
        let probs = [0.5, 0.5, 0.7, 0.3, 0.7, 0.3, f32::NAN, f32::NAN];
        let picked = select_top_k_per_class(&probs, 2, 1);
        // Row 0 ties between classes 0 and 1 -> class 0 (lower index), confidence 0.5; rows 1
        // and 2 tie at 0.7 -> row 1 wins; row 3 is NaN.
        assert_eq!(picked.len(), 1);
        assert_eq!((picked[0].index, picked[0].class), (1, 0));
        assert!(select_top_k_per_class(&probs[..3], 2, 1).is_empty());
        assert!(select_top_k_per_class(&probs, 0, 1).is_empty());
    }
}
