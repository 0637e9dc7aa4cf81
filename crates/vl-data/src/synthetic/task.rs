//! Classification tasks over the synthetic world's attributes ([`Task`]): class names, labels,
//! labelled index sets, and per-class descriptions from the caption grammar (for LaFTer-style
//! text-only training).
//!
//! Object tasks (shape, colour, shape+colour, size) are defined over **one-object images only**:
//! [`SyntheticWorld::label`] returns `None` for two-object images, and
//! [`SyntheticWorld::classification_set`] skips them. The background task labels every image.

use serde::{Deserialize, Serialize};

use super::world::{Scene, Split, SyntheticSample, SyntheticWorld, article};
use crate::{Error, Result};

/// An attribute to classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// The object's shape; classes are shape names (`"circle"`), in config order.
    Shape,
    /// The object's colour; classes are colour names (`"red"`), in config order.
    Colour,
    /// Colour and shape together; classes are `"<colour> <shape>"` (`"red circle"`), shape-major
    /// (`index = shape_index * n_colours + colour_index`), held-out pairs included.
    ShapeColour,
    /// The object's size; classes are size names (`"small"`, `"large"`).
    Size,
    /// The background texture; classes are background adjectives (`"striped"`).
    Background,
}

impl Task {
    /// Whether the task labels the (single) object rather than the whole image.
    pub fn is_object_task(self) -> bool {
        !matches!(self, Task::Background)
    }
}

impl SyntheticWorld {
    /// The task's class names, unique, indexed by label.
    pub fn class_names(&self, task: Task) -> Vec<String> {
        let config = self.config();
        match task {
            Task::Shape => config.shapes.iter().map(|s| s.name().to_owned()).collect(),
            Task::Colour => config.colours.iter().map(|c| c.name.clone()).collect(),
            Task::ShapeColour => config
                .shapes
                .iter()
                .flat_map(|s| {
                    config
                        .colours
                        .iter()
                        .map(move |c| format!("{} {}", c.name, s.name()))
                })
                .collect(),
            Task::Size => config.sizes.iter().map(|s| s.name.clone()).collect(),
            Task::Background => config
                .backgrounds
                .iter()
                .map(|b| b.name().to_owned())
                .collect(),
        }
    }

    /// The sample's label for `task`: `None` for object tasks on two-object images.
    pub fn label(&self, task: Task, sample: &SyntheticSample) -> Option<usize> {
        self.label_scene(task, &sample.objects, sample.background)
    }

    fn label_scene(
        &self,
        task: Task,
        objects: &[super::ObjectSpec],
        background: super::Background,
    ) -> Option<usize> {
        if task == Task::Background {
            return self
                .config()
                .backgrounds
                .iter()
                .position(|&b| b == background);
        }
        let [object] = objects else { return None };
        Some(match task {
            Task::Shape => object.shape_index,
            Task::Colour => object.colour_index,
            Task::ShapeColour => {
                object.shape_index * self.config().colours.len() + object.colour_index
            }
            Task::Size => object.size_index,
            Task::Background => return None,
        })
    }

    /// The first `n` indices of `split` that have a label for `task`, with their labels (index
    /// order; for object tasks, the one-object images). Only layouts are drawn, no pixels, so this
    /// is cheap; render an entry with [`SyntheticWorld::sample_in`]`(split, index)`.
    ///
    /// Fails when the task can have no labelled image (an object task with `min_objects = 2`).
    pub fn classification_set(
        &self,
        task: Task,
        split: Split,
        n: usize,
    ) -> Result<Vec<(u64, usize)>> {
        if task.is_object_task() && self.config().min_objects > 1 {
            return Err(Error::InvalidSetting {
                setting: "min_objects",
                expected: "1 for object classification tasks".to_owned(),
                found: self.config().min_objects.to_string(),
            });
        }
        let mut set = Vec::with_capacity(n);
        let mut index = 0u64;
        while set.len() < n {
            let Scene {
                objects,
                background,
                ..
            } = self.scene(split, index);
            if let Some(label) = self.label_scene(task, &objects, background) {
                set.push((index, label));
            }
            index += 1;
        }
        Ok(set)
    }

    /// For each class of `task`, a few sentences from the caption grammar that describe it, as a
    /// JSON object `{"<class name>": ["<sentence>", ...], ...}` in class order.
    pub fn class_descriptions(&self, task: Task) -> serde_json::Value {
        let config = self.config();
        let with_article = |words: String| format!("{} {words}", article(&words));
        let mut map = serde_json::Map::new();
        for name in self.class_names(task) {
            let sentences: Vec<String> = match task {
                Task::Shape => {
                    let mut s = vec![
                        with_article(name.clone()),
                        format!("a photo of {}", with_article(name.clone())),
                    ];
                    s.extend(
                        config
                            .sizes
                            .iter()
                            .map(|z| with_article(format!("{} {name}", z.name))),
                    );
                    s.extend(
                        config
                            .colours
                            .iter()
                            .map(|c| with_article(format!("{} {name}", c.name))),
                    );
                    s
                }
                Task::Colour => {
                    let mut s = vec![format!("a photo of something {name}")];
                    s.extend(
                        config
                            .shapes
                            .iter()
                            .map(|sh| with_article(format!("{name} {}", sh.name()))),
                    );
                    s
                }
                Task::ShapeColour => {
                    let mut s = vec![
                        with_article(name.clone()),
                        format!("a photo of {}", with_article(name.clone())),
                    ];
                    s.extend(
                        config
                            .sizes
                            .iter()
                            .map(|z| with_article(format!("{} {name}", z.name))),
                    );
                    s.extend(config.backgrounds.iter().take(3).map(|b| {
                        format!(
                            "{} on {} {} background",
                            with_article(name.clone()),
                            article(b.name()),
                            b.name()
                        )
                    }));
                    s
                }
                Task::Size => config
                    .shapes
                    .iter()
                    .map(|sh| with_article(format!("{name} {}", sh.name())))
                    .collect(),
                Task::Background => {
                    let mut s = vec![format!("a photo of {} {name} background", article(&name))];
                    s.extend(config.shapes.iter().map(|sh| {
                        format!(
                            "{} on {} {name} background",
                            with_article(sh.name().to_owned()),
                            article(&name)
                        )
                    }));
                    s
                }
            };
            map.insert(name, serde_json::Value::from(sentences));
        }
        serde_json::Value::Object(map)
    }
}
