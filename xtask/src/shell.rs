//! A minimal stand-in for `xshell`: runs commands from the project root, echoes each one
//! (`$ cargo ...`) before it starts, and turns a non-zero exit into an error. Built on
//! `std::process::Command` so that xtask needs no dependency beyond `anyhow`.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::project_root;

/// Where commands run; passed to every command's `run`.
pub(crate) struct Shell {
    root: PathBuf,
}

impl Shell {
    pub(crate) fn new() -> Shell {
        Shell {
            root: project_root(),
        }
    }

    /// The workspace root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `cargo`, run from the project root. Uses `$CARGO` (set by `cargo run`) so that the
    /// toolchain that built xtask also runs its tasks.
    pub(crate) fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        self.cmd(cargo)
    }

    /// Any program, run from the project root.
    pub(crate) fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root);
        cmd
    }

    /// Echoes `cmd`, runs it with inherited stdio and fails unless it exits successfully.
    pub(crate) fn run(&self, cmd: &mut Command) -> Result<()> {
        let shown = display(cmd);
        eprintln!("$ {shown}");
        let status = cmd
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` failed ({status})");
        }
        Ok(())
    }
}

/// The command as a shell line: explicitly set environment variables, then the program (by file
/// name only, since `$CARGO` is a long absolute path) and its arguments, quoted where needed.
fn display(cmd: &Command) -> String {
    let envs = cmd
        .get_envs()
        .filter_map(|(key, value)| Some(format!("{}={}", key.to_string_lossy(), quote(value?))));
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let args = cmd.get_args().map(quote);
    envs.chain([program])
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let is_plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if is_plain {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_with_spaces_and_shows_env() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["run", "--", "--text", "a cat", "it's"])
            .env("VL_BENCH_DEVICE", "flex");
        assert_eq!(
            display(&cmd),
            r"VL_BENCH_DEVICE=flex cargo run -- --text 'a cat' 'it'\''s'"
        );
    }
}
