//! Training runs for vlkit on burn-train. Today: CLIP pretraining from scratch on the built-in
//! synthetic world ([`pretrain()`]), whose product is an ordinary Hugging Face CLIP checkpoint
//! that every other part of vlkit loads with no special case.
//!
//! The pieces are reusable by later training loops: [`checkpoint::AtomicCheckpointer`] (atomic
//! burn-train checkpoints), [`data::EpochLoader`] (a data loader whose epoch `e` is a pure
//! function of the seed and `e`, so resumed runs are bit-identical), [`renderer::ProgressRenderer`]
//! (progress and per-epoch history), and [`zeroshot`] (prompt-ensembled zero-shot evaluation).
//!
//! Reference for the recipe: Radford et al. 2021, "Learning Transferable Visual Models From
//! Natural Language Supervision" (<https://arxiv.org/abs/2103.00020>), and open_clip's training
//! loop (`src/open_clip_train/train.py`); SigLIP: Zhai et al. 2023
//! (<https://arxiv.org/abs/2303.15343>).

pub mod atomic;
pub mod checkpoint;
pub mod config;
pub mod coop_data;
pub mod data;
mod device_rng;
mod error;
pub mod experiment;
pub mod lafter;
pub mod model;
pub mod pretrain;
pub mod prompt;
mod prompt_train;
pub mod renderer;
pub mod report;
pub mod retrieval;
pub mod selfsup;
pub mod tokenizer;
pub mod zeroshot;

pub use config::{LossKind, PretrainConfig};
pub use error::{Error, Result};
pub use pretrain::{
    PretrainOptions, PretrainReport, ZeroShotScores, is_finished, pretrain, read_report,
};
