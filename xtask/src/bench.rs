//! `cargo xtask bench`: run vl-bench's criterion bench `encoders` on one Burn backend, and with
//! `--torch` the PyTorch baseline `benches/torch/bench_encoders.py` after it, then
//! `benches/torch/compare.py`, which prints one Markdown table of both.
//!
//! The bench learns its device from `VL_BENCH_DEVICE` and writes `target/bench/vl-<device>.json`.
//! The baseline runs on the matching torch device (`flex` → `cpu`; `wgpu` and `cuda` → `cuda`, the
//! same GPU) and writes `target/bench/torch.json`; the table goes to
//! `target/bench/compare-<device>.md`. Python is `.venv/bin/python` where that exists (see
//! `tools/fixtures/README.md`), else `python3`. A missing Python or torch is a warning, not an
//! error: our benches still run. With `VL_BENCH_QUICK` set (the bench then measures batch 8
//! only), the baseline is shortened to match.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    flags::{self, Backend},
    shell::Shell,
};

const TORCH_SCRIPT: &str = "benches/torch/bench_encoders.py";
const COMPARE_SCRIPT: &str = "benches/torch/compare.py";
const TORCH_JSON: &str = "target/bench/torch.json";
/// The project's Python environment, relative to the root.
const VENV_PYTHON: &str = ".venv/bin/python";
/// Set (and neither empty nor `0`) for a short run; the bench reads it too.
const QUICK_VAR: &str = "VL_BENCH_QUICK";

impl flags::Bench {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        // Decide about the baseline before the long Rust bench, so a broken setup shows at once.
        let torch = if self.torch {
            torch_baseline(sh, self.backend)?
        } else {
            None
        };

        let mut cmd = sh.cargo();
        cmd.env("VL_BENCH_DEVICE", self.backend.name())
            .args(["bench", "-p", "vl-bench"])
            .args(self.backend.cargo_feature_args())
            .args(["--bench", "encoders"]);
        if !self.criterion_args.is_empty() {
            cmd.arg("--").args(&self.criterion_args);
        }
        sh.run(&mut cmd)?;

        if let Some(Baseline {
            mut torch,
            mut compare,
        }) = torch
        {
            let json = sh.root().join(TORCH_JSON);
            let dir = json.parent().expect("the json path has a directory");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            sh.run(&mut torch)?;
            eprintln!("PyTorch baseline written to {TORCH_JSON}");
            sh.run(&mut compare)?;
        }
        Ok(())
    }
}

/// The commands run after our bench with `--torch`.
struct Baseline {
    /// `bench_encoders.py`, writing [`TORCH_JSON`].
    torch: Command,
    /// `compare.py`, tabling our summary against [`TORCH_JSON`].
    compare: Command,
}

/// The baseline commands, or `None` (after a warning) when Python or torch is missing.
fn torch_baseline(sh: &Shell, backend: Backend) -> Result<Option<Baseline>> {
    for script in [TORCH_SCRIPT, COMPARE_SCRIPT] {
        if !sh.root().join(script).is_file() {
            bail!("`--torch` needs {script}, which does not exist");
        }
    }
    let python = python(sh.root());
    let shown = python.display();
    let probe = sh
        .cmd(&python)
        .args(["-c", "import torch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let missing = match probe {
        Ok(status) if status.success() => None,
        Ok(_) => Some(format!(
            "{shown} cannot `import torch` (is PyTorch installed?)"
        )),
        Err(err) => Some(format!("cannot run {shown} ({err})")),
    };
    if let Some(missing) = missing {
        eprintln!(
            "warning: {missing}; skipping the PyTorch baseline, running vlkit's benches only"
        );
        return Ok(None);
    }
    let mut torch = sh.cmd(&python);
    torch.args(torch_args(backend, quick()));
    let mut compare = sh.cmd(&python);
    compare.args([COMPARE_SCRIPT, "--device", backend.name()]);
    Ok(Some(Baseline { torch, compare }))
}

/// The project's virtual environment's Python where it exists, else `python3` from `PATH`.
fn python(root: &Path) -> PathBuf {
    let venv = root.join(VENV_PYTHON);
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Whether `VL_BENCH_QUICK` asks for a short run (the bench's own rule).
fn quick() -> bool {
    std::env::var_os(QUICK_VAR).is_some_and(|value| !value.is_empty() && value != "0")
}

/// Arguments of `bench_encoders.py` for `backend`: the matching torch device, and in a quick run
/// the same batch as the quick bench and fewer calls.
fn torch_args(backend: Backend, quick: bool) -> Vec<&'static str> {
    let torch_device = match backend {
        Backend::Flex => "cpu",
        Backend::Wgpu | Backend::Cuda => "cuda",
    };
    let mut args = vec![
        TORCH_SCRIPT,
        "--device",
        torch_device,
        "--json-out",
        TORCH_JSON,
    ];
    if quick {
        args.extend(["--batches", "8", "--iters", "3", "--warmup", "1"]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_runs_on_the_matching_device() {
        assert_eq!(
            torch_args(Backend::Flex, false),
            [TORCH_SCRIPT, "--device", "cpu", "--json-out", TORCH_JSON]
        );
        assert_eq!(torch_args(Backend::Wgpu, false)[2], "cuda");
        assert_eq!(torch_args(Backend::Cuda, false)[2], "cuda");
    }

    #[test]
    fn quick_run_shortens_the_baseline() {
        let args = torch_args(Backend::Flex, true);
        assert_eq!(
            args[5..],
            ["--batches", "8", "--iters", "3", "--warmup", "1"]
        );
    }

    #[test]
    fn python_falls_back_to_python3_without_a_venv() {
        let root = Path::new("/nonexistent/vlkit");
        assert_eq!(python(root), PathBuf::from("python3"));
    }
}
