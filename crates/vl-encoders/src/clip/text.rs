//! CLIP's text tower: token and position embeddings, a causal transformer, a final LayerNorm,
//! and pooling at the end-of-text token with transformers' two rules (see [`TextPooling`]).
//!
//! Paper: Radford et al. 2021, <https://arxiv.org/abs/2103.00020>. Reference:
//! `CLIPTextTransformer` in transformers' `modeling_clip.py` (pooling:
//! <https://github.com/huggingface/transformers/pull/24773>), open_clip `text_global_pool`.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::config::{ClipTextConfig, TextPooling};
use super::layers::ClipEncoder;

/// Token and position embeddings (`CLIPTextEmbeddings`).
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// Token embedding table, `[vocab_size, d_model]`.
    pub token_embedding: Embedding,
    /// Learned positions, `[context_length, d_model]`.
    pub position_embedding: Embedding,
}

/// The text tower up to the pooled end-of-text feature (`CLIPTextTransformer`).
#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    /// Embeddings.
    pub embeddings: ClipTextEmbeddings,
    /// The causal transformer layers.
    pub encoder: ClipEncoder,
    /// LayerNorm after the last layer.
    pub final_layer_norm: LayerNorm,
    /// Pooling rule.
    #[module(skip)]
    pub pooling: TextPooling,
}

impl ClipTextConfig {
    /// Initializes the tower with CLIP-like random weights.
    pub fn init(&self, device: &Device) -> ClipTextTransformer {
        let embedding = |n| {
            EmbeddingConfig::new(n, self.d_model)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        ClipTextTransformer {
            embeddings: ClipTextEmbeddings {
                token_embedding: embedding(self.vocab_size),
                position_embedding: embedding(self.context_length),
            },
            encoder: self.encoder().init(device),
            final_layer_norm: LayerNormConfig::new(self.d_model)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            pooling: self.pooling,
        }
    }
}

impl ClipTextTransformer {
    /// Final hidden states of every token.
    ///
    /// # Shapes
    /// - input_ids: `[batch_size, seq_length]` with `seq_length <= context_length`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn hidden_states(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch_size, seq_length] = input_ids.dims();
        let [context_length, d_model] = self.embeddings.position_embedding.weight.dims();
        assert!(
            seq_length <= context_length,
            "input_ids has {seq_length} tokens, the model takes at most {context_length}"
        );
        let tokens = self.embeddings.token_embedding.forward(input_ids);
        let x = self.hidden_states_from_embeddings(tokens);
        assert_shape!(x, [batch_size, seq_length, d_model]);
        x
    }

    /// Final hidden states from token embeddings instead of ids (prompt learning: CoOp's
    /// learned context vectors are rows of `token_embeds`). Adds the position embeddings, runs
    /// the causal encoder and the final LayerNorm.
    ///
    /// # Shapes
    /// - token_embeds: `[batch_size, seq_length, d_model]` with `seq_length <= context_length`
    /// - output: `[batch_size, seq_length, d_model]`
    pub fn hidden_states_from_embeddings(&self, token_embeds: Tensor<3>) -> Tensor<3> {
        let [batch_size, seq_length, _] = token_embeds.dims();
        let [context_length, d_model] = self.embeddings.position_embedding.weight.dims();
        assert!(
            seq_length <= context_length,
            "the prompt has {seq_length} tokens, the model takes at most {context_length}"
        );
        assert_shape!(token_embeds, [batch_size, seq_length, d_model]);
        let positions = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, seq_length)
            .unsqueeze_dim(0);
        let x = self.encoder.forward(token_embeds + positions, true);
        self.final_layer_norm.forward(x)
    }

    /// The pooled feature (before the projection) from token embeddings, taken at `positions`
    /// (for prompts built from token ids `ids`, `pool_positions(ids)`).
    ///
    /// # Shapes
    /// - token_embeds: `[batch_size, seq_length, d_model]`
    /// - positions: `[batch_size]`
    /// - output: `[batch_size, d_model]`
    pub fn forward_embeddings(
        &self,
        token_embeds: Tensor<3>,
        positions: Tensor<1, Int>,
    ) -> Tensor<2> {
        let [batch_size, _, d_model] = token_embeds.dims();
        assert_shape!(positions, [batch_size]);
        let hidden = self.hidden_states_from_embeddings(token_embeds);
        let index = positions
            .reshape([batch_size, 1, 1])
            .expand([batch_size, 1, d_model]);
        hidden.gather(1, index).reshape([batch_size, d_model])
    }

    /// [`Self::forward_embeddings`] with deep prompts (MaPLe's deep language prompts, Khattak et
    /// al. 2023, `trainers/maple.py` `TextEncoder`): at the input of layer `i + 1` the `n`
    /// tokens from position `start` are replaced by `deep[i]`, the same for every sequence. With
    /// no deep prompts this is [`Self::forward_embeddings`].
    ///
    /// # Shapes
    /// - token_embeds: `[batch_size, seq_length, d_model]`
    /// - positions: `[batch_size]`
    /// - deep: each `[n, d_model]`, at most `n_layers - 1` of them, `start + n <= seq_length`
    /// - output: `[batch_size, d_model]`
    pub fn forward_embeddings_prompted(
        &self,
        token_embeds: Tensor<3>,
        positions: Tensor<1, Int>,
        start: usize,
        deep: &[Tensor<2>],
    ) -> Tensor<2> {
        if deep.is_empty() {
            return self.forward_embeddings(token_embeds, positions);
        }
        let [batch_size, seq_length, d_model] = token_embeds.dims();
        let [context_length, _] = self.embeddings.position_embedding.weight.dims();
        assert!(
            seq_length <= context_length,
            "the prompt has {seq_length} tokens, the model takes at most {context_length}"
        );
        assert_shape!(positions, [batch_size]);
        assert!(
            deep.len() < self.encoder.layers.len(),
            "{} deep text prompts for {} layers (at most one per layer after the first)",
            deep.len(),
            self.encoder.layers.len()
        );
        let pos = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, seq_length)
            .unsqueeze_dim(0);
        let mut x = token_embeds + pos;
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            if i > 0
                && let Some(prompt) = deep.get(i - 1)
            {
                let [n, _] = prompt.dims();
                assert_shape!(prompt, [n, d_model]);
                assert!(
                    start + n <= seq_length,
                    "deep text prompt of {n} tokens from position {start} in {seq_length}"
                );
                let prompt = prompt
                    .clone()
                    .unsqueeze_dim::<3>(0)
                    .expand([batch_size, n, d_model]);
                x = Tensor::cat(
                    vec![
                        x.clone().narrow(1, 0, start),
                        prompt,
                        x.narrow(1, start + n, seq_length - start - n),
                    ],
                    1,
                );
            }
            x = layer.forward(x, true);
        }
        let hidden = self.final_layer_norm.forward(x);
        let index = positions
            .reshape([batch_size, 1, 1])
            .expand([batch_size, 1, d_model]);
        hidden.gather(1, index).reshape([batch_size, d_model])
    }

    /// Position of the pooled token in each sequence.
    ///
    /// # Shapes
    /// - input_ids: `[batch_size, seq_length]`
    /// - output: `[batch_size]`
    pub fn pool_positions(&self, input_ids: Tensor<2, Int>) -> Tensor<1, Int> {
        let [batch_size, seq_length] = input_ids.dims();
        let target = match self.pooling {
            TextPooling::ArgmaxId => input_ids.clone().max_dim(1),
            TextPooling::FirstId(id) => input_ids.ones_like().mul_scalar(id).narrow(1, 0, 1),
        };
        let hits = input_ids.equal(target.expand([batch_size, seq_length]));
        first_true(hits)
    }

    /// The pooled text feature before the projection (transformers' `pooler_output`).
    ///
    /// # Shapes
    /// - input_ids: `[batch_size, seq_length]`
    /// - output: `[batch_size, d_model]`
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<2> {
        let positions = self.pool_positions(input_ids.clone());
        let tokens = self.embeddings.token_embedding.forward(input_ids);
        self.forward_embeddings(tokens, positions)
    }
}

/// Index of the first `true` in each row, or 0 for a row with none (as `argmax` of an all-zero
/// row in PyTorch).
///
/// # Shapes
/// - mask: `[batch_size, seq_length]`
/// - output: `[batch_size]`
fn first_true(mask: Tensor<2, Bool>) -> Tensor<1, Int> {
    let [batch_size, seq_length] = mask.dims();
    let device = mask.device();
    let positions = Tensor::<1, Int>::arange(0..seq_length as i64, &device)
        .reshape([1, seq_length])
        .expand([batch_size, seq_length]);
    let first = positions
        .mask_fill(mask.bool_not(), seq_length as i64)
        .min_dim(1)
        .reshape([batch_size]);
    let none = first.clone().equal_elem(seq_length as i64);
    first.mask_fill(none, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(rows: &[&[i64]]) -> Tensor<2, Int> {
        let device = Device::flex();
        let n = rows[0].len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), n]), &device)
    }

    fn tower(pooling: TextPooling) -> ClipTextTransformer {
        ClipTextConfig::new(1000, 8, 16, 2, 1, 6, pooling).init(&Device::flex())
    }

    fn positions(t: &ClipTextTransformer, rows: &[&[i64]]) -> Vec<i64> {
        t.pool_positions(ids(rows))
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap()
    }

    #[test]
    fn argmax_pooling_takes_the_first_maximum() {
        // Hugging Face pads with end-of-text (the largest id): the first occurrence counts.
        let t = tower(TextPooling::ArgmaxId);
        assert_eq!(
            positions(&t, &[&[7, 5, 999, 999, 999, 999], &[3, 999, 0, 0, 0, 0]]),
            [2, 1]
        );
    }

    #[test]
    fn first_eos_pooling_ignores_larger_ids() {
        let t = tower(TextPooling::FirstId(500));
        assert_eq!(
            positions(&t, &[&[1, 900, 800, 500, 500, 500], &[1, 2, 3, 4, 5, 6]]),
            [3, 0]
        );
    }
}
