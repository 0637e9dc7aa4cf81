//! The transformer pieces shared by CLIP's two towers: multi-head self-attention with separate
//! q/k/v/out projections, the two-layer MLP, the pre-LayerNorm encoder layer and the encoder stack.
//!
//! Field names follow Hugging Face `transformers`' `modeling_clip.py`
//! (<https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/modeling_clip.py>)
//! so module paths equal checkpoint keys (`encoder.layers.0.self_attn.q_proj.weight`), which keeps
//! weight import and PEFT adapter paths a plain lookup.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use serde::{Deserialize, Serialize};

/// The MLP activation of a CLIP tower, chosen by config (`hidden_act` in Hugging Face configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClipActivation {
    /// `x * sigmoid(1.702 x)`, used by OpenAI's CLIP weights (`quick_gelu`). The default.
    #[default]
    QuickGelu,
    /// Exact GELU, `x * Phi(x)` (`gelu`), used by LAION/open_clip models.
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl ClipActivation {
    /// Parses a Hugging Face `hidden_act` string.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            _ => None,
        }
    }

    /// The Hugging Face `hidden_act` name.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::QuickGelu => "quick_gelu",
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_pytorch_tanh",
        }
    }

    /// Applies the activation element-wise.
    ///
    /// On the plain `flex` device (no autodiff) with f32 values, QuickGELU runs as one fused,
    /// vectorisable, multi-threaded pass ([`quick_gelu_flex`]) instead of flex's three passes,
    /// whose sigmoid is a scalar single-threaded loop (8x slower than PyTorch, 18% of a ViT-B/32
    /// layer; `benches/benches/ops.rs`). Everywhere else, and whenever gradients may be needed,
    /// it is the composite `x * sigmoid(1.702 x)`.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::QuickGelu => {
                #[cfg(feature = "flex")]
                if on_plain_flex_f32(&x) {
                    return quick_gelu_flex(x);
                }
                x.clone() * sigmoid(x.mul_scalar(1.702))
            }
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
        }
    }
}

/// Whether `x` lives on the plain `flex` device (no autodiff: its graph needs Burn's ops) with
/// f32 values, where [`quick_gelu_flex`] applies.
#[cfg(feature = "flex")]
pub(crate) fn on_plain_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    // `Device` equality ignores autodiff (`flex().autodiff() == flex()`): check it apart.
    !device.is_autodiff() && device == Device::flex() && x.dtype() == burn::tensor::DType::F32
}

/// QuickGELU `x * sigmoid(1.702 x) = x / (1 + exp(-1.702 x))` in one pass over the values of a
/// tensor for which [`on_plain_flex_f32`] holds, chunked over rayon's threads, in place when the
/// tensor is not shared. Agrees with the composite to a few f32 ulps ([`exp_f32`]'s error is
/// below 3e-7 relative, about 2 ulps). Any other tensor takes the composite path.
#[cfg(feature = "flex")]
pub(crate) fn quick_gelu_flex<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    use rayon::prelude::*;

    if !on_plain_flex_f32(&x) {
        return x.clone() * sigmoid(x.mul_scalar(1.702));
    }
    let device = x.device();
    let mut data = x.into_data();
    let Ok(values) = data.as_mut_slice::<f32>() else {
        // Unreachable for an f32 tensor; recompute on the composite path rather than fail.
        let x = Tensor::from_data(data, &device);
        return x.clone() * sigmoid(x.mul_scalar(1.702));
    };
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        for v in chunk {
            *v /= 1.0 + exp_f32(-1.702 * *v);
        }
    });
    Tensor::from_data(data, &device)
}

/// `exp(x)` in f32 without a libm call, so that loops over it vectorise: `x = n ln2 + r` with
/// `|r| <= ln2 / 2` (Cody-Waite, ln2 split in two), `exp(r)` by its degree-6 Taylor polynomial
/// (truncation error `|r|^7 / 7! < 1.2e-7` relative; with rounding, below 3e-7 in all), times
/// `2^n` built from the exponent bits.
/// Inputs are clamped to `[-87.3, 88.7]` (`exp` of the bounds is about `f32::MIN_POSITIVE` and
/// `f32::MAX`), so very negative inputs give about `1e-38` instead of 0, which QuickGELU cannot
/// tell apart.
#[cfg(feature = "flex")]
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (no SSE4.1 needed).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `t`'s low mantissa bits hold `n` itself: integer arithmetic on them gives `2^n` without
    // the per-element range checks of a float-to-int `as` cast, which stop vectorisation.
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// Configuration of a [`ClipEncoder`]: the transformer stack shared by both towers.
#[derive(Config, Debug)]
pub struct ClipEncoderConfig {
    /// Model width.
    pub d_model: usize,
    /// Hidden width of the MLP.
    pub d_ff: usize,
    /// Number of attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Number of encoder layers.
    pub n_layers: usize,
    /// LayerNorm epsilon. Default: `1e-5`.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// MLP activation. Default: [`ClipActivation::QuickGelu`].
    #[config(default = "ClipActivation::QuickGelu")]
    pub activation: ClipActivation,
}

impl ClipEncoderConfig {
    /// Initializes an encoder with random weights (lazily: a parameter that is later replaced by
    /// a checkpoint tensor is never materialised).
    ///
    /// # Panics
    /// If `n_heads` does not divide `d_model`.
    pub fn init(&self, device: &Device) -> ClipEncoder {
        assert!(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "n_heads ({}) must divide d_model ({})",
            self.n_heads,
            self.d_model
        );
        let layers = (0..self.n_layers)
            .map(|_| self.init_layer(device))
            .collect();
        ClipEncoder { layers }
    }

    fn init_layer(&self, device: &Device) -> ClipEncoderLayer {
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        ClipEncoderLayer {
            self_attn: ClipAttention {
                q_proj: linear(self.d_model, self.d_model),
                k_proj: linear(self.d_model, self.d_model),
                v_proj: linear(self.d_model, self.d_model),
                out_proj: linear(self.d_model, self.d_model),
                n_heads: self.n_heads,
            },
            layer_norm1: norm(),
            mlp: ClipMlp {
                fc1: linear(self.d_model, self.d_ff),
                fc2: linear(self.d_ff, self.d_model),
                activation: self.activation,
            },
            layer_norm2: norm(),
        }
    }
}

/// Multi-head self-attention with separate q/k/v/out projections (`CLIPAttention`).
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    pub n_heads: usize,
}

impl ClipAttention {
    /// Self-attention over a sequence; `causal` masks attention to later positions.
    ///
    /// Uses Burn's attention op (`softmax(q k^T / sqrt(d_head)) v`), which backends may fuse.
    ///
    /// # Shapes
    /// - x: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [batch_size, seq_length, d_model] = x.dims();
        let d_head = d_model / self.n_heads;
        assert_shape!(x, [batch_size, seq_length, self.n_heads * d_head]);
        let heads = |t: Tensor<3>| {
            t.reshape([batch_size, seq_length, self.n_heads, d_head])
                .swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let context = attention(q, k, v, None, None, options);
        let context = context
            .swap_dims(1, 2)
            .reshape([batch_size, seq_length, d_model]);
        self.out_proj.forward(context)
    }
}

/// The position-wise MLP `fc2(act(fc1(x)))` (`CLIPMLP`).
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// First projection, `d_model -> d_ff`.
    pub fc1: Linear,
    /// Second projection, `d_ff -> d_model`.
    pub fc2: Linear,
    /// Activation between the two.
    #[module(skip)]
    pub activation: ClipActivation,
}

impl ClipMlp {
    /// # Shapes
    /// - x: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2
            .forward(self.activation.forward(self.fc1.forward(x)))
    }
}

/// One pre-LayerNorm transformer layer (`CLIPEncoderLayer`).
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Self-attention.
    pub self_attn: ClipAttention,
    /// LayerNorm before attention.
    pub layer_norm1: LayerNorm,
    /// MLP.
    pub mlp: ClipMlp,
    /// LayerNorm before the MLP.
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    /// `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
    ///
    /// # Shapes
    /// - x: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), causal);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// A stack of [`ClipEncoderLayer`]s (`CLIPEncoder`).
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The layers, applied in order.
    pub layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    /// Applies every layer.
    ///
    /// # Shapes
    /// - x: `[batch_size, seq_length, d_model]`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        self.layers
            .iter()
            .fold(x, |x, layer| layer.forward(x, causal))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    /// QuickGELU in f64, the reference for the f32 paths.
    fn quick_gelu_f64(x: f64) -> f64 {
        x / (1.0 + (-1.702 * x).exp())
    }

    #[test]
    fn exp_f32_is_within_3e7_relative_of_exp() {
        let mut worst = 0.0_f64;
        for i in 0..=1_000_000 {
            let x = -87.0 + 175.0 * f64::from(i) / 1e6;
            let x = x as f32;
            let exact = f64::from(x).exp();
            let err = ((f64::from(exp_f32(x)) - exact) / exact).abs();
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        // Beyond the clamp: tiny (not NaN or negative) below, huge (not NaN) above.
        assert!((0.0..1e-37).contains(&exp_f32(-1000.0)));
        assert!(exp_f32(1000.0) > 1e38);
        assert!(exp_f32(f32::NEG_INFINITY) >= 0.0);
    }

    #[test]
    fn quick_gelu_fast_path_matches_the_composite_on_flex() {
        let device = Device::flex();
        let n = 40_000;
        // Spans the saturated tails (where exp over- and underflows) and the curved middle.
        let values: Vec<f32> = (0..n)
            .map(|i| -120.0 + 240.0 * (i as f32) / (n as f32 - 1.0))
            .chain([0.0, -0.0, 1e-30, -1e-30, 3.5, -3.5])
            .collect();
        let x = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([2, -1]);
        assert!(on_plain_flex_f32(&x));
        let fast = quick_gelu_flex(x.clone());
        let composite = x.clone() * sigmoid(x.mul_scalar(1.702));
        let fast = fast.into_data().try_to_vec::<f32>().unwrap();
        let composite = composite.into_data().try_to_vec::<f32>().unwrap();
        for ((&v, &f), &c) in values.iter().zip(&fast).zip(&composite) {
            let exact = quick_gelu_f64(f64::from(v));
            let tol = 1e-6 * exact.abs().max(1.0);
            assert!(
                (f64::from(f) - exact).abs() <= tol,
                "x={v}: fast {f}, exact {exact}"
            );
            assert!(
                (f64::from(c) - exact).abs() <= tol,
                "x={v}: composite {c}, exact {exact}"
            );
        }
    }

    #[test]
    fn quick_gelu_keeps_burns_ops_on_an_autodiff_device() {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_floats([-2.0, 0.5, 3.0], &device).require_grad();
        assert!(!on_plain_flex_f32(&x), "autodiff tensors need Burn's graph");
        let y = ClipActivation::QuickGelu.forward(x.clone()).sum();
        let grads = y.backward();
        let grad = x
            .grad(&grads)
            .expect("a gradient")
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // d/dx x s(ax) = s(ax) + a x s(ax) (1 - s(ax)), a = 1.702.
        for (&g, v) in grad.iter().zip([-2.0_f64, 0.5, 3.0]) {
            let s = 1.0 / (1.0 + (-1.702 * v).exp());
            let exact = s + 1.702 * v * s * (1.0 - s);
            assert!((f64::from(g) - exact).abs() < 1e-5, "x={v}: {g} vs {exact}");
        }
    }
}
