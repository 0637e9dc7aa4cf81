//! Zero-shot classification of synthetic-world images by shape, colour and (shape, colour) pair,
//! CLIP style (Radford et al. 2021, §3.1.4): every class phrase is put into each prompt template,
//! the text embeddings are L2-normalised and averaged over templates (prompt ensembling), and
//! images are assigned the class of highest cosine similarity. Pairs use `"a red circle"`; shapes
//! use the colour-free `"a circle"` (averaging pair prompts over colours would include the
//! held-out pair's own, never-captioned phrase and bias every held-out image against its true
//! shape); a colour's class embedding is the normalised mean of its pairs over shapes.

use burn::prelude::*;
use vl_data::ClipTokenizer;
use vl_data::synthetic::{SyntheticWorld, Task};
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
                    let article = if colour.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    };
                    texts.push(template.replacen("{}", &format!("{article} {colour} {shape}"), 1));
                }
            }
        }
        for template in templates {
            for shape in &shapes {
                let article = if shape.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                texts.push(template.replacen("{}", &format!("{article} {shape}"), 1));
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

    /// The class embeddings under `clip`: unit rows for pairs, shapes and colours.
    ///
    /// # Shapes
    /// - pairs: `[n_shapes * n_colours, projection_dim]` (shape-major)
    /// - shapes: `[n_shapes, projection_dim]`
    /// - colours: `[n_colours, projection_dim]`
    pub fn class_embeddings(&self, clip: &Clip, device: &Device) -> ClassEmbeddings {
        let pair_rows = self.n_templates * self.n_shapes * self.n_colours;
        let rows = pair_rows + self.n_templates * self.n_shapes;
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(self.ids.clone(), [rows, self.seq]),
            device,
        );
        let text = l2_normalize(clip.encode_text(ids));
        let [_, dim] = text.dims();
        let shape_text = text.clone().slice([pair_rows..rows, 0..dim]);
        let per_pair = text
            .slice([0..pair_rows, 0..dim])
            .reshape([self.n_templates, self.n_shapes, self.n_colours, dim])
            .mean_dim(0)
            .reshape([self.n_shapes, self.n_colours, dim]);
        let pairs = l2_normalize(
            per_pair
                .clone()
                .reshape([self.n_shapes * self.n_colours, dim]),
        );
        let shapes = l2_normalize(
            shape_text
                .reshape([self.n_templates, self.n_shapes, dim])
                .mean_dim(0)
                .reshape([self.n_shapes, dim]),
        );
        let colours = l2_normalize(per_pair.mean_dim(0).reshape([self.n_colours, dim]));
        ClassEmbeddings {
            pairs,
            shapes,
            colours,
        }
    }
}

/// Unit class embeddings (see [`ZeroShotPrompts::class_embeddings`]).
#[derive(Debug, Clone)]
pub struct ClassEmbeddings {
    /// `[n_shapes * n_colours, d]`.
    pub pairs: Tensor<2>,
    /// `[n_shapes, d]`.
    pub shapes: Tensor<2>,
    /// `[n_colours, d]`.
    pub colours: Tensor<2>,
}

/// Zero-shot predictions of a batch, with the true labels.
#[derive(Debug, Clone)]
pub struct ZeroShotPredictions {
    /// Predicted shape, `[n]`.
    pub shape: Vec<usize>,
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
    let argmax = |classes: Tensor<2>| -> Vec<usize> {
        let scores = image_embeds.clone().matmul(classes.transpose());
        let [n, _] = scores.dims();
        scores
            .argmax(1)
            .reshape([n])
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i as usize)
            .collect()
    };
    let n_colours = classes.colours.dims()[0];
    let held_idx: Vec<i64> = held_out.iter().map(|&i| i as i64).collect();
    let held_classes = classes.pairs.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(held_idx, [held_out.len()]), &device),
    );
    ZeroShotPredictions {
        shape: argmax(classes.shapes.clone()),
        colour: argmax(classes.colours.clone()),
        pair: argmax(classes.pairs.clone()),
        held_out_pair: argmax(held_classes)
            .into_iter()
            .map(|i| held_out[i])
            .collect(),
        true_shape,
        true_colour,
        n_colours,
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
    /// The shape, among all shapes.
    Shape,
    /// The colour, among all colours.
    Colour,
    /// The (shape, colour) pair, among all pairs.
    Pair,
    /// The (shape, colour) pair, among the held-out pairs only (meaningful on held-out images).
    HeldOutPair,
}

impl ZeroShotTask {
    /// Every task.
    pub const ALL: [ZeroShotTask; 4] = [
        ZeroShotTask::Shape,
        ZeroShotTask::Colour,
        ZeroShotTask::Pair,
        ZeroShotTask::HeldOutPair,
    ];

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            ZeroShotTask::Shape => "zero-shot shape",
            ZeroShotTask::Colour => "zero-shot colour",
            ZeroShotTask::Pair => "zero-shot pair (all pairs)",
            ZeroShotTask::HeldOutPair => "zero-shot pair (held-out pairs)",
        }
    }

    /// The key in reports.
    pub fn key(self) -> &'static str {
        match self {
            ZeroShotTask::Shape => "shape",
            ZeroShotTask::Colour => "colour",
            ZeroShotTask::Pair => "pair_all",
            ZeroShotTask::HeldOutPair => "pair_held_out",
        }
    }
}
