//! See <https://github.com/matklad/cargo-xtask/>.
//!
//! `cargo xtask` is this workspace's project automation, written in Rust instead of shell
//! scripts: it builds and launches `vl` with the right Burn backend, runs the benches, and runs
//! the exact checks CI runs (`cargo xtask ci`: green here means green in CI). Run
//! `cargo xtask help` for the commands. There is one module per command; `flags.rs` holds the
//! hand-rolled argument parsing and the help text. Keep this crate fast to build: std and
//! `anyhow` only, no Burn.

mod bench;
mod ci;
mod flags;
mod shell;
mod tidy;
mod vl;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::{flags::Xtask, shell::Shell};

fn main() -> ExitCode {
    // Print errors ourselves: `fn main() -> Result` would add anyhow's backtrace when
    // `RUST_BACKTRACE` is set, burying the one line that matters.
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let flags = Xtask::from_env()?;
    let sh = &Shell::new();
    match flags {
        Xtask::Help => {
            print!("{}", flags::help());
            Ok(())
        }
        Xtask::Vl(cmd) => cmd.run(sh),
        Xtask::Bench(cmd) => cmd.run(sh),
        Xtask::Ci(cmd) => cmd.run(sh),
        Xtask::Test(cmd) => cmd.run(sh),
        Xtask::Tidy(cmd) => cmd.run(sh),
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask's manifest directory has a parent")
        .to_path_buf()
}
