//! Training a CLIP-style byte-level BPE tokenizer on a text corpus with the `tokenizers` crate's
//! [`BpeTrainer`], and saving it as a `tokenizer.json` that both [`ClipTokenizer::from_file`] and
//! transformers' `CLIPTokenizerFast` load.
//!
//! The trained tokenizer has the pipeline of OpenAI CLIP's `tokenizer.json` (as written by
//! transformers' `convert_slow_tokenizer`): normaliser NFC → `\s+` replaced by one space →
//! lowercase; pre-tokenizer CLIP's `Split` regex (contractions, letter runs, single digits,
//! punctuation runs; whitespace removed) followed by GPT-2's `ByteLevel` mapping; a BPE model
//! with the end-of-word suffix `</w>` and `<|endoftext|>` as unknown token; a `RobertaProcessing`
//! post-processor framing texts with `<|startoftext|>` … `<|endoftext|>`; a `ByteLevel` decoder.
//!
//! The vocabulary is laid out as CLIP's: ids `0..256` are the 256 byte symbols in GPT-2's
//! `bytes_to_unicode` order, `256..512` the same symbols with `</w>` (so every text can be
//! encoded without unknown tokens), then one token per learned merge in merge order, and the
//! last two ids are `<|startoftext|>` and `<|endoftext|>` (49406 and 49407 in OpenAI's
//! vocabulary), so the end-of-text id is the largest.
//!
//! Training is deterministic: the same texts and config give a byte-identical `tokenizer.json`.
//! The 512 base symbols are handed to the trainer first (as its "special tokens", which it
//! numbers in the order given), so no id depends on hash-map iteration order; ties between
//! equally frequent pairs are then broken by those ids.
//!
//! ```no_run
//! use vl_data::{ClipTokenizer, Overwrite, TokenizerTrainConfig};
//! use vl_data::{save_tokenizer, train_clip_tokenizer};
//!
//! # fn main() -> vl_data::Result<()> {
//! let captions = ["a photo of a red circle", "a blue square on a striped background"];
//! let tokenizer = train_clip_tokenizer(captions.iter(), &TokenizerTrainConfig::default())?;
//! save_tokenizer(&tokenizer, "out/tokenizer.json", Overwrite::Refuse)?;
//! let clip = ClipTokenizer::from_file("out/tokenizer.json")?;
//! let ids = clip.encode("a red circle")?; // [sot, ..., eot, eot, ...], 77 ids
//! # let _ = ids;
//! # Ok(())
//! # }
//! ```
//!
//! [`BpeTrainer`]: tokenizers::models::bpe::BpeTrainer
//! [`ClipTokenizer::from_file`]: crate::ClipTokenizer::from_file

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder, Vocab};
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, Model, NormalizedString, Normalizer, NormalizerWrapper, OffsetReferential,
    OffsetType, PreTokenizedString, PreTokenizer, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer, Trainer,
};

use crate::atomic::{Overwrite, write_atomic};
use crate::error::{Error, Result};
use crate::tokenizer::{END_OF_TEXT, START_OF_TEXT};

/// CLIP's end-of-word suffix, appended to the last symbol of every word.
pub const END_OF_WORD_SUFFIX: &str = "</w>";

/// CLIP's pre-tokenizer regex (from OpenAI's `simple_tokenizer.py`, as written into
/// `tokenizer.json` by transformers).
const CLIP_SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Number of ids that are not learned merges: 256 byte symbols, the same with `</w>`, and the
/// two special tokens.
pub const MIN_VOCAB_SIZE: usize = 2 * 256 + 2;

/// Largest accepted [`TokenizerTrainConfig::vocab_size`] (2^20; CLIP's is 49408).
pub const MAX_VOCAB_SIZE: usize = 1 << 20;

/// Settings of [`train_clip_tokenizer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerTrainConfig {
    /// Largest vocabulary size, special tokens included: the 512 byte symbols (with and without
    /// `</w>`), at most `vocab_size - 514` learned merges, and the two special tokens. Training
    /// stops earlier when no pair occurs [`Self::min_frequency`] times, so the result can be
    /// smaller. Must be in `514..=1048576` ([`MIN_VOCAB_SIZE`], [`MAX_VOCAB_SIZE`]). Default:
    /// `1024` (510 merges: enough for a small caption grammar).
    pub vocab_size: usize,
    /// A pair of symbols must occur at least this many times in the corpus to be merged (0 and 1
    /// both mean any pair that occurs). Default: `2`.
    pub min_frequency: u64,
}

impl Default for TokenizerTrainConfig {
    fn default() -> Self {
        Self {
            vocab_size: 1024,
            min_frequency: 2,
        }
    }
}

impl TokenizerTrainConfig {
    /// Checks that [`Self::vocab_size`] is in `514..=1048576`.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size < MIN_VOCAB_SIZE {
            return Err(Error::InvalidSetting {
                setting: "vocab_size",
                expected: format!(
                    "at least {MIN_VOCAB_SIZE} (256 byte symbols, the same with \
                     `{END_OF_WORD_SUFFIX}`, and the two special tokens)"
                ),
                found: self.vocab_size.to_string(),
            });
        }
        if self.vocab_size > MAX_VOCAB_SIZE {
            return Err(Error::InvalidSetting {
                setting: "vocab_size",
                expected: format!("at most {MAX_VOCAB_SIZE}"),
                found: self.vocab_size.to_string(),
            });
        }
        Ok(())
    }
}

/// GPT-2's `bytes_to_unicode` symbols in CLIP's vocabulary order: the printable bytes
/// (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) as themselves, then every other byte `b` as the `n`-th code
/// point from U+0100, in byte order.
pub fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut symbols: Vec<char> = (0u32..256)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    symbols.extend(
        (0u32..256)
            .filter(|&b| !printable(b))
            .zip(256u32..)
            .filter_map(|(_, code)| char::from_u32(code)),
    );
    symbols
}

/// The 512 base tokens: the byte symbols, then the same with `</w>`.
fn base_tokens() -> Vec<String> {
    let symbols = byte_symbols();
    symbols
        .iter()
        .map(char::to_string)
        .chain(symbols.iter().map(|c| format!("{c}{END_OF_WORD_SUFFIX}")))
        .collect()
}

/// CLIP's normaliser: NFC, any whitespace run → one space, lowercase.
fn clip_normalizer() -> tokenizers::Result<NormalizerWrapper> {
    Ok(NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )?
        .into(),
        Lowercase.into(),
    ])
    .into())
}

/// CLIP's pre-tokenizer: the `Split` regex (whitespace removed), then GPT-2's byte mapping.
fn clip_pre_tokenizer() -> tokenizers::Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(CLIP_SPLIT_PATTERN.to_owned()),
        SplitDelimiterBehavior::Removed,
        true,
    )?;
    Ok(
        PreTokenizerSequence::new(vec![split.into(), ByteLevel::new(false, true, true).into()])
            .into(),
    )
}

fn train_error(source: impl Into<tokenizers::Error>) -> Error {
    Error::TokenizerTrain {
        source: source.into(),
    }
}

/// Trains a CLIP-style BPE tokenizer on `texts` (see the module docs for the pipeline and the
/// vocabulary layout). The texts are read once, in parallel when the `tokenizers` crate's
/// parallelism is on (hence the `Send` bounds); the result does not depend on it.
///
/// Errors: an invalid `config` ([`TokenizerTrainConfig::validate`], naming the field), or a
/// failure inside the `tokenizers` crate ([`Error::TokenizerTrain`]).
pub fn train_clip_tokenizer<I, S>(texts: I, config: &TokenizerTrainConfig) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    config.validate()?;
    let normalizer = clip_normalizer().map_err(train_error)?;
    let pre_tokenizer = clip_pre_tokenizer().map_err(train_error)?;
    let base = base_tokens();

    // The base tokens go in as the trainer's "special tokens": it gives them ids 0..512 in this
    // order before anything else, and since every pre-tokenized word is made of byte symbols,
    // it adds no further single symbols (with or without the suffix) in hash-map order.
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(config.vocab_size - 2)
        .min_frequency(config.min_frequency)
        .show_progress(false)
        .special_tokens(
            base.iter()
                .map(|token| AddedToken::from(token.clone(), true))
                .collect(),
        )
        .end_of_word_suffix(END_OF_WORD_SUFFIX.to_owned())
        .build();
    trainer
        .feed(texts, |text| {
            let mut normalized = NormalizedString::from(text);
            normalizer.normalize(&mut normalized)?;
            let mut words = PreTokenizedString::from(normalized);
            pre_tokenizer.pre_tokenize(&mut words)?;
            Ok(words
                .get_splits(OffsetReferential::Original, OffsetType::Byte)
                .into_iter()
                .map(|(word, _, _)| word.to_owned())
                .collect())
        })
        .map_err(train_error)?;
    let mut trained = BPE::default();
    trainer.train(&mut trained).map_err(train_error)?;

    // The trained ids are 0..n: the base tokens, then one per new merge result.
    let mut by_id: Vec<Option<String>> = vec![None; trained.get_vocab_size()];
    for (token, id) in trained.get_vocab() {
        match by_id.get_mut(id as usize) {
            Some(slot) => *slot = Some(token),
            None => return Err(train_error(format!("trained id {id} is out of range"))),
        }
    }
    let tokens: Vec<String> = by_id
        .into_iter()
        .enumerate()
        .map(|(id, token)| token.ok_or_else(|| train_error(format!("trained id {id} is unused"))))
        .collect::<Result<_>>()?;
    if tokens.get(..base.len()) != Some(base.as_slice()) {
        return Err(train_error(
            "the trainer did not number the 512 byte symbols first",
        ));
    }
    let merges = trained_merges(&trained)?;

    let sot_id = u32::try_from(tokens.len()).map_err(train_error)?;
    let eot_id = sot_id + 1;
    let vocab: Vocab = tokens
        .into_iter()
        .zip(0u32..)
        .chain([
            (START_OF_TEXT.to_owned(), sot_id),
            (END_OF_TEXT.to_owned(), eot_id),
        ])
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(END_OF_TEXT.to_owned())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(END_OF_WORD_SUFFIX.to_owned())
        .build()
        .map_err(train_error)?;

    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_post_processor(Some(
            RobertaProcessing::new(
                (END_OF_TEXT.to_owned(), eot_id),
                (START_OF_TEXT.to_owned(), sot_id),
            )
            .trim_offsets(false)
            .add_prefix_space(false),
        ))
        .with_decoder(Some(ByteLevelDecoder::new(true, true, true)));
    tokenizer.add_special_tokens(&[
        AddedToken::from(START_OF_TEXT, true),
        AddedToken::from(END_OF_TEXT, true),
    ]);
    Ok(tokenizer)
}

/// The trained merges in rank order, read from the model's serialization (the merge table
/// itself is private to the `tokenizers` crate).
fn trained_merges(model: &BPE) -> Result<Vec<(String, String)>> {
    let value = serde_json::to_value(model).map_err(train_error)?;
    let merges = value
        .get("merges")
        .cloned()
        .ok_or_else(|| train_error("the trained model has no merges"))?;
    serde_json::from_value(merges).map_err(train_error)
}

/// The `tokenizer.json` text of `tokenizer` (pretty-printed, ending in a newline) as
/// [`save_tokenizer`] writes it; `path` only names the destination in errors.
pub fn tokenizer_json(tokenizer: &Tokenizer, path: &Path) -> Result<String> {
    let mut json = tokenizer
        .to_string(true)
        .map_err(|source| Error::TokenizerSave {
            path: path.to_path_buf(),
            source,
        })?;
    json.push('\n');
    Ok(json)
}

/// Writes `tokenizer` as a pretty-printed `tokenizer.json`, atomically (a temporary file in the
/// same folder, then a rename); with [`Overwrite::Refuse`] an existing file is left alone and
/// reported as [`Error::AlreadyExists`]. The folder must exist.
pub fn save_tokenizer(
    tokenizer: &Tokenizer,
    path: impl AsRef<Path>,
    overwrite: Overwrite,
) -> Result<()> {
    let path = path.as_ref();
    let json = tokenizer_json(tokenizer, path)?;
    write_atomic(path, json.as_bytes(), overwrite)
}
