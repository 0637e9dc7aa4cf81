//! Few-shot sampling ([`few_shot`]) and the CoOp / CoCoOp base-to-novel class split
//! ([`BaseNovel`]).
//!
//! **Few-shot.** For each label, `k` items are drawn without replacement by a seeded partial
//! Fisher–Yates shuffle driven by SplitMix64, with one stream per label (seed and label mixed), so
//! a class's picks do not depend on the other classes. A class with fewer than `k` items keeps all
//! of them and is listed in [`FewShot::shortfalls`]; nothing is padded or repeated. The draws are
//! deterministic per seed but do **not** reproduce Dassl's Python `random.sample` picks
//! (`DatasetBase.generate_fewshot_dataset`); to match a published run exactly, read its
//! `split_fewshot/shot_{K}-seed_{S}` list instead.
//!
//! **Base / novel.** As in CoOp's `subsample_classes`
//! (<https://github.com/KaiyangZhou/CoOp/blob/main/datasets/oxford_pets.py>): the labels are sorted,
//! the first `ceil(n / 2)` are base and the rest novel, and each half is relabelled from 0 in
//! sorted order. CoOp applies it after few-shot sampling, to train, val and test alike.

use std::collections::BTreeMap;

use crate::dataset::LabeledImage;
use crate::error::{Error, Result};

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, well-mixed 64-bit generator.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`), by rejection so there is no modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }
}

/// A class that had fewer items than asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The class label.
    pub label: usize,
    /// The class name (of its first item).
    pub class_name: String,
    /// How many items the class has (all kept).
    pub available: usize,
    /// How many were asked for.
    pub wanted: usize,
}

/// The result of [`few_shot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FewShot {
    /// The picked items, by label, and within a label in their input order.
    pub items: Vec<LabeledImage>,
    /// The classes with fewer than `k` items, by label.
    pub shortfalls: Vec<Shortfall>,
}

/// Picks `k` items per label, deterministically from `seed`; see the module docs.
///
/// `k = 0` is an [`Error::InvalidSetting`].
pub fn few_shot(items: &[LabeledImage], k: usize, seed: u64) -> Result<FewShot> {
    if k == 0 {
        return Err(Error::InvalidSetting {
            setting: "shots",
            expected: "at least 1".into(),
            found: "0".into(),
        });
    }
    let mut by_label: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        by_label.entry(item.label).or_default().push(index);
    }
    let mut picked = Vec::new();
    let mut shortfalls = Vec::new();
    for (label, mut indices) in by_label {
        if indices.len() < k {
            shortfalls.push(Shortfall {
                label,
                class_name: items[indices[0]].class_name.clone(),
                available: indices.len(),
                wanted: k,
            });
        } else {
            // One stream per (seed, label): mix the label into the seed through one SplitMix step.
            let mut rng = SplitMix64(
                SplitMix64(seed ^ (label as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64(),
            );
            let n = indices.len();
            for i in 0..k {
                let j = i + rng.below((n - i) as u64) as usize;
                indices.swap(i, j);
            }
            indices.truncate(k);
            indices.sort_unstable();
        }
        picked.extend(indices.into_iter().map(|index| items[index].clone()));
    }
    Ok(FewShot {
        items: picked,
        shortfalls,
    })
}

/// The base/novel split of `0..n_classes`: the first `ceil(n / 2)` labels are base, the rest novel.
pub fn base_novel_split(n_classes: usize) -> (Vec<usize>, Vec<usize>) {
    let split = BaseNovel::new(0..n_classes);
    (split.base, split.novel)
}

/// Which half of a [`BaseNovel`] split a label falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    /// The first `ceil(n / 2)` labels.
    Base,
    /// The rest.
    Novel,
}

/// A base/novel class split with its relabelling; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseNovel {
    /// The original labels of the base classes, sorted; base label `i` is `base[i]`.
    pub base: Vec<usize>,
    /// The original labels of the novel classes, sorted; novel label `i` is `novel[i]`.
    pub novel: Vec<usize>,
}

impl BaseNovel {
    /// Splits the distinct `labels` (any order, duplicates allowed), as CoOp does with the labels
    /// present in the training split.
    pub fn new(labels: impl IntoIterator<Item = usize>) -> Self {
        let mut labels: Vec<usize> = labels.into_iter().collect();
        labels.sort_unstable();
        labels.dedup();
        let n_base = labels.len().div_ceil(2);
        let novel = labels.split_off(n_base);
        Self {
            base: labels,
            novel,
        }
    }

    /// Splits the labels present in `items`.
    pub fn from_items(items: &[LabeledImage]) -> Self {
        Self::new(items.iter().map(|item| item.label))
    }

    /// The half and the new label of an original label, or `None` if the split does not know it.
    pub fn relabel(&self, label: usize) -> Option<(Half, usize)> {
        if let Ok(i) = self.base.binary_search(&label) {
            Some((Half::Base, i))
        } else {
            self.novel
                .binary_search(&label)
                .ok()
                .map(|i| (Half::Novel, i))
        }
    }

    /// Splits `items` into (base items, novel items), each relabelled from 0 and kept in input
    /// order; a label outside the split is an [`Error::UnknownLabel`].
    pub fn apply(&self, items: &[LabeledImage]) -> Result<(Vec<LabeledImage>, Vec<LabeledImage>)> {
        let mut base = Vec::new();
        let mut novel = Vec::new();
        for item in items {
            let (half, label) = self.relabel(item.label).ok_or(Error::UnknownLabel {
                label: item.label,
                n_known: self.base.len() + self.novel.len(),
            })?;
            let relabelled = LabeledImage {
                label,
                ..item.clone()
            };
            match half {
                Half::Base => base.push(relabelled),
                Half::Novel => novel.push(relabelled),
            }
        }
        Ok((base, novel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_sequence() {
        // First outputs for seed 1234567 from the reference C implementation (prng.di.unimi.it).
        let mut rng = SplitMix64(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64(7);
        assert!((0..1000).all(|_| rng.below(3) < 3));
    }
}
