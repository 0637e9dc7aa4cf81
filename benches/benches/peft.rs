//! Criterion bench of the forward cost of each PEFT method against the plain encoder: ViT-B/32
//! `encode_image` at batch 8 (random weights), with LoRA, DoRA, VeRA and DVoRA (rank 8; VeRA
//! rank 64) on `q_proj`, `v_proj` and `mlp.fc1` of every vision layer, unmerged (the adapter is
//! re-materialised on every forward, as during training) and merged (`vl_peft::merge`, which
//! must cost what the plain encoder costs). Group `<device>/peft/vit-b32-image`, ids
//! `plain`, `<method>-unmerged`, `<method>-merged`; throughput in images. A measuring run writes
//! `target/bench/vl-peft-<device>.json`. Test mode runs each once at batch 1.
//!
//! ```text
//! VL_BENCH_DEVICE=flex cargo bench -p vl-bench --bench peft
//! ```

use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use vl_bench::{Row, Summary};
use vl_encoders::clip::{Clip, ClipConfig};
use vl_peft::{PeftConfig, PeftMethod, Tower, apply_peft, merge};

fn main() {
    let (device_name, device) = vl_bench::bench_device();
    let quick = vl_bench::quick();
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let batch = if measuring { 8 } else { 1 };
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 1 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 5 }))
        .configure_from_args();
    device.seed(0);
    let plain = ClipConfig::vit_base_patch32().init(&device);
    let pixels = Tensor::<4>::random(
        [batch, 3, 224, 224],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let methods = [
        (
            "lora",
            PeftMethod::Lora {
                r: 8,
                alpha: 16.0,
                rslora: false,
            },
        ),
        (
            "dora",
            PeftMethod::Dora {
                r: 8,
                alpha: 16.0,
                rslora: false,
            },
        ),
        (
            "vera",
            PeftMethod::Vera {
                r: 64,
                d_initial: 0.1,
                projection_seed: 0,
            },
        ),
        (
            "dvora",
            PeftMethod::Dvora {
                r: 64,
                d_initial: 0.1,
                projection_seed: 0,
            },
        ),
    ];
    let mut models: Vec<(String, Clip)> = vec![("plain".into(), plain.clone())];
    for (name, method) in methods {
        let config = PeftConfig {
            method,
            target_modules: vec!["self_attn.(q|v)_proj".into(), "mlp.fc1".into()],
            tower: Tower::Vision,
        };
        let (adapted, _) = apply_peft(plain.clone(), &config, 0).expect("targets exist");
        models.push((format!("{name}-merged"), merge(&adapted)));
        models.push((format!("{name}-unmerged"), adapted));
    }
    let mut rows = Vec::new();
    let mut group = criterion.benchmark_group(format!("{device_name}/peft/vit-b32-image"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(batch as u64));
    for (id, model) in &models {
        let mut forward = || model.encode_image(pixels.clone());
        let mut row = Row {
            bench: format!("vit-b32/peft-image/{id}/b{batch}"),
            model: "vit-b32".into(),
            what: format!("image-{id}"),
            batch,
            iters: 0,
            elapsed: Duration::ZERO,
            peak_rss_mb: None,
            peak_gpu_mb: None,
            samples: Vec::new(),
        };
        let mut warmed = false;
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            if !warmed && measuring {
                vl_bench::time_synced(&device, 1, &mut forward);
                vl_bench::reset_peak_rss();
            }
            warmed = true;
            b.iter_custom(|iters| {
                let elapsed = vl_bench::time_synced(&device, iters, &mut forward);
                row.record(iters, elapsed);
                row.peak_rss_mb = vl_bench::peak_rss_mb().or(row.peak_rss_mb);
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
        match summary.write_named(&vl_bench::summary_dir(), "vl-peft") {
            Ok(path) => eprintln!("summary written to {}", path.display()),
            Err(err) => panic!("cannot write the bench summary: {err}"),
        }
    }
}
