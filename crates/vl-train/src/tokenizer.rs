//! The run's tokenizer: CLIP's byte-level BPE pipeline trained with the `tokenizers` crate on the
//! first `tokenizer.captions` pretraining captions (deterministic for a seed), saved as
//! `tokenizer.json` plus the `tokenizer_config.json` that tells transformers' `CLIPTokenizer` and
//! [`vl_data::ClipTokenizer::from_dir`] the special tokens and the context length.

use std::path::Path;

use vl_data::Overwrite;
use vl_data::synthetic::SyntheticWorld;
use vl_data::tokenizer_train::{TokenizerTrainConfig, save_tokenizer, train_clip_tokenizer};

use crate::atomic::write_json_atomic;
use crate::config::PretrainConfig;
use crate::error::Result;

/// Trains the tokenizer on the world's captions and writes `tokenizer.json` and
/// `tokenizer_config.json` into `dir` (replacing earlier ones of the same run).
pub fn train_and_save(config: &PretrainConfig, world: &SyntheticWorld, dir: &Path) -> Result<()> {
    let captions = (0..config.tokenizer.captions as u64)
        .map(|i| world.caption_in(vl_data::synthetic::Split::Pretrain, i));
    let train_config = TokenizerTrainConfig {
        vocab_size: config.tokenizer.vocab_size,
        min_frequency: config.tokenizer.min_frequency,
    };
    let tokenizer = train_clip_tokenizer(captions, &train_config)?;
    save_tokenizer(&tokenizer, dir.join("tokenizer.json"), Overwrite::Allow)?;
    write_json_atomic(
        &dir.join("tokenizer_config.json"),
        &serde_json::json!({
            "tokenizer_class": "CLIPTokenizer",
            "bos_token": vl_data::tokenizer::START_OF_TEXT,
            "eos_token": vl_data::tokenizer::END_OF_TEXT,
            "unk_token": vl_data::tokenizer::END_OF_TEXT,
            "pad_token": vl_data::tokenizer::END_OF_TEXT,
            "model_max_length": config.model.context_length,
        }),
    )
}
