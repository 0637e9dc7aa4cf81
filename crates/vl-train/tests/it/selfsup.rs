//! Self-supervised runs end to end at a tiny size: both objectives train (finite, decreasing
//! loss is not asserted at two steps, only that they run and evaluate both encoders), and a
//! run interrupted after one epoch and resumed ends bit-identical to an uninterrupted one.

use std::path::Path;

use burn::prelude::*;
use vl_train::selfsup::{SelfSupConfig, SelfSupEval, SelfSupMethod, SelfSupOptions, run_selfsup};

fn config(dir: &Path, method: SelfSupMethod) -> SelfSupConfig {
    // A very small architecture (16-pixel images, 2 layers), written as a pretraining config.
    let arch = dir.join("arch.toml");
    std::fs::write(
        &arch,
        "[world]\nimage_size = 16\n[model]\npatch_size = 8\nvision_width = 32\nvision_layers = 2\n\
         vision_heads = 2\ntext_width = 32\ntext_layers = 1\ntext_heads = 2\nprojection_dim = 16\n",
    )
    .unwrap();
    SelfSupConfig {
        method,
        seed: 5,
        architecture: arch,
        epochs: 2,
        steps_per_epoch: 2,
        batch_size: 8,
        warmup_steps: 1,
        hidden_dim: 16,
        projection_dim: 8,
        prototypes: 4,
        eval: SelfSupEval {
            train_images: 24,
            val_images: 16,
            test_images: 24,
            knn_k: 3,
            ..SelfSupEval::default()
        },
        ..SelfSupConfig::default()
    }
}

fn options(dir: &Path, resume: bool, stop: Option<usize>) -> SelfSupOptions {
    SelfSupOptions {
        out_dir: dir.to_path_buf(),
        resume,
        device: Device::flex(),
        backend: "flex".into(),
        git_revision: "test".into(),
        stop_after_epochs: stop,
        verbose: false,
    }
}

#[test]
fn simclr_and_sinkhorn_knopp_train_and_evaluate_both_encoders() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    for method in [
        SelfSupMethod::Simclr,
        SelfSupMethod::SinkhornKnopp,
        SelfSupMethod::SelfLabelling,
    ] {
        let c = config(root.path(), method);
        let out = root.path().join(format!("{method:?}"));
        let report = run_selfsup(&c, &options(&out, false, None)).unwrap();
        assert_eq!(report.history.len(), 2);
        // The whole encoder trains (a frozen encoder would leave the probes unchanged).
        assert!(
            report.trainable_parameters > 10_000,
            "{}",
            report.trainable_parameters
        );
        assert_ne!(
            report.eval.iter().map(|e| e.1).collect::<Vec<_>>(),
            report.eval.iter().map(|e| e.2).collect::<Vec<_>>()
        );
        assert!(report.history.iter().all(|e| e.loss.is_finite()));
        // burn-train's metrics reach the report: learning rate and agreement per epoch.
        assert!(
            report
                .history
                .iter()
                .all(|e| e.lr > 0.0 && (0.0..=100.0).contains(&e.agreement)),
            "{:?}",
            report.history
        );
        assert_eq!(report.eval.len(), 2);
        for (_, r, t) in &report.eval {
            for v in [r.linear_probe, r.knn, t.linear_probe, t.knn] {
                assert!((0.0..=100.0).contains(&v));
            }
        }
        assert!(out.join("results.md").is_file());
    }
}

#[test]
fn interrupted_selfsup_run_resumes_bit_identical() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    // Swapped prediction resumes inside burn-train; SeLa also across its relabelling segments.
    for method in [SelfSupMethod::SinkhornKnopp, SelfSupMethod::SelfLabelling] {
        let c = config(root.path(), method);
        let a = root.path().join(format!("{method:?}-a"));
        let full = run_selfsup(&c, &options(&a, false, None)).unwrap();
        let b = root.path().join(format!("{method:?}-b"));
        let err = run_selfsup(&c, &options(&b, false, Some(1))).unwrap_err();
        assert!(err.to_string().contains("stopped after epoch 1"), "{err}");
        // Without --resume the unfinished run is refused, not overwritten.
        assert!(run_selfsup(&c, &options(&b, false, None)).is_err());
        let resumed = run_selfsup(&c, &options(&b, true, None)).unwrap();
        assert_eq!(
            full.history.iter().map(|e| e.loss).collect::<Vec<_>>(),
            resumed.history.iter().map(|e| e.loss).collect::<Vec<_>>()
        );
        assert_eq!(full.eval, resumed.eval);
    }
}
