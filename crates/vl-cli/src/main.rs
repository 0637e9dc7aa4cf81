//! `vl`, the vlkit command line. Today it has `embed`: image and text embeddings (and CLIP
//! logits) from any CLIP checkpoint — a local Hugging Face or open_clip directory, a bare
//! `.safetensors` file, or a Hugging Face hub id resolved through the local hub cache.
//! `cargo xtask embed ...` builds and runs it with the chosen backend feature.

mod device;
mod embed;
mod hub;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => embed::run(&args),
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
