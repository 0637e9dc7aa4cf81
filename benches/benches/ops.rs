//! Criterion bench of the operations inside one CLIP transformer layer, to find what holds the
//! encoders back against PyTorch (`benches/torch/bench_ops.py` is the twin): at the ViT-B/32
//! vision-layer shape (batch 32, 50 tokens, width 768, 12 heads, MLP 3072) the `fc1` linear,
//! Burn's attention op, LayerNorm, QuickGELU and one whole `ClipEncoderLayer`; at the text-layer
//! shape (batch 32, 77 tokens, width 512, 8 heads) the causal attention op.
//!
//! Group `<device>/ops`, ids `vit-b32-layer/<op>` and `text-layer/<op>`; throughput in sequences
//! (batch items). A measuring run writes `target/bench/vl-ops-<device>.json`, rows
//! `ops/<shape>/<op>/b<batch>`. Test mode (`cargo test --all-targets`) runs each once at batch 1.
//!
//! ```text
//! VL_BENCH_DEVICE=flex cargo bench -p vl-bench --bench ops
//! .venv/bin/python benches/torch/bench_ops.py --json-out target/bench/torch-ops.json
//! .venv/bin/python benches/torch/compare.py --ours target/bench/vl-ops-flex.json \
//!     --torch target/bench/torch-ops.json --out target/bench/compare-ops-flex.md
//! ```

use std::time::Duration;

use burn::nn::{LayerNormConfig, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use vl_bench::{Row, Summary};
use vl_encoders::clip::{ClipActivation, ClipEncoderConfig};

/// ViT-B/32 vision layer: tokens (49 patches + class), width, heads, MLP width.
const VISION: (usize, usize, usize, usize) = (50, 768, 12, 3072);
/// CLIP text layer: tokens, width, heads.
const TEXT: (usize, usize, usize) = (77, 512, 8);

/// `(shape, op, forward)`: one benched operation; every output is viewed as rank 4.
type Op<'a> = (&'static str, &'static str, Box<dyn Fn() -> Tensor<4> + 'a>);

fn main() {
    let (device_name, device) = vl_bench::bench_device();
    let quick = vl_bench::quick();
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let batch = if measuring { 32 } else { 1 };
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 1 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }))
        .configure_from_args();
    device.seed(0);
    let normal = Distribution::Normal(0.0, 1.0);

    let (tokens, width, heads, d_ff) = VISION;
    let d_head = width / heads;
    let x = Tensor::<3>::random([batch, tokens, width], normal, &device);
    let hidden = Tensor::<3>::random([batch, tokens, d_ff], normal, &device);
    let qkv = || Tensor::<4>::random([batch, heads, tokens, d_head], normal, &device);
    let (q, k, v) = (qkv(), qkv(), qkv());
    let fc1 = LinearConfig::new(width, d_ff).init(&device);
    let norm = LayerNormConfig::new(width).init(&device);
    let layer = ClipEncoderConfig::new(width, d_ff, heads, 1).init(&device);

    let (t_tokens, t_width, t_heads) = TEXT;
    let t_head = t_width / t_heads;
    let t_qkv = || Tensor::<4>::random([batch, t_heads, t_tokens, t_head], normal, &device);
    let (tq, tk, tv) = (t_qkv(), t_qkv(), t_qkv());
    let options = |is_causal| AttentionModuleOptions {
        is_causal,
        ..Default::default()
    };

    let ops: Vec<Op<'_>> = vec![
        (
            "vit-b32-layer",
            "linear-fc1",
            Box::new(|| fc1.forward(x.clone()).unsqueeze()),
        ),
        (
            "vit-b32-layer",
            "attention",
            Box::new(|| attention(q.clone(), k.clone(), v.clone(), None, None, options(false))),
        ),
        (
            "vit-b32-layer",
            "layer-norm",
            Box::new(|| norm.forward(x.clone()).unsqueeze()),
        ),
        (
            "vit-b32-layer",
            "quick-gelu",
            Box::new(|| {
                ClipActivation::QuickGelu
                    .forward(hidden.clone())
                    .unsqueeze()
            }),
        ),
        (
            "vit-b32-layer",
            "encoder-layer",
            Box::new(|| layer.forward(x.clone(), false).unsqueeze()),
        ),
        (
            "text-layer",
            "attention-causal",
            Box::new(|| {
                attention(
                    tq.clone(),
                    tk.clone(),
                    tv.clone(),
                    None,
                    None,
                    options(true),
                )
            }),
        ),
    ];

    let mut rows = Vec::new();
    let mut group = criterion.benchmark_group(format!("{device_name}/ops"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(batch as u64));
    for (shape, op, forward) in &ops {
        let mut row = Row {
            bench: format!("ops/{shape}/{op}/b{batch}"),
            model: (*shape).to_owned(),
            what: (*op).to_owned(),
            batch,
            iters: 0,
            elapsed: Duration::ZERO,
            peak_rss_mb: None,
            peak_gpu_mb: None,
            samples: Vec::new(),
        };
        let mut warmed = false;
        group.bench_function(BenchmarkId::from_parameter(format!("{shape}/{op}")), |b| {
            if !warmed && measuring {
                // Untimed: materialises lazy weights and, on a GPU, compiles the kernels.
                vl_bench::time_synced(&device, 1, forward.as_ref());
                vl_bench::reset_peak_rss();
            }
            warmed = true;
            b.iter_custom(|iters| {
                let elapsed = vl_bench::time_synced(&device, iters, forward.as_ref());
                row.record(iters, elapsed);
                row.peak_rss_mb = vl_bench::peak_rss_mb().or(row.peak_rss_mb);
                row.peak_gpu_mb = vl_bench::device_reserved_mb(&device).or(row.peak_gpu_mb);
                elapsed
            });
        });
        if measuring && row.iters > 0 {
            rows.push(row);
        }
    }
    group.finish();
    criterion.final_summary();
    if measuring && !rows.is_empty() {
        let summary = Summary {
            device: device_name,
            git_revision: vl_bench::git_revision(),
            dtype: vl_bench::bench_dtype().0.to_owned(),
            quick,
            rows,
        };
        match summary.write_named(&vl_bench::summary_dir(), "vl-ops") {
            Ok(path) => eprintln!("summary written to {}", path.display()),
            Err(err) => panic!("cannot write the bench summary: {err}"),
        }
    }
}
