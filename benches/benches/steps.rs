//! Criterion benches of two training-side costs the issue names, beside the CoOp step of
//! `prompting.rs`, on the device picked by `VL_BENCH_DEVICE` (random weights, device synced
//! inside the timed region):
//!
//! - `<device>/lora-step/vit-b32-image`, id `b<batch>`: one LoRA fine-tuning step on ViT-B/32's
//!   vision tower. LoRA (r 8, alpha 16) on `q_proj` and `v_proj` of every vision layer
//!   (`vl_peft::apply_peft`, everything else frozen), `encode_image` on `[batch, 3, 224, 224]`,
//!   cosine logits against 100 fixed unit-norm class features at scale 100, cross-entropy,
//!   backward, one AdamW step (lr 1e-4) on the adapters. Batch 32 on the CPU, 128 on a GPU.
//!   Throughput in images.
//! - `<device>/clip-loss/d512`, id `b<batch>`: CLIP's symmetric InfoNCE
//!   (`vl_losses::ClipLoss`) on `[batch, 512]` unit-norm image and text features that require
//!   gradients, scale 100, forward and backward. Batch 4096 (the issue's); throughput in pairs.
//!
//! A measuring run writes `target/bench/vl-steps-<device>.json`; `benches/torch/bench_steps.py`
//! is the PyTorch twin (transformers + peft for the LoRA step; the same shapes) and
//! `benches/torch/compare.py --ours target/bench/vl-steps-<device>.json --torch
//! target/bench/torch-steps.json` tables both. Test mode (`cargo test --all-targets`) runs each
//! once at a 2-layer, batch-2 size (the loss at batch 64), to prove the harness cheaply.
//!
//! ```text
//! VL_BENCH_DEVICE=flex cargo bench -p vl-bench --bench steps
//! ```

use std::time::Duration;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use vl_bench::{Row, Summary};
use vl_encoders::clip::{ClipConfig, l2_normalize};
use vl_losses::ClipLossConfig;
use vl_peft::{PeftConfig, PeftMethod, Tower, apply_peft};

/// Classes of the LoRA step's fixed classifier.
const CLASSES: usize = 100;
/// CLIP's logit scale (exp of its learned log-scale, clamped at 100).
const SCALE: f64 = 100.0;
/// Feature width of the CLIP loss bench (ViT-B's projection).
const D_EMBED: usize = 512;

fn main() {
    let (device_name, device) = vl_bench::bench_device();
    let quick = vl_bench::quick();
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let gpu = vl_bench::is_gpu(&device_name);
    let (layers, lora_batch, loss_batch) = match (measuring, gpu) {
        (false, _) => (2, 2, 64),
        (true, false) => (12, 32, 4096),
        (true, true) => (12, 128, 4096),
    };
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 1 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 20 }))
        .configure_from_args();
    let autodiff = device.clone().autodiff();
    let mut rows = Vec::new();

    // The LoRA step.
    autodiff.seed(0);
    let mut config = ClipConfig::vit_base_patch32();
    config.vision.n_layers = layers;
    let peft = PeftConfig {
        method: PeftMethod::Lora {
            r: 8,
            alpha: 16.0,
            rslora: false,
        },
        target_modules: vec!["self_attn.(q|v)_proj".into()],
        tower: Tower::Vision,
    };
    let (mut clip, _) = apply_peft(config.init(&autodiff), &peft, 0).expect("targets exist");
    let [_, proj] = clip.visual_projection.weight.dims();
    let pixels = Tensor::<4>::random(
        [lora_batch, 3, 224, 224],
        Distribution::Normal(0.0, 1.0),
        &autodiff,
    );
    let classes = l2_normalize(Tensor::<2>::random(
        [CLASSES, proj],
        Distribution::Normal(0.0, 1.0),
        &autodiff,
    ))
    .detach();
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(
            (0..lora_batch as i64)
                .map(|i| i % CLASSES as i64)
                .collect::<Vec<_>>(),
            [lora_batch],
        ),
        &autodiff,
    );
    let cross_entropy = CrossEntropyLossConfig::new().init(&autodiff);
    let mut optim = AdamWConfig::new().init();
    let mut lora_step = || {
        let image = l2_normalize(clip.encode_image(pixels.clone()));
        let logits = image.matmul(classes.clone().transpose()).mul_scalar(SCALE);
        let loss = cross_entropy.forward(logits, targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &clip);
        clip = optim.step(1e-4, clip.clone(), grads);
        loss.detach()
    };
    rows.extend(bench(
        &mut criterion,
        &autodiff,
        measuring,
        Bench {
            group: format!("{device_name}/lora-step/vit-b32-image"),
            bench: format!("vit-b32/lora-step/b{lora_batch}"),
            model: "vit-b32",
            what: "lora-step",
            batch: lora_batch,
        },
        &mut lora_step,
    ));
    drop((clip, pixels));
    autodiff.memory_cleanup();

    // The CLIP loss.
    let loss = ClipLossConfig::new().init();
    let features = || {
        l2_normalize(Tensor::<2>::random(
            [loss_batch, D_EMBED],
            Distribution::Normal(0.0, 1.0),
            &autodiff,
        ))
        .detach()
        .require_grad()
    };
    let (image, text) = (features(), features());
    let scale = Tensor::<1>::from_floats([SCALE as f32], &autodiff);
    let mut loss_step = || {
        let grads = loss
            .forward(image.clone(), text.clone(), scale.clone())
            .backward();
        (image.grad(&grads), text.grad(&grads))
    };
    rows.extend(bench(
        &mut criterion,
        &autodiff,
        measuring,
        Bench {
            group: format!("{device_name}/clip-loss/d{D_EMBED}"),
            bench: format!("clip-loss/d{D_EMBED}/b{loss_batch}"),
            model: "clip-loss",
            what: "loss-step",
            batch: loss_batch,
        },
        &mut loss_step,
    ));

    criterion.final_summary();
    if measuring && !rows.is_empty() {
        let summary = Summary {
            device: device_name,
            git_revision: vl_bench::git_revision(),
            dtype: vl_bench::bench_dtype().0.to_owned(),
            quick,
            rows,
        };
        match summary.write_named(&vl_bench::summary_dir(), "vl-steps") {
            Ok(path) => eprintln!("summary written to {}", path.display()),
            Err(err) => panic!("cannot write the bench summary: {err}"),
        }
    }
}

/// Names of one bench.
struct Bench {
    group: String,
    bench: String,
    model: &'static str,
    what: &'static str,
    batch: usize,
}

/// Benches `step` as one id of its own group; returns the summary row of a measuring run.
fn bench<T>(
    criterion: &mut Criterion,
    device: &Device,
    measuring: bool,
    names: Bench,
    mut step: impl FnMut() -> T,
) -> Option<Row> {
    let mut row = Row {
        bench: names.bench,
        model: names.model.into(),
        what: names.what.into(),
        batch: names.batch,
        iters: 0,
        elapsed: Duration::ZERO,
        peak_rss_mb: None,
        peak_gpu_mb: None,
        samples: Vec::new(),
    };
    let mut group = criterion.benchmark_group(names.group);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(names.batch as u64));
    let mut warmed = false;
    group.bench_function(
        BenchmarkId::from_parameter(format!("b{}", names.batch)),
        |b| {
            if !warmed && measuring {
                // Untimed: materialises the lazy weights and, on a GPU, compiles the kernels.
                vl_bench::time_synced(device, 1, &mut step);
                vl_bench::reset_peak_rss();
            }
            warmed = true;
            b.iter_custom(|iters| {
                let elapsed = vl_bench::time_synced(device, iters, &mut step);
                row.record(iters, elapsed);
                row.peak_rss_mb = vl_bench::peak_rss_mb().or(row.peak_rss_mb);
                row.peak_gpu_mb = vl_bench::device_reserved_mb(device).or(row.peak_gpu_mb);
                elapsed
            });
        },
    );
    group.finish();
    (measuring && row.iters > 0).then_some(row)
}
