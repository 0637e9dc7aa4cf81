//! Shared by the integration tests: a very small CLIP pretrained for two steps on 16-pixel images
//! of the synthetic world (seconds on CPU), written as an ordinary run directory.

use std::path::Path;

use burn::prelude::*;
use vl_train::{PretrainConfig, PretrainOptions, pretrain};

/// Burn's device generator is process-wide, and building or loading a model (lazy initialisers)
/// can draw from it outside any run's own lock; the bit-reproducibility tests would see other
/// tests' draws interleaved with theirs. The tests of this binary take turns.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Pretrains the tiny test model into `dir`.
pub(crate) fn pretrained(dir: &Path) {
    let mut c = PretrainConfig {
        seed: 3,
        ..PretrainConfig::default()
    };
    c.world.image_size = 16;
    c.model.patch_size = 8;
    c.model.vision_width = 32;
    c.model.vision_layers = 2;
    c.model.vision_heads = 2;
    c.model.text_width = 32;
    c.model.text_layers = 1;
    c.model.text_heads = 2;
    c.model.projection_dim = 16;
    c.tokenizer.vocab_size = 600;
    c.tokenizer.captions = 300;
    c.train.epochs = 1;
    c.train.steps_per_epoch = 2;
    c.train.batch_size = 8;
    c.train.warmup_steps = 1;
    c.eval.held_out_images = 8;
    c.eval.seen_images = 8;
    c.eval.batch_size = 8;
    let opts = PretrainOptions {
        out_dir: dir.to_path_buf(),
        resume: false,
        force: false,
        device: Device::flex(),
        backend: "flex".into(),
        git_revision: "test".into(),
        stop_after_epochs: None,
    };
    pretrain(&c, &opts).unwrap();
}
