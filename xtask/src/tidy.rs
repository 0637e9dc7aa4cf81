//! `cargo xtask tidy`: repository conventions that rustfmt and clippy do not check. The `tidy`
//! test below runs the same checks, so `cargo test -p xtask` (and so `cargo xtask ci`) enforces
//! them.
//!
//! - Every `.rs` file under `crates/`, `benches/` and `xtask/` opens with a `//!` line.
//! - Every package manifest there inherits `version.workspace = true` and has
//!   `[lints] workspace = true`.
//! - The ndarray device is created only in files gated on the ndarray cargo feature.
//! - `#[test]` functions do not carry a `test_` prefix: the test module already says it.
//!
//! Directories named `target`, hidden ones and cargo build directories (holding
//! `CACHEDIR.TAG`) are skipped. Every offender is reported as `path:line: message`. The patterns
//! are assembled with `concat!` so that this file does not match them itself.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::{flags, shell::Shell};

/// The top-level directories whose files are checked.
const CHECKED_DIRS: &[&str] = &["crates", "benches", "xtask"];

const NDARRAY_DEVICE: &str = concat!("Device::", "ndarray(");
const NDARRAY_GATE: &str = concat!("feature = ", "\"ndarray\"");
const TEST_PREFIX_FN: &str = concat!("fn ", "test_");

impl flags::Tidy {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let offenders = check_tree(sh.root())?;
        if !offenders.is_empty() {
            bail!(
                "tidy found {} problem(s):\n{}",
                offenders.len(),
                offenders.join("\n")
            );
        }
        eprintln!("tidy: ok");
        Ok(())
    }
}

/// Every offence under `root`, as `path:line: message` with `path` relative to `root`.
fn check_tree(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for dir in CHECKED_DIRS {
        collect_files(&root.join(dir), &mut files)?;
    }
    let mut offenders = Vec::new();
    for file in files {
        let path = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let is_rust = file.extension().is_some_and(|ext| ext == "rs");
        let is_manifest = file.file_name().is_some_and(|name| name == "Cargo.toml");
        if !is_rust && !is_manifest {
            continue;
        }
        let text =
            fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        if is_rust {
            check_rust(&path, &text, &mut offenders);
        } else {
            check_manifest(&path, &text, &mut offenders);
        }
    }
    Ok(offenders)
}

/// All files under `dir` (which may be missing), in a stable order.
fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() || dir.join("CACHEDIR.TAG").exists() {
        return Ok(());
    }
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_files(&path, files)?;
            }
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn check_rust(path: &str, text: &str, offenders: &mut Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    if !lines.first().is_some_and(|line| line.starts_with("//!")) {
        offenders.push(format!(
            "{path}:1: the file must open with a `//!` paragraph saying what it holds"
        ));
    }
    let is_ndarray_gated = text.contains(NDARRAY_GATE);
    for (idx, line) in lines.iter().enumerate() {
        let line_no = idx + 1;
        if !is_ndarray_gated && line.contains(NDARRAY_DEVICE) {
            offenders.push(format!(
                "{path}:{line_no}: `{NDARRAY_DEVICE})` in a file without `#[cfg({NDARRAY_GATE})]`"
            ));
        }
        if let Some(pos) = line.find(TEST_PREFIX_FN)
            && (pos == 0 || line[..pos].ends_with([' ', '\t']))
            && is_test_fn(&lines, idx)
        {
            offenders.push(format!(
                "{path}:{line_no}: test functions get no `test_` prefix; name what is checked"
            ));
        }
    }
}

/// Whether the function declared on `lines[fn_idx]` has a test attribute: on its own line or in
/// the attribute and comment lines just above it (up to the previous item or a blank line).
fn is_test_fn(lines: &[&str], fn_idx: usize) -> bool {
    let is_test_attr = |line: &str| {
        line.contains("#[test")
            || line.contains("::test]")
            || line.contains("::test(")
            || line.contains("#[rstest")
    };
    if is_test_attr(lines[fn_idx]) {
        return true;
    }
    for line in lines[..fn_idx].iter().rev().take(16) {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        if line.is_empty() || line.ends_with(['}', ';', '{']) {
            return false;
        }
        if is_test_attr(line) {
            return true;
        }
    }
    false
}

fn check_manifest(path: &str, text: &str, offenders: &mut Vec<String>) {
    let mut section = String::new();
    let mut package_line = None;
    let mut lints_line = None;
    let mut inherits_version = false;
    let mut inherits_lints = false;
    for (idx, raw_line) in text.lines().enumerate() {
        let line = strip_comment(raw_line).trim();
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_owned();
            match section.as_str() {
                "package" => package_line = Some(idx + 1),
                "lints" => lints_line = Some(idx + 1),
                _ => {}
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = without_spaces(key);
        let value = without_spaces(value);
        match (section.as_str(), key.as_str(), value.as_str()) {
            ("package", "version.workspace", "true")
            | ("package", "version", "{workspace=true}")
            | ("package.version", "workspace", "true") => inherits_version = true,
            ("lints", "workspace", "true")
            | ("", "lints.workspace", "true")
            | ("", "lints", "{workspace=true}") => inherits_lints = true,
            _ => {}
        }
    }
    // Virtual manifests (no `[package]`) have neither a version nor lints of their own.
    let Some(package_line) = package_line else {
        return;
    };
    if !inherits_version {
        offenders.push(format!(
            "{path}:{package_line}: the package must use `version.workspace = true`"
        ));
    }
    if !inherits_lints {
        let line = lints_line.unwrap_or(package_line);
        offenders.push(format!(
            "{path}:{line}: the package must have `[lints]` with `workspace = true`"
        ));
    }
}

/// `line` without a trailing `# comment` (a `#` inside a string does not start one).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (idx, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..idx],
            _ => {}
        }
    }
    line
}

fn without_spaces(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn tidy() {
    if let Err(err) = (flags::Tidy).run(&Shell::new()) {
        panic!("{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_rs(text: &str, expected: &[&str]) {
        let mut offenders = Vec::new();
        check_rust("a.rs", text, &mut offenders);
        assert_eq!(offenders, expected);
    }

    #[track_caller]
    fn check_toml(text: &str, expected: &[&str]) {
        let mut offenders = Vec::new();
        check_manifest("Cargo.toml", text, &mut offenders);
        assert_eq!(offenders, expected);
    }

    #[test]
    fn rust_files_open_with_inner_docs() {
        check_rs("//! Holds things.\nfn main() {}\n", &[]);
        check_rs(
            "// Holds things.\nfn main() {}\n",
            &["a.rs:1: the file must open with a `//!` paragraph saying what it holds"],
        );
        check_rs(
            "",
            &["a.rs:1: the file must open with a `//!` paragraph saying what it holds"],
        );
    }

    #[test]
    fn ndarray_device_needs_the_feature_gate() {
        let device = format!("//! Doc.\nlet device = {NDARRAY_DEVICE});\n");
        check_rs(
            &device,
            &[&format!(
                "a.rs:2: `{NDARRAY_DEVICE})` in a file without `#[cfg({NDARRAY_GATE})]`"
            )],
        );
        check_rs(
            &format!("{device}#[cfg({NDARRAY_GATE})]\nmod ndarray {{}}\n"),
            &[],
        );
    }

    #[test]
    fn prefixed_test_functions_are_reported() {
        let prefixed = "test_encodes";
        let message = "test functions get no `test_` prefix; name what is checked";
        check_rs(
            &format!("//! Doc.\n#[test]\nfn {prefixed}() {{}}\n"),
            &[&format!("a.rs:3: {message}")],
        );
        check_rs(
            &format!(
                "//! Doc.\n#[test]\n#[should_panic(\n    expected = \"x\"\n)]\n// Why.\n    \
                 fn {prefixed}() {{}}\n"
            ),
            &[&format!("a.rs:7: {message}")],
        );
        check_rs(
            &format!("//! Doc.\n#[test] fn {prefixed}() {{}}\n"),
            &[&format!("a.rs:2: {message}")],
        );
        // Helpers may be called anything.
        check_rs(
            &format!("//! Doc.\n#[test]\nfn encodes() {{}}\n\nfn {prefixed}() {{}}\n"),
            &[],
        );
        check_rs(
            &format!("//! Doc.\n#[test]\nfn encodes() {{}}\nfn {prefixed}() {{}}\n"),
            &[],
        );
    }

    #[test]
    fn manifests_inherit_version_and_lints() {
        check_toml(
            "[package]\nname = \"a\"\nversion.workspace = true # inherited\n\n[lints]\nworkspace = true\n",
            &[],
        );
        check_toml(
            "[package]\nname = \"a\"\nversion = { workspace = true }\nlints.workspace = true\n",
            &["Cargo.toml:1: the package must have `[lints]` with `workspace = true`"],
        );
        check_toml(
            "lints = { workspace = true }\n[package]\nversion = \"0.1.0\"\n",
            &["Cargo.toml:2: the package must use `version.workspace = true`"],
        );
        check_toml(
            "[package]\nversion.workspace = true\n[lints.rust]\nunsafe_code = \"deny\"\n[lints]\nworkspace = false\n",
            &["Cargo.toml:5: the package must have `[lints]` with `workspace = true`"],
        );
        check_toml("[workspace]\nmembers = [\"crates/*\"]\n", &[]);
    }
}
