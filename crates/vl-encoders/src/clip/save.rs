//! Weight export: [`save_hf`] writes a [`Clip`] as a standard Hugging Face `CLIPModel`
//! checkpoint (`config.json` + `model.safetensors`), the inverse of the Hugging Face import in
//! `weights.rs`. Tensor names come from the key table in `weights.rs`, the single source of truth:
//! module paths equal the Hugging Face names except LayerNorm `gamma`/`beta` (written as
//! `weight`/`bias`) and `vision_model.pre_layernorm` (written as transformers' `pre_layrnorm`).
//! Linear weights, stored `[in, out]` in Burn, are transposed to PyTorch's `[out, in]`;
//! `logit_scale` is written as a scalar (shape `[]`). Every tensor is written as F32, whatever
//! the compute dtype, so the file is exactly what `CLIPModel.save_pretrained` writes for an f32
//! model, minus the `position_ids` buffers.
//!
//! Both files are replaced atomically ([`write_atomic`]): written to a temporary file in the same
//! directory, flushed to disk, then renamed over the target, so a reader sees either the old file
//! or the complete new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::config::ClipConfig;
use super::model::Clip;
use super::weights::{HF_CONFIG, HF_WEIGHTS, hf_tensor_names};
use crate::error::{Error, Result};

/// Module path prefixes that Hugging Face spells differently (see the key table in `weights.rs`):
/// (module path, Hugging Face name).
const RENAMED_PREFIXES: &[(&str, &str)] =
    &[("vision_model.pre_layernorm.", "vision_model.pre_layrnorm.")];

/// Tensors that are `[1]` parameters in Burn and scalars (`[]`) in Hugging Face checkpoints.
const SCALARS: &[&str] = &["logit_scale"];

/// What error messages call the configuration passed to [`save_hf`].
const CONFIG_SOURCE: &str = "<config passed to save_hf>";

/// Writes `model` as a Hugging Face `CLIPModel` checkpoint in `dir`: `dir/config.json` (pretty
/// JSON from [`ClipConfig::to_hf_value`]) and `dir/model.safetensors` (every parameter under its
/// Hugging Face name, F32, in PyTorch layout). transformers' `CLIPModel.from_pretrained(dir)` and
/// [`load_clip`](super::load_clip) read the result.
///
/// `dir` is created if missing. Existing `config.json` / `model.safetensors` files are replaced
/// atomically (weights first, then the config, so a fresh directory only looks like a checkpoint
/// once both are complete); other files in `dir` are left alone.
///
/// # Errors
/// - [`Error::InvalidConfig`] if `config` cannot be expressed as a Hugging Face config
///   (non-square images) or is inconsistent (heads not dividing the width, ...).
/// - [`Error::Save`] if `model` does not have the architecture `config` describes (a parameter
///   missing, extra, or of another shape), or its tensors cannot be read back or serialized.
/// - [`Error::Write`] if a file or `dir` cannot be written.
///
/// Nothing is written when the model or configuration is rejected. The whole checkpoint is
/// built in memory before writing (about twice the model's size in F32).
pub fn save_hf(model: &Clip, config: &ClipConfig, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let hf_config = config.to_hf_value()?;
    config.validate(Path::new(CONFIG_SOURCE))?;
    check_architecture(model, config, dir)?;
    let tensors = hf_tensors(model, dir)?;
    check_key_set(&tensors, config, dir)?;
    let weights = serialize(&tensors, dir)?;
    drop(tensors);
    let mut json = serde_json::to_vec_pretty(&hf_config).map_err(|e| Error::Save {
        path: dir.to_path_buf(),
        reason: format!("cannot serialize the configuration as JSON: {e}"),
    })?;
    json.push(b'\n');

    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomic(&dir.join(HF_WEIGHTS), &weights)?;
    write_atomic(&dir.join(HF_CONFIG), &json)
}

/// One tensor ready for the file: Hugging Face shape and little-endian F32 bytes.
struct HfTensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Float parameter shapes by module path, read without materializing lazy parameters.
#[derive(Default)]
struct ParamShapes {
    path: Vec<String>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ModuleVisitor for ParamShapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.shapes
            .insert(self.path.join("."), param.lazy_shape().to_vec());
    }
}

fn param_shapes(module: &impl Module) -> BTreeMap<String, Vec<usize>> {
    let mut visitor = ParamShapes::default();
    module.visit(&mut visitor);
    visitor.shapes
}

/// Checks that `model` has exactly the parameters, with the same shapes, as a model freshly
/// built from `config` (whose parameters are lazy, so building it allocates nothing).
fn check_architecture(model: &Clip, config: &ClipConfig, dir: &Path) -> Result<()> {
    let expected = param_shapes(&config.init(&model.logit_scale.lazy_device()));
    let found = param_shapes(model);
    let problem = expected
        .iter()
        .find_map(|(path, shape)| match found.get(path) {
            None => Some(format!("it has no parameter `{path}`")),
            Some(s) if s != shape => Some(format!(
                "parameter `{path}` has shape {s:?}, the configuration implies {shape:?}"
            )),
            Some(_) => None,
        })
        .or_else(|| {
            found
                .keys()
                .find(|path| !expected.contains_key(*path))
                .map(|path| format!("it has a parameter `{path}` the configuration does not imply"))
        });
    match problem {
        None => Ok(()),
        Some(problem) => Err(Error::Save {
            path: dir.to_path_buf(),
            reason: format!("the model does not match the configuration: {problem}"),
        }),
    }
}

/// The Hugging Face name of a tensor whose module path has been adapted by
/// [`BurnToPyTorchAdapter`] (LayerNorm `gamma`/`beta` already renamed).
fn hf_name(adapted_path: &str) -> String {
    for (module, hf) in RENAMED_PREFIXES {
        if let Some(rest) = adapted_path.strip_prefix(module) {
            return format!("{hf}{rest}");
        }
    }
    adapted_path.to_string()
}

/// Every parameter of `model` by Hugging Face name, in PyTorch layout, as F32.
fn hf_tensors(model: &Clip, dir: &Path) -> Result<BTreeMap<String, HfTensor>> {
    let save_err = |reason: String| Error::Save {
        path: dir.to_path_buf(),
        reason,
    };
    let mut tensors = BTreeMap::new();
    // The adapter transposes Linear weights to [out, in] and renames LayerNorm gamma/beta to
    // weight/bias; data is read back from the device one tensor at a time.
    for tensor in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let name = hf_name(&tensor.name);
        let data = bridge::into_data(tensor)
            .map_err(|e| save_err(format!("cannot read tensor `{name}` back: {e}")))?;
        let mut shape = data.shape().to_vec();
        let values = data
            .try_into_vec_as::<f32>()
            .map_err(|e| save_err(format!("cannot convert tensor `{name}` to F32: {e:?}")))?;
        if SCALARS.contains(&name.as_str()) && values.len() == 1 {
            shape.clear();
        }
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        if tensors
            .insert(name.clone(), HfTensor { shape, bytes })
            .is_some()
        {
            return Err(save_err(format!("two parameters map to the name `{name}`")));
        }
    }
    Ok(tensors)
}

/// Checks that the tensors are exactly those of a transformers `CLIPModel` for `config`.
fn check_key_set(
    tensors: &BTreeMap<String, HfTensor>,
    config: &ClipConfig,
    dir: &Path,
) -> Result<()> {
    let expected = hf_tensor_names(config);
    let found: BTreeSet<String> = tensors.keys().cloned().collect();
    if found == expected {
        return Ok(());
    }
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    Err(Error::Save {
        path: dir.to_path_buf(),
        reason: format!(
            "the model's tensors are not those of a Hugging Face CLIPModel \
             (missing {missing:?}, unexpected {extra:?})"
        ),
    })
}

/// The safetensors bytes of `tensors`, with the `{"format": "pt"}` metadata transformers expects.
fn serialize(tensors: &BTreeMap<String, HfTensor>, dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(HF_WEIGHTS);
    let save_err = |reason: String| Error::Save {
        path: path.clone(),
        reason,
    };
    let views = tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(Dtype::F32, t.shape.clone(), &t.bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|e| save_err(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| save_err(format!("safetensors serialization failed: {e}")))
}

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: to a new temporary file in the same directory, flushed
/// to disk (`fsync`), then renamed over `path`. On error the temporary file is removed and `path`
/// is untouched. The directory must exist.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        ))
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (tmp, mut file) = create_temp(dir, &name.to_string_lossy()).map_err(write_err)?;
    let result = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let result = result.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(source) = result {
        // Best effort: the temporary file is ours and useless now.
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(source));
    }
    sync_dir(dir);
    Ok(())
}

/// Creates a fresh, hidden temporary file beside the target (never an existing one).
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // Left over by an earlier process with the same id: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < u64::MAX => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes a rename durable by syncing its directory (best effort: not every platform or file
/// system can open or sync a directory, and the file itself is already on disk).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(listing(dir.path()), ["out.json"]);
    }

    #[test]
    fn write_atomic_into_a_missing_directory_is_a_write_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(
            matches!(&err, Error::Write { path: p, .. } if p == &path),
            "{err}"
        );
        assert!(err.to_string().starts_with("cannot write "), "{err}");
    }

    #[test]
    fn write_atomic_over_a_directory_fails_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(&err, Error::Write { .. }), "{err}");
        assert_eq!(listing(dir.path()), ["taken"]);
    }

    #[test]
    fn pre_layernorm_is_written_with_the_transformers_spelling() {
        assert_eq!(
            hf_name("vision_model.pre_layernorm.weight"),
            "vision_model.pre_layrnorm.weight"
        );
        assert_eq!(
            hf_name("vision_model.post_layernorm.bias"),
            "vision_model.post_layernorm.bias"
        );
    }
}
