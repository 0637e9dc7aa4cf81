//! Zero-shot classification of synthetic-world images by shape, colour and (shape, colour) pair,
//! CLIP style (Radford et al. 2021, §3.1.4): each class phrase is put into every prompt template,
//! the text embeddings are L2-normalised and averaged over templates (prompt ensembling), and an
//! image gets the class of highest cosine similarity.
//!
//! - Pairs: `"a red circle"`, 64-way.
//! - Colour: the marginal of the pair softmax, `p(colour) = Σ_shape p(shape, colour)`.
//! - Shape, three heads (all reported):
//!   - [`ZeroShotTask::Shape`]: the marginal `p(shape) = Σ_colour p(shape, colour)`;
//!   - [`ZeroShotTask::ShapePrompt`]: the colour-free prompt `"a circle"`;
//!   - [`ZeroShotTask::ShapeDebiased`]: the same after projecting the colour subspace (colour
//!     class embeddings minus their mean) out of image and text embeddings, the debiasing
//!     projection of Chuang et al. 2023, "Debiasing Vision-Language Models via Biased Prompts"
//!     (<https://arxiv.org/abs/2302.00070>) with colour as the spurious attribute.
//!
//! On held-out images the colour-free prompt is biased against the true shape: when (circle,
//! green) is held out, the caption "a circle" was only ever contrasted against green images as a
//! negative. The marginal composes "green" and "circle" through the pair phrase instead.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use vl_data::ClipTokenizer;
use vl_data::synthetic::{SyntheticWorld, Task, with_article};
use vl_encoders::clip::{Clip, l2_normalize};

use crate::data::tokenize_trimmed;

/// Tokenised prompts: every (template, shape, colour) pair phrase, template-major, then every
/// (template, shape) colour-free shape phrase.
#[derive(Debug, Clone)]
pub struct ZeroShotPrompts {
    /// Row-major `[n_templates * n_shapes * (n_colours + 1), seq]` ids.
    ids: Vec<i64>,
    seq: usize,
    n_templates: usize,
    n_shapes: usize,
    n_colours: usize,
    /// Pair indices (`shape * n_colours + colour`) of the held-out combinations.
    held_out: Vec<usize>,
}

impl ZeroShotPrompts {
    /// Prompts for `world`'s shapes and colours in each template (`{}` is the pair phrase).
    pub fn new(tokenizer: &ClipTokenizer, world: &SyntheticWorld, templates: &[String]) -> Self {
        let shapes = world.class_names(Task::Shape);
        let colours = world.class_names(Task::Colour);
        let mut texts = Vec::with_capacity(templates.len() * shapes.len() * colours.len());
        for template in templates {
            for shape in &shapes {
                for colour in &colours {
                    let phrase = with_article(&format!("{colour} {shape}"));
                    texts.push(template.replacen("{}", &phrase, 1));
                }
            }
        }
        for template in templates {
            for shape in &shapes {
                texts.push(template.replacen("{}", &with_article(shape), 1));
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (ids, seq) = tokenize_trimmed(tokenizer, &refs);
        let held_out = world
            .config()
            .held_out
            .iter()
            .filter_map(|pair| {
                let s = shapes.iter().position(|n| n == pair.shape.name())?;
                let c = colours.iter().position(|n| *n == pair.colour)?;
                Some(s * colours.len() + c)
            })
            .collect();
        Self {
            ids,
            seq,
            n_templates: templates.len(),
            n_shapes: shapes.len(),
            n_colours: colours.len(),
            held_out,
        }
    }

    /// Number of shapes.
    pub fn n_shapes(&self) -> usize {
        self.n_shapes
    }

    /// Number of colours.
    pub fn n_colours(&self) -> usize {
        self.n_colours
    }

    /// Pair indices of the held-out combinations.
    pub fn held_out(&self) -> &[usize] {
        &self.held_out
    }

    /// The class embeddings under `clip`.
    ///
    /// # Shapes
    /// - pairs: `[n_shapes * n_colours, projection_dim]`, unit rows, shape-major
    /// - shapes: `[n_shapes, projection_dim]`, unit rows (colour-free prompts)
    /// - colour_basis: `[k, projection_dim]`, orthonormal rows, `k < n_colours`
    pub fn class_embeddings(&self, clip: &Clip, device: &Device) -> ClassEmbeddings {
        let (t, s, c) = (self.n_templates, self.n_shapes, self.n_colours);
        let pair_rows = t * s * c;
        let rows = pair_rows + t * s;
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(self.ids.clone(), [rows, self.seq]),
            device,
        );
        let text = l2_normalize(clip.encode_text(ids));
        let [_, dim] = text.dims();
        let pairs = l2_normalize(
            text.clone()
                .slice([0..pair_rows, 0..dim])
                .reshape([t, s * c, dim])
                .mean_dim(0)
                .reshape([s * c, dim]),
        );
        let colours = pairs
            .clone()
            .reshape([s, c, dim])
            .mean_dim(0)
            .reshape([c, dim]);
        let colour_directions = colours.clone() - colours.mean_dim(0);
        let colour_basis = orthonormal_rows(colour_directions, device);
        let shapes = text
            .slice([pair_rows..rows, 0..dim])
            .reshape([t, s, dim])
            .mean_dim(0)
            .reshape([s, dim]);
        let shapes = l2_normalize(shapes);
        let scale = clip
            .logit_scale
            .val()
            .clamp_max(MAX_LOG_SCALE)
            .exp()
            .into_scalar::<f32>();
        ClassEmbeddings {
            pairs,
            shapes,
            colour_basis,
            scale,
            n_shapes: s,
            n_colours: c,
        }
    }
}

/// `x − (x Bᵀ) B` for orthonormal rows `B` (`[k, d]`); `x` is `[n, d]`.
pub fn project_out(x: Tensor<2>, basis: &Tensor<2>) -> Tensor<2> {
    let coefficients = x.clone().matmul(basis.clone().transpose());
    x - coefficients.matmul(basis.clone())
}

/// Gram-Schmidt on the rows of `v` (`[m, d]`), dropping rows that are (numerically) dependent;
/// computed on the host in f64.
pub fn orthonormal_rows(v: Tensor<2>, device: &Device) -> Tensor<2> {
    let [m, d] = v.dims();
    let values: Vec<f64> = v
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default();
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(m);
    for row in values.chunks(d) {
        let mut r = row.to_vec();
        for b in &basis {
            let dot: f64 = r.iter().zip(b).map(|(x, y)| x * y).sum();
            r.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
        }
        let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-6 {
            basis.push(r.into_iter().map(|x| x / norm).collect());
        }
    }
    let k = basis.len();
    let flat: Vec<f32> = basis.into_iter().flatten().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [k, d]), device)
}

/// CLIP's bound on the logit scale, `ln 100`.
pub(crate) const MAX_LOG_SCALE: f64 = 4.605_170_185_988_092;

/// Class embeddings and the scale of the logits (see [`ZeroShotPrompts::class_embeddings`]).
#[derive(Debug, Clone)]
pub struct ClassEmbeddings {
    /// `[n_shapes * n_colours, d]`, shape-major.
    pub pairs: Tensor<2>,
    /// `[n_shapes, d]`: colour-free shape prompts.
    pub shapes: Tensor<2>,
    /// `[k, d]`: orthonormal basis of the colour subspace.
    pub colour_basis: Tensor<2>,
    /// `exp(logit_scale)`, clamped at 100.
    pub scale: f32,
    /// Number of shapes.
    pub n_shapes: usize,
    /// Number of colours.
    pub n_colours: usize,
}

/// Zero-shot predictions of a batch, with the true labels.
#[derive(Debug, Clone)]
pub struct ZeroShotPredictions {
    /// Predicted shape (pair marginal), `[n]`.
    pub shape: Vec<usize>,
    /// Predicted shape (colour-free prompt), `[n]`.
    pub shape_prompt: Vec<usize>,
    /// Predicted shape (colour-free prompt, colour subspace projected out), `[n]`.
    pub shape_debiased: Vec<usize>,
    /// Predicted colour, `[n]`.
    pub colour: Vec<usize>,
    /// Predicted pair among all pairs, `[n]`.
    pub pair: Vec<usize>,
    /// Predicted pair among the held-out pairs only (as a pair index), `[n]`.
    pub held_out_pair: Vec<usize>,
    /// True shapes.
    pub true_shape: Vec<usize>,
    /// True colours.
    pub true_colour: Vec<usize>,
    /// Number of colours (pair index = shape * n_colours + colour).
    pub n_colours: usize,
}

/// Predicts shapes, colours and pairs for unit image embeddings `[n, d]`.
pub fn predict(
    image_embeds: Tensor<2>,
    classes: &ClassEmbeddings,
    held_out: &[usize],
    true_shape: Vec<usize>,
    true_colour: Vec<usize>,
) -> ZeroShotPredictions {
    let device = image_embeds.device();
    let (s, c) = (classes.n_shapes, classes.n_colours);
    let scores = image_embeds
        .clone()
        .matmul(classes.pairs.clone().transpose());
    let [n, _] = scores.dims();
    let argmax = |t: Tensor<2>| -> Vec<usize> {
        let [rows, _] = t.dims();
        t.argmax(1)
            .reshape([rows])
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i as usize)
            .collect()
    };
    let probs = softmax(scores.clone().mul_scalar(classes.scale), 1).reshape([n, s, c]);
    let shape = argmax(probs.clone().sum_dim(2).reshape([n, s]));
    let colour = argmax(probs.sum_dim(1).reshape([n, c]));
    let shape_prompt = argmax(
        image_embeds
            .clone()
            .matmul(classes.shapes.clone().transpose()),
    );
    let debiased = l2_normalize(project_out(image_embeds, &classes.colour_basis));
    let shapes_debiased = l2_normalize(project_out(classes.shapes.clone(), &classes.colour_basis));
    let shape_debiased = argmax(debiased.matmul(shapes_debiased.transpose()));
    let held_idx: Vec<i64> = held_out.iter().map(|&i| i as i64).collect();
    let held_scores = scores.clone().select(
        1,
        Tensor::<1, Int>::from_data(TensorData::new(held_idx, [held_out.len()]), &device),
    );
    ZeroShotPredictions {
        shape,
        shape_prompt,
        shape_debiased,
        colour,
        pair: argmax(scores),
        held_out_pair: argmax(held_scores)
            .into_iter()
            .map(|i| held_out[i])
            .collect(),
        true_shape,
        true_colour,
        n_colours: c,
    }
}

impl ZeroShotPredictions {
    /// Correct predictions of `task` and the count of images.
    pub fn correct(&self, task: ZeroShotTask) -> (usize, usize) {
        let n = self.true_shape.len();
        let hits = (0..n)
            .filter(|&i| {
                let pair = self.true_shape[i] * self.n_colours + self.true_colour[i];
                match task {
                    ZeroShotTask::Shape => self.shape[i] == self.true_shape[i],
                    ZeroShotTask::ShapePrompt => self.shape_prompt[i] == self.true_shape[i],
                    ZeroShotTask::ShapeDebiased => self.shape_debiased[i] == self.true_shape[i],
                    ZeroShotTask::Colour => self.colour[i] == self.true_colour[i],
                    ZeroShotTask::Pair => self.pair[i] == pair,
                    ZeroShotTask::HeldOutPair => self.held_out_pair[i] == pair,
                }
            })
            .count();
        (hits, n)
    }
}

/// What a zero-shot accuracy is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroShotTask {
    /// The shape, among all shapes, from the pair marginal.
    Shape,
    /// The shape from the colour-free prompt.
    ShapePrompt,
    /// The shape from the colour-free prompt with the colour subspace projected out.
    ShapeDebiased,
    /// The colour, among all colours.
    Colour,
    /// The (shape, colour) pair, among all pairs.
    Pair,
    /// The (shape, colour) pair, among the held-out pairs only (meaningful on held-out images).
    HeldOutPair,
}

impl ZeroShotTask {
    /// Every task.
    pub const ALL: [ZeroShotTask; 6] = [
        ZeroShotTask::Shape,
        ZeroShotTask::ShapePrompt,
        ZeroShotTask::ShapeDebiased,
        ZeroShotTask::Colour,
        ZeroShotTask::Pair,
        ZeroShotTask::HeldOutPair,
    ];

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            ZeroShotTask::Shape => "zero-shot shape",
            ZeroShotTask::ShapePrompt => "zero-shot shape (shape prompt)",
            ZeroShotTask::ShapeDebiased => "zero-shot shape (shape prompt, colour projected out)",
            ZeroShotTask::Colour => "zero-shot colour",
            ZeroShotTask::Pair => "zero-shot pair (all pairs)",
            ZeroShotTask::HeldOutPair => "zero-shot pair (held-out pairs)",
        }
    }

    /// The key in reports.
    pub fn key(self) -> &'static str {
        match self {
            ZeroShotTask::Shape => "shape",
            ZeroShotTask::ShapePrompt => "shape_prompt",
            ZeroShotTask::ShapeDebiased => "shape_debiased",
            ZeroShotTask::Colour => "colour",
            ZeroShotTask::Pair => "pair_all",
            ZeroShotTask::HeldOutPair => "pair_held_out",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(rows: &[[f32; 4]]) -> Tensor<2> {
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), 4]), &Device::flex())
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn orthonormal_rows_drop_dependent_rows_and_projection_removes_their_span() {
        let v = tensor(&[
            [1.0, 1.0, 0.0, 0.0],
            [2.0, 2.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
        ]);
        let basis = orthonormal_rows(v, &Device::flex());
        assert_eq!(basis.dims(), [2, 4]);
        let gram = values(basis.clone().matmul(basis.clone().transpose()));
        for (got, want) in gram.iter().zip([1.0, 0.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-6, "{gram:?}");
        }
        let x = tensor(&[[3.0, -2.0, 5.0, 7.0]]);
        let projected = values(project_out(x, &basis));
        for (got, want) in projected.iter().zip([0.0, 0.0, 5.0, 7.0]) {
            assert!((got - want).abs() < 1e-5, "{projected:?}");
        }
    }

    #[test]
    fn shape_heads_marginal_prompt_and_debiased_prompt_differ_as_expected() {
        // Dimensions 0-1 carry shape, 2-3 colour. Pairs shape-major: s0c0, s0c1, s1c0, s1c1.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let pairs = tensor(&[
            [h, 0.0, h, 0.0],
            [h, 0.0, 0.0, h],
            [0.0, h, h, 0.0],
            [0.0, h, 0.0, h],
        ]);
        // The colour direction c0 - c1, as `class_embeddings` derives it.
        let colour_basis = orthonormal_rows(tensor(&[[0.0, 0.0, 1.0, -1.0]]), &Device::flex());
        // The shape-0 prompt is biased towards colour 1 (as "a circle" is against held-out green);
        // the projection removes the bias.
        let shapes = l2_normalize(tensor(&[[1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.5, 0.5]]));
        let classes = ClassEmbeddings {
            pairs,
            shapes,
            colour_basis,
            scale: 10.0,
            n_shapes: 2,
            n_colours: 2,
        };
        // A shape-1, colour-1 image whose shape signal is weaker than its colour signal.
        let images = l2_normalize(tensor(&[[0.0, 0.4, 0.0, 1.0]]));
        let p = predict(images, &classes, &[3], vec![1], vec![1]);
        assert_eq!(p.pair, vec![3]);
        assert_eq!(p.colour, vec![1]);
        assert_eq!(p.shape, vec![1]);
        assert_eq!(p.shape_prompt, vec![0], "the biased prompt is wrong");
        assert_eq!(p.shape_debiased, vec![1]);
        assert_eq!(p.held_out_pair, vec![3]);
        assert_eq!(p.correct(ZeroShotTask::Shape), (1, 1));
        assert_eq!(p.correct(ZeroShotTask::Pair), (1, 1));
    }
}
