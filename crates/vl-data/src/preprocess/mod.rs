//! CLIP image preprocessing: configuration, file readers, geometry rules and the preprocessor.
//!
//! Declarations and re-exports only; see the submodules for the reference each part ports.

mod config;
mod files;
mod geometry;
mod processor;

pub use config::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig, Reference, ResizeMode};
pub use geometry::{CropAxis, CropRule, keep_ratio_size, shortest_edge_size};
pub use processor::{ImagePreprocessor, PixelBatch};
