//! [`SyntheticWorld`]: draws [`SyntheticSample`]s (image, caption, object list) as a pure function
//! of `(config, split, index)`, and defines the [`Split`]s.
//!
//! Each sample gets its own SplitMix64 stream seeded from `hash(seed, split, index)`, so sample
//! `i` is computed directly (no sequential state), and identically on every machine. The stream
//! is consumed in a fixed order: scene layout (objects, relation, background), caption choices,
//! then the background texture's seed.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::config::{Background, Relation, Shape, SyntheticWorldConfig};
use super::render::{self, Paint};
use super::rng::{SplitMix64, hash3};
use crate::Result;

/// Which population of images to draw from. The three splits use independent random streams (the
/// split is hashed into every sample's seed), so the same index gives unrelated images in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Pretraining images: no object has a held-out (shape, colour) combination.
    Pretrain,
    /// Evaluation images of seen combinations: drawn like [`Split::Pretrain`] but from another
    /// stream, and with background base greys of odd level where pretraining uses even ones, so
    /// an evaluation image is never pixel-identical to a pretraining image.
    Eval,
    /// Images where at least one object (the only one, in one-object images) has a held-out
    /// combination; never seen during pretraining. Background greys are even, as in pretraining.
    HeldOut,
}

impl Split {
    /// The tag hashed into the sample seed.
    fn stream(self) -> u64 {
        match self {
            Split::Pretrain => 1,
            Split::Eval => 2,
            Split::HeldOut => 3,
        }
    }
}

/// One drawn object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// The shape.
    pub shape: Shape,
    /// Index of the shape in [`SyntheticWorldConfig::shapes`].
    pub shape_index: usize,
    /// The colour's name.
    pub colour: String,
    /// Index of the colour in [`SyntheticWorldConfig::colours`].
    pub colour_index: usize,
    /// The exact RGB value the shape is painted in.
    pub rgb: [u8; 3],
    /// The size's name (e.g. `"small"`).
    pub size: String,
    /// Index of the size in [`SyntheticWorldConfig::sizes`].
    pub size_index: usize,
    /// Centre of the object's square box, in pixels (`x`, `y`; `y` down).
    pub centre: [f32; 2],
    /// Side of the object's square box, in pixels.
    pub side: f32,
    /// Pixels the box touches, `[x0, y0, x1, y1)`.
    pub bbox: [u32; 4],
}

impl ObjectSpec {
    /// Whether the image point `(x, y)` (in pixels, continuous) lies inside the drawn shape; use
    /// `(px + 0.5, py + 0.5)` to test a pixel centre.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let scale = 2.0 / self.side;
        render::inside(
            self.shape,
            (x - self.centre[0]) * scale,
            (y - self.centre[1]) * scale,
        )
    }
}

/// One sample of the world.
#[derive(Debug, Clone)]
pub struct SyntheticSample {
    /// The split it was drawn from.
    pub split: Split,
    /// Its index within the split.
    pub index: u64,
    /// The RGB image, `image_size` x `image_size`.
    pub image: RgbImage,
    /// A caption consistent with `objects`, `relation` and `background`.
    pub caption: String,
    /// The objects, in caption order (one or two).
    pub objects: Vec<ObjectSpec>,
    /// Where `objects[0]` sits relative to `objects[1]` (two-object images only).
    pub relation: Option<Relation>,
    /// The background texture.
    pub background: Background,
}

/// A sample without its pixels: what classification labels need.
#[derive(Debug, Clone)]
pub(crate) struct Scene {
    pub(crate) objects: Vec<ObjectSpec>,
    pub(crate) relation: Option<Relation>,
    pub(crate) background: Background,
}

/// The colour of object outlines ([`SyntheticWorldConfig::outline`]).
const OUTLINE_RGB: [u8; 3] = [20, 20, 20];

/// The caption templates; `{}` is the scene description.
const TEMPLATES: [&str; 5] = [
    "{}",
    "a photo of {}",
    "there is {}",
    "an image of {}",
    "a picture of {}",
];

/// `"a"` or `"an"` before `word`.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `words` with the indefinite article the captions use (`"an orange circle"`, `"a ring"`).
pub fn with_article(words: &str) -> String {
    format!("{} {words}", article(words))
}

/// `centre` of a box of side `side` moved so that its top-left corner lies on a multiple of
/// `grid` inside `[0, size - side]`: per axis, rounded down (`dir = -1`), up (`1`) or to the
/// nearest grid point (`0`), then clamped into the image.
fn snap(centre: [f32; 2], side: f32, size: f32, grid: f32, dir: [i8; 2]) -> [f32; 2] {
    let half = side / 2.0;
    let last = ((size - side) / grid).floor().max(0.0);
    let axis = |c: f32, d: i8| {
        let k = (c - half) / grid;
        let k = match d {
            -1 => k.floor(),
            1 => k.ceil(),
            _ => k.round(),
        };
        k.clamp(0.0, last) * grid + half
    };
    [axis(centre[0], dir[0]), axis(centre[1], dir[1])]
}

/// The procedural world: a validated config plus precomputed (shape, colour) pair lists.
#[derive(Debug, Clone)]
pub struct SyntheticWorld {
    config: SyntheticWorldConfig,
    /// Pairs `(shape index, colour index)` allowed in pretraining and evaluation.
    allowed: Vec<(usize, usize)>,
    /// Held-out pairs, deduplicated, in config order.
    held_out: Vec<(usize, usize)>,
}

impl SyntheticWorld {
    /// A world from a config, after [`SyntheticWorldConfig::validate`].
    pub fn new(config: SyntheticWorldConfig) -> Result<Self> {
        config.validate()?;
        let mut held_out = Vec::new();
        for pair in &config.held_out {
            // `validate` checked that both names exist.
            let shape = config
                .shapes
                .iter()
                .position(|&s| s == pair.shape)
                .unwrap_or(0);
            let colour = config
                .colours
                .iter()
                .position(|c| c.name == pair.colour)
                .unwrap_or(0);
            if !held_out.contains(&(shape, colour)) {
                held_out.push((shape, colour));
            }
        }
        let allowed = (0..config.shapes.len())
            .flat_map(|s| (0..config.colours.len()).map(move |c| (s, c)))
            .filter(|pair| !held_out.contains(pair))
            .collect();
        Ok(Self {
            config,
            allowed,
            held_out,
        })
    }

    /// The config.
    pub fn config(&self) -> &SyntheticWorldConfig {
        &self.config
    }

    /// Whether `(shape, colour)` is one of the held-out combinations.
    pub fn is_held_out(&self, shape: Shape, colour: &str) -> bool {
        self.config
            .held_out
            .iter()
            .any(|p| p.shape == shape && p.colour == colour)
    }

    /// Pretraining sample `index`: shorthand for `sample_in(Split::Pretrain, index)`.
    pub fn sample(&self, index: u64) -> SyntheticSample {
        self.sample_in(Split::Pretrain, index)
    }

    /// Sample `index` of `split`, a pure function of `(config, split, index)`.
    pub fn sample_in(&self, split: Split, index: u64) -> SyntheticSample {
        let (scene, mut rng) = self.scene_and_rng(split, index);
        let caption = self.caption(&scene, &mut rng);
        let image = self.render(split, &scene, &mut rng);
        SyntheticSample {
            split,
            index,
            image,
            caption,
            objects: scene.objects,
            relation: scene.relation,
            background: scene.background,
        }
    }

    /// Sample `index` of `split` with the shape of object `slot` replaced by shape number
    /// `shape_index` of the config: the same layout, colours, sizes, background, caption choices
    /// and texture, so it differs from `sample_in(split, index)` only in that one shape (and the
    /// one word naming it). A counterfactual twin: a batch of such twins can only be told apart
    /// by shape, a hard negative for contrastive pretraining.
    ///
    /// `None` when `slot` or `shape_index` is out of range, when the new (shape, colour) pair is
    /// held out and `split` is not [`Split::HeldOut`], or when it equals the other object's pair.
    pub fn shape_variant_in(
        &self,
        split: Split,
        index: u64,
        slot: usize,
        shape_index: usize,
    ) -> Option<SyntheticSample> {
        let (mut scene, mut rng) = self.scene_and_rng(split, index);
        let colour_index = scene.objects.get(slot)?.colour_index;
        let shape = *self.config.shapes.get(shape_index)?;
        let pair = (shape_index, colour_index);
        if split != Split::HeldOut && self.held_out.contains(&pair) {
            return None;
        }
        let clash = scene
            .objects
            .iter()
            .enumerate()
            .any(|(i, o)| i != slot && (o.shape_index, o.colour_index) == pair);
        if clash {
            return None;
        }
        let object = &mut scene.objects[slot];
        object.shape = shape;
        object.shape_index = shape_index;
        let caption = self.caption(&scene, &mut rng);
        let image = self.render(split, &scene, &mut rng);
        Some(SyntheticSample {
            split,
            index,
            image,
            caption,
            objects: scene.objects,
            relation: scene.relation,
            background: scene.background,
        })
    }

    /// The caption of sample `index` of `split` without rendering its pixels (for text-only
    /// consumers such as tokenizer training); equal to `sample_in(split, index).caption`.
    pub fn caption_in(&self, split: Split, index: u64) -> String {
        let (scene, mut rng) = self.scene_and_rng(split, index);
        self.caption(&scene, &mut rng)
    }

    /// `n` captions of sample `index` of `split`, like the several human captions per image of
    /// COCO and Flickr30k: the first is [`SyntheticWorld::caption_in`]'s, the others come from
    /// the same grammar with independent streams (another template, other words left out), so
    /// all of them agree with what is drawn.
    pub fn captions_in(&self, split: Split, index: u64, n: usize) -> Vec<String> {
        let (scene, mut rng) = self.scene_and_rng(split, index);
        let first = self.caption(&scene, &mut rng);
        let seed = rng.next_u64();
        std::iter::once(first)
            .chain((1..n as u64).map(|k| {
                let mut r = SplitMix64::new(super::rng::mix64(seed ^ k));
                self.caption(&scene, &mut r)
            }))
            .take(n)
            .collect()
    }

    /// The objects of sample `index` of `split` (layout only: no caption, no pixels), e.g. to
    /// select samples by attribute cheaply; equal to `sample_in(split, index).objects`.
    pub fn objects_in(&self, split: Split, index: u64) -> Vec<ObjectSpec> {
        self.scene(split, index).objects
    }

    /// Draws the layout of sample `index` of `split` (no caption, no pixels).
    pub(crate) fn scene(&self, split: Split, index: u64) -> Scene {
        self.scene_and_rng(split, index).0
    }

    /// [`Self::scene`] plus the sample's random stream, positioned after the layout draws.
    fn scene_and_rng(&self, split: Split, index: u64) -> (Scene, SplitMix64) {
        let config = &self.config;
        let mut rng = SplitMix64::new(hash3(config.seed, split.stream(), index));
        let n_objects = usize::from(config.min_objects)
            + rng.below(usize::from(config.max_objects - config.min_objects) + 1);
        let background = config.backgrounds[rng.below(config.backgrounds.len())];
        let relation =
            (n_objects == 2).then(|| config.relations[rng.below(config.relations.len())]);

        // (shape, colour) pairs; in held-out images one random slot gets a held-out pair and the
        // other any pair. Two objects never share a (shape, colour) pair.
        let held_slot = rng.below(n_objects);
        let n_all = config.shapes.len() * config.colours.len();
        let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(n_objects);
        for slot in 0..n_objects {
            let pool: Vec<(usize, usize)> = match split {
                Split::HeldOut if slot == held_slot => self.held_out.clone(),
                Split::HeldOut => (0..n_all)
                    .map(|i| (i / config.colours.len(), i % config.colours.len()))
                    .collect(),
                Split::Pretrain | Split::Eval => self.allowed.clone(),
            };
            let pool: Vec<_> = pool.into_iter().filter(|p| !pairs.contains(p)).collect();
            // Only empty with a single allowed pair and two objects: then repeat the pair.
            let pair = if pool.is_empty() {
                pairs[0]
            } else {
                pool[rng.below(pool.len())]
            };
            pairs.push(pair);
        }

        let size = config.image_size as f32;
        let margin = 1.0;
        let mut objects = Vec::with_capacity(n_objects);
        let sides: Vec<(usize, f32)> = (0..n_objects)
            .map(|_| {
                let s = rng.below(config.sizes.len());
                (s, config.sizes[s].fraction * size)
            })
            .collect();
        let centres: Vec<[f32; 2]> = match relation {
            None => {
                let half = sides[0].1 / 2.0;
                let x = rng.range(half + margin, size - half - margin);
                let y = rng.range(half + margin, size - half - margin);
                vec![[x, y]]
            }
            Some(relation) => {
                // Along the relation's axis the first object takes one half of the image and the
                // second the other; across it both share a level, with a small jitter.
                let first_low = matches!(relation, Relation::LeftOf | Relation::Above);
                let mid = size / 2.0;
                let max_half = sides[0].1.max(sides[1].1) / 2.0;
                let level = rng.range(max_half + margin, size - max_half - margin);
                let jitter = 0.06 * size;
                let mut centres = Vec::with_capacity(2);
                for (slot, &(_, side)) in sides.iter().enumerate() {
                    let half = side / 2.0;
                    let low = (slot == 0) == first_low;
                    let (lo, hi) = if low {
                        (half + margin, mid - half - 0.5)
                    } else {
                        (mid + half + 0.5, size - half - margin)
                    };
                    let along = if hi <= lo {
                        (lo + hi) / 2.0
                    } else {
                        rng.range(lo, hi)
                    };
                    let across = (level + rng.range(-jitter, jitter))
                        .clamp(half + margin, size - half - margin);
                    centres.push(match relation {
                        Relation::LeftOf | Relation::RightOf => [along, across],
                        Relation::Above | Relation::Below => [across, along],
                    });
                }
                centres
            }
        };
        let centres = match (config.position_grid, relation) {
            (0, _) => centres,
            (grid, None) => vec![snap(centres[0], sides[0].1, size, grid as f32, [0, 0])],
            (grid, Some(relation)) => {
                // Along the relation's axis each object snaps away from the middle, so the two
                // never move into each other; across it, to the nearest grid point.
                let first_low = matches!(relation, Relation::LeftOf | Relation::Above);
                let horizontal = matches!(relation, Relation::LeftOf | Relation::RightOf);
                (0..2)
                    .map(|slot| {
                        let away = if (slot == 0) == first_low { -1 } else { 1 };
                        let dir = if horizontal { [away, 0] } else { [0, away] };
                        snap(centres[slot], sides[slot].1, size, grid as f32, dir)
                    })
                    .collect()
            }
        };
        for ((&(shape_index, colour_index), &(size_index, side)), centre) in
            pairs.iter().zip(&sides).zip(centres)
        {
            let colour = &config.colours[colour_index];
            objects.push(ObjectSpec {
                shape: config.shapes[shape_index],
                shape_index,
                colour: colour.name.clone(),
                colour_index,
                rgb: colour.rgb,
                size: config.sizes[size_index].name.clone(),
                size_index,
                centre,
                side,
                bbox: render::pixel_bbox(centre, side, config.image_size),
            });
        }
        (
            Scene {
                objects,
                relation,
                background,
            },
            rng,
        )
    }

    /// The caption: a template around "object [relation object] [on a ... background]"; each
    /// object's size word, each object's colour word and the background phrase are each left out
    /// with probability 1/4 (captions without a colour word teach shape apart from colour, which
    /// is what zero-shot recognition of held-out shape-colour pairs needs).
    fn caption(&self, scene: &Scene, rng: &mut SplitMix64) -> String {
        let phrase = |object: &ObjectSpec, rng: &mut SplitMix64| {
            let size = rng.chance(3, 4);
            let colour = rng.chance(3, 4);
            let mut words = Vec::with_capacity(3);
            if size {
                words.push(object.size.as_str());
            }
            if colour {
                words.push(object.colour.as_str());
            }
            words.push(object.shape.name());
            let words = words.join(" ");
            format!("{} {words}", article(&words))
        };
        let mut body = phrase(&scene.objects[0], rng);
        if let (Some(relation), Some(second)) = (scene.relation, scene.objects.get(1)) {
            body = format!("{body} {} {}", relation.phrase(), phrase(second, rng));
        }
        if rng.chance(3, 4) {
            let name = scene.background.name();
            body = format!("{body} on {} {name} background", article(name));
        }
        TEMPLATES[rng.below(TEMPLATES.len())].replacen("{}", &body, 1)
    }

    /// Paints the scene: background (base grey even, odd for [`Split::Eval`]), then objects.
    fn render(&self, split: Split, scene: &Scene, rng: &mut SplitMix64) -> RgbImage {
        let config = &self.config;
        let parity = u8::from(split == Split::Eval);
        let base = 96 + 2 * rng.below(25) as u8 + parity;
        let texture_seed = rng.next_u64();
        let mut image = render::background(
            config.image_size,
            scene.background,
            base,
            config.background_contrast,
            texture_seed,
        );
        for object in &scene.objects {
            if config.outline > 0.0 {
                let contour = Paint {
                    shape: object.shape,
                    rgb: OUTLINE_RGB,
                    centre: object.centre,
                    side: object.side,
                };
                render::paint_contour(&mut image, &contour, config.outline, config.antialias);
            }
            let paint = Paint {
                shape: object.shape,
                rgb: object.rgb,
                centre: object.centre,
                side: object.side,
            };
            render::paint_object(&mut image, &paint, config.antialias);
        }
        image
    }
}
