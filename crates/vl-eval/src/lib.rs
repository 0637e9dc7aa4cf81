//! Evaluation protocols and reports (not implemented yet; this crate holds no code until they
//! are).
//!
//! It will own zero-shot classification, linear probe, few-shot, base-to-novel, retrieval and
//! kNN protocols, metrics as pure functions, and the Markdown/CSV tables and plots that
//! `cargo xtask report` writes.
