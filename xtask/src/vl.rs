//! `cargo xtask vl` and `cargo xtask embed`: build the `vl` binary of `vl-cli` for one Burn
//! backend and run it, passing the arguments on (`embed ARGS` is `vl embed ARGS`).
//!
//! The command stays in the caller's working directory, so relative paths such as
//! `--image a.png` mean what they say; `--manifest-path` points cargo at the workspace.

use anyhow::{Context, Result};

use crate::{flags, shell::Shell};

impl flags::Vl {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        let mut cmd = sh.cargo();
        cmd.current_dir(cwd)
            .arg("run")
            .arg("--manifest-path")
            .arg(sh.root().join("Cargo.toml"))
            .args(["-p", "vl-cli", "--bin", "vl"])
            .args(self.profile.cargo_args())
            .args(self.backend.cargo_feature_args())
            .arg("--")
            .args(&self.args);
        sh.run(&mut cmd)
    }
}
