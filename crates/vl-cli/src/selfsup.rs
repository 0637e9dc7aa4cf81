//! `vl selfsup`: self-supervised training of the tiny vision tower from scratch on the synthetic
//! world (SimCLR or Sinkhorn-Knopp self-labelling), then linear-probe and kNN accuracy against
//! the same encoder at random initialisation. The work lives in `vl_train::selfsup`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use vl_train::selfsup::{SelfSupOptions, read_selfsup_config, run_selfsup, selfsup_markdown};

use crate::device;

/// Arguments of `vl selfsup`.
#[derive(Debug, Args)]
pub(crate) struct SelfSupArgs {
    /// Run config (TOML, see `crates/vl-train/src/selfsup.rs`).
    #[arg(long, default_value = "experiments/selfsup/simclr.toml")]
    config: PathBuf,
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

/// `vl selfsup`.
pub(crate) fn run(args: &SelfSupArgs) -> Result<()> {
    let config = read_selfsup_config(&args.config)?;
    let (backend, device) = device::select(args.device.as_deref())?;
    let opts = SelfSupOptions {
        out_dir: args.out.clone(),
        resume: args.resume,
        device,
        backend,
        git_revision: env!("VL_GIT_REVISION").to_owned(),
        stop_after_epochs: args.stop_after_epochs,
        verbose: true,
    };
    let report = run_selfsup(&config, &opts)
        .with_context(|| format!("self-supervised run {}", args.config.display()))?;
    println!("{}", selfsup_markdown(&report));
    Ok(())
}
