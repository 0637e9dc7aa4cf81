//! The synthetic world: a deterministic procedural generator of small RGB images of coloured
//! shapes on grey textures, with captions from a small grammar, classification tasks over the
//! attributes, and a held-out set of (shape, colour) combinations never seen in pretraining.
//!
//! - [`SyntheticWorldConfig`] → [`SyntheticWorld::new`]; every sample is a pure function of
//!   `(config, split, index)` ([`SyntheticWorld::sample_in`]), drawn from a counter-based
//!   SplitMix64 stream, so any index is generated on its own and identically everywhere.
//! - [`Split::Pretrain`] and [`Split::Eval`] avoid the held-out combinations and come from
//!   independent streams (evaluation backgrounds use odd grey levels, pretraining even ones);
//!   [`Split::HeldOut`] images contain at least one held-out combination.
//! - [`Task`]s label one-object images (or any image, for the background) with
//!   [`SyntheticWorld::class_names`]; [`SyntheticWorld::write_image_folder`] puts a labelled set on
//!   disk as an image folder plus `captions.jsonl`.
//!
//! ```
//! use vl_data::synthetic::{Split, SyntheticWorld, SyntheticWorldConfig, Task};
//!
//! # fn main() -> vl_data::Result<()> {
//! let world = SyntheticWorld::new(SyntheticWorldConfig::default())?;
//! let sample = world.sample(0);
//! assert_eq!(sample.image.dimensions(), (48, 48));
//! let shapes = world.class_names(Task::Shape);
//! for (index, label) in world.classification_set(Task::Shape, Split::Eval, 4)? {
//!     let _ = (world.sample_in(Split::Eval, index).image, &shapes[label]);
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod folder;
mod render;
pub(crate) mod rng;
mod task;
mod world;

pub use config::{
    Background, NamedColour, Relation, Shape, ShapeColour, SizeClass, SyntheticWorldConfig,
};
pub use folder::ImageFolderSummary;
pub use task::Task;
pub use world::{ObjectSpec, Split, SyntheticSample, SyntheticWorld, with_article};
