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
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::QuickGelu => x.clone() * sigmoid(x.mul_scalar(1.702)),
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
        }
    }
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
