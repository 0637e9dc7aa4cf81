//! End-to-end pretraining runs on a very small config: determinism, resume after an interruption
//! (including a checkpoint set left incomplete by a kill), the run-directory rules, and that the
//! product loads as a plain Hugging Face CLIP checkpoint.

use std::path::Path;

use burn::prelude::*;
use vl_train::checkpoint::checkpoint_path;
use vl_train::{Error, PretrainConfig, PretrainOptions, pretrain};

fn tiny_config() -> PretrainConfig {
    let mut c = PretrainConfig {
        seed: 7,
        ..PretrainConfig::default()
    };
    c.world.image_size = 16;
    // As in experiments/pretrain-tiny.toml: objects on the patch grid, outlined.
    c.world.position_grid = 8;
    c.world.outline = 1.0;
    c.model.patch_size = 8;
    c.model.vision_width = 32;
    c.model.vision_layers = 1;
    c.model.vision_heads = 2;
    c.model.text_width = 32;
    c.model.text_layers = 1;
    c.model.text_heads = 2;
    c.model.projection_dim = 16;
    c.tokenizer.vocab_size = 600;
    c.tokenizer.captions = 300;
    c.train.epochs = 3;
    c.train.steps_per_epoch = 2;
    c.train.batch_size = 8;
    c.train.warmup_steps = 1;
    c.eval.held_out_images = 16;
    c.eval.seen_images = 16;
    c.eval.batch_size = 16;
    c
}

fn options(dir: &Path) -> PretrainOptions {
    PretrainOptions {
        out_dir: dir.to_path_buf(),
        resume: false,
        force: false,
        device: Device::flex(),
        backend: "flex".into(),
        git_revision: "test".into(),
        stop_after_epochs: None,
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

#[test]
fn same_seed_gives_identical_runs_and_resume_after_a_kill_matches_them() {
    let _serial = crate::common::serial();
    let config = tiny_config();
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );

    let report_a = pretrain(&config, &options(&a)).unwrap();
    let report_b = pretrain(&config, &options(&b)).unwrap();
    assert_eq!(
        read(a.join("model.safetensors")),
        read(b.join("model.safetensors"))
    );
    assert_eq!(
        read(a.join("tokenizer.json")),
        read(b.join("tokenizer.json"))
    );
    assert_eq!(report_a.held_out, report_b.held_out);
    assert_eq!(report_a.history.len(), 3);

    // Interrupted after epoch 1, then killed while saving epoch 2: a model record without its
    // optimiser and scheduler records, and a stray temporary file.
    let mut first = options(&c);
    first.stop_after_epochs = Some(1);
    let err = pretrain(&config, &first).unwrap_err();
    assert!(matches!(err, Error::RunDir { .. }), "{err}");
    let checkpoints = c.join("train").join("checkpoint");
    std::fs::copy(
        checkpoint_path(&checkpoints, "model", 1),
        checkpoint_path(&checkpoints, "model", 2),
    )
    .unwrap();
    std::fs::write(checkpoints.join(".tmpXXXX"), b"torn").unwrap();

    let err = pretrain(&config, &options(&c)).unwrap_err().to_string();
    assert!(err.contains("--resume") && err.contains("epoch 1"), "{err}");
    let mut resume = options(&c);
    resume.resume = true;
    let report_c = pretrain(&config, &resume).unwrap();
    assert_eq!(
        read(a.join("model.safetensors")),
        read(c.join("model.safetensors"))
    );
    assert_eq!(report_a.held_out, report_c.held_out);
    assert_eq!(report_a.seen, report_c.seen);
    let losses = |r: &vl_train::PretrainReport| -> Vec<f64> {
        r.history.iter().map(|e| e.train["Loss"]).collect()
    };
    assert_eq!(losses(&report_a), losses(&report_c));
}

#[test]
fn finished_run_is_a_hugging_face_checkpoint_and_is_not_overwritten() {
    let _serial = crate::common::serial();
    let config = tiny_config();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let report = pretrain(&config, &options(&dir)).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "report.json",
        "results.md",
        "curve.svg",
        "history.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }

    // The generic loaders see an ordinary CLIP.
    let device = Device::flex();
    let (clip, _) =
        vl_encoders::clip::load_clip(&dir, &vl_encoders::clip::LoadOptions::default(), &device)
            .unwrap();
    let tokenizer = vl_data::ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tokenizer.context_length(), config.model.context_length);
    assert_eq!(tokenizer.vocab_size(), report.vocab_size);
    let preprocess =
        vl_data::PreprocessConfig::from_hf_file(dir.join("preprocessor_config.json")).unwrap();
    assert_eq!(preprocess, vl_data::PreprocessConfig::clip(16));
    let ids = tokenizer
        .encode_batch(&["a red circle", "a photo of a blue star"])
        .unwrap()
        .to_tensor(&device);
    let text = clip.encode_text(ids);
    assert_eq!(text.dims(), [2, config.model.projection_dim]);

    // The exported model gives the run's own zero-shot numbers.
    let exported = vl_train::pretrain::load_exported(&dir, &device).unwrap();
    assert_eq!(
        exported.logit_scale.val().into_scalar::<f32>(),
        clip.logit_scale.val().into_scalar::<f32>()
    );

    // Nothing is overwritten silently.
    let err = pretrain(&config, &options(&dir)).unwrap_err().to_string();
    assert!(
        err.contains("finished run") && err.contains("--force"),
        "{err}"
    );
    let mut resume = options(&dir);
    resume.resume = true;
    assert!(pretrain(&config, &resume).is_err());
}

#[test]
fn resuming_with_another_config_is_refused() {
    let _serial = crate::common::serial();
    let config = tiny_config();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let mut first = options(&dir);
    first.stop_after_epochs = Some(1);
    assert!(pretrain(&config, &first).is_err());
    let mut other = config.clone();
    other.train.lr = 5e-4;
    let mut resume = options(&dir);
    resume.resume = true;
    let err = pretrain(&other, &resume).unwrap_err().to_string();
    assert!(err.contains("another config"), "{err}");
}

#[test]
fn a_directory_that_is_not_a_run_is_not_touched() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("notes.txt"), b"mine").unwrap();
    let err = pretrain(&tiny_config(), &options(root.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a vlkit run"), "{err}");
    assert_eq!(read(root.path().join("notes.txt")), b"mine");
}
