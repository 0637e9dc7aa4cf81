//! `vl run` (every cell of an experiment file: data sets x methods x shots x seeds, resumable,
//! then the tables and plots) and `vl report` (re-aggregate an experiment's output directory).
//! The work lives in `vl_train::experiment`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use vl_train::experiment::{Experiment, ExperimentOptions, report, run_experiment};
use vl_train::prompt::PromptOptions;

use crate::device;

/// Arguments of `vl run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The experiment file (TOML, see `crates/vl-train/src/experiment.rs`).
    pub(crate) experiment: PathBuf,
    /// Output directory [default: runs/<experiment name>].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Override the experiment's seeds, e.g. `--seeds 1,2`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) seeds: Vec<u64>,
    /// Backend: flex, wgpu, cuda (default: the first compiled in).
    #[arg(long)]
    pub(crate) device: Option<String>,
}

/// Arguments of `vl report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// An experiment's output directory, or its experiment file (then runs/<name>).
    pub(crate) path: PathBuf,
}

/// `vl run`; returns the output directory.
pub(crate) fn run(args: &RunArgs) -> Result<PathBuf> {
    let mut exp = Experiment::from_file(&args.experiment)?;
    if !args.seeds.is_empty() {
        exp.seeds.clone_from(&args.seeds);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join(&exp.name));
    let (backend, device) = device::select(args.device.as_deref())?;
    let opts = ExperimentOptions {
        out_dir: out.clone(),
        run: PromptOptions {
            out_dir: out.clone(),
            resume: false,
            device,
            backend,
            git_revision: env!("VL_GIT_REVISION").to_owned(),
            stop_after_epochs: None,
            verbose: true,
            feature_cache: Some(PathBuf::from("runs/.feature-cache")),
        },
        interrupt: None,
    };
    let started = std::time::Instant::now();
    run_experiment(&exp, &opts)
        .with_context(|| format!("experiment {}", args.experiment.display()))?;
    let md = std::fs::read_to_string(out.join("results.md"))
        .with_context(|| format!("reading {}", out.join("results.md").display()))?;
    println!("{md}");
    // Name what was written: the self-supervised and retrieval protocols write no plot.
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .with_context(|| format!("listing {}", out.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            [".md", ".csv", ".svg", ".png"]
                .iter()
                .any(|x| n.ends_with(x))
        })
        .collect();
    written.sort();
    println!(
        "{} finished in {:.0} s; tables and plots in {} ({})",
        exp.name,
        started.elapsed().as_secs_f64(),
        out.display(),
        written.join(", ")
    );
    Ok(out)
}

/// `vl report`.
pub(crate) fn report_cmd(args: &ReportArgs) -> Result<()> {
    let out = if args.path.is_file() {
        Path::new("runs").join(Experiment::from_file(&args.path)?.name)
    } else {
        args.path.clone()
    };
    let md = report(&out).with_context(|| format!("report of {}", out.display()))?;
    println!("{md}");
    println!("written: {}/results.md, results.csv, plots", out.display());
    Ok(())
}
