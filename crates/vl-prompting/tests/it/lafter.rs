//! LaFTer's objectives against PyTorch (`tests/fixtures/lafter/make_fixture.py`): the
//! text-classifier loss on noisy text embeddings and the weak-to-strong pseudo-label loss, their
//! values and their gradients (with respect to the classifier and the strong view's features)
//! within 1e-5.

use burn::prelude::*;
use vl_prompting::{TextClassifier, pseudo_label_loss, text_classifier_loss};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lafter/fixture.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn tensor(v: &serde_json::Value, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(floats(v), shape), device)
}

fn max_diff(a: Tensor<2>, b: &[f32]) -> f32 {
    let a: Vec<f32> = a.into_data().convert::<f32>().try_to_vec().unwrap();
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn text_classifier_loss_and_gradient_match_pytorch() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let (n, d, c) = (6, 8, 4);
    let w = tensor(&f["W"], [c, d], &device).require_grad();
    let classifier = TextClassifier::new(w);
    let labels: Vec<i64> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let loss = text_classifier_loss(
        &classifier,
        tensor(&f["text"], [n, d], &device),
        tensor(&f["noise"], [n, d], &device),
        Tensor::from_data(TensorData::new(labels, [n]), &device),
        0.0,
    );
    let value = loss.clone().into_scalar::<f32>();
    assert!(
        (value - f["text_loss"].as_f64().unwrap() as f32).abs() < 1e-5,
        "{value}"
    );
    let grads = loss.backward();
    let g = classifier.weight.val().grad(&grads).unwrap();
    let diff = max_diff(g, &floats(&f["text_grad_W"]));
    assert!(diff < 1e-5, "grad W max abs diff {diff}");
}

/// The reference trains the text classifier with `CrossEntropyLoss(label_smoothing=0.1)`:
/// `(1 - s) CE + s mean_k(-log p_k)`, computed here by hand in f64 from the fixture.
#[test]
fn text_classifier_loss_applies_label_smoothing() {
    let f = fixture();
    let device = Device::flex();
    let (n, d, c) = (6, 8, 4);
    let (w, text, noise) = (floats(&f["W"]), floats(&f["text"]), floats(&f["noise"]));
    let labels: Vec<i64> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let s = 0.1;
    let mut expected = 0.0f64;
    for i in 0..n {
        let logits: Vec<f64> = (0..c)
            .map(|k| {
                (0..d)
                    .map(|j| {
                        f64::from(w[k * d + j]) * f64::from(text[i * d + j] + noise[i * d + j])
                    })
                    .sum()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        let nll = lse - logits[labels[i] as usize];
        let uniform = logits.iter().map(|l| lse - l).sum::<f64>() / c as f64;
        expected += ((1.0 - s) * nll + s * uniform) / n as f64;
    }
    let loss = text_classifier_loss(
        &TextClassifier::new(tensor(&f["W"], [c, d], &device)),
        tensor(&f["text"], [n, d], &device),
        tensor(&f["noise"], [n, d], &device),
        Tensor::from_data(TensorData::new(labels, [n]), &device),
        s,
    )
    .into_scalar::<f32>();
    assert!(
        (f64::from(loss) - expected).abs() < 1e-5,
        "{loss} vs {expected}"
    );
}

#[test]
fn pseudo_label_loss_and_gradients_match_pytorch() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let (n, d, c) = (6, 8, 4);
    let classifier = TextClassifier::new(tensor(&f["W"], [c, d], &device).require_grad());
    let strong = tensor(&f["f_strong"], [n, d], &device).require_grad();
    let weak_logits = classifier.forward(tensor(&f["f_weak"], [n, d], &device));
    let pseudo: Vec<i64> = weak_logits
        .clone()
        .argmax(1)
        .reshape([n])
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    let want: Vec<i64> = f["pseudo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(pseudo, want);
    let loss = pseudo_label_loss(
        weak_logits,
        classifier.forward(strong.clone()),
        f["smoothing"].as_f64().unwrap(),
    );
    let value = loss.clone().into_scalar::<f32>();
    assert!(
        (value - f["pseudo_loss"].as_f64().unwrap() as f32).abs() < 1e-5,
        "{value}"
    );
    let grads = loss.backward();
    // The weak view is a constant target: only the strong path contributes to dL/dW.
    let gw = classifier.weight.val().grad(&grads).unwrap();
    let diff = max_diff(gw, &floats(&f["pseudo_grad_W"]));
    assert!(diff < 1e-5, "grad W max abs diff {diff}");
    let gf = strong.grad(&grads).unwrap();
    let diff = max_diff(gf, &floats(&f["pseudo_grad_f_strong"]));
    assert!(diff < 1e-5, "grad f_strong max abs diff {diff}");
}
