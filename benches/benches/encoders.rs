//! Criterion benches of the CLIP encoders at the real ViT-B shapes, with random weights, on the
//! device picked by `VL_BENCH_DEVICE` (see `vl_bench::bench_device`).
//!
//! Groups are named by device, ids by batch size, throughput in images or texts:
//! `<device>/vit-b32/image` and `<device>/vit-b16/image` (`encode_image`, `[n, 3, 224, 224]`) and
//! `<device>/vit-b32/text` (`encode_text`, 77 tokens; ViT-B/16 has the same text tower). On the
//! CPU the ids are `b8` and `b32` for both; on a GPU (cuda, wgpu) the images run at batch 1, 32
//! and 256 and the texts at 64 and 1024. `VL_BENCH_BATCHES=8,32` overrides both lists, and
//! `VL_BENCH_DTYPE=bf16` (or `f16`) runs weights and activations in half precision. Inputs are made once outside the timed region, each bench makes one untimed
//! call first (on a GPU it compiles the kernels), and the device is synced inside the timed region.
//!
//! Besides criterion's report, a run writes `target/bench/vl-<device>.json` with one row per bench
//! under the ids of `benches/torch/bench_encoders.py` (`vit-b32/image/b8`, ...): mean ms per call
//! and items/s over every timed call, the peak RSS during them, and on a GPU the device memory
//! Burn's allocator reserved. `benches/torch/compare.py` tables it against PyTorch.
//!
//! Defaults suit a 2-core CPU (ViT-B/16 at batch 32 takes 10-20 s a call on flex there): 10 flat
//! samples, 2 s warm-up, 10 s measurement; criterion's command line (`-- --measurement-time 30`,
//! a filter) overrides them. `VL_BENCH_QUICK=1` benches batch 8 only, one call per sample; so does test mode
//! (`cargo test --all-targets`, which runs each bench once).
//!
//! ```text
//! VL_BENCH_DEVICE=flex cargo bench -p vl-bench --bench encoders
//! VL_BENCH_DEVICE=cuda cargo bench -p vl-bench --no-default-features --features cuda --bench encoders
//! ```

use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use vl_bench::{Row, Summary};
use vl_encoders::clip::{Clip, ClipConfig};

/// Batch sizes of a full run on the CPU, images and texts alike; a quick run keeps the first.
const CPU_BATCHES: [usize; 2] = [8, 32];
/// Image batch sizes of a full run on a GPU (the issue's 1, 32 and 256).
const GPU_IMAGE_BATCHES: [usize; 3] = [1, 32, 256];
/// Text batch sizes of a full run on a GPU (the issue's 64 and 1024).
const GPU_TEXT_BATCHES: [usize; 2] = [64, 1024];
/// CLIP's context length.
const SEQ_LENGTH: usize = 77;
/// CLIP's `<|startoftext|>` id.
const BOS_ID: i64 = 49406;
/// CLIP's `<|endoftext|>` id, the last of its 49408 ids.
const EOS_ID: i64 = 49407;

fn main() {
    let (device_name, device) = vl_bench::bench_device();
    let quick = vl_bench::quick();
    let (warm_up, measurement) = if quick {
        (Duration::from_millis(1), Duration::from_millis(1))
    } else {
        (Duration::from_secs(2), Duration::from_secs(10))
    };
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .configure_from_args();
    let mode = Mode::from_args();
    let measuring = mode == Mode::Measure;
    // `cargo test --all-targets` (CI) runs every bench once: the first batch proves the harness
    // at a fraction of the cost. `VL_BENCH_BATCHES` overrides both lists.
    let (image_batches, text_batches) = if vl_bench::is_gpu(&device_name) {
        (&GPU_IMAGE_BATCHES[..], &GPU_TEXT_BATCHES[..])
    } else {
        (&CPU_BATCHES[..], &CPU_BATCHES[..])
    };
    let pick = |default: &[usize]| {
        let all = vl_bench::batches(default);
        if quick || mode == Mode::Test {
            all[..1].to_vec()
        } else {
            all
        }
    };
    let (image_batches, text_batches) = (pick(image_batches), pick(text_batches));
    let mut bencher = Encoders {
        device_name: &device_name,
        device: &device,
        batches: &image_batches,
        measuring,
        rows: Vec::new(),
    };

    device.seed(0);
    let clip = ClipConfig::vit_base_patch32().init(&device);
    // The precision asked for is the one the weights are in (not a silent f32 run).
    let (dtype_name, dtype) = vl_bench::bench_dtype();
    assert_eq!(
        clip.visual_projection.weight.val().dtype(),
        dtype.into(),
        "VL_BENCH_DTYPE={dtype_name}, but the weights were made in another type"
    );
    bencher.image(&mut criterion, "vit-b32", &clip);
    bencher.batches = &text_batches;
    bencher.text(&mut criterion, "vit-b32", &clip);
    bencher.batches = &image_batches;
    drop(clip);
    device.memory_cleanup();
    let clip = ClipConfig::vit_base_patch16().init(&device);
    bencher.image(&mut criterion, "vit-b16", &clip);
    drop(clip);

    criterion.final_summary();
    if measuring {
        let summary = Summary {
            device: device_name.clone(),
            git_revision: vl_bench::git_revision(),
            dtype: vl_bench::bench_dtype().0.to_owned(),
            quick,
            rows: bencher.rows,
        };
        match summary.write(&vl_bench::summary_dir()) {
            Ok(path) => eprintln!("summary written to {}", path.display()),
            Err(err) => panic!("cannot write the bench summary: {err}"),
        }
    }
}

/// What criterion will do with the benches, as criterion decides it (privately) in
/// `Criterion::configure_from_args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `cargo bench`: measure, and write the summary.
    Measure,
    /// `cargo test --benches` or `cargo bench -- --test`: run each bench once.
    Test,
    /// `--list` or `--profile-time`: no summary.
    Other,
}

impl Mode {
    fn from_args() -> Mode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| {
            args.iter()
                .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")))
        };
        if has("--list") {
            Mode::Other
        } else if has("--test") || !has("--bench") {
            Mode::Test
        } else if has("--profile-time") {
            Mode::Other
        } else {
            Mode::Measure
        }
    }
}

/// The state shared by the encoder benches of one run.
struct Encoders<'a> {
    device_name: &'a str,
    device: &'a Device,
    batches: &'a [usize],
    measuring: bool,
    rows: Vec<Row>,
}

impl Encoders<'_> {
    /// `<device>/<model>/image`: `encode_image` on `[batch, 3, 224, 224]` standard-normal pixels.
    fn image(&mut self, criterion: &mut Criterion, model: &str, clip: &Clip) {
        let mut group = self.group(criterion, model, "image");
        for &batch in self.batches {
            let pixels = Tensor::<4>::random(
                [batch, 3, 224, 224],
                Distribution::Normal(0.0, 1.0),
                self.device,
            );
            let row = self.bench(&mut group, model, "image", batch, || {
                clip.encode_image(pixels.clone())
            });
            self.rows.extend(row);
        }
        group.finish();
    }

    /// `<device>/<model>/text`: `encode_text` on `[batch, 77]` ids: `<|startoftext|>`, random
    /// ordinary tokens, `<|endoftext|>` last.
    fn text(&mut self, criterion: &mut Criterion, model: &str, clip: &Clip) {
        let mut group = self.group(criterion, model, "text");
        for &batch in self.batches {
            let ids = token_ids(batch, self.device);
            let row = self.bench(&mut group, model, "text", batch, || {
                clip.encode_text(ids.clone())
            });
            self.rows.extend(row);
        }
        group.finish();
    }

    fn group<'c>(
        &self,
        criterion: &'c mut Criterion,
        model: &str,
        what: &str,
    ) -> BenchmarkGroup<'c, WallTime> {
        let mut group = criterion.benchmark_group(format!("{}/{model}/{what}", self.device_name));
        // A call takes seconds: equal samples, not criterion's linear ramp (which would need
        // 55 calls for 10 samples).
        group.sampling_mode(SamplingMode::Flat);
        group
    }

    /// Benches `forward` as id `b<batch>` of `group`; returns the summary row, or `None` when
    /// criterion did not run it (filtered out, or not a measuring run).
    fn bench<T>(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        model: &str,
        what: &str,
        batch: usize,
        mut forward: impl FnMut() -> T,
    ) -> Option<Row> {
        let device = self.device;
        let mut row = Row {
            bench: format!("{model}/{what}/b{batch}"),
            model: model.to_owned(),
            what: what.to_owned(),
            batch,
            iters: 0,
            elapsed: Duration::ZERO,
            peak_rss_mb: None,
            peak_gpu_mb: None,
            samples: Vec::new(),
        };
        let mut warmed_up = false;
        group.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::from_parameter(format!("b{batch}"));
        group.bench_function(id, |bencher| {
            if !warmed_up && self.measuring {
                // Untimed, and outside `iter_custom` so that criterion's warm-up clock does not
                // see it either: materialises the lazy weights and, on a GPU, compiles and
                // autotunes the kernels. Memory counts from here on (after handing back what
                // earlier benches left in the allocator's pools).
                device.memory_cleanup();
                vl_bench::time_synced(device, 1, &mut forward);
                vl_bench::reset_peak_rss();
            }
            warmed_up = true;
            bencher.iter_custom(|iters| {
                let elapsed = vl_bench::time_synced(device, iters, &mut forward);
                row.record(iters, elapsed);
                row.peak_rss_mb = max(row.peak_rss_mb, vl_bench::peak_rss_mb());
                row.peak_gpu_mb = max(row.peak_gpu_mb, vl_bench::device_reserved_mb(device));
                elapsed
            });
        });
        (self.measuring && row.iters > 0).then_some(row)
    }
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `[batch, 77]` token ids as in `bench_encoders.py`: `<|startoftext|>`, ids in `1..49406` from a
/// fixed-seed generator, `<|endoftext|>` last (so both pooling rules pick the last position).
fn token_ids(batch: usize, device: &Device) -> Tensor<2, Int> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ batch as u64;
    let mut ids = Vec::with_capacity(batch * SEQ_LENGTH);
    for _ in 0..batch {
        ids.push(BOS_ID);
        for _ in 1..SEQ_LENGTH - 1 {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let draw = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
            ids.push(1 + (draw % (BOS_ID as u64 - 1)) as i64);
        }
        ids.push(EOS_ID);
    }
    Tensor::from_data(TensorData::new(ids, [batch, SEQ_LENGTH]), device)
}
