//! The linear probe against scikit-learn: `fixtures/linear_probe/fixture.json` holds a small
//! five-class data set with overlapping clusters and scikit-learn's
//! `LogisticRegression(C, solver="lbfgs", tol=1e-10)` fits for two values of `C` (see
//! `fixtures/linear_probe/make_fixture.py`). The probe must find the same weights, intercepts
//! and test accuracy; `fit_with_validation` must pick a value it tried, deterministically.

use std::path::Path;

use serde_json::Value;
use vl_eval::linear_probe::{LinearProbe, LinearProbeConfig, fit_with_validation};

/// Weights and intercepts may differ from scikit-learn's by at most this (max abs).
const PARAM_TOL: f64 = 1e-2;
/// Test accuracies (fractions) may differ by at most this.
const ACCURACY_TOL: f64 = 1e-3;

struct Fixture {
    n_classes: usize,
    dim: usize,
    train_x: Vec<f32>,
    train_y: Vec<usize>,
    test_x: Vec<f32>,
    test_y: Vec<usize>,
    fits: Vec<Value>,
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn features(v: &Value) -> Vec<f32> {
    floats(v).into_iter().map(|x| x as f32).collect()
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("a label") as usize)
        .collect()
}

fn load() -> Fixture {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/linear_probe/fixture.json");
    let text = std::fs::read_to_string(&path).expect("the fixture (see make_fixture.py)");
    let json: Value = serde_json::from_str(&text).expect("fixture JSON");
    Fixture {
        n_classes: json["n_classes"].as_u64().expect("n_classes") as usize,
        dim: json["dim"].as_u64().expect("dim") as usize,
        train_x: features(&json["train_x"]),
        train_y: labels(&json["train_y"]),
        test_x: features(&json["test_x"]),
        test_y: labels(&json["test_y"]),
        fits: json["fits"].as_array().expect("fits").clone(),
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn weights_and_accuracy_match_scikit_learn() {
    let fx = load();
    assert_eq!(fx.fits.len(), 2);
    for fit in &fx.fits {
        let c = fit["c"].as_f64().expect("c");
        let probe = LinearProbe::fit(
            &fx.train_x,
            &fx.train_y,
            fx.dim,
            fx.n_classes,
            c,
            &LinearProbeConfig::default(),
        )
        .unwrap();
        assert!(probe.converged, "C = {c}: {} iterations", probe.iterations);

        let weights = max_abs_diff(&probe.weights, &floats(&fit["coef"]));
        let bias = max_abs_diff(&probe.bias, &floats(&fit["intercept"]));
        let predictions = probe.predict(&fx.test_x).unwrap();
        let hits = predictions
            .iter()
            .zip(&fx.test_y)
            .filter(|(p, y)| p == y)
            .count();
        let accuracy = hits as f64 / fx.test_y.len() as f64;
        let reference = fit["test_accuracy"].as_f64().expect("test_accuracy");
        let same = predictions
            .iter()
            .zip(labels(&fit["test_predictions"]))
            .filter(|(p, r)| **p == *r)
            .count();
        println!(
            "C = {c}: {} iterations; max |dW| = {weights:.3e}, max |db| = {bias:.3e}, \
             test accuracy {accuracy} vs {reference}, {same}/{} predictions equal",
            probe.iterations,
            predictions.len()
        );
        assert!(weights <= PARAM_TOL, "C = {c}: max |dW| = {weights}");
        assert!(bias <= PARAM_TOL, "C = {c}: max |db| = {bias}");
        assert!(
            (accuracy - reference).abs() <= ACCURACY_TOL,
            "C = {c}: accuracy {accuracy} vs scikit-learn {reference}"
        );
    }
}

#[test]
fn validation_search_picks_a_tried_c_deterministically() {
    let fx = load();
    let config = LinearProbeConfig::default();
    let search = || {
        fit_with_validation(
            (&fx.train_x, &fx.train_y),
            (&fx.test_x, &fx.test_y),
            fx.dim,
            fx.n_classes,
            &config,
        )
        .unwrap()
    };
    let (probe, log) = search();
    assert_eq!(log.len(), config.c_grid.len() + 2 * config.refine_steps);
    let chosen = log
        .iter()
        .find(|t| t.c == probe.c)
        .expect("the chosen C was tried");
    assert!(log.iter().all(|t| t.val_accuracy <= chosen.val_accuracy));
    assert!(log.iter().all(|t| (0.0..=100.0).contains(&t.val_accuracy)));
    let (again, again_log) = search();
    assert_eq!(probe, again);
    assert_eq!(log, again_log);
}
