//! Criterion bench of one CoOp training step at the ViT-B/16 text-tower size (width 512, 12
//! layers, 8 heads, 77 tokens), 100 classes, 16 context vectors, a batch of 32 image features:
//! build the prompts, run the frozen text tower on `[100, 77, 512]` with autodiff, cross-entropy
//! of the logits, backward, one SGD step on the context. Random weights, on the device picked by
//! `VL_BENCH_DEVICE` (see `vl_bench::bench_device`); the device is synced inside the timed region.
//!
//! Group `<device>/coop-step/vit-b16-text`, id `c100`; throughput in classes (prompts) per second.
//! Class names are padded with single-token words so that every prompt is exactly 77 tokens, as
//! in CoOp (which pads to 77; vlkit otherwise cuts prompts after the longest end-of-text token).
//! A measuring run writes `target/bench/vl-prompting-<device>.json`;
//! `benches/torch/bench_prompting.py` is the PyTorch twin (same shapes) and
//! `benches/torch/compare.py --ours target/bench/vl-prompting-flex.json --torch
//! target/bench/torch-prompting.json` tables both. Test mode (`cargo test --all-targets`) runs the
//! step once at a 2-layer, 10-class size, to prove the harness cheaply.
//!
//! ```text
//! VL_BENCH_DEVICE=flex cargo bench -p vl-bench --bench prompting
//! ```

use std::path::PathBuf;
use std::time::Duration;

use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use vl_bench::{Row, Summary};
use vl_data::ClipTokenizer;
use vl_encoders::clip::ClipConfig;
use vl_prompting::model::{PromptTask, TaskTemplates, loss_from_features};
use vl_prompting::{HostRng, ObjectiveConfig, PromptConfig, TextPromptConfig};

const CONTEXT: usize = 77;
const N_CTX: usize = 16;
const BATCH: usize = 32;

/// Class names whose prompts `X x16 <name>.` are exactly `CONTEXT` tokens.
fn class_names(tokenizer: &ClipTokenizer, n: usize) -> Vec<String> {
    let eot = i64::from(tokenizer.eot_id());
    (0..n)
        .map(|c| {
            let mut name = format!("{c}");
            loop {
                let prompt = format!("{} {name}.", vec!["X"; N_CTX].join(" "));
                let ids = tokenizer.encode(&prompt).expect("tokenizable");
                let end = ids.iter().skip(1).position(|&i| i == eot).unwrap_or(0) + 1;
                if end + 1 >= CONTEXT {
                    break name;
                }
                name.push_str(" x");
            }
        })
        .collect()
}

fn main() {
    let (device_name, device) = vl_bench::bench_device();
    let quick = vl_bench::quick();
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let (layers, n_classes) = if measuring { (12, 100) } else { (2, 10) };
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 30 }))
        .configure_from_args();

    let tokenizer = ClipTokenizer::from_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/vl-data/tests/fixtures/clip_tokenizer"),
    )
    .expect("the vl-data fixture tokenizer");
    let autodiff = device.clone().autodiff();
    autodiff.seed(0);
    let mut config = ClipConfig::vit_base_patch16();
    config.text.n_layers = layers;
    let clip = config.init(&autodiff).no_grad();
    let names = class_names(&tokenizer, n_classes);
    let prompt = PromptConfig {
        text: Some(TextPromptConfig {
            n_ctx: N_CTX,
            ..TextPromptConfig::default()
        }),
        visual: None,
    };
    let mut learner = prompt
        .init(&clip, &tokenizer, n_classes, 0, &autodiff)
        .expect("learner");
    let objective = ObjectiveConfig::default();
    let task = PromptTask::new(
        &clip,
        &tokenizer,
        &learner,
        &names,
        &objective,
        &TaskTemplates::default(),
    )
    .expect("task");
    let [_, proj] = clip.text_projection.weight.dims();
    let mut rng = HostRng::new(1);
    let image = vl_encoders::clip::l2_normalize(rng.normal_tensor([BATCH, proj], 1.0, &autodiff));
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(
            (0..BATCH as i64)
                .map(|i| i % n_classes as i64)
                .collect::<Vec<_>>(),
            [BATCH],
        ),
        &autodiff,
    );
    let mut optim = SgdConfig::new().init();
    let mut step = || {
        let terms = loss_from_features(
            &clip,
            &learner,
            &task,
            &objective,
            image.clone(),
            targets.clone(),
            &[],
        );
        let grads = GradientsParams::from_grads(terms.total.backward(), &learner);
        learner = optim.step(0.002, learner.clone(), grads);
        learner.ctx.as_ref().map(|c| c.val())
    };

    let mut row = Row {
        bench: format!("vit-b16-text/coop-step/c{n_classes}"),
        model: "vit-b16-text".into(),
        what: "coop-step".into(),
        batch: n_classes,
        iters: 0,
        elapsed: Duration::ZERO,
        peak_rss_mb: None,
        peak_gpu_mb: None,
        samples: Vec::new(),
    };
    let mut group = criterion.benchmark_group(format!("{device_name}/coop-step/vit-b16-text"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(n_classes as u64));
    let mut warmed = false;
    group.bench_function(BenchmarkId::from_parameter(format!("c{n_classes}")), |b| {
        if !warmed && measuring {
            vl_bench::time_synced(&autodiff, 1, &mut step);
            vl_bench::reset_peak_rss();
        }
        warmed = true;
        b.iter_custom(|iters| {
            let elapsed = vl_bench::time_synced(&autodiff, iters, &mut step);
            row.record(iters, elapsed);
            row.peak_rss_mb = vl_bench::peak_rss_mb().or(row.peak_rss_mb);
            row.peak_gpu_mb = vl_bench::device_reserved_mb(&autodiff).or(row.peak_gpu_mb);
            elapsed
        });
    });
    group.finish();
    criterion.final_summary();
    if measuring && row.iters > 0 {
        let summary = Summary {
            device: device_name,
            git_revision: vl_bench::git_revision(),
            dtype: vl_bench::bench_dtype().0.to_owned(),
            quick,
            rows: vec![row],
        };
        match summary.write_named(&vl_bench::summary_dir(), "vl-prompting") {
            Ok(path) => eprintln!("summary written to {}", path.display()),
            Err(err) => panic!("cannot write the bench summary: {err}"),
        }
    }
}
