//! Hugging Face PEFT adapter directories: `adapter_config.json` + `adapter_model.safetensors`,
//! read and written with PEFT's key names and tensor layouts (peft 0.21):
//!
//! | PEFT key (under `base_model.model.<module>.`) | shape (PyTorch) | vlkit tensor (Burn layout) |
//! |---|---|---|
//! | `lora_A.weight` | `[r, d_in]` | `LoraAdapter.a` / `DoraAdapter.a`, `[d_in, r]` |
//! | `lora_B.weight` | `[d_out, r]` | `.b`, `[r, d_out]` |
//! | `lora_magnitude_vector` | `[d_out]` | `DoraAdapter.magnitude` (DVoRA too) |
//! | `vera_lambda_d`, `vera_lambda_b` | `[r]`, `[d_out]` | `VeraAdapter.lambda_d`, `.lambda_b` |
//! | `base_model.vera_A`, `base_model.vera_B` (no module) | `[r, max d_in]`, `[max d_out, r]` | shared projections, sliced per layer |
//!
//! `target_modules` follows PEFT: a list matches a module whose path equals an entry or ends
//! with `.entry`; a string is a full-path regex. Unknown config keys are ignored; options we do
//! not implement (`fan_in_fan_out`, `layers_to_transform`, `layers_pattern`, `rank_pattern`,
//! `alpha_pattern`, `modules_to_save`, `exclude_modules`, `bias` other than `"none"`,
//! `lora_bias`, `use_qalora`, `target_parameters`, VeRA without saved projections, named
//! adapters) are errors naming the key. `lora_dropout` / `vera_dropout` only act in training and
//! are read but not applied. DVoRA, which PEFT lacks, is written as a VeRA adapter plus the
//! magnitude vectors and `"vlkit_dvora": true` in the config (our extension).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use serde_json::{Value, json};
use vl_data::{Overwrite, write_atomic};
use vl_encoders::clip::Clip;

use crate::peft::{
    LoadedTensors, Matcher, PeftConfig, PeftMethod, PeftState, Source, Tower, attach_method,
};
use crate::{Error, Result};

const CONFIG: &str = "adapter_config.json";
const WEIGHTS: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Parses `adapter_config.json` into our config and PEFT's target matcher.
fn read_config(path: &Path) -> Result<(PeftConfig, Matcher)> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let v: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let field = |k: &str| format!("{}: {k}", path.display());
    let unsupported =
        |k: &str, expected: &str, found: &Value| Error::invalid(field(k), expected, found);
    let is_off = |k: &str| match v.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    for k in [
        "fan_in_fan_out",
        "layers_to_transform",
        "layers_pattern",
        "rank_pattern",
        "alpha_pattern",
        "modules_to_save",
        "exclude_modules",
        "lora_bias",
        "use_qalora",
        "target_parameters",
    ] {
        if !is_off(k) {
            return Err(unsupported(
                k,
                "unset / false / empty (not supported by vlkit)",
                &v[k],
            ));
        }
    }
    if let Some(bias) = v.get("bias")
        && bias != "none"
    {
        return Err(unsupported("bias", "\"none\"", bias));
    }
    let usize_of = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| {
                Error::invalid(
                    field(k),
                    "a positive integer",
                    v.get(k).unwrap_or(&Value::Null),
                )
            })
    };
    let f64_of = |k: &str, default: f64| v.get(k).and_then(Value::as_f64).unwrap_or(default);
    let bool_of = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let peft_type = v.get("peft_type").and_then(Value::as_str).unwrap_or("");
    let method = match peft_type {
        "LORA" => {
            let r = usize_of("r")?;
            let alpha = f64_of("lora_alpha", 8.0);
            let rslora = bool_of("use_rslora");
            if bool_of("use_dora") {
                PeftMethod::Dora { r, alpha, rslora }
            } else {
                PeftMethod::Lora { r, alpha, rslora }
            }
        }
        "VERA" => {
            if v.get("save_projection").and_then(Value::as_bool) == Some(false) {
                return Err(unsupported(
                    "save_projection",
                    "true (PEFT regenerates unsaved projections with torch's RNG, which vlkit cannot reproduce)",
                    &v["save_projection"],
                ));
            }
            let r = usize_of("r")?;
            let d_initial = f64_of("d_initial", 0.1);
            let projection_seed = v
                .get("projection_prng_key")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if bool_of("vlkit_dvora") {
                PeftMethod::Dvora {
                    r,
                    d_initial,
                    projection_seed,
                }
            } else {
                PeftMethod::Vera {
                    r,
                    d_initial,
                    projection_seed,
                }
            }
        }
        other => {
            return Err(Error::invalid(
                field("peft_type"),
                "\"LORA\" (LoRA, DoRA) or \"VERA\" (VeRA, DVoRA)",
                format!("{other:?}"),
            ));
        }
    };
    let (targets, matcher) = match v.get("target_modules") {
        Some(Value::String(s)) => (vec![s.clone()], Matcher::full(s)?),
        Some(Value::Array(items)) => {
            let names: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    unsupported(
                        "target_modules",
                        "a list of module names or a regex string",
                        &v["target_modules"],
                    )
                })?;
            let escaped: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
            (names, Matcher::suffixes(&escaped)?)
        }
        other => {
            return Err(unsupported(
                "target_modules",
                "a list of module names or a regex string",
                other.unwrap_or(&Value::Null),
            ));
        }
    };
    let config = PeftConfig {
        method,
        target_modules: targets,
        tower: Tower::Both,
    };
    Ok((config, matcher))
}

/// Reads the adapter tensors, converted to Burn layout, keyed by module path (`""` holds
/// VeRA's shared projections, kept in PEFT layout).
fn read_tensors(path: &Path, device: &Device) -> Result<BTreeMap<String, LoadedTensors>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let st =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out: BTreeMap<String, LoadedTensors> = BTreeMap::new();
    for (key, view) in st.tensors() {
        let bad = |expected: &str, found: String| Error::Tensor {
            path: path.to_path_buf(),
            tensor: key.clone(),
            expected: expected.into(),
            found,
        };
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::BF16 => view
                .data()
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => return Err(bad("f32 or bf16", format!("{other:?}"))),
        };
        let shape = view.shape().to_vec();
        let t2 = |transpose: bool| -> Result<Tensor<2>> {
            if shape.len() != 2 {
                return Err(bad("a matrix", format!("shape {shape:?}")));
            }
            let t = Tensor::<2>::from_data(
                TensorData::new(values.clone(), [shape[0], shape[1]]),
                device,
            );
            Ok(if transpose { t.transpose() } else { t })
        };
        let t1 = || -> Result<Tensor<1>> {
            if shape.len() != 1 {
                return Err(bad("a vector", format!("shape {shape:?}")));
            }
            Ok(Tensor::from_data(
                TensorData::new(values.clone(), [shape[0]]),
                device,
            ))
        };
        if key == "base_model.vera_A" {
            out.entry(String::new()).or_default().a = Some(t2(false)?);
            continue;
        }
        if key == "base_model.vera_B" {
            out.entry(String::new()).or_default().b = Some(t2(false)?);
            continue;
        }
        let rest = key.strip_prefix(PREFIX).ok_or_else(|| {
            bad(
                "a key starting with `base_model.model.`",
                "another key".into(),
            )
        })?;
        let suffixes = [
            "lora_A.weight",
            "lora_B.weight",
            "lora_magnitude_vector",
            "vera_lambda_d",
            "vera_lambda_b",
        ];
        let Some((module, what)) = suffixes.iter().find_map(|s| {
            rest.strip_suffix(&format!(".{s}"))
                .map(|m| (m.to_string(), *s))
        }) else {
            return Err(bad(
                "a LoRA/DoRA/VeRA tensor of the default adapter (`lora_A.weight`, `lora_B.weight`, `lora_magnitude_vector`, `vera_lambda_d`, `vera_lambda_b`)",
                "an unsupported key".into(),
            ));
        };
        let entry = out.entry(module).or_default();
        match what {
            "lora_A.weight" => entry.a = Some(t2(true)?),
            "lora_B.weight" => entry.b = Some(t2(true)?),
            "lora_magnitude_vector" => entry.magnitude = Some(t1()?),
            "vera_lambda_d" => entry.lambda_d = Some(t1()?),
            _ => entry.lambda_b = Some(t1()?),
        }
    }
    Ok(out)
}

/// Loads a PEFT adapter directory onto `clip` (frozen base, adapters attached unmerged).
pub fn load_peft_adapter(clip: Clip, dir: impl AsRef<Path>) -> Result<(Clip, PeftState)> {
    let dir = dir.as_ref();
    let (config, matcher) = read_config(&dir.join(CONFIG))?;
    let device = clip.logit_scale.val().device();
    let weights = dir.join(WEIGHTS);
    let tensors = read_tensors(&weights, &device)?;
    let (clip, state) = attach_method(clip, &config, Source::Loaded(&tensors), Some(matcher))?;
    // Every tensor must belong to a target, and have the target's shape.
    for (module, t) in &tensors {
        if module.is_empty() {
            continue;
        }
        if !state.targets.contains(module) {
            return Err(Error::Tensor {
                path: weights,
                tensor: format!("{PREFIX}{module}.*"),
                expected: format!(
                    "a module that target_modules {:?} selects",
                    config.target_modules
                ),
                found: "tensors for a module it does not select".into(),
            });
        }
        let _ = t;
    }
    check_shapes(&clip, &state, &weights)?;
    Ok((clip, state))
}

/// One module's adapter tensors as attached (Burn layout), by kind.
#[derive(Default)]
struct Attached {
    kind: &'static str,
    a: Option<Tensor<2>>,
    b: Option<Tensor<2>>,
    magnitude: Option<Tensor<1>>,
    lambda_d: Option<Tensor<1>>,
    lambda_b: Option<Tensor<1>>,
}

/// Collects every adapter with its module path. Burn visits a reparameterized weight as its
/// base, then the adapter's own parameters under `<module>.weight.<lora|dora|vera>.<field>`.
struct Adapters {
    path: Vec<String>,
    found: BTreeMap<String, Attached>,
    dims: Vec<(String, [usize; 2])>,
}

impl ModuleVisitor for Adapters {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = self.path.len();
        if n >= 3 && self.path[n - 3] == "weight" {
            let kind = match self.path[n - 2].as_str() {
                "lora" => "lora",
                "dora" => "dora",
                "vera" => "vera",
                _ => return,
            };
            let module = self.path[..n - 3].join(".");
            let entry = self.found.entry(module).or_default();
            entry.kind = kind;
            let val = param.val();
            let as2 = |t: Tensor<D>| {
                let d = t.dims();
                t.reshape([d[0], d.get(1).copied().unwrap_or(1)])
            };
            let as1 = |t: Tensor<D>| {
                let d = t.dims();
                t.reshape([d[0]])
            };
            match self.path[n - 1].as_str() {
                "a" => entry.a = Some(as2(val)),
                "b" => entry.b = Some(as2(val)),
                "magnitude" => entry.magnitude = Some(as1(val)),
                "lambda_d" => entry.lambda_d = Some(as1(val)),
                "lambda_b" => entry.lambda_b = Some(as1(val)),
                _ => {}
            }
            return;
        }
        let path = self.path.join(".");
        if D == 2
            && let Some(module) = path.strip_suffix(".weight")
        {
            let d = param.shape().dims::<D>();
            self.dims.push((module.to_string(), [d[0], d[1]]));
        }
    }
}

fn collect(clip: &Clip) -> Adapters {
    let mut a = Adapters {
        path: Vec::new(),
        found: BTreeMap::new(),
        dims: Vec::new(),
    };
    clip.visit(&mut a);
    a
}

fn check_shapes(clip: &Clip, state: &PeftState, weights: &Path) -> Result<()> {
    let a = collect(clip);
    let dims: BTreeMap<_, _> = a.dims.into_iter().collect();
    let bad = |tensor: String, expected: String, found: String| Error::Tensor {
        path: weights.to_path_buf(),
        tensor,
        expected,
        found,
    };
    let rank = match state.config.method {
        PeftMethod::Lora { r, .. }
        | PeftMethod::Dora { r, .. }
        | PeftMethod::Vera { r, .. }
        | PeftMethod::Dvora { r, .. } => r,
        _ => 0,
    };
    let check2 = |m: &str, what: &str, t: &Tensor<2>, want: [usize; 2], pt: [usize; 2]| {
        if t.dims() == want {
            Ok(())
        } else {
            let [x, y] = t.dims();
            Err(bad(
                format!("{PREFIX}{m}.{what}"),
                format!("{pt:?}"),
                format!("[{y}, {x}]"),
            ))
        }
    };
    let check1 = |m: &str, what: &str, t: &Tensor<1>, want: usize| {
        if t.dims() == [want] {
            Ok(())
        } else {
            Err(bad(
                format!("{PREFIX}{m}.{what}"),
                format!("[{want}]"),
                format!("{:?}", t.dims()),
            ))
        }
    };
    for (m, t) in &a.found {
        let [d_in, d_out] = dims[m];
        if let (Some(la), Some(lb)) = (&t.a, &t.b)
            && t.kind != "vera"
        {
            check2(m, "lora_A.weight", la, [d_in, rank], [rank, d_in])?;
            check2(m, "lora_B.weight", lb, [rank, d_out], [d_out, rank])?;
        }
        if let Some(mag) = &t.magnitude {
            check1(m, "lora_magnitude_vector", mag, d_out)?;
        }
        if let Some(ld) = &t.lambda_d {
            check1(m, "vera_lambda_d", ld, rank)?;
        }
        if let Some(lb) = &t.lambda_b {
            check1(m, "vera_lambda_b", lb, d_out)?;
        }
    }
    Ok(())
}

fn f32_bytes<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<u8>) {
    let dims = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    (dims, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Writes the adapters attached to `clip` as a PEFT adapter directory (atomically; existing
/// files are an error unless `overwrite` allows them). LoRA, DoRA and VeRA load in PEFT; DVoRA
/// is our extension (see the module docs).
pub fn save_peft_adapter(
    clip: &Clip,
    state: &PeftState,
    dir: impl AsRef<Path>,
    overwrite: Overwrite,
) -> Result<()> {
    let dir = dir.as_ref();
    let a = collect(clip);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (m, t) in a.found {
        if t.kind != "vera"
            && let (Some(la), Some(lb)) = (t.a, t.b)
        {
            tensors.insert(
                format!("{PREFIX}{m}.lora_A.weight"),
                f32_bytes(la.transpose()),
            );
            tensors.insert(
                format!("{PREFIX}{m}.lora_B.weight"),
                f32_bytes(lb.transpose()),
            );
        }
        if let Some(ld) = t.lambda_d {
            tensors.insert(format!("{PREFIX}{m}.vera_lambda_d"), f32_bytes(ld));
        }
        if let Some(lb) = t.lambda_b {
            tensors.insert(format!("{PREFIX}{m}.vera_lambda_b"), f32_bytes(lb));
        }
        if let Some(mag) = t.magnitude {
            tensors.insert(format!("{PREFIX}{m}.lora_magnitude_vector"), f32_bytes(mag));
        }
    }
    if let Some((pa, pb)) = &state.vera_projections {
        tensors.insert("base_model.vera_A".into(), f32_bytes(pa.clone()));
        tensors.insert("base_model.vera_B".into(), f32_bytes(pb.clone()));
    }
    if tensors.is_empty() {
        return Err(Error::invalid(
            "adapters",
            "LoRA, DoRA, VeRA or DVoRA adapters to save (BitFit and LayerNorm tuning change base parameters: save the model)",
            "none attached",
        ));
    }
    let weights = dir.join(WEIGHTS);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (shape, bytes))| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|source| Error::Safetensors {
                    path: weights.clone(),
                    source,
                })
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|source| Error::Safetensors {
        path: weights.clone(),
        source,
    })?;
    let common = json!({
        "target_modules": state.targets,
        "fan_in_fan_out": false,
        "bias": "none",
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "inference_mode": true,
        "task_type": null,
        "base_model_name_or_path": null,
        "revision": null,
    });
    let mut config = common.as_object().cloned().unwrap_or_default();
    let extra = match &state.config.method {
        PeftMethod::Lora { r, alpha, rslora } | PeftMethod::Dora { r, alpha, rslora } => json!({
            "peft_type": "LORA",
            "r": r,
            "lora_alpha": alpha,
            "use_rslora": rslora,
            "use_dora": matches!(state.config.method, PeftMethod::Dora { .. }),
            "lora_dropout": 0.0,
            "init_lora_weights": true,
            "rank_pattern": {},
            "alpha_pattern": {},
        }),
        PeftMethod::Vera {
            r,
            d_initial,
            projection_seed,
        }
        | PeftMethod::Dvora {
            r,
            d_initial,
            projection_seed,
        } => {
            let mut v = json!({
                "peft_type": "VERA",
                "r": r,
                "d_initial": d_initial,
                "projection_prng_key": projection_seed,
                "save_projection": true,
                "vera_dropout": 0.0,
                "init_weights": true,
            });
            if matches!(state.config.method, PeftMethod::Dvora { .. }) {
                v["vlkit_dvora"] = json!(true);
            }
            v
        }
        PeftMethod::BitFit | PeftMethod::LayerNorm => unreachable!("refused above"),
    };
    if let Some(extra) = extra.as_object() {
        config.extend(extra.clone());
    }
    let text = serde_json::to_string_pretty(&Value::Object(config)).unwrap_or_default();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let write = |path: PathBuf, bytes: &[u8]| {
        write_atomic(&path, bytes, overwrite).map_err(|source| Error::Write {
            path,
            source: Box::new(source),
        })
    };
    write(weights.clone(), &bytes)?;
    write(dir.join(CONFIG), text.as_bytes())
}
