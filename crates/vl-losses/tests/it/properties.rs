//! Behaviours of the losses beyond matching PyTorch: limits (label smoothing at 0 is plain
//! cross-entropy, distillation of a model into itself costs 0), orderings (aligned views beat
//! shuffled ones), Sinkhorn's marginals at a small epsilon where the exp-domain algorithm
//! overflows, finiteness for extreme logits, and the panics for programmer errors.

use crate::common::{Reference, assert_close, max_abs, values};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use vl_losses::{
    ClipLossConfig, DistillationLossConfig, LabelSmoothingCrossEntropyLossConfig, LogitBiasConfig,
    LogitScaleConfig, NtXentLossConfig, SiglipLossConfig, SinkhornConfig,
};

/// Deterministic uniform numbers in `[lo, hi)` (splitmix64), independent of any backend RNG.
fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * unit
        })
        .collect()
}

fn matrix(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar()
}

#[test]
fn label_smoothing_at_zero_equals_plain_cross_entropy() {
    let r = Reference::open();
    let device = Device::flex();
    let logits = r.tensor::<2>("label_smooth_a", "logits", &device);
    let targets = r.targets("label_smooth_a", "targets", &device);

    let ours = LabelSmoothingCrossEntropyLossConfig::new(0.0)
        .init()
        .forward(logits.clone(), targets.clone());
    let burn_ce = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.clone(), targets.clone());
    assert_close(
        "eps 0 vs burn CrossEntropyLoss",
        &values(ours.clone()),
        &values(burn_ce),
        1e-6,
    );
    // And against PyTorch's plain F.cross_entropy (the fixture's label_smooth_b has eps = 0).
    assert_eq!(r.param_f64("label_smooth_b", "smoothing"), 0.0);
    assert_close(
        "eps 0 vs F.cross_entropy",
        &values(ours),
        &r.values("label_smooth_b", "loss"),
        1e-6,
    );

    // Burn's own smoothed cross-entropy agrees at eps > 0 too.
    let eps = 0.1;
    let ours = LabelSmoothingCrossEntropyLossConfig::new(eps)
        .init()
        .forward(logits.clone(), targets.clone());
    let burn_ce = CrossEntropyLossConfig::new()
        .with_smoothing(Some(eps as f32))
        .init(&device)
        .forward(logits, targets);
    assert_close(
        "eps 0.1 vs burn CrossEntropyLoss",
        &values(ours),
        &values(burn_ce),
        1e-6,
    );
}

#[test]
fn soft_one_hot_targets_equal_class_index_targets() {
    let r = Reference::open();
    let device = Device::flex();
    let logits = r.tensor::<2>("label_smooth_a", "logits", &device);
    let targets = r.targets("label_smooth_a", "targets", &device);
    let [_, n_classes] = logits.dims();
    let one_hot: Tensor<2> = targets.clone().one_hot(n_classes).float();
    for eps in [0.0, 0.1, 1.0] {
        let loss_fn = LabelSmoothingCrossEntropyLossConfig::new(eps).init();
        let hard = loss_fn.forward_no_reduction(logits.clone(), targets.clone());
        let soft = loss_fn.forward_soft_no_reduction(logits.clone(), one_hot.clone());
        assert_close(
            &format!("eps {eps} soft vs hard"),
            &values(soft),
            &values(hard),
            1e-6,
        );
    }
}

#[test]
fn distillation_is_zero_when_teacher_equals_student() {
    let device = Device::flex().autodiff();
    for temperature in [1.0, 4.0] {
        let logits = matrix(uniform(6 * 5, -8.0, 8.0, 7), [6, 5], &device).require_grad();
        let loss_fn = DistillationLossConfig::new(temperature).init();
        let per_sample = loss_fn.forward_no_reduction(logits.clone(), logits.clone().detach());
        assert!(max_abs(&values(per_sample)) < 1e-6);
        let loss = loss_fn.forward(logits.clone(), logits.clone().detach());
        let grads = loss.backward();
        assert!(scalar(loss).abs() < 1e-6);
        let grad = values(logits.grad(&grads).expect("gradient"));
        assert!(max_abs(&grad) < 1e-6, "gradient at the minimum: {grad:?}");

        // ... and positive otherwise.
        let other = matrix(uniform(6 * 5, -8.0, 8.0, 8), [6, 5], &Device::flex());
        let loss = loss_fn.forward(logits.clone().inner(), other);
        assert!(scalar(loss) > 1e-2);
    }
}

#[test]
fn nt_xent_with_aligned_views_is_lower_than_with_shuffled_views() {
    let device = Device::flex();
    let (n, d) = (8, 16);
    let view_a = uniform(n * d, -1.0, 1.0, 11);
    let noise = uniform(n * d, -0.1, 0.1, 12);
    let view_b: Vec<f32> = view_a.iter().zip(&noise).map(|(a, e)| a + e).collect();
    // The same views, rows of view_b rotated by one: every positive pair is now wrong.
    let shuffled: Vec<f32> = view_b[d..].iter().chain(&view_b[..d]).copied().collect();
    for temperature in [0.1, 0.5] {
        let loss_fn = NtXentLossConfig::new(temperature).init();
        let a = || matrix(view_a.clone(), [n, d], &device);
        let aligned = scalar(loss_fn.forward(a(), matrix(view_b.clone(), [n, d], &device)));
        let mismatched = scalar(loss_fn.forward(a(), matrix(shuffled.clone(), [n, d], &device)));
        let identical = scalar(loss_fn.forward(a(), a()));
        println!(
            "tau {temperature}: identical {identical}, aligned {aligned}, shuffled {mismatched}"
        );
        assert!(identical <= aligned && aligned < mismatched);
        // Chance level is ln(2N − 1); aligned views must be well below it, shuffled above.
        let chance = ((2 * n - 1) as f32).ln();
        assert!(aligned < chance && mismatched > chance);
    }
}

#[test]
fn clip_loss_is_symmetric_in_images_and_texts() {
    let device = Device::flex();
    let image = matrix(uniform(6 * 8, -1.0, 1.0, 21), [6, 8], &device);
    let text = matrix(uniform(6 * 8, -1.0, 1.0, 22), [6, 8], &device);
    let loss_fn = ClipLossConfig::new().with_normalize(true).init();
    let scale = LogitScaleConfig::new().init(&device);
    let forward = loss_fn.forward_no_reduction(image.clone(), text.clone(), scale.forward());
    let swapped = loss_fn.forward_no_reduction(text, image, scale.forward());
    assert_close("clip swapped", &values(swapped), &values(forward), 1e-6);
}

#[test]
fn losses_stay_finite_for_extreme_logits() {
    let device = Device::flex();
    // Unit features, scale e^10 (unclamped), bias −1e3: logits of ±2e4.
    let image = matrix(uniform(5 * 4, -1.0, 1.0, 31), [5, 4], &device);
    let text = matrix(uniform(5 * 4, -1.0, 1.0, 32), [5, 4], &device);
    let big_scale = LogitScaleConfig::new()
        .with_init_log_scale(10.0)
        .with_max_scale(None)
        .init(&device);
    let clip = ClipLossConfig::new()
        .with_normalize(true)
        .init()
        .forward_no_reduction(image.clone(), text.clone(), big_scale.forward());
    let bias = LogitBiasConfig::new().with_init_bias(-1e3).init(&device);
    let siglip = SiglipLossConfig::new()
        .with_normalize(true)
        .init()
        .forward_no_reduction(image, text, big_scale.forward(), bias.forward());
    let logits = matrix(uniform(5 * 4, -1e4, 1e4, 33), [5, 4], &device);
    let other = matrix(uniform(5 * 4, -1e4, 1e4, 34), [5, 4], &device);
    let targets =
        Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 0], [5]), &device);
    let smoothed = LabelSmoothingCrossEntropyLossConfig::new(0.1)
        .init()
        .forward_no_reduction(logits.clone(), targets);
    let distilled = DistillationLossConfig::new(1.0)
        .init()
        .forward_no_reduction(logits.clone(), other.clone());
    let nt_xent = NtXentLossConfig::new(0.01)
        .init()
        .forward_no_reduction(logits, other);
    for (name, loss) in [
        ("clip", clip),
        ("siglip", siglip),
        ("label smoothing", smoothed),
        ("distillation", distilled),
        ("nt-xent", nt_xent),
    ] {
        let v = values(loss);
        assert!(
            v.iter().all(|x| x.is_finite() && *x >= 0.0),
            "{name}: {v:?}"
        );
    }
}

/// SwAV's `distributed_sinkhorn` (one process) in the exp domain, in plain f32.
fn naive_exp_domain_sinkhorn(
    scores: &[f32],
    [n, k]: [usize; 2],
    epsilon: f32,
    n_iters: usize,
) -> Vec<f32> {
    let mut q: Vec<f32> = scores.iter().map(|s| (s / epsilon).exp()).collect();
    let total: f32 = q.iter().sum();
    q.iter_mut().for_each(|v| *v /= total);
    for _ in 0..n_iters {
        for c in 0..k {
            let col: f32 = (0..n).map(|i| q[i * k + c]).sum();
            (0..n).for_each(|i| q[i * k + c] /= col * k as f32);
        }
        for i in 0..n {
            let row: f32 = q[i * k..(i + 1) * k].iter().sum();
            q[i * k..(i + 1) * k]
                .iter_mut()
                .for_each(|v| *v /= row * n as f32);
        }
    }
    q.iter_mut().for_each(|v| *v *= n as f32);
    q
}

fn row_and_column_sums(q: &[f32], [n, k]: [usize; 2]) -> (Vec<f32>, Vec<f32>) {
    let rows = (0..n).map(|i| q[i * k..(i + 1) * k].iter().sum()).collect();
    let cols = (0..k).map(|c| (0..n).map(|i| q[i * k + c]).sum()).collect();
    (rows, cols)
}

#[test]
fn sinkhorn_meets_marginals_at_small_epsilon_where_exp_domain_overflows() {
    let device = Device::flex();
    let shape @ [n, k] = [256, 32];
    let scores = uniform(n * k, -1.0, 1.0, 41);
    let epsilon = 0.01;

    // The exp-domain algorithm in f32: exp(1 / 0.01) = e^100 overflows, and the result is NaN.
    let naive = naive_exp_domain_sinkhorn(&scores, shape, epsilon, 3);
    assert!(naive.iter().any(|v| !v.is_finite()), "expected overflow");

    let q = SinkhornConfig::new()
        .with_epsilon(epsilon.into())
        .with_n_iters(300)
        .init()
        .forward(matrix(scores.clone(), shape, &device));
    assert_eq!(q.dims(), [n, k]);
    let q = values(q);
    assert!(q.iter().all(|v| v.is_finite() && *v >= 0.0));
    let (rows, cols) = row_and_column_sums(&q, shape);
    assert_close("rows sum to 1", &rows, &vec![1.0; n], 1e-4);
    // Column sums are N/K = 8: compare relative to that.
    let cols: Vec<f32> = cols.iter().map(|c| c * k as f32 / n as f32).collect();
    assert_close("columns sum to N/K (÷ N/K)", &cols, &vec![1.0; k], 1e-4);
    // Small epsilon gives nearly hard assignments: most rows put > 0.9 on one cluster.
    let confident = (0..n)
        .filter(|i| q[i * k..(i + 1) * k].iter().any(|v| *v > 0.9))
        .count();
    assert!(confident > n / 2, "{confident} of {n} rows confident");
}

#[test]
fn sinkhorn_equals_naive_version_where_that_is_finite() {
    let device = Device::flex();
    let shape @ [n, k] = [16, 4];
    let scores = uniform(n * k, -1.0, 1.0, 42);
    let naive = naive_exp_domain_sinkhorn(&scores, shape, 0.05, 3);
    let ours = SinkhornConfig::new()
        .init()
        .forward(matrix(scores, shape, &device));
    assert_close(
        "log domain vs exp domain (f32)",
        &values(ours),
        &naive,
        1e-5,
    );
}

#[test]
fn sinkhorn_equal_partition_undoes_a_collapsed_argmax_on_hand_built_scores() {
    let device = Device::flex();
    let argmax_rows = |q: Vec<f32>, k: usize| -> Vec<usize> {
        q.chunks(k)
            .map(|r| (0..k).fold(0, |b, c| if r[c] > r[b] { c } else { b }))
            .collect()
    };
    let assign = |scores: Vec<f32>, shape: [usize; 2]| {
        let q = SinkhornConfig::new()
            .with_epsilon(0.05)
            .with_n_iters(200)
            .init()
            .forward(matrix(scores, shape, &device));
        argmax_rows(values(q), shape[1])
    };
    // Every row prefers cluster 0; two per cluster go to the two rows that prefer it most (the
    // optimal transport plan: 1.0 + 0.9 beats any other split).
    let scores = vec![1.0, 0.0, 0.9, 0.0, 0.2, 0.0, 0.1, 0.0];
    assert_eq!(argmax_rows(scores.clone(), 2), [0, 0, 0, 0]);
    assert_eq!(assign(scores, [4, 2]), [0, 0, 1, 1]);
    // Three rows, three clusters, all argmax 0: the one-per-cluster plan of highest total score
    // (0.8 + 0.8 + 0.9 = 2.5; keeping row 0 on cluster 0 gives at most 1.8).
    let scores = vec![0.9, 0.8, 0.0, 0.9, 0.0, 0.8, 0.9, 0.1, 0.1];
    assert_eq!(argmax_rows(scores.clone(), 3), [0, 0, 0]);
    assert_eq!(assign(scores, [3, 3]), [1, 2, 0]);
}

#[test]
fn sinkhorn_meets_given_marginals() {
    let device = Device::flex();
    let shape @ [n, k] = [64, 8];
    let scores = uniform(n * k, -1.0, 1.0, 51);
    let rows = uniform(n, 0.5, 1.5, 52);
    let cols = uniform(k, 0.5, 1.5, 53);
    let q = SinkhornConfig::new()
        .with_n_iters(200)
        .init()
        .forward_with_marginals(
            matrix(scores, shape, &device),
            Tensor::from_data(TensorData::new(rows.clone(), [n]), &device),
            Tensor::from_data(TensorData::new(cols.clone(), [k]), &device),
        );
    let (row_sums, col_sums) = row_and_column_sums(&values(q), shape);
    assert_close("row sums", &row_sums, &rows, 1e-4);
    // Column marginals are rescaled to the rows' total.
    let (row_total, col_total): (f32, f32) = (rows.iter().sum(), cols.iter().sum());
    let expected: Vec<f32> = cols.iter().map(|c| c * row_total / col_total).collect();
    assert_close("column sums", &col_sums, &expected, 1e-4);
}

#[test]
fn sinkhorn_output_carries_no_gradient() {
    let device = Device::flex().autodiff();
    let scores = matrix(uniform(8 * 4, -1.0, 1.0, 61), [8, 4], &device).require_grad();
    let q = SinkhornConfig::new().init().forward(scores.clone());
    assert!(!q.is_tracked());
    // Used as SwAV does, as the target of a cross-entropy, only the prediction path has a
    // gradient: the same as with the assignments computed off the graph.
    let swapped_prediction = |q: Tensor<2>| {
        (q * burn::tensor::activation::log_softmax(scores.clone().div_scalar(0.1), 1))
            .sum()
            .neg()
    };
    let grads = swapped_prediction(q).backward();
    let with_graph = values(scores.grad(&grads).expect("gradient"));
    let constant_q = SinkhornConfig::new()
        .init()
        .forward(scores.clone().inner())
        .to_device(&device);
    let grads = swapped_prediction(constant_q).backward();
    let constant = values(scores.grad(&grads).expect("gradient"));
    assert_close("gradient with detached q", &with_graph, &constant, 1e-6);
}

#[test]
#[should_panic(expected = "expected 16")]
fn clip_loss_rejects_mismatched_feature_widths() {
    let device = Device::flex();
    let image = Tensor::<2>::zeros([4, 16], &device);
    let text = Tensor::<2>::zeros([4, 8], &device);
    let scale = LogitScaleConfig::new().init(&device);
    ClipLossConfig::new()
        .init()
        .forward(image, text, scale.forward());
}

#[test]
#[should_panic(expected = "expected 4")]
fn nt_xent_rejects_views_of_different_batch_sizes() {
    let device = Device::flex();
    NtXentLossConfig::new(0.5).init().forward(
        Tensor::<2>::zeros([4, 8], &device),
        Tensor::<2>::zeros([3, 8], &device),
    );
}

#[test]
#[should_panic(expected = "temperature must be positive and finite")]
fn zero_temperature_is_rejected() {
    DistillationLossConfig::new(0.0).init();
}

#[test]
#[should_panic(expected = "smoothing must be in [0, 1]")]
fn smoothing_above_one_is_rejected() {
    LabelSmoothingCrossEntropyLossConfig::new(1.5).init();
}

#[test]
#[should_panic(expected = "epsilon must be positive and finite")]
fn zero_sinkhorn_epsilon_is_rejected() {
    SinkhornConfig::new().with_epsilon(0.0).init();
}
