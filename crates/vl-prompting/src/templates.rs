//! Hand-crafted prompts: single templates, template ensembles and class-name lists, and the
//! zero-shot classifier they make (Radford et al. 2021, <https://arxiv.org/abs/2103.00020> §3.1.4;
//! reference: openai/CLIP `notebooks/Prompt_Engineering_for_ImageNet.ipynb`, open_clip
//! `zero_shot_classifier.py`).
//!
//! An ensemble is averaged in embedding space as CLIP does it: every template's text feature is
//! L2-normalised, the features of one class are averaged, and the mean is normalised again.
//! The template sets ship as data files in `crates/vl-prompting/data/`: CLIP's 80 ImageNet
//! templates and the 7-template subset CoOp calls `IMAGENET_TEMPLATES_SELECT` (both written from
//! open_clip 3.3.0 `zero_shot_metadata.py`), and the per-dataset templates of the CoOp suite
//! (`CUSTOM_TEMPLATES` of KaiyangZhou/CoOp `trainers/zsclip.py`).

use std::path::Path;

use burn::prelude::*;
use vl_data::ClipTokenizer;
use vl_encoders::clip::{Clip, l2_normalize};

use crate::{Error, Result};

/// CLIP's 80 ImageNet templates, one per line, `{}` standing for the class name.
pub const IMAGENET_TEMPLATES: &str = include_str!("../data/imagenet_templates.txt");
/// The 7-template subset of [`IMAGENET_TEMPLATES`] used by CoOp's zero-shot ensembles.
pub const IMAGENET_TEMPLATES_SELECT: &str = include_str!("../data/imagenet_templates_select.txt");
/// The CoOp suite's per-dataset template, as a JSON object `{dataset: template}`.
pub const COOP_TEMPLATES: &str = include_str!("../data/coop_templates.json");

/// A set of templates, each containing `{}` exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates(Vec<String>);

impl Templates {
    /// Templates from strings; each must contain `{}` exactly once.
    pub fn new<S: Into<String>>(templates: impl IntoIterator<Item = S>) -> Result<Self> {
        let templates: Vec<String> = templates.into_iter().map(Into::into).collect();
        if templates.is_empty() {
            return Err(Error::invalid("templates", "at least one template", "none"));
        }
        for t in &templates {
            if t.matches("{}").count() != 1 {
                return Err(Error::invalid(
                    "templates",
                    "a template containing `{}` exactly once",
                    format!("{t:?}"),
                ));
            }
        }
        Ok(Self(templates))
    }

    /// One template per non-empty line (e.g. [`IMAGENET_TEMPLATES`]).
    pub fn from_lines(text: &str) -> Result<Self> {
        Self::new(text.lines().map(str::trim).filter(|l| !l.is_empty()))
    }

    /// A template file, one template per non-empty line.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_lines(&text).map_err(|e| match e {
            Error::Invalid {
                expected, found, ..
            } => Error::Invalid {
                field: path.display().to_string(),
                expected,
                found,
            },
            other => other,
        })
    }

    /// CLIP's 80 ImageNet templates.
    pub fn imagenet() -> Self {
        Self::from_lines(IMAGENET_TEMPLATES).expect("bundled templates are valid")
    }

    /// CoOp's 7-template ImageNet ensemble.
    pub fn imagenet_select() -> Self {
        Self::from_lines(IMAGENET_TEMPLATES_SELECT).expect("bundled templates are valid")
    }

    /// The CoOp suite's template for `dataset` (e.g. `"OxfordPets"`, `"EuroSAT"`).
    pub fn coop(dataset: &str) -> Result<Self> {
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_str(COOP_TEMPLATES).expect("bundled templates are valid JSON");
        let template = map.get(dataset).ok_or_else(|| {
            Error::invalid(
                "dataset",
                format!(
                    "one of {}",
                    map.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                dataset,
            )
        })?;
        Self::new([template.clone()])
    }

    /// The templates.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (a set holds at least one template).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Template `t` filled with `class_name`.
    pub fn fill(&self, t: usize, class_name: &str) -> String {
        self.0[t].replacen("{}", class_name, 1)
    }
}

/// Unit-norm text features of `texts`, encoded in chunks of `chunk` (no gradient is recorded
/// unless `clip` lives on an autodiff device and requires it).
///
/// # Shapes
/// - output: `[texts.len(), projection_dim]`
pub fn encode_texts(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    texts: &[String],
    chunk: usize,
) -> Result<Tensor<2>> {
    let device = clip.logit_scale.val().device();
    let mut parts = Vec::new();
    for batch in texts.chunks(chunk.max(1)) {
        let ids = tokenizer.encode_batch(batch)?.to_tensor(&device);
        parts.push(l2_normalize(clip.encode_text(ids)));
    }
    Ok(Tensor::cat(parts, 0))
}

/// The zero-shot classifier: one unit-norm text feature per class, the normalised mean of the
/// normalised features of every template filled with the class name.
///
/// # Shapes
/// - output: `[class_names.len(), projection_dim]`
pub fn class_text_features(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    class_names: &[String],
    templates: &Templates,
) -> Result<Tensor<2>> {
    if class_names.is_empty() {
        return Err(Error::invalid("class_names", "at least one class", "none"));
    }
    let texts: Vec<String> = class_names
        .iter()
        .flat_map(|c| (0..templates.len()).map(move |t| templates.fill(t, c)))
        .collect();
    let features = encode_texts(clip, tokenizer, &texts, 256)?;
    let [_, d] = features.dims();
    let per_class = features
        .reshape([class_names.len(), templates.len(), d])
        .mean_dim(1)
        .reshape([class_names.len(), d]);
    Ok(l2_normalize(per_class))
}

/// Per-template unit-norm class features (LASP's text-to-text targets).
///
/// # Shapes
/// - output: `[templates.len(), class_names.len(), projection_dim]`
pub fn template_class_features(
    clip: &Clip,
    tokenizer: &ClipTokenizer,
    class_names: &[String],
    templates: &Templates,
) -> Result<Tensor<3>> {
    let texts: Vec<String> = (0..templates.len())
        .flat_map(|t| class_names.iter().map(move |c| templates.fill(t, c)))
        .collect();
    let features = encode_texts(clip, tokenizer, &texts, 256)?;
    let [_, d] = features.dims();
    Ok(features.reshape([templates.len(), class_names.len(), d]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_template_sets_have_their_published_sizes() {
        assert_eq!(Templates::imagenet().len(), 80);
        assert_eq!(Templates::imagenet_select().len(), 7);
        assert_eq!(
            Templates::coop("EuroSAT").unwrap().as_slice(),
            ["a centered satellite photo of {}."]
        );
        assert_eq!(
            Templates::imagenet().fill(0, "cat"),
            "a bad photo of a cat."
        );
    }

    #[test]
    fn templates_without_exactly_one_slot_are_rejected() {
        let err = Templates::new(["a photo"]).unwrap_err().to_string();
        assert!(
            err.contains("exactly once") && err.contains("a photo"),
            "{err}"
        );
        assert!(Templates::new(["{} and {}"]).is_err());
        assert!(Templates::new(Vec::<String>::new()).is_err());
        let err = Templates::coop("Nope").unwrap_err().to_string();
        assert!(err.contains("OxfordPets") && err.contains("Nope"), "{err}");
    }
}
