//! `vl pretrain` (train a CLIP from scratch on the synthetic world, or resume one) and `vl demo`
//! (the out-of-the-box run: pretrain the tiny model unless a finished run is already there, then
//! load the exported checkpoint like any Hugging Face CLIP and classify held-out images zero-shot,
//! then run the quick-start experiment `experiments/quickstart.toml` on it: base-to-novel with
//! zero-shot, linear probe, CoOp, CoCoOp, KgCoOp, LASP and LoRA, 3 seeds, table and plots).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::prelude::*;
use clap::Args;
use vl_data::synthetic::{Split, SyntheticWorld, Task, with_article};
use vl_data::{ClipTokenizer, ImagePreprocessor, PreprocessConfig};
use vl_train::{PretrainConfig, PretrainOptions, PretrainReport};

use crate::device;

/// Arguments of `vl pretrain`.
#[derive(Debug, Args)]
pub(crate) struct PretrainArgs {
    /// Run config (TOML); missing keys take their defaults.
    #[arg(long, default_value = "experiments/pretrain-tiny.toml")]
    config: PathBuf,
    /// Run directory; at the end it is a Hugging Face CLIP checkpoint.
    #[arg(long, default_value = "runs/pretrain-tiny")]
    out: PathBuf,
    /// Continue an interrupted run in `--out` from its last complete epoch.
    #[arg(long)]
    resume: bool,
    /// Delete whatever `--out` holds and start over.
    #[arg(long)]
    force: bool,
    /// Backend: flex, wgpu, cuda (default: the first compiled in).
    #[arg(long)]
    device: Option<String>,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many epochs (keeping the checkpoint; `--resume` continues).
    #[arg(long)]
    stop_after_epochs: Option<usize>,
}

/// Arguments of `vl demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Run config (TOML) used when the model must be trained.
    #[arg(long, default_value = "experiments/pretrain-tiny.toml")]
    config: PathBuf,
    /// Run directory, reused when it holds a finished run.
    #[arg(long, default_value = "runs/pretrain-tiny")]
    out: PathBuf,
    /// Backend: flex, wgpu, cuda (default: the first compiled in).
    #[arg(long)]
    device: Option<String>,
    /// Held-out images to show.
    #[arg(long, default_value_t = 8)]
    show: usize,
    /// The experiment run on the pretrained model afterwards (its `model` must be `--out`).
    #[arg(long, default_value = "experiments/quickstart.toml")]
    experiment: PathBuf,
    /// Skip the experiment: pretrain (or reuse) and show zero-shot predictions only.
    #[arg(long)]
    no_experiment: bool,
}

fn load_config(path: &PathBuf) -> Result<PretrainConfig> {
    if path.is_file() {
        Ok(PretrainConfig::from_toml_file(path)?)
    } else {
        anyhow::bail!(
            "{}: no such config file (run from the vlkit checkout, or pass --config)",
            path.display()
        )
    }
}

fn options(out: PathBuf, device: Option<&str>) -> Result<PretrainOptions> {
    let (backend, device) = device::select(device)?;
    Ok(PretrainOptions {
        out_dir: out,
        resume: false,
        force: false,
        device,
        backend,
        git_revision: env!("VL_GIT_REVISION").to_owned(),
        stop_after_epochs: None,
    })
}

/// `vl pretrain`.
pub(crate) fn run_pretrain(args: &PretrainArgs) -> Result<()> {
    let mut config = load_config(&args.config)?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let mut opts = options(args.out.clone(), args.device.as_deref())?;
    opts.resume = args.resume;
    opts.force = args.force;
    opts.stop_after_epochs = args.stop_after_epochs;
    let report = vl_train::pretrain(&config, &opts)?;
    print_summary(&report, &args.out);
    Ok(())
}

fn print_summary(report: &PretrainReport, out: &std::path::Path) {
    println!("{}", vl_train::report::results_markdown(report));
    println!(
        "checkpoint: {} (config.json, model.safetensors, tokenizer.json, preprocessor_config.json)",
        out.display()
    );
}

/// `vl demo`.
pub(crate) fn run_demo(args: &DemoArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let report = if vl_train::is_finished(&args.out) {
        eprintln!("reusing the finished run in {}", args.out.display());
        vl_train::read_report(&args.out)?
    } else {
        let config = load_config(&args.config)?;
        let mut opts = options(args.out.clone(), args.device.as_deref())?;
        // An interrupted demo continues where it stopped.
        opts.resume = args.out.join("run.toml").is_file();
        vl_train::pretrain(&config, &opts)?
    };
    print_summary(&report, &args.out);

    // The checkpoint as any other CLIP: generic loader, tokenizer and preprocessor files.
    let (_, device) = device::select(args.device.as_deref())?;
    let (clip, _) = vl_encoders::clip::load_clip(
        &args.out,
        &vl_encoders::clip::LoadOptions::default(),
        &device,
    )
    .with_context(|| format!("loading {} as a CLIP checkpoint", args.out.display()))?;
    let tokenizer = ClipTokenizer::from_dir(&args.out)?;
    let preprocessor = ImagePreprocessor::new(PreprocessConfig::from_hf_file(
        args.out.join("preprocessor_config.json"),
    )?)?;
    let world = SyntheticWorld::new(report.config.world_config())?;
    let classes = world.class_names(Task::ShapeColour);
    let prompts: Vec<String> = classes
        .iter()
        .map(|c| format!("a photo of {}", with_article(c)))
        .collect();
    let text = clip.encode_text(tokenizer.encode_batch(&prompts)?.to_tensor(&device));
    let set = world.classification_set(Task::ShapeColour, Split::HeldOut, args.show)?;
    let mut pixels = Vec::new();
    for &(index, _) in &set {
        pixels.extend(preprocessor.preprocess(&world.sample_in(Split::HeldOut, index).image));
    }
    let size = report.config.world.image_size as usize;
    let images =
        Tensor::<4>::from_data(TensorData::new(pixels, [set.len(), 3, size, size]), &device);
    let probs = burn::tensor::activation::softmax(clip.logits(clip.encode_image(images), text), 1);
    let probs: Vec<f32> = probs.into_data().convert::<f32>().try_into_vec()?;
    println!(
        "\nzero-shot on held-out images (combinations never captioned in pretraining), \
         prompt \"a photo of a <colour> <shape>\", {} classes:\n",
        classes.len()
    );
    println!("| held-out image | true class | predicted | p |\n|---:|---|---|---:|");
    for (row, &(index, label)) in set.iter().enumerate() {
        let p = &probs[row * classes.len()..(row + 1) * classes.len()];
        let (best, pbest) =
            p.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        println!(
            "| {index} | {} | {}{} | {pbest:.2} |",
            classes[label],
            classes[best],
            if best == label { "" } else { " ✗" }
        );
    }
    if args.no_experiment {
        return Ok(());
    }
    println!(
        "\nrunning {} on {}",
        args.experiment.display(),
        args.out.display()
    );
    let out = crate::run::run(&crate::run::RunArgs {
        experiment: args.experiment.clone(),
        out: None,
        seeds: Vec::new(),
        device: args.device.clone(),
    })?;
    println!(
        "demo finished in {:.1} min (pretraining reused or resumed where possible); results in {}",
        started.elapsed().as_secs_f64() / 60.0,
        out.display()
    );
    Ok(())
}
