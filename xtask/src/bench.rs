//! `cargo xtask bench`: run vl-bench's criterion bench `encoders` on one Burn backend, and with
//! `--torch` the PyTorch baseline `benches/torch/bench_encoders.py` after it.
//!
//! The bench learns its device from `VL_BENCH_DEVICE`. The baseline runs on the matching torch
//! device (`flex` → `cpu`; `wgpu` and `cuda` → `cuda`, the same GPU) and writes
//! `target/bench/torch.json`. A missing python3 or torch is a warning, not an error: our benches
//! still run.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{
    flags::{self, Backend},
    shell::Shell,
};

const TORCH_SCRIPT: &str = "benches/torch/bench_encoders.py";
const TORCH_JSON: &str = "target/bench/torch.json";

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

        if let Some(mut torch) = torch {
            let json = sh.root().join(TORCH_JSON);
            let dir = json.parent().expect("the json path has a directory");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            sh.run(&mut torch)?;
            eprintln!("PyTorch baseline written to {TORCH_JSON}");
        }
        Ok(())
    }
}

/// The baseline command, or `None` (after a warning) when python3 or torch is missing.
fn torch_baseline(sh: &Shell, backend: Backend) -> Result<Option<Command>> {
    if !sh.root().join(TORCH_SCRIPT).is_file() {
        bail!("`--torch` needs {TORCH_SCRIPT}, which does not exist");
    }
    let probe = sh
        .cmd("python3")
        .args(["-c", "import torch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let missing = match probe {
        Ok(status) if status.success() => None,
        Ok(_) => Some("python3 cannot `import torch` (is PyTorch installed?)".to_owned()),
        Err(err) => Some(format!("cannot run python3 ({err})")),
    };
    if let Some(missing) = missing {
        eprintln!(
            "warning: {missing}; skipping the PyTorch baseline, running vlkit's benches only"
        );
        return Ok(None);
    }
    let torch_device = match backend {
        Backend::Flex => "cpu",
        Backend::Wgpu | Backend::Cuda => "cuda",
    };
    let mut cmd = sh.cmd("python3");
    cmd.args([
        TORCH_SCRIPT,
        "--device",
        torch_device,
        "--json-out",
        TORCH_JSON,
    ]);
    Ok(Some(cmd))
}
