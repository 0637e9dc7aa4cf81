//! [`SyntheticWorldConfig`]: everything that parameterises the synthetic world (image size, seed,
//! the shape / colour / size / relation / background vocabularies and the held-out combinations),
//! with documented defaults and a validation pass used by [`SyntheticWorld::new`].
//!
//! [`SyntheticWorld::new`]: super::SyntheticWorld::new

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A shape the world can draw. Every shape fills a square box of the object's size, upright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A filled disc.
    Circle,
    /// An axis-aligned filled square.
    Square,
    /// A filled triangle pointing up.
    Triangle,
    /// A filled five-pointed star, one point up.
    Star,
    /// A plus sign (two bars of a third of the box width).
    Cross,
    /// An annulus (inner radius 55% of the outer one).
    Ring,
    /// A square rotated by 45 degrees.
    Diamond,
    /// The upper half of a disc, flat side down.
    Semicircle,
    /// A regular hexagon with corners left and right (not in the default list: too close to a
    /// circle at 32 px).
    Hexagon,
}

impl Shape {
    /// The eight default shapes, in class order.
    pub const DEFAULT: [Shape; 8] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
        Shape::Ring,
        Shape::Diamond,
        Shape::Semicircle,
    ];

    /// The word used in captions and class names.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Ring => "ring",
            Shape::Diamond => "diamond",
            Shape::Semicircle => "semicircle",
            Shape::Hexagon => "hexagon",
        }
    }
}

/// Where the first object of a two-object image sits relative to the second: "A *to the left
/// of* B" means A's box lies entirely left of B's box (and roughly level with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The first object is entirely left of the second.
    LeftOf,
    /// The first object is entirely right of the second.
    RightOf,
    /// The first object is entirely above the second.
    Above,
    /// The first object is entirely below the second.
    Below,
}

impl Relation {
    /// All four relations.
    pub const ALL: [Relation; 4] = [
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
    ];

    /// The phrase used in captions, e.g. `"to the left of"`.
    pub fn phrase(self) -> &'static str {
        match self {
            Relation::LeftOf => "to the left of",
            Relation::RightOf => "to the right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }
}

/// A background texture. All are low-contrast greys (never one of the object colours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// One flat grey.
    Plain,
    /// Horizontal or vertical stripes.
    Striped,
    /// A grid of small light dots.
    Dotted,
    /// A checkerboard.
    Checkered,
    /// Per-pixel grey noise.
    Noisy,
    /// A linear ramp from darker to lighter grey.
    Gradient,
}

impl Background {
    /// All six backgrounds, in class order.
    pub const ALL: [Background; 6] = [
        Background::Plain,
        Background::Striped,
        Background::Dotted,
        Background::Checkered,
        Background::Noisy,
        Background::Gradient,
    ];

    /// The adjective used in captions and class names, e.g. `"striped"`.
    pub fn name(self) -> &'static str {
        match self {
            Background::Plain => "plain",
            Background::Striped => "striped",
            Background::Dotted => "dotted",
            Background::Checkered => "checkered",
            Background::Noisy => "noisy",
            Background::Gradient => "gradient",
        }
    }
}

/// A named object colour. Objects are painted in exactly this RGB value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedColour {
    /// The word used in captions, one lowercase word (e.g. `"red"`).
    pub name: String,
    /// The RGB value.
    pub rgb: [u8; 3],
}

impl NamedColour {
    /// A colour from a name and an RGB value.
    pub fn new(name: impl Into<String>, rgb: [u8; 3]) -> Self {
        Self {
            name: name.into(),
            rgb,
        }
    }
}

/// A named object size, as a fraction of the image side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeClass {
    /// The word used in captions (e.g. `"small"`).
    pub name: String,
    /// Side of the object's square box divided by the image side, in `(0, 1]`; at most `0.5`
    /// when two objects may share an image (each gets half of it).
    pub fraction: f32,
}

/// A (shape, colour) combination, used for the held-out list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShapeColour {
    /// The shape.
    pub shape: Shape,
    /// The colour's name, one of [`SyntheticWorldConfig::colours`].
    pub colour: String,
}

/// Parameters of the synthetic world. Every field has a default (`#[serde(default)]`), so a JSON
/// file only needs the fields it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticWorldConfig {
    /// Width and height of the square RGB images, in pixels, at least 16. Default: `48`.
    pub image_size: u32,
    /// Seed of the whole world; every sample is a pure function of `(config, seed, split, index)`.
    /// Default: `0`.
    pub seed: u64,
    /// Fewest objects per image, 1 or 2. Default: `1`.
    pub min_objects: u8,
    /// Most objects per image, 1 or 2 (the count is uniform in `min..=max`). Default: `2`.
    pub max_objects: u8,
    /// Shapes, in class order. Default: [`Shape::DEFAULT`] (circle, square, triangle, star, cross,
    /// ring, diamond, semicircle).
    pub shapes: Vec<Shape>,
    /// Colours, in class order. Default: red `[220, 30, 30]`, green `[30, 170, 50]`, blue
    /// `[30, 70, 230]`, yellow `[240, 220, 30]`, purple `[140, 50, 200]`, orange `[250, 140, 20]`,
    /// cyan `[30, 210, 220]`, pink `[250, 120, 200]` (pairwise at least ~95 apart in RGB, all far
    /// from the grey backgrounds).
    pub colours: Vec<NamedColour>,
    /// Object sizes, in class order. Default: small `0.3`, large `0.46` (14 px and 22 px at 48).
    pub sizes: Vec<SizeClass>,
    /// Relations for two-object images. Default: [`Relation::ALL`].
    pub relations: Vec<Relation>,
    /// Backgrounds, in class order. Default: [`Background::ALL`].
    pub backgrounds: Vec<Background>,
    /// How far background patterns swing around their base grey (an even number of grey levels
    /// is used, rounded down). Default: `16`.
    pub background_contrast: u8,
    /// (shape, colour) pairs never drawn in the pretraining or evaluation splits, only in the
    /// held-out split; must be non-empty and leave at least one pair allowed. Default: shape `i`
    /// with colour `(3 i + 1) mod 8` of the default lists, a permutation, so each shape and each
    /// colour loses exactly one partner: green circle, purple square, pink triangle, blue star,
    /// orange cross, red ring, yellow diamond, cyan semicircle.
    pub held_out: Vec<ShapeColour>,
    /// Anti-alias shape edges with 4x4 supersampling. Default: `true`.
    pub antialias: bool,
    /// Snap every object's box to a grid of this many pixels: its top-left corner lands on a
    /// multiple of `position_grid` (objects keep their sides, relations and halves of the image).
    /// Set to a ViT's patch size, the same (shape, size) always covers the same pixels of its
    /// patches, so shape is learnt from the patch embedding rather than as a translation-invariant
    /// pattern across patches. `0` keeps continuous positions. Default: `0`.
    pub position_grid: u32,
    /// Width in pixels of a dark outline (RGB `[20, 20, 20]`) drawn around every object: every
    /// point within this distance of the shape is painted under it, like the contour of clip
    /// art. A contour has the same pixels whatever the object's colour, so shape is visible
    /// in the image without going through colour. `0` draws none. Default: `0`.
    pub outline: f32,
}

impl Default for SyntheticWorldConfig {
    fn default() -> Self {
        let colours = vec![
            NamedColour::new("red", [220, 30, 30]),
            NamedColour::new("green", [30, 170, 50]),
            NamedColour::new("blue", [30, 70, 230]),
            NamedColour::new("yellow", [240, 220, 30]),
            NamedColour::new("purple", [140, 50, 200]),
            NamedColour::new("orange", [250, 140, 20]),
            NamedColour::new("cyan", [30, 210, 220]),
            NamedColour::new("pink", [250, 120, 200]),
        ];
        let held_out = Shape::DEFAULT
            .iter()
            .enumerate()
            .map(|(i, &shape)| ShapeColour {
                shape,
                colour: colours[(3 * i + 1) % colours.len()].name.clone(),
            })
            .collect();
        Self {
            image_size: 48,
            seed: 0,
            min_objects: 1,
            max_objects: 2,
            shapes: Shape::DEFAULT.to_vec(),
            colours,
            sizes: vec![
                SizeClass {
                    name: "small".into(),
                    fraction: 0.3,
                },
                SizeClass {
                    name: "large".into(),
                    fraction: 0.46,
                },
            ],
            relations: Relation::ALL.to_vec(),
            backgrounds: Background::ALL.to_vec(),
            background_contrast: 16,
            held_out,
            antialias: true,
            position_grid: 0,
            outline: 0.0,
        }
    }
}

fn invalid(setting: &'static str, expected: &str, found: impl std::fmt::Debug) -> Error {
    Error::InvalidSetting {
        setting,
        expected: expected.to_owned(),
        found: format!("{found:?}"),
    }
}

fn is_word(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())
}

impl SyntheticWorldConfig {
    /// Checks every field against the rules in its documentation.
    pub fn validate(&self) -> Result<()> {
        if self.image_size < 16 || self.image_size > 4096 {
            return Err(invalid("image_size", "16..=4096", self.image_size));
        }
        if !(self.outline >= 0.0 && self.outline <= self.image_size as f32 / 8.0) {
            return Err(invalid(
                "outline",
                "0 (none) to image_size / 8 pixels",
                self.outline,
            ));
        }
        if self.position_grid >= self.image_size {
            return Err(invalid(
                "position_grid",
                "0 (continuous) or fewer pixels than image_size",
                self.position_grid,
            ));
        }
        if !(1..=2).contains(&self.min_objects) || self.min_objects > self.max_objects {
            return Err(invalid(
                "min_objects",
                "1 or 2, at most max_objects",
                self.min_objects,
            ));
        }
        if !(1..=2).contains(&self.max_objects) {
            return Err(invalid("max_objects", "1 or 2", self.max_objects));
        }
        for (i, shape) in self.shapes.iter().enumerate() {
            if self.shapes[..i].contains(shape) {
                return Err(invalid("shapes", "no repeated shape", shape));
            }
        }
        if self.shapes.is_empty() {
            return Err(invalid("shapes", "at least one shape", &self.shapes));
        }
        if self.colours.is_empty() {
            return Err(invalid("colours", "at least one colour", &self.colours));
        }
        for (i, colour) in self.colours.iter().enumerate() {
            if !is_word(&colour.name) || self.colours[..i].iter().any(|c| c.name == colour.name) {
                return Err(invalid(
                    "colours",
                    "unique one-word lowercase names",
                    &colour.name,
                ));
            }
        }
        if self.sizes.is_empty() {
            return Err(invalid("sizes", "at least one size", &self.sizes));
        }
        let max_fraction = if self.max_objects == 2 { 0.5 } else { 1.0 };
        for (i, size) in self.sizes.iter().enumerate() {
            if !is_word(&size.name) || self.sizes[..i].iter().any(|s| s.name == size.name) {
                return Err(invalid(
                    "sizes",
                    "unique one-word lowercase names",
                    &size.name,
                ));
            }
            if !(size.fraction > 0.0 && size.fraction <= max_fraction) {
                return Err(invalid(
                    "sizes",
                    "fractions in (0, 1], at most 0.5 with two objects",
                    size.fraction,
                ));
            }
            if size.fraction * self.image_size as f32 <= 3.0 {
                return Err(invalid(
                    "sizes",
                    "objects more than 3 px wide",
                    size.fraction,
                ));
            }
        }
        if self.max_objects == 2 && self.relations.is_empty() {
            return Err(invalid(
                "relations",
                "at least one relation",
                &self.relations,
            ));
        }
        if self.backgrounds.is_empty() {
            return Err(invalid(
                "backgrounds",
                "at least one background",
                &self.backgrounds,
            ));
        }
        if self.background_contrast > 48 {
            return Err(invalid(
                "background_contrast",
                "at most 48",
                self.background_contrast,
            ));
        }
        if self.held_out.is_empty() {
            return Err(invalid("held_out", "at least one pair", &self.held_out));
        }
        for pair in &self.held_out {
            if !self.shapes.contains(&pair.shape)
                || !self.colours.iter().any(|c| c.name == pair.colour)
            {
                return Err(invalid(
                    "held_out",
                    "pairs of configured shapes and colours",
                    pair,
                ));
            }
        }
        let n_pairs = self.shapes.len() * self.colours.len();
        let mut distinct = self.held_out.clone();
        distinct.sort_by(|a, b| (a.shape.name(), &a.colour).cmp(&(b.shape.name(), &b.colour)));
        distinct.dedup();
        if distinct.len() >= n_pairs {
            return Err(invalid(
                "held_out",
                "to leave at least one pair allowed",
                distinct.len(),
            ));
        }
        Ok(())
    }
}
