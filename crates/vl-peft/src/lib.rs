//! Parameter-efficient fine-tuning (not implemented yet; this crate holds no code until it is).
//!
//! It will own LoRA (Burn's built-in `Reparameterizer`), VeRA, DoRA, DVoRA, BitFit and LayerNorm
//! tuning as Burn reparameterizations targeted by module-path patterns (`vl-encoders` module
//! paths equal Hugging Face names, so `self_attn.(q|v)_proj` selects what PEFT selects), merge and
//! unmerge, and reading and writing PEFT adapter directories.
