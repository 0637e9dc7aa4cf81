//! CLIP (Radford et al. 2021, <https://arxiv.org/abs/2103.00020>): configuration, the two
//! towers, the joint model, weight import ([`load_clip`]) and export as a Hugging Face
//! checkpoint ([`save_hf`]). Declarations and re-exports only.

mod config;
mod layers;
mod model;
mod save;
mod text;
mod vision;
mod weights;

pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig, TextPooling};
pub use layers::{
    ClipActivation, ClipAttention, ClipEncoder, ClipEncoderConfig, ClipEncoderLayer, ClipMlp,
};
pub use model::{Clip, ClipOutput, l2_normalize};
pub use save::save_hf;
pub use text::{ClipTextEmbeddings, ClipTextTransformer};
pub use vision::{ClipVisionEmbeddings, ClipVisionTransformer};
pub use weights::{
    CheckpointFormat, LoadOptions, LoadedCheckpoint, TensorFiles, infer_config, load_clip,
    load_clip_from_files,
};
