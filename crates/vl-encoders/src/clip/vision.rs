//! CLIP's vision tower: a ViT with a bias-free convolutional patch embedding, a class token,
//! learned positions, a LayerNorm before the encoder (`pre_layrnorm` in transformers) and one on
//! the pooled class token after it (`post_layernorm`).
//!
//! Paper: Radford et al. 2021, <https://arxiv.org/abs/2103.00020>. Reference:
//! `CLIPVisionTransformer` in transformers' `modeling_clip.py`, and open_clip's
//! `VisionTransformer` (`transformer.py`) for non-square inputs.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::config::ClipVisionConfig;
use super::layers::ClipEncoder;

/// Patch, class and position embeddings (`CLIPVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// The class token, `[d_model]`.
    pub class_embedding: Param<Tensor<1>>,
    /// Bias-free convolution with kernel and stride `patch_size`.
    pub patch_embedding: Conv2d,
    /// Learned positions, `[n_positions, d_model]`.
    pub position_embedding: Embedding,
}

/// The vision tower up to the pooled, post-LayerNormed class token (`CLIPVisionTransformer`).
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Embeddings.
    pub embeddings: ClipVisionEmbeddings,
    /// LayerNorm before the encoder (transformers spells it `pre_layrnorm`).
    pub pre_layernorm: LayerNorm,
    /// The transformer layers.
    pub encoder: ClipEncoder,
    /// LayerNorm of the pooled class token.
    pub post_layernorm: LayerNorm,
    /// Input image size `[height, width]`.
    pub image_size: [usize; 2],
    /// Input channels.
    pub n_channels: usize,
}

impl ClipVisionConfig {
    /// Initializes the tower with CLIP-like random weights.
    pub fn init(&self, device: &Device) -> ClipVisionTransformer {
        let d = self.d_model;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        ClipVisionTransformer {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Initializer::Normal {
                    mean: 0.0,
                    std: (d as f64).powf(-0.5),
                }
                .init([d], device),
                patch_embedding: Conv2dConfig::new(
                    [self.n_channels, d],
                    [self.patch_size, self.patch_size],
                )
                .with_stride([self.patch_size, self.patch_size])
                .with_bias(false)
                .init(device),
                position_embedding: EmbeddingConfig::new(self.n_positions(), d)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: 0.02,
                    })
                    .init(device),
            },
            pre_layernorm: norm(),
            encoder: self.encoder().init(device),
            post_layernorm: norm(),
            image_size: self.image_size,
            n_channels: self.n_channels,
        }
    }
}

impl ClipVisionTransformer {
    /// Token sequence after the embeddings and the pre-LayerNorm.
    ///
    /// # Shapes
    /// - pixel_values: `[batch_size, n_channels, height, width]`
    /// - output: `[batch_size, 1 + n_patches, d_model]`
    pub fn embed(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        self.pre_layernorm.forward(self.embed_tokens(pixel_values))
    }

    /// Token sequence after the embeddings (class token, patches, positions), before the
    /// pre-LayerNorm: where visual prompt tuning inserts its tokens.
    ///
    /// # Shapes
    /// - pixel_values: `[batch_size, n_channels, height, width]`
    /// - output: `[batch_size, 1 + n_patches, d_model]`
    pub fn embed_tokens(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        let [batch_size, _, _, _] = pixel_values.dims();
        let [height, width] = self.image_size;
        assert_shape!(pixel_values, [batch_size, self.n_channels, height, width]);
        let patches = self.embeddings.patch_embedding.forward(pixel_values);
        let [_, d_model, rows, cols] = patches.dims();
        let patches = patches
            .reshape([batch_size, d_model, rows * cols])
            .swap_dims(1, 2);
        let class = self
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, d_model])
            .expand([batch_size, 1, d_model]);
        let tokens = Tensor::cat(vec![class, patches], 1);
        let positions = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .unsqueeze_dim(0);
        tokens + positions
    }

    /// The pooled image feature: the post-LayerNormed class token (transformers'
    /// `pooler_output`), before the projection.
    ///
    /// # Shapes
    /// - pixel_values: `[batch_size, n_channels, height, width]`
    /// - output: `[batch_size, d_model]`
    pub fn forward(&self, pixel_values: Tensor<4>) -> Tensor<2> {
        let tokens = self.encoder.forward(self.embed(pixel_values), false);
        self.pool(tokens)
    }

    /// The pooled image feature with visual prompt tokens (VPT, Jia et al. 2022,
    /// <https://arxiv.org/abs/2203.12119>; the CLIP form of MaPLe, Khattak et al. 2023,
    /// `trainers/maple.py`): `shallow` prompts are appended after the patch tokens (after the
    /// position embeddings, before the pre-LayerNorm); `deep[i]`, if given, replaces the prompt
    /// tokens at the input of layer `i + 1`. With `shallow = None` and no deep prompts this is
    /// [`Self::forward`].
    ///
    /// # Shapes
    /// - pixel_values: `[batch_size, n_channels, height, width]`
    /// - shallow: `[n_prompts, d_model]`
    /// - deep: each `[n_prompts, d_model]`, at most `n_layers - 1` of them
    /// - output: `[batch_size, d_model]`
    pub fn forward_prompted(
        &self,
        pixel_values: Tensor<4>,
        shallow: Option<Tensor<2>>,
        deep: &[Tensor<2>],
    ) -> Tensor<2> {
        let Some(shallow) = shallow else {
            assert!(deep.is_empty(), "deep visual prompts need shallow ones");
            return self.forward(pixel_values);
        };
        let tokens = self.embed_tokens(pixel_values);
        let [batch_size, n_tokens, d_model] = tokens.dims();
        let [n_prompts, _] = shallow.dims();
        assert_shape!(shallow, [n_prompts, d_model]);
        assert!(
            deep.len() < self.encoder.layers.len(),
            "{} deep visual prompts for {} layers (at most one per layer after the first)",
            deep.len(),
            self.encoder.layers.len()
        );
        let expand = |p: Tensor<2>| {
            p.unsqueeze_dim::<3>(0)
                .expand([batch_size, n_prompts, d_model])
        };
        let mut x = self
            .pre_layernorm
            .forward(Tensor::cat(vec![tokens, expand(shallow)], 1));
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            if i > 0
                && let Some(prompt) = deep.get(i - 1)
            {
                assert_shape!(prompt, [n_prompts, d_model]);
                x = Tensor::cat(vec![x.narrow(1, 0, n_tokens), expand(prompt.clone())], 1);
            }
            x = layer.forward(x, false);
        }
        self.pool(x)
    }

    /// Post-LayerNormed class token of the encoder output.
    fn pool(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [batch_size, _, d_model] = tokens.dims();
        let class = tokens.narrow(1, 0, 1).reshape([batch_size, d_model]);
        self.post_layernorm.forward(class)
    }
}
