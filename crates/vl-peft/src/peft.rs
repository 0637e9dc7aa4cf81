//! Attaching a PEFT method to a [`Clip`]: the config ([`PeftConfig`]), target selection by
//! module-path patterns, the reparameterizers that attach adapters (fresh, or from tensors read
//! off a PEFT adapter file), BitFit and LayerNorm tuning, the trainable-parameter report, and
//! merging.
//!
//! Every base parameter is frozen first; the method then adds (or unfreezes) only its own
//! parameters. Targets: each pattern is a regex matched against the end of a `Linear`'s module
//! path at a `.` boundary (`q_proj` matches `...self_attn.q_proj` as PEFT's name lists do;
//! `self_attn.(q|v)_proj` and `mlp.fc1` work as written), restricted to the chosen tower.
//! Module paths are the Hugging Face names (`vision_model.encoder.layers.0.self_attn.q_proj`).

use std::collections::BTreeMap;

use burn::module::{LoraAdapter, Module, ModuleMapper, ModuleVisitor, Param, Reparameterizer};
use burn::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};
use vl_data::rng::HostRng;
use vl_encoders::clip::Clip;

use crate::adapters::{DoraAdapter, VeraAdapter, column_norms};
use crate::{Error, Result};

/// The method and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PeftMethod {
    /// LoRA (Hu et al. 2021): `W + s B A`, `s = alpha / r` (`alpha / sqrt(r)` with rsLoRA).
    Lora {
        /// Rank.
        r: usize,
        /// Scaling numerator.
        alpha: f64,
        /// rsLoRA scaling (Kalajdzievski 2023).
        #[serde(default)]
        rslora: bool,
    },
    /// DoRA: LoRA's direction with a learned magnitude.
    Dora {
        /// Rank.
        r: usize,
        /// Scaling numerator.
        alpha: f64,
        /// rsLoRA scaling.
        #[serde(default)]
        rslora: bool,
    },
    /// VeRA: shared frozen random projections, trainable scaling vectors.
    Vera {
        /// Rank of the shared projections.
        r: usize,
        /// Initial value of `lambda_d` (PEFT's default 0.1).
        d_initial: f64,
        /// Seed of the shared projections (always saved with the adapter).
        projection_seed: u64,
    },
    /// DVoRA: DoRA's magnitude on top of VeRA (our extension; PEFT has no DVoRA).
    Dvora {
        /// Rank of the shared projections.
        r: usize,
        /// Initial value of `lambda_d`.
        d_initial: f64,
        /// Seed of the shared projections.
        projection_seed: u64,
    },
    /// BitFit (Ben Zaken et al. 2022): only the biases of the targeted tower train.
    BitFit,
    /// LayerNorm tuning: only the LayerNorm gains and biases of the targeted tower train.
    LayerNorm,
}

/// Which tower(s) to adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tower {
    /// `vision_model.*` and `visual_projection`.
    Vision,
    /// `text_model.*` and `text_projection`.
    Text,
    /// Both.
    #[default]
    Both,
}

impl Tower {
    fn contains(self, path: &str) -> bool {
        let vision = path.starts_with("vision_model.") || path.starts_with("visual_projection");
        let text = path.starts_with("text_model.") || path.starts_with("text_projection");
        match self {
            Tower::Vision => vision,
            Tower::Text => text,
            Tower::Both => vision || text,
        }
    }
}

/// A PEFT setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeftConfig {
    /// The method (a `[peft.method]` table with `kind = "lora"`, `"dora"`, `"vera"`, `"dvora"`,
    /// `"bit_fit"` or `"layer_norm"` and the method's fields).
    pub method: PeftMethod,
    /// Target patterns (ignored by BitFit and LayerNorm tuning). Default: `["q_proj", "v_proj"]`.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// Tower(s). Default: both.
    #[serde(default)]
    pub tower: Tower,
}

fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl PeftConfig {
    /// A config for `method` on the default targets of both towers.
    pub fn new(method: PeftMethod) -> Self {
        Self {
            method,
            target_modules: default_targets(),
            tower: Tower::Both,
        }
    }
}

/// How targets are matched: suffix patterns (the config's list), or one full-path regex (a PEFT
/// `target_modules` given as a string).
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    Suffix(Vec<Regex>, Vec<String>),
    Full(Regex, String),
}

impl Matcher {
    pub(crate) fn suffixes(patterns: &[String]) -> Result<Self> {
        let compiled = patterns
            .iter()
            .map(|p| {
                Regex::new(&format!(r"(^|\.)(?:{p})$")).map_err(|e| {
                    Error::invalid(
                        "target_modules",
                        "valid regular expressions",
                        format!("{p:?}: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::Suffix(compiled, patterns.to_vec()))
    }

    pub(crate) fn full(pattern: &str) -> Result<Self> {
        let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            Error::invalid(
                "target_modules",
                "a valid regular expression",
                format!("{pattern:?}: {e}"),
            )
        })?;
        Ok(Self::Full(re, pattern.to_string()))
    }

    fn matches(&self, module: &str) -> bool {
        match self {
            Self::Suffix(res, _) => res.iter().any(|r| r.is_match(module)),
            Self::Full(re, _) => re.is_match(module),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Suffix(_, p) => format!("{p:?}"),
            Self::Full(_, p) => format!("{p:?} (full-path regex)"),
        }
    }
}

/// Module path and `[d_in, d_out]` of every `Linear` weight of the model.
fn linear_weights(clip: &Clip) -> Vec<(String, [usize; 2])> {
    struct Collect {
        path: Vec<String>,
        out: Vec<(String, [usize; 2])>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let path = self.path.join(".");
            if D == 2
                && let Some(module) = path.strip_suffix(".weight")
                && !module.contains("embedding")
            {
                let dims = param.shape().dims::<D>();
                self.out.push((module.to_string(), [dims[0], dims[1]]));
            }
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    clip.visit(&mut c);
    c.out
}

/// The targeted `Linear`s, or [`Error::NoTarget`] listing what could be targeted.
pub(crate) fn select_targets(
    clip: &Clip,
    matcher: &Matcher,
    tower: Tower,
) -> Result<Vec<(String, [usize; 2])>> {
    let all = linear_weights(clip);
    let chosen: Vec<_> = all
        .iter()
        .filter(|(m, _)| tower.contains(m) && matcher.matches(m))
        .cloned()
        .collect();
    if chosen.is_empty() {
        let mut kinds: Vec<String> = all
            .iter()
            .filter(|(m, _)| tower.contains(m))
            .map(|(m, _)| {
                // Show each distinct layer-free path once: `...layers.*.self_attn.q_proj`.
                let re = Regex::new(r"\.\d+\.").expect("valid");
                re.replace_all(m, ".*.").into_owned()
            })
            .collect();
        kinds.dedup();
        kinds.sort();
        kinds.dedup();
        return Err(Error::NoTarget {
            patterns: matcher.describe(),
            available: kinds.join(", "),
        });
    }
    Ok(chosen)
}

/// Where an adapter's tensors come from.
pub(crate) enum Source<'a> {
    /// Fresh, from a seed.
    Init(u64),
    /// Read from a PEFT file: tensors by module path, in Burn layout.
    Loaded(&'a BTreeMap<String, LoadedTensors>),
}

/// One module's adapter tensors from a file, already in Burn layout.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadedTensors {
    pub a: Option<Tensor<2>>,
    pub b: Option<Tensor<2>>,
    pub magnitude: Option<Tensor<1>>,
    pub lambda_d: Option<Tensor<1>>,
    pub lambda_b: Option<Tensor<1>>,
}

/// The state a PEFT model keeps beside the adapted CLIP (for saving and reporting).
#[derive(Debug, Clone)]
pub struct PeftState {
    /// The config.
    pub config: PeftConfig,
    /// Adapted (or, for BitFit/LayerNorm, tuned) module or parameter paths.
    pub targets: Vec<String>,
    /// VeRA/DVoRA shared projections in PEFT layout: `vera_A` `[r, max d_in]`, `vera_B`
    /// `[max d_out, r]`.
    pub vera_projections: Option<(Tensor<2>, Tensor<2>)>,
    /// Trainable parameters.
    pub trainable: usize,
    /// Parameters of the base model plus trainable adapter parameters (PEFT's "all params").
    pub total: usize,
}

impl PeftState {
    /// PEFT's `print_trainable_parameters` line.
    pub fn trainable_line(&self) -> String {
        format!(
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            self.trainable,
            self.total,
            100.0 * self.trainable as f64 / self.total.max(1) as f64
        )
    }
}

/// A reparameterizer that freezes every parameter and attaches `make(module, base)` to the
/// targeted `Linear` weights.
struct Attach<R, F> {
    targets: Vec<String>,
    make: F,
    _adapter: std::marker::PhantomData<fn() -> R>,
}

impl<R, F> Reparameterizer for Attach<R, F>
where
    R: burn::module::Reparameterization,
    F: FnMut(&str, Tensor<2>) -> Option<R>,
{
    type Reparam = R;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<R>) {
        let param = param.set_require_grad(false);
        if D != 2 {
            return (param, None);
        }
        let Some(module) = path.strip_suffix(".weight") else {
            return (param, None);
        };
        if !self.targets.iter().any(|t| t == module) {
            return (param, None);
        }
        let dims = param.shape().dims::<D>();
        let base: Tensor<2> = param.val().reshape([dims[0], dims[1]]);
        let adapter = (self.make)(module, base);
        (param, adapter)
    }
}

fn attach<R, F>(clip: Clip, targets: Vec<String>, make: F) -> Clip
where
    R: burn::module::Reparameterization,
    F: FnMut(&str, Tensor<2>) -> Option<R>,
{
    clip.apply_reparameterization(Attach {
        targets,
        make,
        _adapter: std::marker::PhantomData,
    })
}

/// Sets `require_grad` on the parameters whose path satisfies `keep`, and records them.
struct Unfreeze<F> {
    path: Vec<String>,
    keep: F,
    chosen: Vec<(String, usize)>,
}

impl<F: FnMut(&str) -> bool> ModuleMapper for Unfreeze<F> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let keep = (self.keep)(&path);
        if keep {
            self.chosen
                .push((path, param.shape().dims::<D>().iter().product()));
        }
        param.set_require_grad(keep)
    }
}

fn kaiming_uniform(
    rng: &mut HostRng,
    rows: usize,
    cols: usize,
    fan_in: usize,
    device: &Device,
) -> Tensor<2> {
    // PyTorch's kaiming_uniform_(a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    rng.uniform_tensor([rows, cols], 1.0 / (fan_in as f64).sqrt(), device)
}

fn lora_scale(r: usize, alpha: f64, rslora: bool) -> f64 {
    if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    }
}

fn check_rank(r: usize) -> Result<()> {
    if r == 0 {
        return Err(Error::invalid("r", "a rank of at least 1", 0));
    }
    Ok(())
}

/// Attaches `config`'s method to `clip` with fresh adapters drawn from `seed` (PEFT's
/// initialisation: LoRA/DoRA `A` Kaiming-uniform and `B` zero; DoRA's magnitude the norms of
/// `W`; VeRA's projections Kaiming-uniform, `lambda_d = d_initial`, `lambda_b = 0`), so the
/// adapted model equals the base model until trained. Every base parameter is frozen.
pub fn apply_peft(clip: Clip, config: &PeftConfig, seed: u64) -> Result<(Clip, PeftState)> {
    attach_method(clip, config, Source::Init(seed), None)
}

/// The shared work of [`apply_peft`] and the PEFT-file loader.
pub(crate) fn attach_method(
    clip: Clip,
    config: &PeftConfig,
    source: Source<'_>,
    matcher: Option<Matcher>,
) -> Result<(Clip, PeftState)> {
    let device = clip.logit_scale.val().device();
    let base_total = clip.num_params();
    let tower = config.tower;
    match &config.method {
        PeftMethod::BitFit | PeftMethod::LayerNorm => {
            let bitfit = config.method == PeftMethod::BitFit;
            let mut mapper = Unfreeze {
                path: Vec::new(),
                keep: |path: &str| {
                    tower.contains(path)
                        && if bitfit {
                            path.ends_with(".bias")
                        } else {
                            (path.contains("layer_norm") || path.contains("layernorm"))
                                && (path.ends_with(".gamma") || path.ends_with(".beta"))
                        }
                },
                chosen: Vec::new(),
            };
            let clip = clip.map(&mut mapper);
            if mapper.chosen.is_empty() {
                return Err(Error::NoTarget {
                    patterns: format!("{:?} parameters", config.method),
                    available: "none in the chosen tower".into(),
                });
            }
            let trainable = mapper.chosen.iter().map(|(_, n)| n).sum();
            let state = PeftState {
                config: config.clone(),
                targets: mapper.chosen.into_iter().map(|(p, _)| p).collect(),
                vera_projections: None,
                trainable,
                total: base_total,
            };
            return Ok((clip, state));
        }
        _ => {}
    }
    let matcher = match matcher {
        Some(m) => m,
        None => Matcher::suffixes(&config.target_modules)?,
    };
    let chosen = select_targets(&clip, &matcher, tower)?;
    let targets: Vec<String> = chosen.iter().map(|(m, _)| m.clone()).collect();
    let dims: BTreeMap<String, [usize; 2]> = chosen.iter().cloned().collect();
    let missing = |module: &str, what: &str| Error::Tensor {
        path: "adapter_model.safetensors".into(),
        tensor: format!("base_model.model.{module}.{what}"),
        expected: "present (the module is a target)".into(),
        found: "missing".into(),
    };
    // Loaded tensors are checked up front, so `make` below cannot fail.
    if let Source::Loaded(tensors) = &source {
        for module in &targets {
            let t = tensors.get(module);
            let need: &[(&str, bool)] = match config.method {
                PeftMethod::Lora { .. } => &[("lora_A.weight", true), ("lora_B.weight", true)],
                PeftMethod::Dora { .. } => &[
                    ("lora_A.weight", true),
                    ("lora_B.weight", true),
                    ("lora_magnitude_vector", true),
                ],
                PeftMethod::Vera { .. } => &[("vera_lambda_d", true), ("vera_lambda_b", true)],
                PeftMethod::Dvora { .. } => &[
                    ("vera_lambda_d", true),
                    ("vera_lambda_b", true),
                    ("lora_magnitude_vector", true),
                ],
                PeftMethod::BitFit | PeftMethod::LayerNorm => &[],
            };
            for (what, _) in need {
                let present = t.is_some_and(|t| match *what {
                    "lora_A.weight" => t.a.is_some(),
                    "lora_B.weight" => t.b.is_some(),
                    "lora_magnitude_vector" => t.magnitude.is_some(),
                    "vera_lambda_d" => t.lambda_d.is_some(),
                    _ => t.lambda_b.is_some(),
                });
                if !present {
                    return Err(missing(module, what));
                }
            }
        }
    }
    let mut trainable = 0usize;
    let (clip, vera) = match config.method.clone() {
        PeftMethod::Lora { r, alpha, rslora } | PeftMethod::Dora { r, alpha, rslora } => {
            check_rank(r)?;
            let scale = lora_scale(r, alpha, rslora);
            let dora = matches!(config.method, PeftMethod::Dora { .. });
            let mut rng = match &source {
                Source::Init(seed) => Some(HostRng::new(*seed)),
                Source::Loaded(_) => None,
            };
            for &[d_in, d_out] in dims.values() {
                trainable += r * (d_in + d_out) + if dora { d_out } else { 0 };
            }
            let loaded = match &source {
                Source::Loaded(t) => Some(*t),
                Source::Init(_) => None,
            };
            let mut factors = |module: &str| -> (Tensor<2>, Tensor<2>) {
                let [d_in, d_out] = dims[module];
                match (loaded, rng.as_mut()) {
                    (Some(t), _) => {
                        let t = &t[module];
                        (t.a.clone().expect("checked"), t.b.clone().expect("checked"))
                    }
                    (None, Some(rng)) => (
                        kaiming_uniform(rng, d_in, r, d_in, &device),
                        Tensor::zeros([r, d_out], &device),
                    ),
                    (None, None) => unreachable!("one source"),
                }
            };
            let clip = if dora {
                attach(clip, targets.clone(), |module: &str, base: Tensor<2>| {
                    let (a, b) = factors(module);
                    let magnitude = match loaded {
                        Some(t) => t[module].magnitude.clone().expect("checked"),
                        None => column_norms(base),
                    };
                    Some(DoraAdapter {
                        a: Param::from_tensor(a),
                        b: Param::from_tensor(b),
                        magnitude: Param::from_tensor(magnitude),
                        scale,
                    })
                })
            } else {
                attach(clip, targets.clone(), |module: &str, _base: Tensor<2>| {
                    let (a, b) = factors(module);
                    Some(LoraAdapter {
                        a: Param::from_tensor(a),
                        b: Param::from_tensor(b),
                        scale,
                    })
                })
            };
            (clip, None)
        }
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
            check_rank(r)?;
            let dvora = matches!(config.method, PeftMethod::Dvora { .. });
            let max_in = dims.values().map(|d| d[0]).max().unwrap_or(0);
            let max_out = dims.values().map(|d| d[1]).max().unwrap_or(0);
            let (proj_a, proj_b) = match &source {
                Source::Init(_) => {
                    let mut rng = HostRng::new(projection_seed);
                    (
                        kaiming_uniform(&mut rng, r, max_in, max_in, &device),
                        kaiming_uniform(&mut rng, max_out, r, r, &device),
                    )
                }
                Source::Loaded(t) => {
                    let shared = t.get("").ok_or_else(|| Error::Tensor {
                        path: "adapter_model.safetensors".into(),
                        tensor: "base_model.vera_A / base_model.vera_B".into(),
                        expected: "the shared projections (save_projection = true)".into(),
                        found: "missing".into(),
                    })?;
                    let (a, b) = (shared.a.clone(), shared.b.clone());
                    match (a, b) {
                        (Some(a), Some(b)) => (a, b),
                        _ => {
                            return Err(Error::Tensor {
                                path: "adapter_model.safetensors".into(),
                                tensor: "base_model.vera_A / base_model.vera_B".into(),
                                expected: "both shared projections".into(),
                                found: "one of them".into(),
                            });
                        }
                    }
                }
            };
            let [pa_r, pa_in] = proj_a.dims();
            let [pb_out, pb_r] = proj_b.dims();
            if pa_r != r || pb_r != r || pa_in < max_in || pb_out < max_out {
                return Err(Error::Tensor {
                    path: "adapter_model.safetensors".into(),
                    tensor: "base_model.vera_A / base_model.vera_B".into(),
                    expected: format!("[{r}, >= {max_in}] and [>= {max_out}, {r}]"),
                    found: format!("[{pa_r}, {pa_in}] and [{pb_out}, {pb_r}]"),
                });
            }
            for &[_, d_out] in dims.values() {
                trainable += r + d_out + if dvora { d_out } else { 0 };
            }
            let loaded = match &source {
                Source::Loaded(t) => Some(*t),
                Source::Init(_) => None,
            };
            let (pa, pb) = (proj_a.clone(), proj_b.clone());
            let clip = attach(clip, targets.clone(), |module: &str, base: Tensor<2>| {
                let [d_in, d_out] = dims[module];
                let a = pa.clone().narrow(1, 0, d_in).transpose();
                let b = pb.clone().narrow(0, 0, d_out).transpose();
                let (lambda_d, lambda_b, magnitude) = match loaded {
                    Some(t) => {
                        let t = &t[module];
                        (
                            t.lambda_d.clone().expect("checked"),
                            t.lambda_b.clone().expect("checked"),
                            t.magnitude.clone(),
                        )
                    }
                    None => (
                        Tensor::ones([r], &device).mul_scalar(d_initial),
                        Tensor::zeros([d_out], &device),
                        dvora.then(|| column_norms(base)),
                    ),
                };
                Some(VeraAdapter {
                    a: Param::from_tensor(a).set_require_grad(false),
                    b: Param::from_tensor(b).set_require_grad(false),
                    lambda_d: Param::from_tensor(lambda_d),
                    lambda_b: Param::from_tensor(lambda_b),
                    magnitude: magnitude.map(Param::from_tensor),
                })
            });
            (clip, Some((proj_a, proj_b)))
        }
        PeftMethod::BitFit | PeftMethod::LayerNorm => unreachable!("handled above"),
    };
    let state = PeftState {
        config: config.clone(),
        targets,
        vera_projections: vera,
        trainable,
        total: base_total + trainable,
    };
    Ok((clip, state))
}

/// Merges every adapter into its base weight (Burn's `materialize`): the result is a plain CLIP
/// whose forward costs exactly the base model's. The adapted model is unchanged (keep it to
/// "unmerge").
pub fn merge(clip: &Clip) -> Clip {
    clip.clone().materialize()
}
