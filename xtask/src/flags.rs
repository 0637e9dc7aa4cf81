//! xtask's command line, parsed by hand (as rust-analyzer does) so that xtask builds in seconds.
//!
//! [`help`] is the one description of the grammar; each command's struct here is what its module
//! (`vl.rs`, `bench.rs`, `ci.rs`, `tidy.rs`) runs. xtask's own options are recognised anywhere
//! before a `--`; every other argument of `embed` and `vl` is passed on to `vl` unchanged, and
//! everything after `--` is passed on verbatim.

use anyhow::{Context, Result, anyhow, bail};

/// Printed by `cargo xtask help`, `-h`, `--help` and a bare `cargo xtask`.
pub(crate) fn help() -> String {
    let test_command = crate::ci::TEST_COMMAND.join(" ");
    HELP.replace("{test_command}", &test_command)
}

const HELP: &str = "\
cargo xtask: project automation for vlkit (https://github.com/matklad/cargo-xtask)

USAGE:
    cargo xtask <COMMAND> [OPTIONS] [ARGS]...

COMMANDS:
    embed [--device D] [--release|--debug] [ARGS]...
        Build `vl` for device D and run `vl embed ARGS...`, e.g.
        cargo xtask embed --model DIR --image a.png --text 'a cat' --out out.json
    demo [--device D] [--release|--debug] [ARGS]...
        The out-of-the-box run: pretrain the tiny CLIP of experiments/pretrain-tiny.toml
        on the synthetic world into runs/pretrain-tiny (or reuse a finished run there), load
        it as a Hugging Face checkpoint and classify held-out images zero-shot, then run
        experiments/quickstart.toml (base-to-novel: zero-shot, linear probe, CoOp, CoCoOp,
        KgCoOp, LASP, LoRA x 3 seeds) into runs/quickstart: table and plots.
    run [--device D] [--release|--debug] EXPERIMENT [--out DIR] [--seeds 1,2,3]
        `vl run`: every (data set, method, shots, seed) cell of an experiment file into
        runs/<name>/ (finished cells are reused, an interrupted one resumes), then
        results.md, results.csv and SVG/PNG plots there.
    report [--release|--debug] RUNS_DIR|EXPERIMENT
        `vl report`: re-aggregate an experiment's runs into the tables and plots.
    selfsup [--device D] [--release|--debug] --config F --out DIR [--resume]
        `vl selfsup`: SimCLR or Sinkhorn-Knopp self-labelling from scratch on the synthetic
        world (experiments/selfsup/*.toml), then linear probe and kNN against random init.
    pretrain [--device D] [--release|--debug] [ARGS]...
        `vl pretrain ARGS...`: train a CLIP from scratch on the synthetic world
        [--config experiments/pretrain-tiny.toml] [--out runs/pretrain-tiny] [--resume]
        [--force] [--seed N] [--stop-after-epochs N].
    prompt [--device D] [--release|--debug] [ARGS]...
        `vl prompt ARGS...`: one few-shot prompt-learning run, base-to-novel, on the tiny
        pretrained model (--config experiments/prompt/coop.toml | --preset coop) --out DIR.
    prompt-sweep [--device D] [--release|--debug] [ARGS]...
        `vl prompt-sweep ARGS...`: every experiments/prompt/*.toml (or --configs ...) times
        seeds 1,2,3 (--seeds), then a base/novel/HM table in runs/prompt-b2n/results.md.
    vl [--device D] [--release|--debug] <SUBCOMMAND> [ARGS]...
        Build `vl` for device D and run `vl SUBCOMMAND ARGS...`.
    bench [--device D] [--suite S] [--dtype T] [--compare-torch] [-- CRITERION_ARGS...]
        Run the criterion bench S of vl-bench on device D (VL_BENCH_DEVICE=D):
        `encoders` [default] (ViT-B/32, ViT-B/16 images; text; batch 8/32 on flex, images
        1/32/256 and texts 64/1024 on a GPU), `steps` (a LoRA step on the vision tower, the
        CLIP loss at batch 4096) or `prompting` (a CoOp step). --dtype f32 [default], bf16
        or f16 (VL_BENCH_DTYPE) runs weights and activations in that precision. A summary
        goes to target/bench/vl-D.json (vl-steps-D.json, vl-prompting-D.json).
        VL_BENCH_QUICK=1 runs the first batch only.
        --compare-torch (or --torch): afterwards run the suite's PyTorch twin in
        benches/torch/ on the same shapes and precision, then benches/torch/compare.py, which
        prints one table (ours, PyTorch, ratio, peak memory) and writes
        target/bench/compare-<suite>-D.md; skipped with a warning if python3 or torch is
        missing.
    ci
        What CI runs, stopping at the first failure: cargo fmt --check, cargo clippy
        -D warnings, then the test command. Green here means green in CI.
    test
        Only the CI test command: cargo {test_command}
    tidy
        Check the repository conventions (`//!` headers, manifests, test names, ndarray
        use) and list every offender as path:line. Also runs as a test of xtask.
    help
        Print this help.

OPTIONS:
    --device <flex|wgpu|cuda>
        Burn backend: cargo `--no-default-features --features <D>` on vl-cli or vl-bench
        [default: flex].
    --release, --debug
        Cargo profile of `vl` for embed, pretrain, demo, prompt and vl [default: --release; the model code is very
        slow unoptimised]. bench always uses cargo's optimised bench profile.
";

/// One parsed invocation of `cargo xtask`.
#[derive(Debug, PartialEq)]
pub(crate) enum Xtask {
    Help,
    /// `embed`, `pretrain`, `demo` and `vl`; `embed ARGS` is `vl embed ARGS`, and so on.
    Vl(Vl),
    Bench(Bench),
    Ci(Ci),
    Test(Test),
    Tidy(Tidy),
}

/// Build `vl` with `backend` and `profile`, then run it with `args`.
#[derive(Debug, PartialEq)]
pub(crate) struct Vl {
    pub(crate) backend: Backend,
    pub(crate) profile: Profile,
    pub(crate) args: Vec<String>,
}

/// Run one criterion bench of vl-bench, and with `torch` its PyTorch twin.
#[derive(Debug, PartialEq)]
pub(crate) struct Bench {
    pub(crate) backend: Backend,
    pub(crate) suite: Suite,
    pub(crate) dtype: Dtype,
    pub(crate) torch: bool,
    pub(crate) criterion_args: Vec<String>,
}

/// Which criterion bench of vl-bench `cargo xtask bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Suite {
    /// `benches/encoders.rs`: image and text encoding.
    #[default]
    Encoders,
    /// `benches/steps.rs`: the LoRA step and the CLIP loss.
    Steps,
    /// `benches/prompting.rs`: the CoOp step.
    Prompting,
}

impl Suite {
    const ALL: [Suite; 3] = [Suite::Encoders, Suite::Steps, Suite::Prompting];

    /// The bench target's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Suite::Encoders => "encoders",
            Suite::Steps => "steps",
            Suite::Prompting => "prompting",
        }
    }
}

/// The float precision of a bench run (`VL_BENCH_DTYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Dtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Dtype {
    const ALL: [Dtype; 3] = [Dtype::F32, Dtype::Bf16, Dtype::F16];

    /// vlkit's name (`VL_BENCH_DTYPE`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }

    /// The PyTorch twins' name (`--dtype`).
    pub(crate) fn torch_name(self) -> &'static str {
        match self {
            Dtype::F32 => "fp32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "fp16",
        }
    }
}

/// fmt check, clippy, tests.
#[derive(Debug, PartialEq)]
pub(crate) struct Ci;

/// The CI test command only.
#[derive(Debug, PartialEq)]
pub(crate) struct Test;

/// Repository conventions.
#[derive(Debug, PartialEq)]
pub(crate) struct Tidy;

/// A Burn backend, enabled as the cargo feature of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Backend {
    #[default]
    Flex,
    Wgpu,
    Cuda,
}

/// The cargo profile `vl` is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Profile {
    #[default]
    Release,
    Debug,
}

impl Xtask {
    pub(crate) fn from_env() -> Result<Xtask> {
        let args = std::env::args_os()
            .skip(1)
            .map(|arg| {
                arg.into_string()
                    .map_err(|arg| anyhow!("argument {arg:?} is not valid UTF-8"))
            })
            .collect::<Result<Vec<_>>>()?;
        Xtask::parse(args)
    }

    fn parse(args: Vec<String>) -> Result<Xtask> {
        let mut args = args.into_iter();
        let Some(command) = args.next() else {
            return Ok(Xtask::Help);
        };
        let xtask = match command.as_str() {
            "help" | "-h" | "--help" => Xtask::Help,
            "embed" => Xtask::Vl(Vl::parse(Some("embed"), args)?),
            "pretrain" => Xtask::Vl(Vl::parse(Some("pretrain"), args)?),
            "demo" => Xtask::Vl(Vl::parse(Some("demo"), args)?),
            "prompt" => Xtask::Vl(Vl::parse(Some("prompt"), args)?),
            "prompt-sweep" => Xtask::Vl(Vl::parse(Some("prompt-sweep"), args)?),
            "run" => Xtask::Vl(Vl::parse(Some("run"), args)?),
            "report" => Xtask::Vl(Vl::parse(Some("report"), args)?),
            "selfsup" => Xtask::Vl(Vl::parse(Some("selfsup"), args)?),
            "vl" => Xtask::Vl(Vl::parse(None, args)?),
            "bench" => Xtask::Bench(Bench::parse(args)?),
            "ci" => no_args("ci", args, Xtask::Ci(Ci))?,
            "test" => no_args("test", args, Xtask::Test(Test))?,
            "tidy" => no_args("tidy", args, Xtask::Tidy(Tidy))?,
            other => bail!("unknown command `{other}`; run `cargo xtask help` for the commands"),
        };
        Ok(xtask)
    }
}

impl Vl {
    fn parse(subcommand: Option<&str>, mut args: impl Iterator<Item = String>) -> Result<Vl> {
        let mut vl = Vl {
            backend: Backend::default(),
            profile: Profile::default(),
            args: subcommand.into_iter().map(str::to_owned).collect(),
        };
        while let Some(arg) = args.next() {
            if arg == "--" {
                vl.args.extend(args);
                break;
            }
            if let Some(backend) = parse_device(&arg, &mut args)? {
                vl.backend = backend;
                continue;
            }
            match arg.as_str() {
                "--release" => vl.profile = Profile::Release,
                "--debug" => vl.profile = Profile::Debug,
                _ => vl.args.push(arg),
            }
        }
        Ok(vl)
    }
}

impl Bench {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Bench> {
        let mut bench = Bench {
            backend: Backend::default(),
            suite: Suite::default(),
            dtype: Dtype::default(),
            torch: false,
            criterion_args: Vec::new(),
        };
        while let Some(arg) = args.next() {
            if arg == "--" {
                bench.criterion_args.extend(args);
                break;
            }
            if let Some(backend) = parse_device(&arg, &mut args)? {
                bench.backend = backend;
                continue;
            }
            if let Some(value) = option_value("--suite", &arg, &mut args)? {
                bench.suite = pick(&Suite::ALL, Suite::name, "suite", &value)?;
                continue;
            }
            if let Some(value) = option_value("--dtype", &arg, &mut args)? {
                bench.dtype = pick(&Dtype::ALL, Dtype::name, "dtype", &value)?;
                continue;
            }
            match arg.as_str() {
                "--torch" | "--compare-torch" => bench.torch = true,
                _ => bail!(
                    "unknown argument `{arg}` for `cargo xtask bench` (it takes --device, \
                     --suite, --dtype and --compare-torch; criterion's arguments go after `--`)"
                ),
            }
        }
        Ok(bench)
    }
}

impl Backend {
    pub(crate) const ALL: [Backend; 3] = [Backend::Flex, Backend::Wgpu, Backend::Cuda];

    /// The `--device` value, which is also the cargo feature and `VL_BENCH_DEVICE`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Cargo arguments that build exactly this backend.
    pub(crate) fn cargo_feature_args(self) -> [&'static str; 3] {
        ["--no-default-features", "--features", self.name()]
    }

    fn parse(value: &str) -> Result<Backend> {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.name() == value)
            .ok_or_else(|| {
                anyhow!(
                    "unknown device `{value}`; valid devices: {}",
                    Backend::valid_names()
                )
            })
    }

    fn valid_names() -> String {
        Backend::ALL.map(Backend::name).join(", ")
    }
}

impl Profile {
    /// Cargo arguments selecting this profile.
    pub(crate) fn cargo_args(self) -> &'static [&'static str] {
        match self {
            Profile::Release => &["--release"],
            Profile::Debug => &[],
        }
    }
}

/// Parses `--device D` (taking D from `rest`) or `--device=D`; `None` for any other argument.
fn parse_device(arg: &str, rest: &mut impl Iterator<Item = String>) -> Result<Option<Backend>> {
    let value = if arg == "--device" {
        rest.next().with_context(|| {
            format!(
                "`--device` needs a value; valid devices: {}",
                Backend::valid_names()
            )
        })?
    } else if let Some(value) = arg.strip_prefix("--device=") {
        value.to_owned()
    } else {
        return Ok(None);
    };
    Backend::parse(&value).map(Some)
}

/// The value of `--name VALUE` or `--name=VALUE`, or `None` when `arg` is another argument.
fn option_value(
    name: &str,
    arg: &str,
    rest: &mut impl Iterator<Item = String>,
) -> Result<Option<String>> {
    if arg == name {
        rest.next()
            .with_context(|| format!("`{name}` needs a value"))
            .map(Some)
    } else {
        Ok(arg
            .strip_prefix(name)
            .and_then(|tail| tail.strip_prefix('='))
            .map(str::to_owned))
    }
}

/// The one of `all` whose `name` is `value`, or an error listing the valid names.
fn pick<T: Copy>(all: &[T], name: fn(T) -> &'static str, what: &str, value: &str) -> Result<T> {
    match all.iter().copied().find(|&item| name(item) == value) {
        Some(item) => Ok(item),
        None => {
            let valid: Vec<_> = all.iter().map(|&item| name(item)).collect();
            bail!("unknown {what} `{value}`; valid: {}", valid.join(", "))
        }
    }
}

fn no_args(command: &str, mut args: impl Iterator<Item = String>, xtask: Xtask) -> Result<Xtask> {
    match args.next() {
        None => Ok(xtask),
        Some(arg) => bail!("`cargo xtask {command}` takes no arguments, got `{arg}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(args: &[&str], expected: Xtask) {
        let args = args.iter().map(|arg| arg.to_string()).collect();
        assert_eq!(Xtask::parse(args).unwrap(), expected);
    }

    #[track_caller]
    fn check_error(args: &[&str], expected: &str) {
        let args = args.iter().map(|arg| arg.to_string()).collect();
        assert_eq!(Xtask::parse(args).unwrap_err().to_string(), expected);
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn no_command_prints_help() {
        check(&[], Xtask::Help);
        check(&["--help"], Xtask::Help);
    }

    #[test]
    fn embed_passes_other_args_through_in_order() {
        check(
            &[
                "embed", "--model", "m", "--device", "cuda", "--text", "a cat", "--debug", "--",
                "--device", "x",
            ],
            Xtask::Vl(Vl {
                backend: Backend::Cuda,
                profile: Profile::Debug,
                args: strings(&["embed", "--model", "m", "--text", "a cat", "--device", "x"]),
            }),
        );
    }

    #[test]
    fn demo_and_pretrain_run_their_vl_subcommand() {
        check(
            &["demo"],
            Xtask::Vl(Vl {
                backend: Backend::Flex,
                profile: Profile::Release,
                args: strings(&["demo"]),
            }),
        );
        check(
            &["pretrain", "--resume", "--device", "cuda"],
            Xtask::Vl(Vl {
                backend: Backend::Cuda,
                profile: Profile::Release,
                args: strings(&["pretrain", "--resume"]),
            }),
        );
        check(
            &["prompt-sweep", "--seeds", "1,2"],
            Xtask::Vl(Vl {
                backend: Backend::Flex,
                profile: Profile::Release,
                args: strings(&["prompt-sweep", "--seeds", "1,2"]),
            }),
        );
        check(
            &["run", "experiments/quickstart.toml", "--device", "wgpu"],
            Xtask::Vl(Vl {
                backend: Backend::Wgpu,
                profile: Profile::Release,
                args: strings(&["run", "experiments/quickstart.toml"]),
            }),
        );
        check(
            &["report", "runs/quickstart"],
            Xtask::Vl(Vl {
                backend: Backend::Flex,
                profile: Profile::Release,
                args: strings(&["report", "runs/quickstart"]),
            }),
        );
    }

    #[test]
    fn vl_defaults_to_flex_release() {
        check(
            &["vl", "eval", "--device=wgpu", "--release"],
            Xtask::Vl(Vl {
                backend: Backend::Wgpu,
                profile: Profile::Release,
                args: strings(&["eval"]),
            }),
        );
        check(
            &["vl", "--help"],
            Xtask::Vl(Vl {
                backend: Backend::Flex,
                profile: Profile::Release,
                args: strings(&["--help"]),
            }),
        );
    }

    #[test]
    fn bench_takes_criterion_args_after_dashes() {
        check(
            &[
                "bench",
                "--torch",
                "--device",
                "cuda",
                "--",
                "--save-baseline",
                "main",
            ],
            Xtask::Bench(Bench {
                backend: Backend::Cuda,
                suite: Suite::Encoders,
                dtype: Dtype::F32,
                torch: true,
                criterion_args: strings(&["--save-baseline", "main"]),
            }),
        );
        check_error(
            &["bench", "vision"],
            "unknown argument `vision` for `cargo xtask bench` (it takes --device, --suite, \
             --dtype and --compare-torch; criterion's arguments go after `--`)",
        );
    }

    #[test]
    fn bench_picks_suite_and_dtype() {
        check(
            &[
                "bench",
                "--suite=steps",
                "--dtype",
                "bf16",
                "--compare-torch",
            ],
            Xtask::Bench(Bench {
                backend: Backend::Flex,
                suite: Suite::Steps,
                dtype: Dtype::Bf16,
                torch: true,
                criterion_args: Vec::new(),
            }),
        );
        check_error(
            &["bench", "--dtype", "f8"],
            "unknown dtype `f8`; valid: f32, bf16, f16",
        );
        check_error(&["bench", "--suite"], "`--suite` needs a value");
    }

    #[test]
    fn bad_devices_list_the_valid_ones() {
        check_error(
            &["embed", "--device", "metal"],
            "unknown device `metal`; valid devices: flex, wgpu, cuda",
        );
        check_error(
            &["bench", "--device"],
            "`--device` needs a value; valid devices: flex, wgpu, cuda",
        );
    }

    #[test]
    fn ci_test_tidy_take_no_args() {
        check(&["ci"], Xtask::Ci(Ci));
        check(&["test"], Xtask::Test(Test));
        check(&["tidy"], Xtask::Tidy(Tidy));
        check_error(
            &["ci", "--no-clippy"],
            "`cargo xtask ci` takes no arguments, got `--no-clippy`",
        );
        check_error(
            &["deploy"],
            "unknown command `deploy`; run `cargo xtask help` for the commands",
        );
    }
}
