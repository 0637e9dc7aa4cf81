//! `vl prompt` (one few-shot prompt-learning run, base-to-novel) and `vl prompt-sweep` (several
//! method configs times several seeds, then a mean ± std table of base, novel and harmonic-mean
//! accuracy, zero-shot first).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use vl_train::prompt::{PromptOptions, PromptReport, PromptRunConfig, run_prompt};

use crate::device;

/// Arguments of `vl prompt`.
#[derive(Debug, Args)]
pub(crate) struct PromptArgs {
    /// Run config (TOML, see `crates/vl-train/src/prompt.rs`); missing keys take defaults.
    #[arg(long, conflicts_with = "preset")]
    config: Option<PathBuf>,
    /// Start from a method's paper preset instead (coop, cocoop, kgcoop, lasp, variational,
    /// vpt, maple).
    #[arg(long)]
    preset: Option<String>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the pretrained model directory.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run.
    #[arg(long)]
    resume: bool,
    /// Backend: flex, wgpu, cuda (default: the first compiled in).
    #[arg(long)]
    device: Option<String>,
    /// Stop after this many epochs (checkpoint kept; `--resume` continues).
    #[arg(long)]
    stop_after_epochs: Option<usize>,
}

/// Arguments of `vl prompt-sweep`.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// Method configs (TOML), one run per config and seed [default: every
    /// experiments/prompt/*.toml, in name order].
    #[arg(long, num_args = 1..)]
    configs: Vec<PathBuf>,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Override the pretrained model directory.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Sweep directory: `<method>-seed<k>/` per run, `results.md`, `results.json` and the
    /// `b2n.svg`/`b2n.png` chart.
    #[arg(long, default_value = "runs/prompt-b2n")]
    out: PathBuf,
    /// Backend: flex, wgpu, cuda (default: the first compiled in).
    #[arg(long)]
    device: Option<String>,
}

fn read_config(path: &Path) -> Result<PromptRunConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: not a prompt run config", path.display()))
}

fn options(out: PathBuf, device: Option<&str>) -> Result<PromptOptions> {
    let (backend, device) = device::select(device)?;
    Ok(PromptOptions {
        out_dir: out,
        resume: false,
        device,
        backend,
        git_revision: env!("VL_GIT_REVISION").to_owned(),
        stop_after_epochs: None,
        verbose: true,
        feature_cache: Some(PathBuf::from("runs/.feature-cache")),
    })
}

fn summary(r: &PromptReport) -> String {
    let pct = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
    format!(
        "{} seed {}: zero-shot base {:.1} novel {} HM {} | learned base {:.1} novel {} HM {} ({} trainable parameters, {:.0} s)",
        r.config.method,
        r.config.seed,
        r.zero_shot.base,
        pct(r.zero_shot.novel),
        pct(r.zero_shot.hm),
        r.learned.base,
        pct(r.learned.novel),
        pct(r.learned.hm),
        r.trainable_parameters,
        r.seconds
    )
}

/// `vl prompt`.
pub(crate) fn run(args: &PromptArgs) -> Result<()> {
    let mut config = match (&args.config, &args.preset) {
        (Some(path), _) => read_config(path)?,
        (None, Some(name)) => PromptRunConfig::paper_preset(name)?,
        (None, None) => PromptRunConfig::default(),
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(model) = &args.model {
        config.model.clone_from(model);
    }
    let mut opts = options(args.out.clone(), args.device.as_deref())?;
    opts.resume = args.resume;
    opts.stop_after_epochs = args.stop_after_epochs;
    let report = run_prompt(&config, &opts)?;
    println!("{}", summary(&report));
    Ok(())
}

/// `vl prompt-sweep`.
pub(crate) fn sweep(args: &SweepArgs) -> Result<()> {
    let configs = if args.configs.is_empty() {
        let dir = Path::new("experiments/prompt");
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| {
                format!(
                    "{}: run from the vlkit checkout, or pass --configs",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        found.sort();
        found
    } else {
        args.configs.clone()
    };
    let mut reports = Vec::new();
    for path in &configs {
        let base = read_config(path)?;
        for &seed in &args.seeds {
            let mut config = base.clone();
            config.seed = seed;
            if let Some(model) = &args.model {
                config.model.clone_from(model);
            }
            let out = args.out.join(format!("{}-seed{seed}", config.method));
            let mut opts = options(out.clone(), args.device.as_deref())?;
            // A sweep interrupted mid-run continues it.
            opts.resume = out.join("run.json").is_file();
            let report = run_prompt(&config, &opts)
                .with_context(|| format!("{} (seed {seed})", path.display()))?;
            eprintln!("{}", summary(&report));
            reports.push(report);
        }
    }
    let table = vl_train::prompt::write_sweep_results(&reports, &args.out)?;
    println!("{table}");
    Ok(())
}
