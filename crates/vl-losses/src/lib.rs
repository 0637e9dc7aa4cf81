//! Training objectives for vision-language models (not implemented yet; this crate holds no
//! code until they are).
//!
//! It will own, each as a `FooConfig` + `Foo` module with `forward` (reduced) and
//! `forward_no_reduction`, checked against PyTorch values and finite-difference gradients:
//! CLIP's symmetric InfoNCE with a learnable, clamped logit scale; SigLIP's pairwise sigmoid
//! loss; SimCLR's NT-Xent; cross-entropy with label smoothing; KL distillation with temperature;
//! and Sinkhorn-Knopp equal-partition assignment (log-domain). It depends only on `burn`.
