//! `cargo xtask ci` and `cargo xtask test`: the checks CI runs (`.ci/run` calls `cargo xtask ci`),
//! so that green here means green in CI.
//!
//! The steps are the format check, clippy with warnings denied, then [`TEST_COMMAND`], all with
//! default features (the `flex` backend). Each step prints its wall time; the first failure stops
//! the run with a non-zero exit. The tidy checks run inside the test step, as a test of xtask.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{flags, shell::Shell};

/// The test command of CI and of `cargo xtask test` (cargo arguments); the only place it is
/// spelled out.
pub(crate) const TEST_COMMAND: &[&str] = &["test", "--workspace", "--all-targets"];

const FMT_COMMAND: &[&str] = &["fmt", "--all", "--", "--check"];
const CLIPPY_COMMAND: &[&str] = &[
    "clippy",
    "--workspace",
    "--all-targets",
    "--",
    "-D",
    "warnings",
];

impl flags::Ci {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let start = Instant::now();
        let mut timings = Vec::new();
        for cargo_args in [FMT_COMMAND, CLIPPY_COMMAND, TEST_COMMAND] {
            timings.push((cargo_args, step(sh, cargo_args)?));
        }
        eprintln!("\nci passed in {}:", seconds(start.elapsed()));
        for (cargo_args, elapsed) in timings {
            eprintln!("  {:>8}  cargo {}", seconds(elapsed), cargo_args.join(" "));
        }
        Ok(())
    }
}

impl flags::Test {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        step(sh, TEST_COMMAND).map(drop)
    }
}

/// Runs `cargo <cargo_args>`, printing its start and its wall time.
fn step(sh: &Shell, cargo_args: &[&str]) -> Result<Duration> {
    let shown = format!("cargo {}", cargo_args.join(" "));
    eprintln!("\n==> {shown}");
    let start = Instant::now();
    let result = sh.run(sh.cargo().args(cargo_args));
    let elapsed = start.elapsed();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    eprintln!("<== {shown}: {verdict} in {}", seconds(elapsed));
    result.map(|()| elapsed)
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}
