//! Parameter-efficient fine-tuning of CLIP on Burn 0.22, built on Burn's `Reparameterizer` /
//! `Reparameterization` API (Burn ships LoRA that way; DoRA, VeRA and DVoRA are further
//! reparameterizations here, not wrapper layers), plus BitFit and LayerNorm tuning, targets by
//! module-path patterns, PEFT's trainable-parameter report, merging, and Hugging Face PEFT
//! adapter directories (read and write).
//!
//! ```no_run
//! use vl_peft::{PeftConfig, PeftMethod, apply_peft};
//! # fn demo(clip: vl_encoders::clip::Clip) -> vl_peft::Result<()> {
//! let config = PeftConfig::new(PeftMethod::Lora { r: 8, alpha: 16.0, rslora: false });
//! let (clip, state) = apply_peft(clip, &config, 0)?;
//! println!("{}", state.trainable_line());
//! let merged = vl_peft::merge(&clip); // a plain CLIP again, no extra cost
//! # let _ = merged; Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod adapters;
mod error;
pub mod file;
pub mod peft;

pub use error::{Error, Result};
pub use file::{load_peft_adapter, save_peft_adapter};
pub use peft::{PeftConfig, PeftMethod, PeftState, Tower, apply_peft, merge};
