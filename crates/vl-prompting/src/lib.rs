//! Prompt learning for CLIP-style models on Burn 0.22: hand-crafted templates and ensembles
//! ([`templates`]), learnable text context in the CoOp / CoCoOp / variational forms and visual
//! prompt tokens ([`learner`]), the loss terms that make KgCoOp and LASP ([`objective`]), the
//! forward pass and loss of a prompted frozen CLIP ([`model`]), the prompt file format
//! ([`file`]), LFA's closed form and
//! refinement loss ([`lfa`]), UPL's pseudo-label selection ([`upl`]) and LaFTer's
//! objectives ([`lafter`]).
//!
//! Methods combine by config: a [`PromptConfig`] picks the learnable parts, an
//! [`ObjectiveConfig`] the extra loss terms and their weights. The CLIP encoders stay frozen:
//! gradients flow through them to the prompts, their weights never change.

#![warn(missing_docs)]

mod error;
pub mod file;
pub mod lafter;
pub mod learner;
pub mod lfa;
pub mod model;
pub mod objective;
pub mod templates;
pub mod upl;

pub use error::{Error, Result};
pub use file::{PromptFileInfo, load_prompts, model_fingerprint, save_prompts};
pub use lafter::{TextClassifier, pseudo_label_loss, text_classifier_loss};
pub use learner::{
    ClassPrompts, ClassTokenPosition, PromptConfig, PromptLearner, TextPromptConfig,
    VariationalConfig, VisualPromptConfig,
};
pub use lfa::{LfaConfig, lfa_logits, lfa_refine_loss, procrustes};
pub use model::{
    ClassText, PromptTask, TaskTemplates, loss, loss_from_features, predict, predict_from_features,
    sample_noise,
};
pub use objective::{LossTerms, ObjectiveConfig};
pub use templates::{Templates, class_text_features};
pub use upl::{PseudoLabel, select_top_k_per_class};
pub use vl_data::rng::HostRng;
