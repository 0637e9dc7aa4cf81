//! Image and text encoders for vision-language research on Burn 0.22.
//!
//! Today this crate holds [CLIP](clip): a ViT image tower and a causal text tower, both with
//! module paths equal to Hugging Face `transformers` names, and weight import from Hugging Face
//! `CLIPModel` and open_clip/OpenAI checkpoints in safetensors (f32, f16 or bf16 files). Outputs
//! match transformers and open_clip to 1e-4 in f32 (see `tests/it/parity.rs`). A model is written
//! back as a standard Hugging Face checkpoint with [`clip::save_hf`] (`config.json` +
//! `model.safetensors`, f32, replaced atomically). SigLIP comes later.
//!
//! There is no backend type parameter: models live on a runtime [`burn::prelude::Device`], and
//! the backends compiled in are chosen by this crate's features (`flex` by default, `wgpu`,
//! `cuda`).
//!
//! ```no_run
//! use burn::prelude::*;
//! use vl_encoders::clip::{LoadOptions, load_clip};
//!
//! let device = Device::flex();
//! let (clip, info) = load_clip("path/to/clip-vit-base-patch32", &LoadOptions::default(), &device)?;
//! let pixels = Tensor::<4>::zeros([1, 3, 224, 224], &device);
//! let image_embeds = clip.encode_image(pixels); // [1, 512]
//! // ... fine-tune, then write a checkpoint transformers' `CLIPModel.from_pretrained` reads:
//! vl_encoders::clip::save_hf(&clip, &info.config, "path/to/finetuned")?;
//! # Ok::<(), vl_encoders::Error>(())
//! ```

#![warn(missing_docs)]

pub mod clip;
mod error;

pub use error::{Error, Result};
