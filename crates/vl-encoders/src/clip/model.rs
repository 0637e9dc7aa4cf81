//! [`Clip`]: both towers, their bias-free projections into the shared space and the learnable
//! temperature. `encode_image` / `encode_text` return projected, unnormalised features (as
//! transformers' `get_image_features` / `get_text_features`); [`Clip::forward`] returns CLIP's
//! similarity logits.
//!
//! Paper: Radford et al. 2021, <https://arxiv.org/abs/2103.00020>. Reference: `CLIPModel` in
//! transformers' `modeling_clip.py`.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::config::ClipConfig;
use super::text::ClipTextTransformer;
use super::vision::ClipVisionTransformer;

/// A CLIP model (`CLIPModel`).
#[derive(Module, Debug)]
pub struct Clip {
    /// The vision tower.
    pub vision_model: ClipVisionTransformer,
    /// The text tower.
    pub text_model: ClipTextTransformer,
    /// Vision projection, `vision d_model -> projection_dim`, no bias.
    pub visual_projection: Linear,
    /// Text projection, `text d_model -> projection_dim`, no bias.
    pub text_projection: Linear,
    /// Log of the logit scale (inverse temperature), `[1]`.
    pub logit_scale: Param<Tensor<1>>,
}

/// The outputs of [`Clip::forward`].
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// Projected, unnormalised image features, `[n_images, projection_dim]`.
    pub image_embeds: Tensor<2>,
    /// Projected, unnormalised text features, `[n_texts, projection_dim]`.
    pub text_embeds: Tensor<2>,
    /// `exp(logit_scale) * cos(image, text)`, `[n_images, n_texts]`.
    pub logits_per_image: Tensor<2>,
    /// The transpose of `logits_per_image`, `[n_texts, n_images]`.
    pub logits_per_text: Tensor<2>,
}

impl ClipConfig {
    /// Initializes a model with random weights (CLIP-like initialisation). Parameters are lazy, so
    /// a model that is then filled from a checkpoint never materialises the random values.
    pub fn init(&self, device: &Device) -> Clip {
        let projection = |d_in| {
            LinearConfig::new(d_in, self.projection_dim)
                .with_bias(false)
                .init(device)
        };
        Clip {
            vision_model: self.vision.init(device),
            text_model: self.text.init(device),
            visual_projection: projection(self.vision.d_model),
            text_projection: projection(self.text.d_model),
            logit_scale: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![self.logit_scale_init as f32], [1]),
                device,
            )),
        }
    }
}

impl Clip {
    /// Projected image features (`get_image_features`).
    ///
    /// # Shapes
    /// - pixel_values: `[n_images, n_channels, height, width]`
    /// - output: `[n_images, projection_dim]`
    pub fn encode_image(&self, pixel_values: Tensor<4>) -> Tensor<2> {
        self.visual_projection
            .forward(self.vision_model.forward(pixel_values))
    }

    /// Projected text features (`get_text_features`).
    ///
    /// # Shapes
    /// - input_ids: `[n_texts, seq_length]`
    /// - output: `[n_texts, projection_dim]`
    pub fn encode_text(&self, input_ids: Tensor<2, Int>) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.forward(input_ids))
    }

    /// Projected text features from token embeddings pooled at `positions` (prompt learning).
    ///
    /// # Shapes
    /// - token_embeds: `[n_texts, seq_length, text_width]`
    /// - positions: `[n_texts]`
    /// - output: `[n_texts, projection_dim]`
    pub fn encode_text_embeddings(
        &self,
        token_embeds: Tensor<3>,
        positions: Tensor<1, Int>,
    ) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.forward_embeddings(token_embeds, positions))
    }

    /// [`Self::encode_text_embeddings`] with deep text prompts replacing the `n` tokens from
    /// `start` at the input of layers `1..=deep.len()` (see
    /// [`ClipTextTransformer::forward_embeddings_prompted`](super::ClipTextTransformer::forward_embeddings_prompted)).
    ///
    /// # Shapes
    /// - token_embeds: `[n_texts, seq_length, text_width]`
    /// - positions: `[n_texts]`
    /// - deep: each `[n, text_width]`
    /// - output: `[n_texts, projection_dim]`
    pub fn encode_text_embeddings_prompted(
        &self,
        token_embeds: Tensor<3>,
        positions: Tensor<1, Int>,
        start: usize,
        deep: &[Tensor<2>],
    ) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.forward_embeddings_prompted(
                token_embeds,
                positions,
                start,
                deep,
            ))
    }

    /// Similarity logits between already-computed features:
    /// `exp(logit_scale) * normalize(image) normalize(text)^T`.
    ///
    /// # Shapes
    /// - image_embeds: `[n_images, projection_dim]`
    /// - text_embeds: `[n_texts, projection_dim]`
    /// - output: `[n_images, n_texts]`
    pub fn logits(&self, image_embeds: Tensor<2>, text_embeds: Tensor<2>) -> Tensor<2> {
        let [_, d] = image_embeds.dims();
        assert_shape!(text_embeds, [_, d]);
        let scale = self.logit_scale.val().exp().reshape([1, 1]);
        l2_normalize(image_embeds)
            .matmul(l2_normalize(text_embeds).transpose())
            .mul(scale)
    }

    /// Encodes both modalities and computes the logits (`CLIPModel.forward`).
    ///
    /// # Shapes
    /// - pixel_values: `[n_images, n_channels, height, width]`
    /// - input_ids: `[n_texts, seq_length]`
    pub fn forward(&self, pixel_values: Tensor<4>, input_ids: Tensor<2, Int>) -> ClipOutput {
        let image_embeds = self.encode_image(pixel_values);
        let text_embeds = self.encode_text(input_ids);
        let logits_per_image = self.logits(image_embeds.clone(), text_embeds.clone());
        ClipOutput {
            image_embeds,
            text_embeds,
            logits_per_text: logits_per_image.clone().transpose(),
            logits_per_image,
        }
    }
}

/// Divides each row by its L2 norm (`x / ||x||`, as transformers; no epsilon).
///
/// # Shapes
/// - x: `[n, d]`
/// - output: `[n, d]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter counts of transformers' `CLIPModel` for the OpenAI checkpoints (the model cards'
    /// totals; derived by hand for ViT-B/32 in the comment below).
    ///
    /// vision: conv 2_359_296 + class 768 + positions 38_400 + 2 LNs 3_072
    ///         + 12 layers x 7_087_872 = 87_456_000
    /// text:   tokens 25_296_896 + positions 39_424 + final LN 1_024
    ///         + 12 layers x 3_152_384 = 63_165_952
    /// projections 393_216 + 262_144, logit scale 1  =>  151_277_313
    #[test]
    fn presets_have_the_parameter_counts_of_the_openai_checkpoints() {
        let device = Device::flex();
        for (config, expected) in [
            (ClipConfig::vit_base_patch32(), 151_277_313),
            (ClipConfig::vit_base_patch16(), 149_620_737),
            (ClipConfig::vit_large_patch14(), 427_616_513),
        ] {
            // Parameters are lazy: counting them allocates nothing.
            assert_eq!(config.init(&device).num_params(), expected);
        }
    }

    #[test]
    fn logits_are_scaled_cosines() {
        let device = Device::flex();
        let mut config = ClipConfig::vit_base_patch32();
        config.logit_scale_init = 2.0_f64.ln();
        let clip = config.init(&device);
        let image = Tensor::<2>::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 1.0], [2, 2]),
            &device,
        );
        let text = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device);
        let logits = clip
            .logits(image, text)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // cos = 3/5 and 0, times exp(ln 2) = 2.
        assert!(
            (logits[0] - 1.2).abs() < 1e-6 && logits[1].abs() < 1e-6,
            "{logits:?}"
        );
    }
}
