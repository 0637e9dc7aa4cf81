//! Prompt learning for CLIP-style models (not implemented yet; this crate holds no code until it
//! is).
//!
//! It will own templates and template ensembles, CoOp, CoCoOp, KgCoOp, LASP (with virtual
//! classes), variational prompt learning, visual prompt tuning (shallow, deep, multimodal) and
//! LFA, composable by config on one training loop, with the encoders of `vl-encoders` frozen.
