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

/// The environment variable that picks the bench device.
pub const DEVICE_VAR: &str = "VL_BENCH_DEVICE";

/// The environment variable that asks for a short run (see [`quick`]).
pub const QUICK_VAR: &str = "VL_BENCH_QUICK";

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
/// or if no backend feature is compiled in at all.
pub fn bench_device() -> (String, Device) {
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

/// `git rev-parse HEAD` of the workspace, or `None` where git or the repository is missing.
pub fn git_revision() -> Option<String> {
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
    /// Timed calls in all (criterion's warm-up and samples; not the untimed first call).
    pub iters: u64,
    /// Their total wall time.
    pub elapsed: Duration,
    /// Peak resident set size during the timed calls, MiB.
    pub peak_rss_mb: Option<f64>,
    /// Device memory reserved by Burn's allocator, the largest value seen after a timed call,
    /// MiB; `None` where the backend does not report it.
    pub peak_gpu_mb: Option<f64>,
}

impl Row {
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
    /// Whether `VL_BENCH_QUICK` was set.
    pub quick: bool,
    /// The measured benches, in run order.
    pub rows: Vec<Row>,
}

impl Summary {
    /// The summary as JSON: `{"device", "git_revision", "dtype": "f32", "quick", "threads",
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
        json.push_str("  \"dtype\": \"f32\",\n");
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

    /// Like [`Self::write`], to `<dir>/<stem>-<device>.json` (e.g. `vl-prompting-flex.json`).
    pub fn write_named(&self, dir: &Path, stem: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{stem}-{}.json", self.device));
        let tmp = dir.join(format!(
            ".{stem}-{}.json.{}.tmp",
            self.device,
            std::process::id()
        ));
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
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn summary_is_written_atomically() {
        let dir = std::env::temp_dir().join(format!("vl-bench-test-{}", std::process::id()));
        let summary = Summary {
            device: "flex".to_owned(),
            git_revision: Some("abc".to_owned()),
            quick: true,
            rows: Vec::new(),
        };
        let path = summary.write(&dir).unwrap();
        assert_eq!(path, dir.join("vl-flex.json"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), summary.to_json());
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(leftovers, 1);
    }
}
