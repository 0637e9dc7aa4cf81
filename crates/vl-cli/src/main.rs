//! `vl`, the vlkit command line: `embed` (image and text embeddings and CLIP logits from any CLIP
//! checkpoint — a local Hugging Face or open_clip directory, a bare `.safetensors` file, or a
//! Hugging Face hub id resolved through the local hub cache), `pretrain` (a CLIP from scratch on
//! the synthetic world), `demo` (pretrain or reuse the tiny model, then classify zero-shot),
//! `prompt` (few-shot prompt learning, base-to-novel) and `prompt-sweep` (methods x seeds, one
//! table), `run` (an experiment file: data sets x methods x shots x seeds, then tables and plots)
//! `report` (re-aggregate an experiment's runs) and `selfsup` (SimCLR / Sinkhorn-Knopp from
//! scratch, probed).
//! `cargo xtask embed|pretrain|demo ...` builds and runs it with the chosen backend feature.

mod device;
mod embed;
mod hub;
mod pretrain;
mod prompt;
mod run;
mod selfsup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// vlkit: vision-language research on Burn.
#[derive(Debug, Parser)]
#[command(name = "vl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embed images and captions with a CLIP checkpoint and write JSON.
    Embed(embed::EmbedArgs),
    /// Pretrain a CLIP from scratch on the synthetic world (or resume a run).
    Pretrain(pretrain::PretrainArgs),
    /// Pretrain the tiny model (or reuse a finished run) and show zero-shot results.
    Demo(pretrain::DemoArgs),
    /// Few-shot prompt learning on a pretrained model, base-to-novel (one run).
    Prompt(prompt::PromptArgs),
    /// Prompt-learning methods times seeds, then a base/novel/HM table.
    PromptSweep(prompt::SweepArgs),
    /// Every cell of an experiment file (resumable), then its tables and plots.
    Run(run::RunArgs),
    /// Re-aggregate an experiment's runs into tables and plots.
    Report(run::ReportArgs),
    /// Self-supervised vision training from scratch (SimCLR, Sinkhorn-Knopp), probed.
    Selfsup(selfsup::SelfSupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => embed::run(&args),
        Command::Pretrain(args) => pretrain::run_pretrain(&args),
        Command::Demo(args) => pretrain::run_demo(&args),
        Command::Prompt(args) => prompt::run(&args),
        Command::PromptSweep(args) => prompt::sweep(&args),
        Command::Run(args) => run::run(&args).map(|_| ()),
        Command::Report(args) => run::report_cmd(&args),
        Command::Selfsup(args) => selfsup::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
