//! Shared harness of vlkit's criterion benches (`benches/encoders.rs`): which device to bench,
//! a timer that syncs that device inside the timed region, peak-memory probes, and the
//! machine-readable summary `target/bench/vl-<device>.json` that `benches/torch/compare.py` sets
//! beside the PyTorch baseline.
//!
//! The device comes from `VL_BENCH_DEVICE` (`flex`, `wgpu` or `cuda`), each available only when
//! vl-bench is built with the cargo feature of the same name; without the variable the first
//! compiled-in of cuda, wgpu, flex is used. This is a bench harness, so a bad name panics.
//!
//! Timing follows candle (`candle-core/benches/benchmarks/mod.rs`) and burn
//! (`crates/burn-backend-tests/benches/common/mod.rs`): GPU backends queue work and return at
//! once, so without a sync barrier inside the timed region a bench would measure dispatch latency.

#![warn(missing_docs)]

use std::env::VarError;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burn::prelude::Device;
use burn::tensor::FloatDType;

/// The environment variable that picks the bench device.
pub const DEVICE_VAR: &str = "VL_BENCH_DEVICE";

/// The environment variable that asks for a short run (see [`quick`]).
pub const QUICK_VAR: &str = "VL_BENCH_QUICK";

/// The environment variable that picks the float precision (see [`bench_dtype`]).
pub const DTYPE_VAR: &str = "VL_BENCH_DTYPE";

/// The environment variable that overrides the encoder benches' batch sizes (see [`batches`]).
pub const BATCHES_VAR: &str = "VL_BENCH_BATCHES";

/// Every device name the harness knows, in default preference order.
pub const KNOWN_DEVICES: [&str; 3] = ["cuda", "wgpu", "flex"];

/// The devices compiled into this build, in default preference order (a subset of
/// [`KNOWN_DEVICES`]).
pub fn compiled_devices() -> Vec<&'static str> {
    KNOWN_DEVICES
        .into_iter()
        .filter(|&name| device_named(name).is_some())
        .collect()
}

/// The device to bench and its name, from `VL_BENCH_DEVICE` or else the first compiled-in of
/// cuda, wgpu, flex.
///
/// # Panics
///
/// Panics if `VL_BENCH_DEVICE` names an unknown device or one whose feature is not compiled in,
/// if no backend feature is compiled in at all, or if `VL_BENCH_DTYPE` asks for a precision the
/// device cannot compute in (see [`bench_dtype`]).
///
/// The device's default float type is set to [`bench_dtype`]'s before any tensor exists, so
/// weights, inputs and activations are all in that precision (LayerNorm and softmax accumulate
/// in f32 inside Burn's kernels, as PyTorch's do).
pub fn bench_device() -> (String, Device) {
    let (name, mut device) = bench_device_f32();
    let (dtype_name, dtype) = bench_dtype();
    if dtype != FloatDType::F32 {
        if !device.supports_dtype(dtype) {
            panic!(
                "{DTYPE_VAR}={dtype_name}, but the {name} device cannot compute in {dtype_name}"
            );
        }
        if let Err(err) = device.configure(dtype) {
            panic!("cannot set the {name} device's float type to {dtype_name}: {err:?}");
        }
    }
    (name, device)
}

/// The float precision of this run, from `VL_BENCH_DTYPE`: `f32` (the default), `bf16` or `f16`,
/// as its name in the summaries and Burn's type.
///
/// # Panics
///
/// Panics on any other value.
pub fn bench_dtype() -> (&'static str, FloatDType) {
    let value = std::env::var(DTYPE_VAR).unwrap_or_default();
    match parse_dtype(&value) {
        Some(found) => found,
        None => panic!("unknown {DTYPE_VAR}={value:?}; valid: f32, bf16, f16"),
    }
}

fn parse_dtype(value: &str) -> Option<(&'static str, FloatDType)> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "f32" | "fp32" => Some(("f32", FloatDType::F32)),
        "bf16" => Some(("bf16", FloatDType::BF16)),
        "f16" | "fp16" => Some(("f16", FloatDType::F16)),
        _ => None,
    }
}

/// The batch sizes of the encoder benches: `VL_BENCH_BATCHES` (comma-separated) where set, else
/// `default`.
///
/// # Panics
///
/// Panics if `VL_BENCH_BATCHES` is not a list of positive integers.
pub fn batches(default: &[usize]) -> Vec<usize> {
    let value = std::env::var(BATCHES_VAR).unwrap_or_default();
    if value.trim().is_empty() {
        return default.to_vec();
    }
    match parse_batches(&value) {
        Some(batches) => batches,
        None => {
            panic!("{BATCHES_VAR}={value:?} is not a comma-separated list of positive integers")
        }
    }
}

fn parse_batches(value: &str) -> Option<Vec<usize>> {
    value
        .split(',')
        .map(|part| part.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect()
}

/// Whether `name` is a GPU device (its benches use the issue's GPU shapes).
pub fn is_gpu(name: &str) -> bool {
    matches!(name, "cuda" | "wgpu")
}

fn bench_device_f32() -> (String, Device) {
    let compiled = compiled_devices();
    let requested = match std::env::var(DEVICE_VAR) {
        Ok(name) if !name.trim().is_empty() => Some(name.trim().to_owned()),
        Ok(_) | Err(VarError::NotPresent) => None,
        Err(VarError::NotUnicode(name)) => panic!("{DEVICE_VAR}={name:?} is not valid UTF-8"),
    };
    let name = match requested {
        Some(name) => name,
        None => match compiled.first() {
            Some(&name) => name.to_owned(),
            None => panic!(
                "vl-bench was built without a backend; build it with `--features <{}>`",
                KNOWN_DEVICES.join("|")
            ),
        },
    };
    match device_named(&name) {
        Some(device) => (name, device),
        None if KNOWN_DEVICES.contains(&name.as_str()) => panic!(
            "{DEVICE_VAR}={name}, but vl-bench was built without the `{name}` feature \
             (compiled in: {}); rebuild with `--no-default-features --features {name}`",
            list_or_none(&compiled)
        ),
        None => panic!(
            "unknown {DEVICE_VAR}={name:?}; valid devices: {} (compiled in: {})",
            KNOWN_DEVICES.join(", "),
            list_or_none(&compiled)
        ),
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The device called `name`, if its backend is compiled in.
fn device_named(name: &str) -> Option<Device> {
    match name {
        #[cfg(feature = "cuda")]
        "cuda" => Some(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(Device::wgpu(burn::prelude::DeviceKind::DefaultDevice)),
        #[cfg(feature = "flex")]
        "flex" => Some(Device::flex()),
        _ => None,
    }
}

/// Whether `VL_BENCH_QUICK` asks for a short run (set, and neither empty nor `0`).
pub fn quick() -> bool {
    std::env::var_os(QUICK_VAR).is_some_and(|value| !value.is_empty() && value != "0")
}

/// Runs `f` `iters` times and returns the wall time from before the first call until `device`
/// has finished all the work they queued: the device is synced inside the timed region. Meant
/// for criterion's `Bencher::iter_custom`.
///
/// The device is also synced before the clock starts, so work queued earlier is not counted.
/// The outputs are kept alive until after the final sync (a lazy backend cannot skip work whose
/// result was dropped) and are freed after the clock stops.
///
/// # Panics
///
/// Panics if the device reports an execution error when synced.
pub fn time_synced<T>(device: &Device, iters: u64, mut f: impl FnMut() -> T) -> Duration {
    sync(device);
    let mut outputs = Vec::with_capacity(usize::try_from(iters).unwrap_or(0));
    let start = Instant::now();
    for _ in 0..iters {
        outputs.push(black_box(f()));
    }
    sync(device);
    let elapsed = start.elapsed();
    drop(outputs);
    elapsed
}

/// Waits for all work queued on `device`.
///
/// # Panics
///
/// Panics if the device reports an execution error.
pub fn sync(device: &Device) {
    if let Err(err) = device.sync() {
        panic!("syncing the bench device failed: {err:?}");
    }
}

/// The peak resident set size of this process in MiB (`VmHWM` in `/proc/self/status`), or
/// `None` where that file is not available (not Linux).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm_kib(&status).map(|kib| kib as f64 / 1024.0)
}

/// Resets the peak resident set size that [`peak_rss_mb`] reports to the current resident set
/// size (writes `5` to `/proc/self/clear_refs`, Linux 4.0+). Returns whether it worked; where
/// it did not, [`peak_rss_mb`] is the peak since the process started.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let value = line["VmHWM:".len()..].trim();
    value.strip_suffix("kB")?.trim().parse().ok()
}

/// Bytes the device's allocator currently reserves, in MiB, or `None` on a backend that does
/// not report it (flex).
pub fn device_reserved_mb(device: &Device) -> Option<f64> {
    device
        .memory_pool_usage()
        .map(|usage| usage.bytes_reserved as f64 / (1024.0 * 1024.0))
}

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Where the summaries go: `$CARGO_TARGET_DIR/bench`, else `<workspace>/target/bench`.
pub fn summary_dir() -> PathBuf {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"));
    target.join("bench")
}

/// `VL_BENCH_GIT_REVISION` where set (a binary run away from its checkout, on a GPU machine), else
/// `git rev-parse HEAD` of the workspace, or `None` where git or the repository is missing.
pub fn git_revision() -> Option<String> {
    if let Ok(revision) = std::env::var("VL_BENCH_GIT_REVISION")
        && !revision.trim().is_empty()
    {
        return Some(revision.trim().to_owned());
    }
    let output = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    let revision = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !revision.is_empty()).then_some(revision)
}

/// One measured bench, a row of [`Summary`]. Field names match the rows of
/// `benches/torch/bench_encoders.py`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `<model>/<what>/b<batch>`, e.g. `vit-b32/image/b8` (the criterion id without the device).
    pub bench: String,
    /// `vit-b32` or `vit-b16`.
    pub model: String,
    /// `image` or `text`.
    pub what: String,
    /// Items (images or texts) per call.
    pub batch: usize,
    /// Timed calls of the last [`MEASURED_SAMPLES`] `iter_custom` calls (criterion's measurement
    /// samples; not its warm-up, nor the untimed first call). Set by [`Row::record`].
    pub iters: u64,
    /// Their total wall time.
    pub elapsed: Duration,
    /// Peak resident set size during the timed calls, MiB.
    pub peak_rss_mb: Option<f64>,
    /// Device memory reserved by Burn's allocator, the largest value seen after a timed call,
    /// MiB; `None` where the backend does not report it.
    pub peak_gpu_mb: Option<f64>,
    /// Every `iter_custom` call as `(iters, elapsed)`, in order (see [`Row::record`]).
    pub samples: Vec<(u64, Duration)>,
}

/// How many of the last `iter_custom` calls a [`Row`] counts: criterion's flat sampling ends with
/// `sample_size` (10 in these benches) equal measurement calls, after a warm-up whose calls can
/// include a GPU's kernel compilation and autotuning on shapes met for the first time.
pub const MEASURED_SAMPLES: usize = 10;

impl Row {
    /// Records one `iter_custom` call and recomputes [`Row::iters`] and [`Row::elapsed`] over the
    /// last [`MEASURED_SAMPLES`] calls.
    pub fn record(&mut self, iters: u64, elapsed: Duration) {
        self.samples.push((iters, elapsed));
        let measured = &self.samples[self.samples.len().saturating_sub(MEASURED_SAMPLES)..];
        self.iters = measured.iter().map(|&(n, _)| n).sum();
        self.elapsed = measured.iter().map(|&(_, t)| t).sum();
    }

    /// Mean wall time of one call, ms.
    pub fn ms_per_iter(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e3 / self.iters as f64
    }

    /// Items per second over all timed calls.
    pub fn items_per_s(&self) -> f64 {
        (self.batch as u64 * self.iters) as f64 / self.elapsed.as_secs_f64()
    }
}

/// The machine-readable result of one bench run, written as JSON by [`Summary::write`].
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `flex`, `wgpu` or `cuda`.
    pub device: String,
    /// `git rev-parse HEAD`, if known.
    pub git_revision: Option<String>,
    /// The float precision: `f32`, `bf16` or `f16` (see [`bench_dtype`]).
    pub dtype: String,
    /// Whether `VL_BENCH_QUICK` was set.
    pub quick: bool,
    /// The measured benches, in run order.
    pub rows: Vec<Row>,
}

impl Summary {
    /// The summary as JSON: `{"device", "git_revision", "dtype", "quick", "threads",
    /// "rows": [{"bench", "model", "what", "batch", "items_per_s", "ms_per_iter", "iters",
    /// "peak_rss_mb", "peak_gpu_mb"}, ...]}`.
    pub fn to_json(&self) -> String {
        let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mut json = String::from("{\n");
        let _ = writeln!(json, "  \"device\": {},", json_string(&self.device));
        let revision = self
            .git_revision
            .as_deref()
            .map_or("null".to_owned(), json_string);
        let _ = writeln!(json, "  \"git_revision\": {revision},");
        let _ = writeln!(json, "  \"dtype\": {},", json_string(&self.dtype));
        let _ = writeln!(json, "  \"quick\": {},", self.quick);
        let _ = writeln!(json, "  \"threads\": {threads},");
        json.push_str("  \"rows\": [");
        for (idx, row) in self.rows.iter().enumerate() {
            json.push_str(if idx == 0 { "\n" } else { ",\n" });
            let _ = write!(
                json,
                "    {{\"bench\": {}, \"model\": {}, \"what\": {}, \"batch\": {}, \
                 \"items_per_s\": {}, \"ms_per_iter\": {}, \"iters\": {}, \
                 \"peak_rss_mb\": {}, \"peak_gpu_mb\": {}}}",
                json_string(&row.bench),
                json_string(&row.model),
                json_string(&row.what),
                row.batch,
                json_number(Some(row.items_per_s())),
                json_number(Some(row.ms_per_iter())),
                row.iters,
                json_number(row.peak_rss_mb),
                json_number(row.peak_gpu_mb),
            );
        }
        json.push_str(if self.rows.is_empty() {
            "]\n}\n"
        } else {
            "\n  ]\n}\n"
        });
        json
    }

    /// Writes [`Summary::to_json`] to `dir/vl-<device>.json` atomically (a temporary file in the
    /// same directory, then a rename) and returns the path.
    pub fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        self.write_named(dir, "vl")
    }

    /// Like [`Self::write`], to `<dir>/<stem>-<device>.json` (e.g. `vl-prompting-flex.json`);
    /// a run in another precision than f32 adds it: `vl-cuda-bf16.json`.
    pub fn write_named(&self, dir: &Path, stem: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let name = if self.dtype == "f32" {
            format!("{stem}-{}", self.device)
        } else {
            format!("{stem}-{}-{}", self.device, self.dtype)
        };
        let path = dir.join(format!("{name}.json"));
        let tmp = dir.join(format!(".{name}.json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, self.to_json())?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(path)
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite number, or `null`.
fn json_number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value}"),
        _ => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tencoders\nVmPeak:\t  100 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(2048));
        assert_eq!(parse_vm_hwm_kib("Name:\tx\n"), None);
    }

    #[test]
    fn summary_is_json_with_torch_row_names() {
        let summary = Summary {
            device: "flex".to_owned(),
            git_revision: None,
            dtype: "f32".to_owned(),
            quick: false,
            rows: vec![Row {
                bench: "vit-b32/image/b8".to_owned(),
                model: "vit-b32".to_owned(),
                what: "image".to_owned(),
                batch: 8,
                iters: 4,
                elapsed: Duration::from_secs(2),
                peak_rss_mb: Some(512.5),
                peak_gpu_mb: None,
                samples: Vec::new(),
            }],
        };
        let json = summary.to_json();
        assert!(json.contains("\"git_revision\": null,"), "{json}");
        assert!(json.contains("\"dtype\": \"f32\","), "{json}");
        assert!(
            json.contains(
                "{\"bench\": \"vit-b32/image/b8\", \"model\": \"vit-b32\", \"what\": \"image\", \
                 \"batch\": 8, \"items_per_s\": 16, \"ms_per_iter\": 500, \"iters\": 4, \
                 \"peak_rss_mb\": 512.5, \"peak_gpu_mb\": null}"
            ),
            "{json}"
        );
    }

    #[test]
    fn dtype_and_batches_parse_or_refuse() {
        assert_eq!(parse_dtype(""), Some(("f32", FloatDType::F32)));
        assert_eq!(parse_dtype(" BF16 "), Some(("bf16", FloatDType::BF16)));
        assert_eq!(parse_dtype("fp16"), Some(("f16", FloatDType::F16)));
        assert_eq!(parse_dtype("f8"), None);
        assert_eq!(parse_batches("1, 32,256"), Some(vec![1, 32, 256]));
        assert_eq!(parse_batches("8,0"), None);
        assert_eq!(parse_batches("8,x"), None);
    }

    #[test]
    fn rows_count_only_the_last_samples() {
        let mut row = Row {
            bench: "b".into(),
            model: "m".into(),
            what: "w".into(),
            batch: 1,
            iters: 0,
            elapsed: Duration::ZERO,
            peak_rss_mb: None,
            peak_gpu_mb: None,
            samples: Vec::new(),
        };
        // A slow first warm-up call (kernel compilation), then ten 1 ms samples.
        row.record(1, Duration::from_secs(5));
        for _ in 0..MEASURED_SAMPLES {
            row.record(2, Duration::from_millis(2));
        }
        assert_eq!(row.iters, 2 * MEASURED_SAMPLES as u64);
        assert!(
            (row.ms_per_iter() - 1.0).abs() < 1e-9,
            "{}",
            row.ms_per_iter()
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn summary_is_written_atomically() {
        let dir = std::env::temp_dir().join(format!("vl-bench-test-{}", std::process::id()));
        let summary = Summary {
            device: "flex".to_owned(),
            git_revision: Some("abc".to_owned()),
            dtype: "bf16".to_owned(),
            quick: true,
            rows: Vec::new(),
        };
        let path = summary.write(&dir).unwrap();
        assert_eq!(path, dir.join("vl-flex-bf16.json"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), summary.to_json());
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(leftovers, 1);
    }
}
