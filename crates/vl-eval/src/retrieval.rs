//! Cross-modal retrieval metrics with several captions per image, as reported for Flickr30k and
//! MS-COCO (CLIP paper, Table 13; open_clip's `zero_shot_retrieval`): image-to-text recall@K
//! counts an image when *any* of its captions is among the K best texts; text-to-image recall@K
//! counts a caption when its image is among the K best images. Ranks are 1-based; mean and
//! median rank are reported for both directions (the image-to-text rank of an image is the
//! best rank of its captions).
//!
//! Ties are deterministic: among equal scores the lower index ranks first.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Recall@K (%) at each requested K plus rank statistics, for one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionMetrics {
    /// `(K, recall@K in %)` in the order requested.
    pub recall: Vec<(usize, f64)>,
    /// Mean of the 1-based ranks.
    pub mean_rank: f64,
    /// Median of the 1-based ranks (the mean of the two middle ones for an even count).
    pub median_rank: f64,
}

/// Both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Image to text: one query per image.
    pub image_to_text: DirectionMetrics,
    /// Text to image: one query per caption.
    pub text_to_image: DirectionMetrics,
}

/// 1-based rank of `target` in `scores`: 1 + the entries scoring higher + the entries scoring
/// the same with a lower index.
fn rank_of(scores: impl Iterator<Item = f32> + Clone, target: usize) -> usize {
    let s = scores.clone().nth(target).unwrap_or(f32::NAN);
    1 + scores
        .enumerate()
        .filter(|&(j, v)| j != target && (v > s || (v == s && j < target) || s.is_nan()))
        .count()
}

fn summarize(ranks: &[usize], ks: &[usize]) -> DirectionMetrics {
    let n = ranks.len() as f64;
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    let m = sorted.len();
    let median = if m % 2 == 1 {
        sorted[m / 2] as f64
    } else {
        (sorted[m / 2 - 1] + sorted[m / 2]) as f64 / 2.0
    };
    DirectionMetrics {
        recall: ks
            .iter()
            .map(|&k| {
                (
                    k,
                    100.0 * ranks.iter().filter(|&&r| r <= k).count() as f64 / n,
                )
            })
            .collect(),
        mean_rank: ranks.iter().sum::<usize>() as f64 / n,
        median_rank: median,
    }
}

/// Retrieval metrics from the similarity matrix `sim` (row-major `[n_images, n_texts]`) and the
/// image of every text (`text_image[j]` = the image caption `j` describes). Every image needs at
/// least one caption.
pub fn retrieval_metrics(
    sim: &[f32],
    n_images: usize,
    text_image: &[usize],
    ks: &[usize],
) -> Result<RetrievalMetrics> {
    let n_texts = text_image.len();
    if n_images == 0 || n_texts == 0 || sim.len() != n_images * n_texts {
        return Err(Error::input(
            "retrieval similarities",
            format!(
                "{n_images} images x {n_texts} texts = {} values, both non-zero",
                n_images * n_texts
            ),
            format!("{} values", sim.len()),
        ));
    }
    if let Some((j, &i)) = text_image.iter().enumerate().find(|(_, i)| **i >= n_images) {
        return Err(Error::input(
            format!("retrieval text_image[{j}]"),
            format!("an image index below {n_images}"),
            i.to_string(),
        ));
    }
    let mut captions: Vec<Vec<usize>> = vec![Vec::new(); n_images];
    for (j, &i) in text_image.iter().enumerate() {
        captions[i].push(j);
    }
    if let Some(i) = captions.iter().position(Vec::is_empty) {
        return Err(Error::input(
            format!("retrieval image {i}"),
            "at least one caption",
            "none",
        ));
    }
    let i2t: Vec<usize> = (0..n_images)
        .map(|i| {
            let row = &sim[i * n_texts..(i + 1) * n_texts];
            captions[i]
                .iter()
                .map(|&j| rank_of(row.iter().copied(), j))
                .min()
                .unwrap_or(usize::MAX)
        })
        .collect();
    let t2i: Vec<usize> = (0..n_texts)
        .map(|j| {
            let column = (0..n_images).map(|i| sim[i * n_texts + j]);
            rank_of(column, text_image[j])
        })
        .collect();
    Ok(RetrievalMetrics {
        image_to_text: summarize(&i2t, ks),
        text_to_image: summarize(&t2i, ks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_ranks_match_a_hand_computed_case() {
        // 3 images, 5 captions: image 0 -> texts 0, 1; image 1 -> texts 2, 3; image 2 -> text 4.
        let text_image = [0, 0, 1, 1, 2];
        #[rustfmt::skip]
        let sim = [
            // t0   t1   t2   t3   t4
            0.1, 0.8, 0.9, 0.0, 0.2, // image 0: best own caption t1 at rank 2
            0.5, 0.4, 0.3, 0.1, 0.2, // image 1: best own caption t2 at rank 3
            0.0, 0.1, 0.2, 0.3, 0.9, // image 2: t4 at rank 1
        ];
        let m = retrieval_metrics(&sim, 3, &text_image, &[1, 2, 5]).unwrap();
        assert_eq!(
            m.image_to_text.recall,
            vec![(1, 100.0 / 3.0), (2, 200.0 / 3.0), (5, 100.0)]
        );
        assert_eq!(m.image_to_text.mean_rank, 2.0);
        assert_eq!(m.image_to_text.median_rank, 2.0);
        // Text columns: t0 -> image 0 has 0.1 < 0.5 -> rank 2; t1 -> 0.8 best -> 1;
        // t2 -> image 1 has 0.3 < 0.9 -> 2; t3 -> 0.1 vs 0.0, 0.3 -> 2; t4 -> 0.9 -> 1.
        assert_eq!(
            m.text_to_image.recall,
            vec![(1, 40.0), (2, 100.0), (5, 100.0)]
        );
        assert!((m.text_to_image.mean_rank - 8.0 / 5.0).abs() < 1e-12);
        assert_eq!(m.text_to_image.median_rank, 2.0);
    }

    #[test]
    fn ties_rank_the_lower_index_first() {
        // Two images with identical scores for the one caption of image 1: image 0 wins the tie.
        // Every score ties; text 0 belongs to image 1, which loses the tie to image 0.
        let m = retrieval_metrics(&[0.5; 4], 2, &[1, 0], &[1]).unwrap();
        assert_eq!(m.text_to_image.recall, vec![(1, 50.0)]);
        assert_eq!(m.text_to_image.median_rank, 1.5);
    }

    #[test]
    fn images_without_captions_and_bad_shapes_are_errors() {
        let e = retrieval_metrics(&[0.0; 4], 2, &[0, 0], &[1]).unwrap_err();
        assert!(e.to_string().contains("image 1"), "{e}");
        let e = retrieval_metrics(&[0.0; 3], 2, &[0, 1], &[1]).unwrap_err();
        assert!(e.to_string().contains("4 values"), "{e}");
        let e = retrieval_metrics(&[0.0; 4], 2, &[0, 2], &[1]).unwrap_err();
        assert!(e.to_string().contains("text_image[1]"), "{e}");
    }
}
