//! The two objectives of LaFTer (Mirza et al., NeurIPS 2023, "LaFTer: Label-Free Tuning of
//! Zero-shot Classifier using Language and Unlabeled Image Collections",
//! <https://arxiv.org/abs/2305.18287>; reference code `jmiemirza/LaFTer`,
//! `trainers/LaFTer.py`):
//!
//! 1. **Text-only classifier.** A bias-free linear classifier `W` (`[classes, dim]`) is trained
//!    on the normalised CLIP text embeddings of class descriptions and template sentences, with
//!    Gaussian noise (σ = 0.1 in the paper) added to each embedding so that the classifier
//!    transfers across the modality gap to image embeddings: cross-entropy of `W (t + σ ε)`.
//! 2. **Unsupervised fine-tuning.** On an unlabeled image, a teacher's prediction (in the
//!    reference: the frozen CLIP and a frozen copy of the stage-1 classifier on the clean image)
//!    is the pseudo-label (no gradient) of a strongly augmented view: label-smoothed
//!    cross-entropy of the strong view's logits against the teacher's argmax.
//!
//! Both are pure functions of tensors (the training loop in `vl-train` decides what is trainable:
//! visual prompts, the vision tower's LayerNorm affine parameters and `W`). They are checked
//! against PyTorch in `tests/it/lafter.rs`.

use burn::module::{Module, Param};
use burn::prelude::*;
use vl_losses::LabelSmoothingCrossEntropyLossConfig;

/// LaFTer's bias-free linear classifier on normalised embeddings.
#[derive(Module, Debug)]
pub struct TextClassifier {
    /// `[classes, dim]`.
    pub weight: Param<Tensor<2>>,
}

impl TextClassifier {
    /// A classifier with the given weight.
    pub fn new(weight: Tensor<2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
        }
    }

    /// Logits.
    ///
    /// # Shapes
    /// - embeddings: `[n, dim]`
    /// - output: `[n, classes]`
    pub fn forward(&self, embeddings: Tensor<2>) -> Tensor<2> {
        let [_, dim] = embeddings.dims();
        let [_, w_dim] = self.weight.dims();
        assert_eq!(
            dim, w_dim,
            "embedding width {dim} != classifier width {w_dim}"
        );
        embeddings.matmul(self.weight.val().transpose())
    }
}

/// Stage 1: label-smoothed cross-entropy of the classifier on noisy text embeddings,
/// `CE_s(W (t + noise), y)` (the reference trains it with `label_smoothing=0.1`).
///
/// # Shapes
/// - text: `[n, dim]` (normalised embeddings)
/// - noise: `[n, dim]` (already scaled by σ)
/// - labels: `[n]`
/// - output: `[1]`
pub fn text_classifier_loss(
    classifier: &TextClassifier,
    text: Tensor<2>,
    noise: Tensor<2>,
    labels: Tensor<1, Int>,
    smoothing: f64,
) -> Tensor<1> {
    let logits = classifier.forward(text + noise);
    LabelSmoothingCrossEntropyLossConfig::new(smoothing)
        .init()
        .forward(logits, labels)
}

/// Stage 2: label-smoothed cross-entropy of the strong view's logits against the argmax of the
/// weak view's logits (a constant target: no gradient flows through the weak view).
///
/// # Shapes
/// - weak_logits, strong_logits: `[n, classes]`
/// - output: `[1]`
pub fn pseudo_label_loss(
    weak_logits: Tensor<2>,
    strong_logits: Tensor<2>,
    smoothing: f64,
) -> Tensor<1> {
    let [n, _] = weak_logits.dims();
    let pseudo = weak_logits.detach().argmax(1).reshape([n]);
    LabelSmoothingCrossEntropyLossConfig::new(smoothing)
        .init()
        .forward(strong_logits, pseudo)
}
