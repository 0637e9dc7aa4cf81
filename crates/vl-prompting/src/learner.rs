//! Learnable prompts for a frozen CLIP: the text context of CoOp (Zhou et al. 2022,
//! <https://arxiv.org/abs/2109.01134>, reference KaiyangZhou/CoOp `trainers/coop.py`), the
//! image-conditional bias of CoCoOp (Zhou et al. 2022, <https://arxiv.org/abs/2203.05557>,
//! `trainers/cocoop.py`), the Gaussian prompt residual of variational / Bayesian prompt learning
//! (Derakhshani et al. 2023, <https://arxiv.org/abs/2210.02390>) and visual prompt tokens (VPT,
//! Jia et al. 2022, <https://arxiv.org/abs/2203.12119>; the multimodal form of MaPLe,
//! Khattak et al. 2023, `trainers/maple.py`). One [`PromptLearner`] holds whichever of these a
//! [`PromptConfig`] asks for, so they combine by config.
//!
//! The learner holds only trainable parameters. What is constant for a class list (the token
//! embeddings around the context, the pooling positions) lives in [`ClassPrompts`], built once
//! per class list and kept on the device: switching from base to novel classes is building
//! another `ClassPrompts`, not another learner.
//!
//! Prompt layout (CoOp): `[SOS] ctx_1 .. ctx_M name tokens . [EOT] pad` with the class token at
//! the end; `[SOS] name ctx .` in front; `[SOS] ctx_1..ctx_{M/2} name ctx_{M/2+1}..ctx_M .` in the
//! middle. The features are pooled at the end-of-text token. Sequences are cut after the longest
//! class's end-of-text token: the text tower is causal, so the cut changes nothing.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use vl_data::ClipTokenizer;
use vl_data::rng::HostRng;
use vl_encoders::clip::{Clip, l2_normalize};

use crate::{Error, Result};

/// Where the class name goes relative to the learned context (CoOp's `CLASS_TOKEN_POSITION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassTokenPosition {
    /// `ctx name .` (the default, as CoOp).
    #[default]
    End,
    /// `ctx[..M/2] name ctx[M/2..] .`
    Middle,
    /// `name ctx .`
    Front,
}

/// The learned text context (CoOp), optionally image-conditional (CoCoOp) and/or Gaussian
/// (variational prompt learning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextPromptConfig {
    /// Number of context vectors `M`. With `ctx_init`, it must equal the phrase's token count.
    /// Default: `4` (CoOp's few-shot runs use 16, CoCoOp and KgCoOp 4).
    pub n_ctx: usize,
    /// Initialise the context from the token embeddings of this phrase (e.g. `"a photo of a"`)
    /// instead of `N(0, init_std^2)`. Default: `None` (random).
    pub ctx_init: Option<String>,
    /// Standard deviation of the random initialisation. Default: `0.02` (CoOp).
    pub init_std: f64,
    /// One context per class (CoOp's CSC) instead of one shared context. Class-specific
    /// contexts cannot be used on classes other than the training ones. Default: `false`.
    pub class_specific: bool,
    /// Where the class name goes. Default: [`ClassTokenPosition::End`].
    pub class_token_position: ClassTokenPosition,
    /// CoCoOp: a meta-network `Linear-ReLU-Linear` maps the (normalised) image feature to a bias
    /// added to every context vector, so each image gets its own class prompts. Default: `false`.
    pub conditional: bool,
    /// Hidden width of the meta-network is `projection_dim / meta_net_reduction`. Default: `16`
    /// (CoCoOp).
    pub meta_net_reduction: usize,
    /// A Gaussian residual over the context (variational prompt learning). Default: `None`.
    pub variational: Option<VariationalConfig>,
    /// Text layers with their own context: `1` learns the input context only (CoOp); `k > 1`
    /// also replaces the context tokens at the input of layers `1..k` by fresh learned tokens
    /// (MaPLe's deep language prompts; class token at the end only). Default: `1`.
    pub depth: usize,
    /// LASP's grouped prompts: `G` independent contexts. Group `g`'s LASP text-to-text term
    /// uses the templates `k` with `k mod G = g`; the classifier averages the groups' unit-norm
    /// class features and re-normalises. Default: `1`.
    pub groups: usize,
    /// LASP's class-agnostic bias: a learned vector `b` (zeros at start), the classifier's class
    /// features being `normalize(t_c + b)` for the unit-norm learned features `t_c`. It enters
    /// the image logits only; the KgCoOp and LASP terms compare `t_c`. Default: `false`.
    pub bias: bool,
}

impl Default for TextPromptConfig {
    fn default() -> Self {
        Self {
            n_ctx: 4,
            ctx_init: None,
            init_std: 0.02,
            class_specific: false,
            class_token_position: ClassTokenPosition::End,
            conditional: false,
            meta_net_reduction: 16,
            variational: None,
            depth: 1,
            groups: 1,
            bias: false,
        }
    }
}

/// Variational prompt learning: a residual `r ~ N(mu, diag(sigma^2))` is added to every context
/// vector. In the CoOp form `mu` and `log sigma^2` are learned vectors; in the CoCoOp form
/// (`conditional = true`) the meta-network outputs both from the image feature. Training draws
/// `samples` residuals by reparameterisation and adds `kl_weight * KL(q || N(0, I))` to the loss;
/// prediction averages the class probabilities over the samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VariationalConfig {
    /// Monte Carlo samples `L` per step and per prediction. Default: `10` (the paper's L).
    pub samples: usize,
    /// Weight of the KL term. Default: `0.001` (the reference configs).
    pub kl_weight: f64,
    /// Initial `log sigma^2` of the CoOp form. Default: `-4.0` (sigma ≈ 0.14, small against the
    /// token embeddings so the prompt starts near its mean).
    pub init_log_var: f64,
}

impl Default for VariationalConfig {
    fn default() -> Self {
        Self {
            samples: 10,
            kl_weight: 0.001,
            init_log_var: -4.0,
        }
    }
}

/// Learnable tokens in the vision tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisualPromptConfig {
    /// Prompt tokens per layer. Default: `4`.
    pub n_tokens: usize,
    /// Layers with their own prompts: `1` is shallow VPT (input only), `k > 1` deep VPT (fresh
    /// prompts at the input of layers `1..k`). Default: `1`.
    pub depth: usize,
    /// Standard deviation of the initialisation. Default: `0.02`.
    pub init_std: f64,
    /// MaPLe's coupling (Khattak et al. 2023, `trainers/maple.py`): the visual tokens of layer
    /// `i` are not parameters but `Linear_i(text context of layer i)`, one learned linear map
    /// `text_width -> vision_width` per layer (PyTorch's `nn.Linear` initialisation). Needs a
    /// shared, unconditional, single-group `[prompt.text]` with `n_ctx = n_tokens` and the same
    /// `depth`. Default: `false` (independent visual tokens).
    pub coupled: bool,
}

impl Default for VisualPromptConfig {
    fn default() -> Self {
        Self {
            n_tokens: 4,
            depth: 1,
            init_std: 0.02,
            coupled: false,
        }
    }
}

/// What a [`PromptLearner`] learns: a text context, visual prompt tokens, or both (the
/// multimodal form: e.g. CoOp context plus VPT). With neither, the learner is empty and
/// classifies with the hand-crafted class features (a zero-shot classifier; useful when only the
/// encoders are tuned, e.g. with `vl-peft`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptConfig {
    /// Text context. Default: `None`.
    pub text: Option<TextPromptConfig>,
    /// Visual prompt tokens. Default: `None`.
    pub visual: Option<VisualPromptConfig>,
}

impl PromptConfig {
    /// CoOp with the default [`TextPromptConfig`] (4 random context vectors).
    pub fn coop() -> Self {
        Self {
            text: Some(TextPromptConfig::default()),
            visual: None,
        }
    }
}

/// CoCoOp's meta-network: `Linear(d_in, d_in / r) - ReLU - Linear(d_in / r, d_out)`.
#[derive(Module, Debug)]
pub struct MetaNet {
    /// First layer.
    pub linear1: Linear,
    /// Activation.
    pub relu: Relu,
    /// Second layer.
    pub linear2: Linear,
}

impl MetaNet {
    /// # Shapes
    /// - x: `[batch_size, d_in]`
    /// - output: `[batch_size, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear2
            .forward(self.relu.forward(self.linear1.forward(x)))
    }
}

/// The trainable prompt parameters. Everything else (the CLIP weights, the class prompts) is
/// passed to its methods.
#[derive(Module, Debug)]
pub struct PromptLearner {
    /// Text context (the mean of the Gaussian in the variational form's CoOp variant is a
    /// separate residual, see `residual_mean`), `[1 | n_classes, n_ctx, text_width]`.
    pub ctx: Option<Param<Tensor<3>>>,
    /// CoCoOp meta-network (outputs `text_width`, or `2 * text_width` in the variational form).
    pub meta_net: Option<MetaNet>,
    /// Variational CoOp form: mean of the residual, `[text_width]`.
    pub residual_mean: Option<Param<Tensor<1>>>,
    /// Variational CoOp form: `log sigma^2` of the residual, `[text_width]`.
    pub residual_log_var: Option<Param<Tensor<1>>>,
    /// Visual prompt tokens per layer, each `[n_tokens, vision_width]` (empty when coupled).
    pub visual: Vec<Param<Tensor<2>>>,
    /// Deep text context of layers `1..depth`, each `[n_ctx, text_width]`.
    pub text_deep: Vec<Param<Tensor<2>>>,
    /// MaPLe coupling, one `Linear(text_width, vision_width)` per visual prompt layer.
    pub coupling: Vec<Linear>,
    /// LASP's class-agnostic bias, `[projection_dim]`.
    pub text_bias: Option<Param<Tensor<1>>>,
    /// The config it was built from.
    #[module(skip)]
    pub config: PromptConfig,
}

/// The constant parts of the prompts of one class list.
#[derive(Debug, Clone)]
pub struct ClassPrompts {
    /// The class names.
    pub names: Vec<String>,
    /// `[n_classes, 1, text_width]`: the start-of-text embedding.
    prefix: Tensor<3>,
    /// Per class, `[1, name_len, text_width]`: the class-name token embeddings.
    names_embedded: Vec<Tensor<3>>,
    /// Per class, `[1, rest_len, text_width]`: ". [EOT] pad" after the name (End: the whole
    /// suffix, name included, lives in `suffix`).
    rest: Vec<Tensor<3>>,
    /// `[n_classes, seq_len - 1 - n_ctx, text_width]`: everything after the context (End).
    suffix: Tensor<3>,
    /// `[n_classes]`: end-of-text positions.
    positions: Tensor<1, Int>,
    /// Context length the prompts were built for.
    n_ctx: usize,
}

impl ClassPrompts {
    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false (a class list has at least one class).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid(
            "class_names",
            "non-empty class names",
            "\"\"",
        ));
    }
    Ok(())
}

impl PromptConfig {
    /// Checks the config against the model; every error names its field.
    pub fn validate(&self, clip: &Clip) -> Result<()> {
        if let Some(t) = &self.text {
            if t.n_ctx == 0 {
                return Err(Error::invalid("text.n_ctx", "at least 1", 0));
            }
            if t.meta_net_reduction == 0 {
                return Err(Error::invalid("text.meta_net_reduction", "at least 1", 0));
            }
            if t.conditional && t.class_specific {
                return Err(Error::invalid(
                    "text.class_specific",
                    "false with text.conditional (CoCoOp shares one context)",
                    true,
                ));
            }
            let text_layers = clip.text_model.encoder.layers.len();
            if t.depth == 0 || t.depth > text_layers {
                return Err(Error::invalid(
                    "text.depth",
                    format!("1 <= depth <= {text_layers} (the text layers)"),
                    t.depth,
                ));
            }
            if t.depth > 1 && t.class_token_position != ClassTokenPosition::End {
                return Err(Error::invalid(
                    "text.class_token_position",
                    "\"end\" with deep text prompts (text.depth > 1)",
                    format!("{:?}", t.class_token_position),
                ));
            }
            if t.groups == 0 {
                return Err(Error::invalid("text.groups", "at least 1", 0));
            }
            if let Some(v) = &t.variational
                && (v.samples == 0 || v.kl_weight < 0.0 || !v.kl_weight.is_finite())
            {
                return Err(Error::invalid(
                    "text.variational",
                    "samples >= 1 and a finite kl_weight >= 0",
                    format!("samples = {}, kl_weight = {}", v.samples, v.kl_weight),
                ));
            }
        }
        if let Some(v) = &self.visual {
            let layers = clip.vision_model.encoder.layers.len();
            if v.n_tokens == 0 || v.depth == 0 || v.depth > layers {
                return Err(Error::invalid(
                    "visual",
                    format!("n_tokens >= 1 and 1 <= depth <= {layers} (the vision layers)"),
                    format!("n_tokens = {}, depth = {}", v.n_tokens, v.depth),
                ));
            }
            if v.coupled {
                let Some(t) = &self.text else {
                    return Err(Error::invalid(
                        "visual.coupled",
                        "a [prompt.text] context to couple the visual prompts to",
                        "no text prompt",
                    ));
                };
                if t.class_specific || t.conditional || t.groups != 1 {
                    return Err(Error::invalid(
                        "visual.coupled",
                        "a shared, unconditional text context in one group",
                        format!(
                            "class_specific = {}, conditional = {}, groups = {}",
                            t.class_specific, t.conditional, t.groups
                        ),
                    ));
                }
                if v.n_tokens != t.n_ctx || v.depth != t.depth {
                    return Err(Error::invalid(
                        "visual",
                        format!(
                            "n_tokens = text.n_ctx = {} and depth = text.depth = {} when coupled",
                            t.n_ctx, t.depth
                        ),
                        format!("n_tokens = {}, depth = {}", v.n_tokens, v.depth),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Builds the learner for `n_classes` training classes (only class-specific contexts depend
    /// on it) on `device`; its random parts are drawn from `seed` alone. Meta-network layers are
    /// initialised as PyTorch's `nn.Linear` (`U(-1/sqrt(fan_in), 1/sqrt(fan_in))`).
    pub fn init(
        &self,
        clip: &Clip,
        tokenizer: &ClipTokenizer,
        n_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<PromptLearner> {
        let mut rng = HostRng::new(seed);
        self.validate(clip)?;
        let [_, text_width] = clip.text_model.embeddings.token_embedding.weight.dims();
        let [_, proj_dim] = clip.text_projection.weight.dims();
        let vision_width = clip.vision_model.embeddings.class_embedding.dims()[0];
        let mut learner = PromptLearner {
            ctx: None,
            meta_net: None,
            residual_mean: None,
            residual_log_var: None,
            visual: Vec::new(),
            text_deep: Vec::new(),
            coupling: Vec::new(),
            text_bias: None,
            config: self.clone(),
        };
        if let Some(t) = &self.text {
            let n_sets = if t.class_specific { n_classes } else { 1 } * t.groups;
            let ctx = match &t.ctx_init {
                Some(phrase) => {
                    let ids = tokenizer.encode(phrase)?;
                    let eot = i64::from(tokenizer.eot_id());
                    let n = ids.iter().skip(1).position(|&i| i == eot).unwrap_or(0);
                    if n != t.n_ctx {
                        return Err(Error::invalid(
                            "text.ctx_init",
                            format!("a phrase of text.n_ctx = {} tokens", t.n_ctx),
                            format!("{phrase:?} ({n} tokens)"),
                        ));
                    }
                    let ids = Tensor::<1, Int>::from_data(
                        TensorData::new(ids[1..=n].to_vec(), [n]),
                        device,
                    );
                    clip.text_model
                        .embeddings
                        .token_embedding
                        .weight
                        .val()
                        .select(0, ids)
                        .unsqueeze_dim::<3>(0)
                        .repeat_dim(0, n_sets)
                        .detach()
                }
                None => rng.normal_tensor([n_sets, t.n_ctx, text_width], t.init_std, device),
            };
            learner.ctx = Some(Param::from_tensor(ctx));
            let variational = t.variational.as_ref();
            if t.conditional {
                let hidden = (proj_dim / t.meta_net_reduction).max(1);
                let out = if variational.is_some() {
                    2 * text_width
                } else {
                    text_width
                };
                let linear1 = torch_linear(&mut rng, proj_dim, hidden, device);
                let linear2 = torch_linear(&mut rng, hidden, out, device);
                learner.meta_net = Some(MetaNet {
                    linear1,
                    relu: Relu::new(),
                    linear2,
                });
            } else if let Some(v) = variational {
                learner.residual_mean =
                    Some(Param::from_tensor(Tensor::zeros([text_width], device)));
                learner.residual_log_var = Some(Param::from_tensor(
                    Tensor::ones([text_width], device).mul_scalar(v.init_log_var),
                ));
            }
        }
        if let Some(v) = &self.visual
            && !v.coupled
        {
            learner.visual = (0..v.depth)
                .map(|_| {
                    Param::from_tensor(rng.normal_tensor(
                        [v.n_tokens, vision_width],
                        v.init_std,
                        device,
                    ))
                })
                .collect();
        }
        // Parts added after the first release draw last, so older configs keep their draws.
        if let Some(t) = &self.text {
            learner.text_deep = (1..t.depth)
                .map(|_| {
                    Param::from_tensor(rng.normal_tensor([t.n_ctx, text_width], t.init_std, device))
                })
                .collect();
            if t.bias {
                learner.text_bias = Some(Param::from_tensor(Tensor::zeros([proj_dim], device)));
            }
        }
        if let Some(v) = &self.visual
            && v.coupled
        {
            learner.coupling = (0..v.depth)
                .map(|_| torch_linear(&mut rng, text_width, vision_width, device))
                .collect();
        }
        Ok(learner)
    }
}

/// A `Linear(d_in, d_out)` initialised as PyTorch's `nn.Linear`: weight and bias
/// `U(-1/sqrt(d_in), 1/sqrt(d_in))`, drawn from `rng` (weight first).
fn torch_linear(rng: &mut HostRng, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out).init(device);
    let bound = 1.0 / (d_in as f64).sqrt();
    layer.weight = Param::from_tensor(rng.uniform_tensor([d_in, d_out], bound, device));
    layer.bias = Some(Param::from_tensor(rng.uniform_tensor(
        [d_out],
        bound,
        device,
    )));
    layer
}

/// The residual of one forward pass: its value per image (or shared) and its KL term.
#[derive(Debug, Clone)]
pub struct Residual {
    /// `[batch_size | 1, text_width]`, added to every context vector.
    pub value: Tensor<2>,
    /// `KL(q || N(0, I))`, mean over images (`[1]`), or `None` without a Gaussian.
    pub kl: Option<Tensor<1>>,
}

impl PromptLearner {
    /// Number of context vectors, or `None` without a text prompt.
    pub fn n_ctx(&self) -> Option<usize> {
        self.ctx.as_ref().map(|c| c.dims()[1])
    }

    /// Number of context groups (LASP's grouped prompts; `1` without them).
    pub fn groups(&self) -> usize {
        self.config.text.as_ref().map_or(1, |t| t.groups.max(1))
    }

    /// Whether the image features depend on the learner (visual tokens, own or coupled).
    pub fn has_visual_prompts(&self) -> bool {
        !self.visual.is_empty() || !self.coupling.is_empty()
    }

    /// The constant parts of the prompts of `names` (CoOp: `"X X X X name."`).
    pub fn class_prompts(
        &self,
        clip: &Clip,
        tokenizer: &ClipTokenizer,
        names: &[String],
    ) -> Result<ClassPrompts> {
        let Some(n_ctx) = self.n_ctx() else {
            return Err(Error::invalid(
                "prompt.text",
                "a text prompt to build class prompts for",
                "none",
            ));
        };
        if names.is_empty() {
            return Err(Error::invalid("class_names", "at least one class", "none"));
        }
        if let Some(ctx) = &self.ctx {
            let sets = ctx.dims()[0] / self.groups();
            if sets > 1 && sets != names.len() {
                return Err(Error::invalid(
                    "class_names",
                    format!("the {sets} classes the class-specific context was learned for"),
                    format!("{} classes", names.len()),
                ));
            }
        }
        let device = clip.logit_scale.val().device();
        let placeholder = vec!["X"; n_ctx].join(" ");
        let eot = i64::from(tokenizer.eot_id());
        let mut rows = Vec::with_capacity(names.len());
        let mut name_lens = Vec::with_capacity(names.len());
        for name in names {
            check_name(name)?;
            let name = name.replace('_', " ");
            let ids = tokenizer.encode(&format!("{placeholder} {name}."))?;
            let name_ids = tokenizer.encode(&name)?;
            let name_len = name_ids.iter().skip(1).position(|&i| i == eot).unwrap_or(0);
            let end = ids.iter().skip(1).position(|&i| i == eot).map(|p| p + 1);
            match end {
                Some(end) if end > 1 + n_ctx + name_len => {}
                _ => {
                    return Err(Error::invalid(
                        "class_names",
                        format!(
                            "prompts that fit the {} tokens of the text tower",
                            tokenizer.context_length()
                        ),
                        format!("{name:?} with {n_ctx} context tokens"),
                    ));
                }
            }
            rows.push(ids);
            name_lens.push(name_len);
        }
        let seq_len = rows
            .iter()
            .map(|r| r.iter().skip(1).position(|&i| i == eot).unwrap_or(0) + 2)
            .max()
            .unwrap_or(2);
        let n = names.len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r[..seq_len].to_vec()).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [n, seq_len]), &device);
        let positions = clip.text_model.pool_positions(ids.clone());
        let embedded = clip
            .text_model
            .embeddings
            .token_embedding
            .forward(ids)
            .detach();
        let [_, _, d] = embedded.dims();
        let prefix = embedded.clone().narrow(1, 0, 1);
        let suffix = embedded.clone().narrow(1, 1 + n_ctx, seq_len - 1 - n_ctx);
        let mut names_embedded = Vec::with_capacity(n);
        let mut rest = Vec::with_capacity(n);
        for (c, &len) in name_lens.iter().enumerate() {
            let row = embedded.clone().narrow(0, c, 1);
            names_embedded.push(row.clone().narrow(1, 1 + n_ctx, len));
            rest.push(row.narrow(1, 1 + n_ctx + len, seq_len - 1 - n_ctx - len));
        }
        let _ = d;
        Ok(ClassPrompts {
            names: names.to_vec(),
            prefix,
            names_embedded,
            rest,
            suffix,
            positions,
            n_ctx,
        })
    }

    /// The residual added to the context: CoCoOp's meta-network bias, the Gaussian residual
    /// (sampled with `noise`, or its mean when `noise` is `None`), or zero.
    ///
    /// # Shapes
    /// - image_features: `[batch_size, projection_dim]`, L2-normalised
    /// - noise: `[batch_size | 1, text_width]` standard normal draws
    /// - output value: `[batch_size, text_width]` (conditional) or `[1, text_width]`
    pub fn residual(
        &self,
        image_features: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Option<Residual> {
        let text = self.config.text.as_ref()?;
        let [batch_size, _] = image_features.dims();
        let gaussian = |mean: Tensor<2>, log_var: Tensor<2>| {
            let kl = (log_var.clone().exp() + mean.clone().powi_scalar(2) - log_var.clone())
                .sub_scalar(1.0)
                .sum_dim(1)
                .mul_scalar(0.5)
                .mean();
            let value = match noise.clone() {
                Some(eps) => mean + eps * log_var.mul_scalar(0.5).exp(),
                None => mean,
            };
            Residual {
                value,
                kl: Some(kl),
            }
        };
        if let Some(meta) = &self.meta_net {
            let out = meta.forward(image_features);
            if text.variational.is_some() {
                let [_, two_d] = out.dims();
                let d = two_d / 2;
                let mean = out.clone().narrow(1, 0, d);
                let log_var = out.narrow(1, d, d);
                return Some(gaussian(mean, log_var));
            }
            return Some(Residual {
                value: out,
                kl: None,
            });
        }
        if let (Some(mean), Some(log_var)) = (&self.residual_mean, &self.residual_log_var) {
            let _ = batch_size;
            return Some(gaussian(
                mean.val().unsqueeze_dim(0),
                log_var.val().unsqueeze_dim(0),
            ));
        }
        None
    }

    /// Prompt token embeddings of context group `group` for every class, one set per residual
    /// row.
    ///
    /// # Shapes
    /// - residual: `[n_sets, text_width]` (or `None`: one set, no residual)
    /// - output: `[n_sets * n_classes, seq_len, text_width]`, set-major
    pub fn prompt_embeddings(
        &self,
        classes: &ClassPrompts,
        residual: Option<Tensor<2>>,
        group: usize,
    ) -> Tensor<3> {
        let ctx = self
            .ctx
            .as_ref()
            .expect("class_prompts checked that there is a text context")
            .val();
        let groups = self.groups();
        assert!(group < groups, "context group {group} of {groups}");
        let per_group = ctx.dims()[0] / groups;
        let ctx = if groups == 1 {
            ctx
        } else {
            ctx.narrow(0, group * per_group, per_group)
        };
        let n = classes.len();
        let [sets, n_ctx, d] = ctx.dims();
        assert_eq!(
            n_ctx, classes.n_ctx,
            "class prompts built for another context length"
        );
        // [n_res, n, n_ctx, d]
        let ctx = ctx.unsqueeze_dim::<4>(0).expand([1, n, n_ctx, d]);
        let _ = sets;
        let ctx = match residual {
            Some(r) => {
                let [n_res, _] = r.dims();
                ctx.expand([n_res, n, n_ctx, d]) + r.reshape([n_res, 1, 1, d])
            }
            None => ctx,
        };
        let [n_res, _, _, _] = ctx.dims();
        let repeat = |t: Tensor<3>| t.unsqueeze_dim::<4>(0).repeat_dim(0, n_res);
        let position = self
            .config
            .text
            .as_ref()
            .map(|t| t.class_token_position)
            .unwrap_or_default();
        let prompts = match position {
            ClassTokenPosition::End => Tensor::cat(
                vec![
                    repeat(classes.prefix.clone()),
                    ctx,
                    repeat(classes.suffix.clone()),
                ],
                2,
            ),
            ClassTokenPosition::Front | ClassTokenPosition::Middle => {
                let per_class: Vec<Tensor<4>> = (0..n)
                    .map(|c| {
                        let ctx_c = ctx.clone().narrow(1, c, 1);
                        let one = |t: Tensor<3>| t.unsqueeze_dim::<4>(0).repeat_dim(0, n_res);
                        let prefix = one(classes.prefix.clone().narrow(0, c, 1));
                        let name = one(classes.names_embedded[c].clone());
                        let rest = one(classes.rest[c].clone());
                        let parts = if position == ClassTokenPosition::Front {
                            vec![prefix, name, ctx_c, rest]
                        } else {
                            let half = n_ctx / 2;
                            vec![
                                prefix,
                                ctx_c.clone().narrow(2, 0, half),
                                name,
                                ctx_c.narrow(2, half, n_ctx - half),
                                rest,
                            ]
                        };
                        Tensor::cat(parts, 2)
                    })
                    .collect();
                Tensor::cat(per_class, 1)
            }
        };
        let [_, _, seq_len, _] = prompts.dims();
        prompts.reshape([n_res * n, seq_len, d])
    }

    /// Unit-norm text features of each context group's prompts (one entry without groups),
    /// without the class-agnostic bias: what the KgCoOp and LASP terms compare.
    ///
    /// # Shapes
    /// - residual: `[n_sets, text_width]` or `None`
    /// - output: per group `[n_sets (1 without residual), n_classes, projection_dim]`
    pub fn group_text_features(
        &self,
        clip: &Clip,
        classes: &ClassPrompts,
        residual: Option<Tensor<2>>,
    ) -> Vec<Tensor<3>> {
        let deep: Vec<Tensor<2>> = self.text_deep.iter().map(|p| p.val()).collect();
        (0..self.groups())
            .map(|g| {
                let prompts = self.prompt_embeddings(classes, residual.clone(), g);
                let [rows, _, _] = prompts.dims();
                let n = classes.len();
                let positions = classes.positions.clone().repeat_dim(0, rows / n);
                let projected = if deep.is_empty() {
                    clip.encode_text_embeddings(prompts, positions)
                } else {
                    clip.encode_text_embeddings_prompted(prompts, positions, 1, &deep)
                };
                let features = l2_normalize(projected);
                let [_, p] = features.dims();
                features.reshape([rows / n, n, p])
            })
            .collect()
    }

    /// Unit-norm class features without the class-agnostic bias: the groups' features
    /// averaged and re-normalised (the features themselves with one group).
    ///
    /// # Shapes
    /// - residual: `[n_sets, text_width]` or `None`
    /// - output: `[n_sets (1 without residual), n_classes, projection_dim]`
    pub fn unbiased_text_features(
        &self,
        clip: &Clip,
        classes: &ClassPrompts,
        residual: Option<Tensor<2>>,
    ) -> Tensor<3> {
        let mut groups = self.group_text_features(clip, classes, residual);
        if groups.len() == 1 {
            return groups.pop().expect("one group");
        }
        let n = groups.len() as f64;
        let mean = groups
            .into_iter()
            .reduce(|a, b| a + b)
            .expect("at least one group")
            .div_scalar(n);
        l2_normalize3(mean)
    }

    /// The classifier's unit-norm class features: [`Self::unbiased_text_features`] plus the
    /// class-agnostic bias, re-normalised, if there is one.
    ///
    /// # Shapes
    /// - residual: `[n_sets, text_width]` or `None`
    /// - output: `[n_sets (1 without residual), n_classes, projection_dim]`
    pub fn text_features(
        &self,
        clip: &Clip,
        classes: &ClassPrompts,
        residual: Option<Tensor<2>>,
    ) -> Tensor<3> {
        let features = self.unbiased_text_features(clip, classes, residual);
        match &self.text_bias {
            Some(b) => {
                let [_, _, p] = features.dims();
                l2_normalize3(features + b.val().reshape([1, 1, p]))
            }
            None => features,
        }
    }

    /// The visual tokens of every prompted layer: the learned ones, or (coupled) the projections
    /// of the text context of each layer. Empty without visual prompts.
    ///
    /// # Shapes
    /// - output: each `[n_tokens, vision_width]`
    pub fn visual_tokens(&self) -> Vec<Tensor<2>> {
        if self.coupling.is_empty() {
            return self.visual.iter().map(|p| p.val()).collect();
        }
        let ctx = self
            .ctx
            .as_ref()
            .expect("coupled visual prompts have a text context")
            .val();
        let [_, n_ctx, d] = ctx.dims();
        let text_layers =
            std::iter::once(ctx.reshape([n_ctx, d])).chain(self.text_deep.iter().map(|p| p.val()));
        self.coupling
            .iter()
            .zip(text_layers)
            .map(|(linear, t)| linear.forward(t))
            .collect()
    }

    /// Unit-norm image features, through the visual prompts if there are any.
    ///
    /// # Shapes
    /// - pixel_values: `[batch_size, 3, height, width]`
    /// - output: `[batch_size, projection_dim]`
    pub fn image_features(&self, clip: &Clip, pixel_values: Tensor<4>) -> Tensor<2> {
        let mut tokens = self.visual_tokens();
        let pooled = if tokens.is_empty() {
            clip.vision_model.forward(pixel_values)
        } else {
            let deep = tokens.split_off(1);
            clip.vision_model
                .forward_prompted(pixel_values, tokens.pop(), &deep)
        };
        l2_normalize(clip.visual_projection.forward(pooled))
    }
}

/// Logits `exp(logit_scale) * <image, text>` for per-image or shared text features.
///
/// # Shapes
/// - image: `[batch_size, projection_dim]` (unit norm)
/// - text: `[batch_size | 1, n_classes, projection_dim]` (unit norm)
/// - output: `[batch_size, n_classes]`
pub fn prompt_logits(clip: &Clip, image: Tensor<2>, text: Tensor<3>) -> Tensor<2> {
    let [batch_size, p] = image.dims();
    let [sets, n, _] = text.dims();
    let scale = clip.logit_scale.val().exp().reshape([1, 1]);
    let logits = if sets == 1 {
        image.matmul(text.reshape([n, p]).transpose())
    } else {
        assert_eq!(sets, batch_size, "one text set per image or a shared one");
        image
            .unsqueeze_dim::<3>(1)
            .matmul(text.swap_dims(1, 2))
            .reshape([batch_size, n])
    };
    logits * scale
}

/// Row-normalises the last dimension of a 3-D tensor.
pub(crate) fn l2_normalize3(x: Tensor<3>) -> Tensor<3> {
    let norm = x.clone().powi_scalar(2).sum_dim(2).sqrt();
    x / norm
}
