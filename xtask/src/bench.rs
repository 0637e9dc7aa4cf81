//! `cargo xtask bench`: run one criterion bench of vl-bench (`--suite`: `encoders`, `steps` or
//! `prompting`) on one Burn backend, in one precision (`--dtype`), and with `--compare-torch` its
//! PyTorch twin in `benches/torch/` after it, then `benches/torch/compare.py`, which prints one
//! Markdown table of both.
//!
//! The bench learns its device from `VL_BENCH_DEVICE` and its precision from `VL_BENCH_DTYPE`,
//! and writes `target/bench/<stem>-<device>[-<dtype>].json` (stem `vl`, `vl-steps`,
//! `vl-prompting`). The twin runs on the matching torch device (`flex` → `cpu`; `wgpu` and `cuda`
//! → `cuda`, the same GPU) and writes `target/bench/torch[-<suite>][-<dtype>].json`; the table
//! goes to `target/bench/compare[-<suite>]-<device>[-<dtype>].md` (the encoders suite keeps the
//! short names). Python is `.venv/bin/python` where that exists (see `tools/fixtures/README.md`),
//! else `python3`. A missing Python or torch is a warning, not an error: our benches still run.
//! With `VL_BENCH_QUICK` set (the bench then measures its first batch only), the twin is
//! shortened to match.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    flags::{self, Backend, Dtype, Suite},
    shell::Shell,
};

const COMPARE_SCRIPT: &str = "benches/torch/compare.py";
/// The project's Python environment, relative to the root.
const VENV_PYTHON: &str = ".venv/bin/python";
/// Set (and neither empty nor `0`) for a short run; the bench reads it too.
const QUICK_VAR: &str = "VL_BENCH_QUICK";

impl flags::Bench {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let files = Files::new(self.suite, self.backend, self.dtype);
        // Decide about the baseline before the long Rust bench, so a broken setup shows at once.
        let torch = if self.torch {
            if self.suite != Suite::Encoders && self.dtype != Dtype::F32 {
                bail!(
                    "the PyTorch twin of `{}` runs in fp32 only; drop --compare-torch or \
                     --dtype {}",
                    self.suite.name(),
                    self.dtype.name()
                );
            }
            torch_baseline(sh, &files, self.backend, self.dtype)?
        } else {
            None
        };

        let mut cmd = sh.cargo();
        cmd.env("VL_BENCH_DEVICE", self.backend.name())
            .env("VL_BENCH_DTYPE", self.dtype.name())
            .args(["bench", "-p", "vl-bench"])
            .args(self.backend.cargo_feature_args())
            .args(["--bench", self.suite.name()]);
        if !self.criterion_args.is_empty() {
            cmd.arg("--").args(&self.criterion_args);
        }
        sh.run(&mut cmd)?;

        if let Some(Baseline {
            mut torch,
            mut compare,
        }) = torch
        {
            let json = sh.root().join(&files.torch_json);
            let dir = json.parent().expect("the json path has a directory");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            sh.run(&mut torch)?;
            eprintln!("PyTorch baseline written to {}", files.torch_json);
            sh.run(&mut compare)?;
        }
        Ok(())
    }
}

/// The files of one suite's run, relative to the root.
#[derive(Debug, PartialEq)]
struct Files {
    /// The PyTorch twin.
    script: &'static str,
    /// Our bench's summary.
    ours_json: String,
    /// The twin's results.
    torch_json: String,
    /// The table.
    table: String,
}

impl Files {
    fn new(suite: Suite, backend: Backend, dtype: Dtype) -> Files {
        let (script, ours, torch, table) = match suite {
            Suite::Encoders => ("benches/torch/bench_encoders.py", "vl", "torch", "compare"),
            Suite::Steps => (
                "benches/torch/bench_steps.py",
                "vl-steps",
                "torch-steps",
                "compare-steps",
            ),
            Suite::Prompting => (
                "benches/torch/bench_prompting.py",
                "vl-prompting",
                "torch-prompting",
                "compare-prompting",
            ),
        };
        let dtype = match dtype {
            Dtype::F32 => String::new(),
            other => format!("-{}", other.name()),
        };
        let device = backend.name();
        Files {
            script,
            ours_json: format!("target/bench/{ours}-{device}{dtype}.json"),
            torch_json: format!("target/bench/{torch}{dtype}.json"),
            table: format!("target/bench/{table}-{device}{dtype}.md"),
        }
    }
}

/// The commands run after our bench with `--compare-torch`.
struct Baseline {
    /// The suite's twin, writing [`Files::torch_json`].
    torch: Command,
    /// `compare.py`, tabling our summary against [`Files::torch_json`].
    compare: Command,
}

/// The baseline commands, or `None` (after a warning) when Python or torch is missing.
fn torch_baseline(
    sh: &Shell,
    files: &Files,
    backend: Backend,
    dtype: Dtype,
) -> Result<Option<Baseline>> {
    for script in [files.script, COMPARE_SCRIPT] {
        if !sh.root().join(script).is_file() {
            bail!("`--compare-torch` needs {script}, which does not exist");
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
    torch.args(torch_args(files, backend, dtype, quick()));
    let mut compare = sh.cmd(&python);
    compare.args([
        COMPARE_SCRIPT,
        "--device",
        backend.name(),
        "--ours",
        &files.ours_json,
        "--torch",
        &files.torch_json,
        "--out",
        &files.table,
    ]);
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

/// Arguments of the twin of `files`: the matching torch device, the encoders' precision and
/// batch sizes (the GPU lists on a GPU), and in a quick run the first batch and fewer calls.
fn torch_args(files: &Files, backend: Backend, dtype: Dtype, quick: bool) -> Vec<String> {
    let gpu = backend != Backend::Flex;
    let mut args = vec![
        files.script.to_owned(),
        "--device".to_owned(),
        if gpu { "cuda" } else { "cpu" }.to_owned(),
        "--json-out".to_owned(),
        files.torch_json.clone(),
    ];
    let encoders = files.script.ends_with("bench_encoders.py");
    if encoders {
        args.extend(["--dtype".to_owned(), dtype.torch_name().to_owned()]);
        let (image, text) = match (quick, gpu) {
            (true, true) => ("1", "64"),
            (true, false) => ("8", "8"),
            (false, true) => ("1,32,256", "64,1024"),
            (false, false) => ("8,32", "8,32"),
        };
        args.extend(["--batches", image, "--text-batches", text].map(str::to_owned));
    }
    if quick {
        args.extend(["--iters", "3", "--warmup", "1"].map(str::to_owned));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_runs_on_the_matching_device_in_the_same_precision() {
        let files = Files::new(Suite::Encoders, Backend::Flex, Dtype::F32);
        assert_eq!(files.torch_json, "target/bench/torch.json");
        assert_eq!(files.table, "target/bench/compare-flex.md");
        assert_eq!(
            torch_args(&files, Backend::Flex, Dtype::F32, false)[..7],
            [
                "benches/torch/bench_encoders.py",
                "--device",
                "cpu",
                "--json-out",
                "target/bench/torch.json",
                "--dtype",
                "fp32"
            ]
        );
        let files = Files::new(Suite::Encoders, Backend::Cuda, Dtype::Bf16);
        assert_eq!(files.ours_json, "target/bench/vl-cuda-bf16.json");
        let args = torch_args(&files, Backend::Cuda, Dtype::Bf16, false);
        assert_eq!(args[2], "cuda");
        assert_eq!(
            args[5..],
            [
                "--dtype",
                "bf16",
                "--batches",
                "1,32,256",
                "--text-batches",
                "64,1024"
            ]
        );
        let files = Files::new(Suite::Steps, Backend::Wgpu, Dtype::F32);
        assert_eq!(files.ours_json, "target/bench/vl-steps-wgpu.json");
        assert_eq!(
            torch_args(&files, Backend::Wgpu, Dtype::F32, false),
            [
                "benches/torch/bench_steps.py",
                "--device",
                "cuda",
                "--json-out",
                "target/bench/torch-steps.json"
            ]
        );
    }

    #[test]
    fn quick_run_shortens_the_baseline() {
        let files = Files::new(Suite::Encoders, Backend::Flex, Dtype::F32);
        let args = torch_args(&files, Backend::Flex, Dtype::F32, true);
        assert_eq!(
            args[7..],
            [
                "--batches",
                "8",
                "--text-batches",
                "8",
                "--iters",
                "3",
                "--warmup",
                "1"
            ]
        );
    }

    #[test]
    fn python_falls_back_to_python3_without_a_venv() {
        let root = Path::new("/nonexistent/vlkit");
        assert_eq!(python(root), PathBuf::from("python3"));
    }
}
