//! CLIP text tokenization on top of a Hugging Face `tokenizer.json`.
//!
//! [`ClipTokenizer`] reproduces the ids of transformers'
//! [`CLIPTokenizerFast`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/tokenization_clip.py)
//! called with `padding="max_length", max_length=77, truncation=True`:
//! `<|startoftext|> tokens… <|endoftext|> pad…`, where a long text is cut so that the
//! end-of-text token is always the last token before padding. The same layout with zero padding
//! ([`Padding::Zero`]) is what open_clip's `tokenize`
//! ([`tokenizer.py`](https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/tokenizer.py))
//! returns, up to the text cleaning (ftfy, HTML unescaping) that open_clip does and the HF
//! normaliser does not.
//!
//! The tokenizer.json's own `truncation` and `padding` sections are ignored: the text is encoded
//! without special tokens, cut to `context_length - 2` tokens, and framed with the start- and
//! end-of-text ids here, so both special tokens are always counted in the length.
//!
//! Encoding is done by the `tokenizers` crate (0.22, the stable line that transformers' fast
//! tokenizers are built on; its 1.0 release candidates break CLIP's end-of-word suffixes), with
//! the Oniguruma regex engine that `tokenizer.json` pre-tokenizers are written for. The parity
//! test checks every id against transformers.

use std::path::{Path, PathBuf};

use burn::prelude::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use std::str::FromStr;

use tokenizers::{ModelWrapper, Tokenizer};

use crate::error::{Error, Result};

/// The start-of-text token of CLIP's vocabulary.
pub const START_OF_TEXT: &str = "<|startoftext|>";
/// The end-of-text token of CLIP's vocabulary.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// CLIP's context length (`model_max_length` in HF's `tokenizer_config.json`).
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

/// Largest `model_max_length` from a `tokenizer_config.json` that is taken as a real context
/// length; HF writes `1e30` ("no limit") for tokenizers without one.
const MAX_CONFIG_CONTEXT_LENGTH: u64 = 1 << 16;

/// Which id fills the positions after the end-of-text token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Pad with the end-of-text id, as transformers' CLIP tokenizers do (`pad_token` is
    /// `<|endoftext|>` in OpenAI's `tokenizer_config.json`). The default.
    #[default]
    EndOfText,
    /// Pad with id 0, as open_clip's `tokenize` does.
    Zero,
    /// Pad with this id.
    Id(u32),
}

/// A CLIP BPE tokenizer producing fixed-length id rows.
///
/// Defaults: context length [`DEFAULT_CONTEXT_LENGTH`] (77), [`Padding::EndOfText`].
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    sot_id: u32,
    eot_id: u32,
    vocab_size: usize,
    context_length: usize,
    padding: Padding,
    /// The BPE model's end-of-word suffix (`</w>` for CLIP), replaced by a space when decoding.
    end_of_word_suffix: Option<String>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("sot_id", &self.sot_id)
            .field("eot_id", &self.eot_id)
            .field("vocab_size", &self.vocab_size)
            .field("context_length", &self.context_length)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

/// Ids of encoded texts, one row of `context_length` ids per text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major `[n, context_length]`.
    pub ids: Vec<i64>,
    /// Number of texts (rows).
    pub n: usize,
    /// Ids per row.
    pub context_length: usize,
}

impl TokenBatch {
    /// The ids of text `i`, or `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[i64]> {
        if i >= self.n {
            return None;
        }
        self.ids
            .get(i * self.context_length..(i + 1) * self.context_length)
    }

    /// The batch as an integer tensor of shape `[n, context_length]` on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(
            TensorData::new(self.ids.clone(), [self.n, self.context_length]),
            device,
        )
    }
}

impl ClipTokenizer {
    /// Loads a `tokenizer.json` (the legacy `1.0` format that the Hub serves is upgraded in memory).
    ///
    /// Special tokens are `<|startoftext|>` and `<|endoftext|>`; both must be in the vocabulary.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::load(path.as_ref(), START_OF_TEXT, END_OF_TEXT, None)
    }

    /// Loads `dir/tokenizer.json`, taking the special tokens and the context length from
    /// `dir/tokenizer_config.json` when that file exists.
    ///
    /// From `tokenizer_config.json`: `bos_token` and `eos_token` name the start- and end-of-text
    /// tokens (default `<|startoftext|>` / `<|endoftext|>`), `pad_token` picks the padding id
    /// ([`Padding::EndOfText`] when it is the end-of-text token or absent, else [`Padding::Id`]),
    /// and `model_max_length` the context length when it is a plausible one (at most 65536;
    /// default 77). Tokens may be given as strings or as `{"content": …}` objects.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer_path = dir.join("tokenizer.json");
        let config_path = dir.join("tokenizer_config.json");
        if !config_path.exists() {
            return Self::from_file(&tokenizer_path);
        }
        let config = crate::json::read(&config_path)?;
        let token = |key: &str| -> Result<Option<String>> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    other => Err(field_error(
                        &config_path,
                        &format!("{key}.content"),
                        "a string",
                        other.unwrap_or(&Value::Null),
                    )),
                },
                Some(other) => Err(field_error(
                    &config_path,
                    key,
                    "a string or a {\"content\": string} object",
                    other,
                )),
            }
        };
        let sot = token("bos_token")?.unwrap_or_else(|| START_OF_TEXT.to_owned());
        let eot = token("eos_token")?.unwrap_or_else(|| END_OF_TEXT.to_owned());
        let pad = token("pad_token")?;
        let mut tokenizer = Self::load(&tokenizer_path, &sot, &eot, pad.as_deref())?;
        match config.get("model_max_length") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v.as_f64().filter(|n| *n >= 2.0).ok_or_else(|| {
                    field_error(&config_path, "model_max_length", "a number >= 2", v)
                })?;
                if n <= MAX_CONFIG_CONTEXT_LENGTH as f64 {
                    // In range and >= 2, so the conversion is exact for integral values.
                    tokenizer.context_length = n as usize;
                }
            }
        }
        Ok(tokenizer)
    }

    /// Reads and builds the tokenizer; `pad` is the padding token (`None` or the end-of-text
    /// token give [`Padding::EndOfText`]).
    fn load(path: &Path, sot: &str, eot: &str, pad: Option<&str>) -> Result<Self> {
        let doc = crate::json::read(path)?;
        let vocab = VocabInfo::from_doc(&doc);
        let sot_id = vocab.id(sot).ok_or_else(|| Error::MissingSpecialToken {
            path: path.to_path_buf(),
            role: "start-of-text",
            token: sot.to_owned(),
        })?;
        let eot_id = vocab.id(eot).ok_or_else(|| Error::MissingSpecialToken {
            path: path.to_path_buf(),
            role: "end-of-text",
            token: eot.to_owned(),
        })?;
        let padding = match pad {
            Some(pad) if pad != eot => {
                Padding::Id(vocab.id(pad).ok_or_else(|| Error::MissingSpecialToken {
                    path: path.to_path_buf(),
                    role: "padding",
                    token: pad.to_owned(),
                })?)
            }
            _ => Padding::EndOfText,
        };
        let vocab_size = vocab.size;
        let inner =
            Tokenizer::from_str(&doc.to_string()).map_err(|source| Error::TokenizerLoad {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_parts(inner, path, sot_id, eot_id, vocab_size, padding)
    }

    /// Wraps an in-memory tokenizer, such as one from [`crate::train_clip_tokenizer`], with the
    /// defaults of [`Self::from_file`]: special tokens `<|startoftext|>` / `<|endoftext|>`
    /// (errors name the file as `<memory>`), context length 77, [`Padding::EndOfText`]. The
    /// tokenizer's own truncation and padding settings are dropped, as for files.
    pub fn from_tokenizer(tokenizer: Tokenizer) -> Result<Self> {
        let origin = Path::new("<memory>");
        let id = |role: &'static str, token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| Error::MissingSpecialToken {
                    path: origin.to_path_buf(),
                    role,
                    token: token.to_owned(),
                })
        };
        let sot_id = id("start-of-text", START_OF_TEXT)?;
        let eot_id = id("end-of-text", END_OF_TEXT)?;
        let vocab_size = tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&max| max as usize + 1);
        Self::from_parts(
            tokenizer,
            origin,
            sot_id,
            eot_id,
            vocab_size,
            Padding::EndOfText,
        )
    }

    /// Drops the tokenizer's own truncation and padding (see module docs) and assembles `Self`.
    fn from_parts(
        mut inner: Tokenizer,
        path: &Path,
        sot_id: u32,
        eot_id: u32,
        vocab_size: usize,
        padding: Padding,
    ) -> Result<Self> {
        inner
            .with_truncation(None)
            .map_err(|source| Error::TokenizerLoad {
                path: path.to_path_buf(),
                source,
            })?;
        inner.with_padding(None);
        let end_of_word_suffix = match inner.get_model() {
            ModelWrapper::BPE(bpe) => bpe.end_of_word_suffix.clone().filter(|s| !s.is_empty()),
            _ => None,
        };
        Ok(Self {
            inner,
            sot_id,
            eot_id,
            vocab_size,
            context_length: DEFAULT_CONTEXT_LENGTH,
            padding,
            end_of_word_suffix,
        })
    }

    /// Sets the padding id choice.
    #[must_use]
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the number of ids per encoded text; it must be at least 2 (start and end of text).
    pub fn with_context_length(mut self, context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(Error::InvalidSetting {
                setting: "context_length",
                expected: "at least 2 (start- and end-of-text tokens)".to_owned(),
                found: context_length.to_string(),
            });
        }
        self.context_length = context_length;
        Ok(self)
    }

    /// Id of `<|startoftext|>` (49406 in OpenAI's vocabulary).
    pub fn sot_id(&self) -> u32 {
        self.sot_id
    }

    /// Id of `<|endoftext|>` (49407 in OpenAI's vocabulary).
    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }

    /// The id written after the end-of-text token.
    pub fn pad_id(&self) -> u32 {
        match self.padding {
            Padding::EndOfText => self.eot_id,
            Padding::Zero => 0,
            Padding::Id(id) => id,
        }
    }

    /// Number of ids: one more than the largest id of the model vocabulary and added tokens
    /// (49408 for OpenAI's CLIP).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Ids per encoded text.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The padding choice.
    pub fn padding(&self) -> Padding {
        self.padding
    }

    /// Encodes one text into exactly [`Self::context_length`] ids.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let content = self.content_ids(text)?;
        let mut row = Vec::with_capacity(self.context_length);
        self.frame(&content, &mut row);
        Ok(row)
    }

    /// Encodes texts into a `[texts.len(), context_length]` batch.
    pub fn encode_batch(&self, texts: &[impl AsRef<str>]) -> Result<TokenBatch> {
        let mut ids = Vec::with_capacity(texts.len() * self.context_length);
        for text in texts {
            let content = self.content_ids(text.as_ref())?;
            self.frame(&content, &mut ids);
        }
        Ok(TokenBatch {
            ids,
            n: texts.len(),
            context_length: self.context_length,
        })
    }

    /// Decodes a row of ids back to text, as transformers' `CLIPTokenizerFast.decode` with
    /// `skip_special_tokens=True` does: what follows the last end-of-text id is padding and is
    /// dropped (so [`Padding::Zero`] and [`Padding::Id`] rows decode like the default ones), the
    /// other ids are decoded skipping special tokens (start- and end-of-text included), each
    /// end-of-word suffix (`</w>`) becomes a space, and the result is trimmed. CLIP's normaliser
    /// lowercases and collapses whitespace, so a row from [`Self::encode`] of a text that was
    /// not truncated gives back that text lowercased and whitespace-normalised (punctuation
    /// comes back space-separated, as in transformers).
    ///
    /// An id outside `0..vocab_size` is an [`Error::UnknownTokenId`].
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let eot = i64::from(self.eot_id);
        let sot = i64::from(self.sot_id);
        let end = ids.iter().rposition(|&id| id == eot).unwrap_or(ids.len());
        let mut content = Vec::with_capacity(end);
        for &id in &ids[..end] {
            let known = u32::try_from(id)
                .ok()
                .filter(|&id| (id as usize) < self.vocab_size);
            let known = known.ok_or(Error::UnknownTokenId {
                id,
                vocab_size: self.vocab_size,
            })?;
            if id != sot && id != eot {
                content.push(known);
            }
        }
        let text = self
            .inner
            .decode(&content, true)
            .map_err(|source| Error::Decode {
                n_ids: content.len(),
                source,
            })?;
        Ok(match &self.end_of_word_suffix {
            Some(suffix) => text.replace(suffix.as_str(), " ").trim().to_owned(),
            None => text.trim().to_owned(),
        })
    }

    /// The ids of `text` without special tokens around them (special-token text inside the
    /// caption is still matched, as transformers does).
    fn content_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|source| encode_error(text, source))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Appends `sot, content[..context_length - 2], eot, pad…` (exactly `context_length` ids).
    fn frame(&self, content: &[u32], out: &mut Vec<i64>) {
        let start = out.len();
        out.push(i64::from(self.sot_id));
        out.extend(
            content
                .iter()
                .take(self.context_length - 2)
                .map(|&id| i64::from(id)),
        );
        out.push(i64::from(self.eot_id));
        out.resize(start + self.context_length, i64::from(self.pad_id()));
    }
}

/// Token → id lookup and vocabulary size read straight from the `tokenizer.json` document.
struct VocabInfo<'a> {
    added: Vec<(&'a str, u32)>,
    model_vocab: Option<&'a serde_json::Map<String, Value>>,
    size: usize,
}

impl<'a> VocabInfo<'a> {
    fn from_doc(doc: &'a Value) -> Self {
        let added: Vec<(&str, u32)> = doc
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|tokens| {
                tokens
                    .iter()
                    .filter_map(|t| {
                        let content = t.get("content")?.as_str()?;
                        let id = u32::try_from(t.get("id")?.as_u64()?).ok()?;
                        Some((content, id))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let model_vocab = doc
            .get("model")
            .and_then(|m| m.get("vocab"))
            .and_then(Value::as_object);
        let max_model = model_vocab
            .into_iter()
            .flat_map(|v| v.values())
            .filter_map(Value::as_u64)
            .max();
        let max_added = added.iter().map(|(_, id)| u64::from(*id)).max();
        let size = max_model.max(max_added).map_or(0, |m| {
            usize::try_from(m).map_or(usize::MAX, |m| m.saturating_add(1))
        });
        Self {
            added,
            model_vocab,
            size,
        }
    }

    fn id(&self, token: &str) -> Option<u32> {
        self.added
            .iter()
            .find(|(content, _)| *content == token)
            .map(|(_, id)| *id)
            .or_else(|| {
                let id = self.model_vocab?.get(token)?.as_u64()?;
                u32::try_from(id).ok()
            })
    }
}

fn field_error(path: &Path, field: &str, expected: &str, found: &Value) -> Error {
    Error::ConfigField {
        path: PathBuf::from(path),
        field: field.to_owned(),
        expected: expected.to_owned(),
        found: crate::json::short(found),
    }
}

fn encode_error(text: &str, source: tokenizers::Error) -> Error {
    Error::Encode {
        text: text.chars().take(64).collect(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny CLIP-shaped tokenizer: lowercase + whitespace normalisation, whitespace split, BPE
    /// over a handful of words with the `</w>` suffix, and CLIP's special tokens at the end of
    /// the vocabulary.
    fn tiny_tokenizer_json(with_sot: bool) -> String {
        let mut vocab = serde_json::Map::new();
        let words = ["a</w>", "photo</w>", "of</w>", "cat</w>", "dog</w>"];
        let mut id = 0u64;
        for c in "abcdefghijklmnopqrstuvwxyz".chars() {
            vocab.insert(c.to_string(), id.into());
            id += 1;
            vocab.insert(format!("{c}</w>"), id.into());
            id += 1;
        }
        for w in words {
            if !vocab.contains_key(w) {
                vocab.insert(w.to_owned(), id.into());
                id += 1;
            }
        }
        // Merges that build the words above.
        let merges = [
            "p h",
            "ph o",
            "pho t",
            "phot o</w>",
            "o f</w>",
            "c a",
            "ca t</w>",
            "d o",
            "do g</w>",
        ];
        for m in merges {
            let merged = m.replace(' ', "");
            if !vocab.contains_key(&merged) {
                vocab.insert(merged, id.into());
                id += 1;
            }
        }
        let mut added = Vec::new();
        if with_sot {
            vocab.insert(START_OF_TEXT.to_owned(), id.into());
            added.push(
                serde_json::json!({"id": id, "content": START_OF_TEXT, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": true, "special": true}),
            );
            id += 1;
        }
        vocab.insert(END_OF_TEXT.to_owned(), id.into());
        added.push(
            serde_json::json!({"id": id, "content": END_OF_TEXT, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": true, "special": true}),
        );
        serde_json::json!({
            "version": "1.0",
            "truncation": {"direction": "Right", "max_length": 5, "strategy": "LongestFirst", "stride": 0},
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null,
            "decoder": null,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": END_OF_TEXT,
                "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                "fuse_unk": false, "byte_fallback": false,
                "vocab": vocab, "merges": merges,
            }
        })
        .to_string()
    }

    fn tiny(dir: &tempfile::TempDir) -> ClipTokenizer {
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tiny_tokenizer_json(true)).unwrap();
        ClipTokenizer::from_file(&path).unwrap()
    }

    #[test]
    fn frames_text_with_start_and_end_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir).with_context_length(8).unwrap();
        let ids = tok.encode("A photo of  a CAT").unwrap();
        assert_eq!(ids.len(), 8);
        assert_eq!(ids[0], i64::from(tok.sot_id()));
        assert_eq!(ids[6], i64::from(tok.eot_id()));
        assert_eq!(
            ids[7],
            i64::from(tok.eot_id()),
            "default padding is end-of-text"
        );
        // 5 words, each a single BPE token carrying the end-of-word suffix: "a" is `a</w>` (id 1),
        // not the bare atom `a` (id 0).
        assert_eq!(ids[1], 1);
        assert_eq!(ids[4], 1);
        assert!(ids[1..6].iter().all(|&i| i < i64::from(tok.sot_id())));
    }

    #[test]
    fn truncation_keeps_end_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir).with_context_length(4).unwrap();
        let long = tok.encode("a photo of a cat").unwrap();
        let short = tok.encode("a photo").unwrap();
        assert_eq!(long.len(), 4);
        assert_eq!(long[3], i64::from(tok.eot_id()));
        assert_eq!(long, short, "the first two words survive, then end-of-text");
    }

    #[test]
    fn tokenizer_json_truncation_is_ignored() {
        // The fixture's own truncation says max_length 5; ours (77) wins.
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir);
        let ids = tok.encode("a photo of a cat a dog").unwrap();
        assert_eq!(ids[8], i64::from(tok.eot_id()));
        assert_ne!(ids[7], i64::from(tok.eot_id()));
    }

    #[test]
    fn padding_styles_fill_after_end_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let base = tiny(&dir).with_context_length(6).unwrap();
        let eot = i64::from(base.eot_id());
        let cat = base.encode("cat").unwrap()[1];
        let hf = base.clone().encode("cat").unwrap();
        let zero = base
            .clone()
            .with_padding(Padding::Zero)
            .encode("cat")
            .unwrap();
        let custom = base
            .clone()
            .with_padding(Padding::Id(7))
            .encode("cat")
            .unwrap();
        let sot = i64::from(base.sot_id());
        assert_eq!(hf, vec![sot, cat, eot, eot, eot, eot]);
        assert_eq!(zero, vec![sot, cat, eot, 0, 0, 0]);
        assert_eq!(custom, vec![sot, cat, eot, 7, 7, 7]);
    }

    #[test]
    fn empty_string_is_start_then_end_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir).with_padding(Padding::Zero);
        let ids = tok.encode("").unwrap();
        assert_eq!(ids.len(), DEFAULT_CONTEXT_LENGTH);
        assert_eq!(
            &ids[..2],
            &[i64::from(tok.sot_id()), i64::from(tok.eot_id())]
        );
        assert!(ids[2..].iter().all(|&i| i == 0));
    }

    #[test]
    fn batch_rows_equal_single_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir).with_context_length(10).unwrap();
        let texts = ["a cat", "", "a photo of a dog"];
        let batch = tok.encode_batch(&texts).unwrap();
        assert_eq!(
            (batch.n, batch.context_length, batch.ids.len()),
            (3, 10, 30)
        );
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(batch.row(i).unwrap(), tok.encode(t).unwrap().as_slice());
        }
        assert!(batch.row(3).is_none());
        let empty = tok.encode_batch(&[] as &[&str]).unwrap();
        assert_eq!((empty.n, empty.ids.len()), (0, 0));
    }

    #[test]
    fn batch_becomes_int_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir).with_context_length(5).unwrap();
        let batch = tok.encode_batch(&["a cat", "dog"]).unwrap();
        let t = batch.to_tensor(&Device::flex());
        assert_eq!(t.dims(), [2, 5]);
        let back: Vec<i64> = t
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        assert_eq!(back, batch.ids);
    }

    #[test]
    fn vocab_size_and_special_ids_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny(&dir);
        assert_eq!(tok.eot_id(), tok.sot_id() + 1);
        assert_eq!(tok.vocab_size(), tok.eot_id() as usize + 1);
    }

    #[test]
    fn missing_start_of_text_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tiny_tokenizer_json(false)).unwrap();
        let err = ClipTokenizer::from_file(&path).unwrap_err();
        assert!(matches!(
            err,
            Error::MissingSpecialToken {
                role: "start-of-text",
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("<|startoftext|>") && msg.contains("tokenizer.json"),
            "{msg}"
        );
    }

    #[test]
    fn missing_and_corrupt_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/tokenizer.json");
        let err = ClipTokenizer::from_file(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("nope/tokenizer.json"), "{err}");

        let corrupt = dir.path().join("tokenizer.json");
        std::fs::write(&corrupt, "{\"version\": \"1.0\", \"model\": ").unwrap();
        let err = ClipTokenizer::from_file(&corrupt).unwrap_err();
        assert!(matches!(err, Error::Json { .. }));
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn context_length_below_two_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = tiny(&dir).with_context_length(1).unwrap_err();
        assert!(err.to_string().contains("context_length"), "{err}");
    }

    #[test]
    fn from_dir_reads_tokenizer_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tiny_tokenizer_json(true)).unwrap();
        // Without a tokenizer_config.json: defaults.
        let plain = ClipTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(plain.context_length(), 77);
        assert_eq!(plain.padding(), Padding::EndOfText);

        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"model_max_length": 12, "bos_token": {"content": "<|startoftext|>"},
                "eos_token": "<|endoftext|>", "pad_token": "<|startoftext|>", "unknown": [1]}"#,
        )
        .unwrap();
        let tok = ClipTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.context_length(), 12);
        assert_eq!(tok.padding(), Padding::Id(tok.sot_id()));

        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"model_max_length": 1e30, "pad_token": "<|endoftext|>"}"#,
        )
        .unwrap();
        let tok = ClipTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(
            tok.context_length(),
            77,
            "a 'no limit' max length keeps the default"
        );
        assert_eq!(tok.padding(), Padding::EndOfText);

        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"model_max_length": "long"}"#,
        )
        .unwrap();
        let err = ClipTokenizer::from_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("model_max_length") && msg.contains("tokenizer_config.json"),
            "{msg}"
        );
    }
}
